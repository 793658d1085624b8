//! Cost of enriching one event: bot classification, User-Agent parsing, and source/channel
//! attribution, over a mix of real browser, crawler and tool User-Agents. Run with
//! `cargo bench -p footfall-enrich`; the figure goes to bench/report.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use footfall_enrich::{bots, sources, user_agent};

const MIX: &[(&str, Option<&str>)] = &[
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", Some("https://www.google.com/")),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1", Some("https://t.co/abc")),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36", None),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15", Some("https://news.example/story")),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0", None),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", None),
    ("curl/8.4.0", None),
    ("Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36", Some("https://l.facebook.com/")),
];

fn enrich(c: &mut Criterion) {
    c.bench_function(
        "enrich one event (bots + user agent + source/channel)",
        |b| {
            let mut i = 0;
            b.iter(|| {
                let (ua, referrer) = MIX[i % MIX.len()];
                i += 1;
                if bots::classify(black_box(ua), referrer).is_none() {
                    black_box(user_agent::parse(ua));
                    black_box(sources::attribute(
                        None,
                        None,
                        None,
                        referrer,
                        "shop.example",
                    ));
                }
            });
        },
    );
    c.bench_function("bot classification only", |b| {
        let mut i = 0;
        b.iter(|| {
            let (ua, referrer) = MIX[i % MIX.len()];
            i += 1;
            black_box(bots::classify(black_box(ua), referrer))
        });
    });
    c.bench_function("user agent parsing only", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            black_box(user_agent::parse(black_box(MIX[i % MIX.len()].0)))
        });
    });
}

criterion_group!(benches, enrich);
criterion_main!(benches);
