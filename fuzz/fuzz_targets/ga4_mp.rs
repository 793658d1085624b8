//! GA4 Measurement Protocol bodies: decoding never panics and never accepts more than 25
//! events or events without a client id.
#![no_main]

use footfall_model::decode::ga4;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let window = ga4::TimeWindow { now_us: 1_700_000_000_000_000, max_backdate_us: 72 * 3_600_000_000, max_future_us: 300_000_000 };
    let r = ga4::decode(data, window);
    assert!(r.events.len() <= ga4::MAX_EVENTS);
    assert!(r.events.is_empty() || r.client_id.is_some());
    for e in &r.events {
        if let Some(t) = e.timestamp_us {
            assert!(t >= window.now_us - window.max_backdate_us && t <= window.now_us + window.max_future_us);
        }
    }
});
