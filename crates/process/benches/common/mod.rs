//! The benchmarks' workload: a realistic mix of events (three sites, 20,000 returning
//! visitors, 400 product pages, real User-Agents, referrers, UTM tags, one event in eight a
//! purchase with a property and revenue) over 14 days of arrivals. Event ids and visitor ids
//! look like the collector's (a prefix and a counter; 64-bit hashes).

#![allow(dead_code)]

use footfall_model::event::{Event, Revenue, Utm};

/// 2024-03-01T00:00:00Z.
pub const T0: i64 = 1_709_251_200_000_000;
pub const EVENTS: u64 = 100_000;

const UAS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
];
const REFERRERS: &[Option<&str>] = &[
    None,
    Some("https://www.google.com/"),
    Some("https://t.co/x"),
    Some("https://news.example/story/1"),
];

/// SplitMix64's finaliser (Steele, Lea and Flood, 2014): a bijective 64-bit mix.
fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub fn events() -> Vec<Event> {
    let mut x: u64 = 99;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // 14 days of arrivals, 20,000 visitors.
    let span = 14 * 86_400_000_000i64;
    let step = span / EVENTS as i64;
    (0..EVENTS)
        .map(|i| {
            let r = next();
            let received = T0 + i as i64 * step;
            // Visitor ids are 64-bit hashes in the collector; the mix of SplitMix64's
            // finaliser makes these look alike.
            let visitor_index = (r >> 8) % 20_000;
            let visitor = mix64(visitor_index);
            let mut e = Event::pageview(
                1 + (r >> 40) % 3,
                visitor,
                received - ((r >> 20) % 5_000_000) as i64,
                &format!("/products/{}", (r >> 28) % 400),
            );
            // As the collector numbers them: a per-process prefix, then a counter.
            e.event_id = (0x5eed_u128 << 64) | u128::from(i);
            e.received_at_us = received;
            e.hostname = "shop.example".into();
            e.user_agent = UAS[(visitor_index % UAS.len() as u64) as usize].into();
            e.referrer = REFERRERS[((r >> 48) % 4) as usize].map(str::to_string);
            e.country = Some(["DE", "US", "IN", "FR"][((r >> 52) % 4) as usize].into());
            if (r >> 56) % 10 == 0 {
                e.utm = Utm {
                    source: Some("newsletter".into()),
                    medium: Some("email".into()),
                    campaign: Some("spring".into()),
                    ..Utm::default()
                };
            }
            if (r >> 60) % 8 == 0 {
                e.name = "Purchase".into();
                e.props = vec![("plan".into(), format!("p{}", r % 5))];
                e.revenue = Some(Revenue {
                    amount_minor: 1999,
                    currency: "EUR".into(),
                });
            }
            e
        })
        .collect()
}
