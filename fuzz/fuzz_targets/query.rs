//! Query API bodies: parsing never panics, and accepted queries keep their bounds.
#![no_main]

use footfall_query::request::{parse, MAX_LIMIT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(q) = parse(data) {
        assert!(!q.metrics.is_empty());
        assert!(q.limit >= 1 && q.limit <= MAX_LIMIT);
    }
});
