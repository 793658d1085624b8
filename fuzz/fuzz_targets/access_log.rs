//! Access-log lines: parsing and classifying never panic.
#![no_main]

use footfall_model::decode::combined;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(line) = combined::parse_line(&text) {
        let _ = combined::classify(&line);
        assert!((100..=599).contains(&line.status));
    }
});
