//! Plausible Events API bodies: decoding never panics, and accepted events keep their bounds.
#![no_main]

use footfall_model::decode::{plausible, MAX_PROPS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = plausible::decode(data) {
        assert!(e.hit.props.len() <= MAX_PROPS);
        assert!(!e.domains.is_empty() && e.domains.len() <= plausible::MAX_DOMAINS);
        assert!(e.hit.page.path.len() <= footfall_model::url_parts::MAX_PATH_BYTES + 4);
    }
});
