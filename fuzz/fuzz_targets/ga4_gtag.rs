//! GA4 browser hits (`/g/collect`): the input is split at its first NUL byte into the query
//! string and the body. Decoding never panics, never accepts more than 25 hits or hits
//! without a client id, and names a measurement id whenever it accepts a hit.
#![no_main]

use footfall_model::decode::{ga4, gtag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let window = ga4::TimeWindow { now_us: 1_700_000_000_000_000, max_backdate_us: 72 * 3_600_000_000, max_future_us: 300_000_000 };
    let (query, body) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let r = gtag::decode(&String::from_utf8_lossy(query), body, window);
    assert!(r.request.events.len() <= gtag::MAX_LINES);
    assert!(r.request.events.is_empty() || r.request.client_id.is_some());
    assert!(r.request.events.is_empty() || r.measurement_id.is_some());
});
