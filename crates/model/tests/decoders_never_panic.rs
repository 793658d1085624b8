//! Property tests: every decoder takes arbitrary bytes without panicking, and accepted input
//! keeps the documented bounds.

#![allow(clippy::unwrap_used)]

use footfall_model::decode::{combined, ga4, plausible, MAX_PROPS};
use proptest::prelude::*;

fn window() -> ga4::TimeWindow {
    ga4::TimeWindow {
        now_us: 1_700_000_000_000_000,
        max_backdate_us: 72 * 3_600_000_000,
        max_future_us: 60_000_000,
    }
}

/// JSON-ish text: mostly valid shapes with hostile values.
fn jsonish() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        Just("null".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:e}")),
        ".{0,40}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("\"https://shop.example/a?utm_source=x\"".to_string()),
        Just("\"javascript:alert(1)\"".to_string()),
    ];
    scalar.prop_recursive(4, 64, 8, |inner| {
        let key = prop_oneof![
            Just("name".to_string()),
            Just("url".to_string()),
            Just("domain".to_string()),
            Just("props".to_string()),
            Just("revenue".to_string()),
            Just("events".to_string()),
            Just("client_id".to_string()),
            Just("params".to_string()),
            "[a-z_$]{1,8}"
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((key, inner), 0..8).prop_map(|kv| format!(
                "{{{}}}",
                kv.into_iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
        ]
    })
}

proptest! {
    #[test]
    fn plausible_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512), text in jsonish()) {
        let _ = plausible::decode(&bytes);
        if let Ok(e) = plausible::decode(text.as_bytes()) {
            prop_assert!(e.hit.props.len() <= MAX_PROPS);
            prop_assert!(!e.domains.is_empty());
        }
    }

    #[test]
    fn ga4_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512), text in jsonish()) {
        let _ = ga4::decode(&bytes, window());
        let r = ga4::decode(text.as_bytes(), window());
        prop_assert!(r.events.len() <= ga4::MAX_EVENTS);
        prop_assert!(r.events.is_empty() || r.client_id.is_some());
    }

    #[test]
    fn access_log_lines_never_panic(line in ".{0,300}", bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = combined::parse_line(&line);
        let _ = combined::parse_line(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn access_log_round_trip(ip in "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}", path in "/[a-z0-9/._-]{0,30}", status in 100u16..600, ua in "[ -!#-\\[\\]-~]{0,40}") {
        let line = format!("{ip} - - [10/Oct/2000:13:55:36 -0700] \"GET {path} HTTP/1.1\" {status} 12 \"-\" \"{ua}\"");
        let parsed = combined::parse_line(&line).unwrap();
        prop_assert_eq!(parsed.remote_addr, ip.as_str());
        prop_assert_eq!(parsed.target, path.as_str());
        prop_assert_eq!(parsed.status, status);
        prop_assert_eq!(parsed.user_agent, if ua == "-" { "" } else { ua.as_str() });
    }
}
