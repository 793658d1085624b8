//! GA4 Measurement Protocol (`POST /mp/collect`) request bodies.
//!
//! Field names, limits and validation codes follow Google's Measurement Protocol (GA4)
//! reference and its "Validate events" page: at most 25 events per request; event names of
//! at most 40 characters that start with a letter and hold only letters, digits and
//! underscores, and are not reserved; at most 25 parameters per event, names of at most 40
//! characters, values of at most 100 characters (`page_location` 1,000, `page_referrer` 420,
//! `page_title` 300); `timestamp_micros` back-dated at most 72 hours.
//!
//! GA4 answers 2xx whatever the body holds; invalid parts are dropped. The decoder therefore
//! returns what it could accept *and* the validation messages that the debug endpoint shows.

use serde::Serialize;
use serde_json::{Map, Value};

use super::{amount_text, decimal_to_minor, is_currency_code, Hit, MAX_PROPS};
use crate::event::Revenue;
use crate::url_parts::{parse_page_url, truncate, PageUrl};

/// Most events per request.
pub const MAX_EVENTS: usize = 25;
/// Most parameters per event.
pub const MAX_PARAMS: usize = 25;
/// Longest event or parameter name, characters.
pub const MAX_NAME_CHARS: usize = 40;
/// Longest ordinary parameter value, characters.
pub const MAX_PARAM_VALUE_CHARS: usize = 100;
/// Longest `client_id`, characters (our own bound; GA4 does not document one).
pub const MAX_CLIENT_ID_CHARS: usize = 256;

/// Event names GA4 reserves.
const RESERVED_NAMES: &[&str] = &[
    "ad_activeview",
    "ad_click",
    "ad_exposure",
    "ad_impression",
    "ad_query",
    "ad_reward",
    "adunit_exposure",
    "app_background",
    "app_clear_data",
    "app_exception",
    "app_install",
    "app_remove",
    "app_store_refund",
    "app_store_subscription_cancel",
    "app_store_subscription_convert",
    "app_store_subscription_renew",
    "app_update",
    "app_upgrade",
    "dynamic_link_app_open",
    "dynamic_link_app_update",
    "dynamic_link_first_open",
    "error",
    "first_open",
    "first_visit",
    "in_app_purchase",
    "notification_dismiss",
    "notification_foreground",
    "notification_open",
    "notification_receive",
    "os_update",
    "session_start",
    "session_start_with_rollout",
    "user_engagement",
];
/// Name prefixes GA4 reserves.
const RESERVED_PREFIXES: &[&str] = &["_", "firebase_", "ga_", "google_", "gtag."];

/// One message of the debug endpoint's `validationMessages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidationMessage {
    /// Path of the field (`events[0].name`).
    pub field_path: String,
    /// What is wrong.
    pub description: String,
    /// GA4's code: `VALUE_INVALID`, `VALUE_REQUIRED`, `NAME_INVALID`, `NAME_RESERVED`,
    /// `VALUE_OUT_OF_BOUNDS`, `EXCEEDED_MAX_ENTITIES`.
    pub validation_code: &'static str,
}

impl ValidationMessage {
    pub(crate) fn new(
        field_path: impl Into<String>,
        description: impl Into<String>,
        validation_code: &'static str,
    ) -> Self {
        ValidationMessage {
            field_path: field_path.into(),
            description: description.into(),
            validation_code,
        }
    }
}

/// Time bounds for client timestamps.
#[derive(Debug, Clone, Copy)]
pub struct TimeWindow {
    /// Now, UTC µs.
    pub now_us: i64,
    /// How far back a timestamp may be, µs (GA4: 72 hours).
    pub max_backdate_us: i64,
    /// How far ahead of now a timestamp may be, µs (clock skew allowance).
    pub max_future_us: i64,
}

/// What a request decoded into.
#[derive(Debug, Clone, Default)]
pub struct Ga4Request {
    /// `client_id`; `None` when the request as a whole was rejected.
    pub client_id: Option<String>,
    /// `user_id`, if sent.
    pub user_id: Option<String>,
    /// The accepted events.
    pub events: Vec<Hit>,
    /// Every validation problem found, request-level and per event.
    pub messages: Vec<ValidationMessage>,
    /// Events sent but left out (for the site's ingest accounting); a body that is not a JSON
    /// object counts as one.
    pub dropped_events: usize,
    /// Of the dropped events, those left out only for a timestamp too far in the past.
    pub late_events: usize,
}

/// Decodes one Measurement Protocol body. Never fails: problems become
/// [`Ga4Request::messages`] and the affected events (or the whole request) are left out.
pub fn decode(body: &[u8], window: TimeWindow) -> Ga4Request {
    let mut out = Ga4Request::default();
    let obj = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => o,
        Ok(_) => {
            out.messages.push(ValidationMessage::new(
                "",
                "the body must be a JSON object",
                "VALUE_INVALID",
            ));
            out.dropped_events = 1;
            return out;
        }
        Err(e) => {
            out.messages.push(ValidationMessage::new(
                "",
                format!("the body is not valid JSON: {e}"),
                "VALUE_INVALID",
            ));
            out.dropped_events = 1;
            return out;
        }
    };
    let client_id = match obj.get("client_id").or_else(|| obj.get("app_instance_id")) {
        Some(Value::String(s))
            if !s.trim().is_empty() && s.chars().count() <= MAX_CLIENT_ID_CHARS =>
        {
            Some(s.trim().to_string())
        }
        Some(Value::String(s)) if !s.trim().is_empty() => {
            out.messages.push(ValidationMessage::new(
                "client_id",
                format!("client_id is longer than {MAX_CLIENT_ID_CHARS} characters"),
                "VALUE_OUT_OF_BOUNDS",
            ));
            None
        }
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => {
            out.messages.push(ValidationMessage::new(
                "client_id",
                "client_id is required and must be a non-empty string",
                "VALUE_REQUIRED",
            ));
            None
        }
    };
    out.user_id = obj
        .get("user_id")
        .and_then(Value::as_str)
        .map(|s| truncate(s, 256));
    let sent = obj
        .get("events")
        .and_then(Value::as_array)
        .map_or(1, Vec::len);
    let request_ts = match timestamp(obj.get("timestamp_micros"), "timestamp_micros", window) {
        Ok(t) => t,
        Err(m) => {
            out.dropped_events = sent;
            if is_late(&m) {
                out.late_events = sent;
            }
            out.messages.push(m);
            return out;
        }
    };
    let events = match obj.get("events") {
        Some(Value::Array(a)) if a.is_empty() => {
            out.messages.push(ValidationMessage::new(
                "events",
                "events must hold at least one event",
                "VALUE_REQUIRED",
            ));
            return out;
        }
        Some(Value::Array(a)) if a.len() > MAX_EVENTS => {
            out.messages.push(ValidationMessage::new(
                "events",
                format!(
                    "a request may hold at most {MAX_EVENTS} events, this one holds {}",
                    a.len()
                ),
                "EXCEEDED_MAX_ENTITIES",
            ));
            out.dropped_events = sent;
            return out;
        }
        Some(Value::Array(a)) => a,
        _ => {
            out.messages.push(ValidationMessage::new(
                "events",
                "events is required and must be an array",
                "VALUE_REQUIRED",
            ));
            out.dropped_events = 1;
            return out;
        }
    };
    if let Some(Value::Object(up)) = obj.get("user_properties") {
        if up.len() > 25 {
            out.messages.push(ValidationMessage::new(
                "user_properties",
                "at most 25 user properties are allowed",
                "EXCEEDED_MAX_ENTITIES",
            ));
        }
    }
    if client_id.is_none() {
        out.dropped_events = events.len();
        return out;
    }
    out.client_id = client_id;
    for (i, ev) in events.iter().enumerate() {
        match decode_event(ev, i, request_ts, window) {
            Ok(hit) => out.events.push(hit),
            Err(m) => {
                out.dropped_events += 1;
                out.late_events += usize::from(is_late(&m));
                out.messages.push(m);
            }
        }
    }
    out
}

/// Whether a message drops its event only for being back-dated too far.
fn is_late(m: &ValidationMessage) -> bool {
    m.field_path.ends_with("timestamp_micros") && m.description.contains("in the past")
}

fn timestamp(
    v: Option<&Value>,
    path: &str,
    w: TimeWindow,
) -> Result<Option<i64>, ValidationMessage> {
    let t = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(_) => None,
    };
    let Some(t) = t else {
        return Err(ValidationMessage::new(
            path,
            "must be an integer number of microseconds since the Unix epoch",
            "VALUE_INVALID",
        ));
    };
    if t < w.now_us.saturating_sub(w.max_backdate_us) {
        return Err(ValidationMessage::new(
            path,
            format!(
                "is more than {} hours in the past",
                w.max_backdate_us / 3_600_000_000
            ),
            "VALUE_OUT_OF_BOUNDS",
        ));
    }
    if t > w.now_us.saturating_add(w.max_future_us) {
        return Err(ValidationMessage::new(
            path,
            "is in the future",
            "VALUE_OUT_OF_BOUNDS",
        ));
    }
    Ok(Some(t))
}

fn check_name(name: &str, path: &str) -> Result<(), ValidationMessage> {
    let mut chars = name.chars();
    let starts_alpha = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(ValidationMessage::new(
            path,
            format!("{name:?} is longer than {MAX_NAME_CHARS} characters"),
            "VALUE_OUT_OF_BOUNDS",
        ));
    }
    if RESERVED_NAMES.contains(&name) || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Err(ValidationMessage::new(
            path,
            format!("{name:?} is reserved"),
            "NAME_RESERVED",
        ));
    }
    if !starts_alpha || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(ValidationMessage::new(
            path,
            format!(
                "{name:?} must start with a letter and hold only letters, digits and underscores"
            ),
            "NAME_INVALID",
        ));
    }
    Ok(())
}

fn value_limit(param: &str) -> usize {
    match param {
        "page_location" => 1000,
        "page_referrer" => 420,
        "page_title" => 300,
        _ => MAX_PARAM_VALUE_CHARS,
    }
}

fn decode_event(
    ev: &Value,
    i: usize,
    request_ts: Option<i64>,
    w: TimeWindow,
) -> Result<Hit, ValidationMessage> {
    let path = format!("events[{i}]");
    let Value::Object(obj) = ev else {
        return Err(ValidationMessage::new(
            path,
            "an event must be an object",
            "VALUE_INVALID",
        ));
    };
    let name = match obj.get("name") {
        Some(Value::String(s)) => s.as_str(),
        _ => {
            return Err(ValidationMessage::new(
                format!("{path}.name"),
                "name is required and must be a string",
                "VALUE_REQUIRED",
            ))
        }
    };
    check_name(name, &format!("{path}.name"))?;
    let empty = Map::new();
    let params = match obj.get("params") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(p)) => p,
        Some(_) => {
            return Err(ValidationMessage::new(
                format!("{path}.params"),
                "params must be an object",
                "VALUE_INVALID",
            ))
        }
    };
    if params.len() > MAX_PARAMS {
        return Err(ValidationMessage::new(
            format!("{path}.params"),
            format!("an event may hold at most {MAX_PARAMS} parameters"),
            "EXCEEDED_MAX_ENTITIES",
        ));
    }
    let mut texts: Vec<(String, String)> = Vec::with_capacity(params.len());
    for (k, v) in params {
        let p = format!("{path}.params.{}", truncate(k, 64));
        if k.contains(crate::rollup::PROP_SEPARATOR) {
            return Err(ValidationMessage::new(
                p,
                "parameter names must not contain the control character U+001F",
                "NAME_INVALID",
            ));
        }
        if k.chars().count() > MAX_NAME_CHARS {
            return Err(ValidationMessage::new(
                p,
                format!("parameter names may hold at most {MAX_NAME_CHARS} characters"),
                "VALUE_OUT_OF_BOUNDS",
            ));
        }
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => continue,
            _ => {
                return Err(ValidationMessage::new(
                    p,
                    "parameter values must be strings, numbers or booleans",
                    "VALUE_INVALID",
                ))
            }
        };
        if text.chars().count() > value_limit(k) {
            return Err(ValidationMessage::new(
                p,
                format!("the value is longer than {} characters", value_limit(k)),
                "VALUE_OUT_OF_BOUNDS",
            ));
        }
        texts.push((k.clone(), text));
    }
    let get = |k: &str| texts.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let page = match get("page_location") {
        Some(loc) => parse_page_url(loc).map_err(|e| {
            ValidationMessage::new(
                format!("{path}.params.page_location"),
                format!("page_location {e}"),
                "VALUE_INVALID",
            )
        })?,
        None if name == "page_view" => {
            return Err(ValidationMessage::new(
                format!("{path}.params.page_location"),
                "page_view events need page_location",
                "VALUE_REQUIRED",
            ))
        }
        None => PageUrl::default(),
    };
    let engagement_ms = match get("engagement_time_msec") {
        None => None,
        Some(t) => Some(
            t.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map(|v| v as u64)
                .ok_or_else(|| {
                    ValidationMessage::new(
                        format!("{path}.params.engagement_time_msec"),
                        "must be a non-negative number",
                        "VALUE_INVALID",
                    )
                })?,
        ),
    };
    let revenue = match (params.get("value"), get("currency")) {
        (Some(v), Some(cur)) if !v.is_null() => {
            let cur = cur.to_ascii_uppercase();
            if !is_currency_code(&cur) {
                return Err(ValidationMessage::new(
                    format!("{path}.params.currency"),
                    "currency must be an ISO 4217 code",
                    "VALUE_INVALID",
                ));
            }
            let amount = amount_text(v).ok_or_else(|| {
                ValidationMessage::new(
                    format!("{path}.params.value"),
                    "value must be a number",
                    "VALUE_INVALID",
                )
            })?;
            let minor = decimal_to_minor(&amount, &cur).map_err(|m| {
                ValidationMessage::new(format!("{path}.params.value"), m, "VALUE_INVALID")
            })?;
            Some(Revenue {
                amount_minor: minor,
                currency: cur,
            })
        }
        _ => None,
    };
    let ts = timestamp(
        obj.get("timestamp_micros"),
        &format!("{path}.timestamp_micros"),
        w,
    )?
    .or(request_ts);
    const KNOWN: &[&str] = &[
        "page_location",
        "page_referrer",
        "page_title",
        "session_id",
        "engagement_time_msec",
        "value",
        "currency",
        "non_interaction",
        "debug_mode",
        "ga_session_id",
        "ga_session_number",
    ];
    let mut props: Vec<(String, String)> = texts
        .iter()
        .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
        .take(MAX_PROPS)
        .cloned()
        .collect();
    props.sort();
    Ok(Hit {
        name: if name == "page_view" {
            crate::event::PAGEVIEW.to_string()
        } else {
            name.to_string()
        },
        page,
        title: get("page_title").map(str::to_string),
        referrer: get("page_referrer")
            .filter(|r| !r.is_empty())
            .map(str::to_string),
        props,
        revenue,
        engagement_ms,
        interactive: !matches!(get("non_interaction"), Some("true") | Some("1")),
        timestamp_us: ts,
        session_id: get("session_id")
            .or(get("ga_session_id"))
            .map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000;
    fn w() -> TimeWindow {
        TimeWindow {
            now_us: NOW,
            max_backdate_us: 72 * 3_600_000_000,
            max_future_us: 60_000_000,
        }
    }

    #[test]
    fn page_view_with_params() {
        let body = format!(
            r#"{{"client_id":"123.456","timestamp_micros":{},"events":[{{"name":"page_view","params":{{"page_location":"https://shop.example/p?utm_campaign=x","page_title":"P","session_id":"99","engagement_time_msec":"1200"}}}},{{"name":"purchase","params":{{"value":19.99,"currency":"eur","coupon":"A"}}}}]}}"#,
            NOW - 3_600_000_000
        );
        let r = decode(body.as_bytes(), w());
        assert!(r.messages.is_empty(), "{:?}", r.messages);
        assert_eq!(r.client_id.as_deref(), Some("123.456"));
        assert_eq!(r.events.len(), 2);
        assert_eq!(r.events[0].name, "pageview");
        assert_eq!(r.events[0].page.path, "/p");
        assert_eq!(r.events[0].timestamp_us, Some(NOW - 3_600_000_000));
        assert_eq!(r.events[0].engagement_ms, Some(1200));
        assert_eq!(r.events[0].session_id.as_deref(), Some("99"));
        assert_eq!(
            r.events[1].revenue,
            Some(Revenue {
                amount_minor: 1999,
                currency: "EUR".into()
            })
        );
        assert_eq!(r.events[1].props, vec![("coupon".into(), "A".into())]);
    }

    #[test]
    fn validation_codes() {
        let codes = |body: &str| {
            decode(body.as_bytes(), w())
                .messages
                .into_iter()
                .map(|m| (m.field_path, m.validation_code))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            codes(r#"{"events":[{"name":"a"}]}"#),
            vec![("client_id".to_string(), "VALUE_REQUIRED")]
        );
        assert_eq!(
            codes(r#"{"client_id":"1","events":[{"name":"session_start"}]}"#),
            vec![("events[0].name".to_string(), "NAME_RESERVED")]
        );
        assert_eq!(
            codes(r#"{"client_id":"1","events":[{"name":"1abc"}]}"#),
            vec![("events[0].name".to_string(), "NAME_INVALID")]
        );
        assert_eq!(
            codes(r#"{"client_id":"1","events":[{"name":"_x"}]}"#),
            vec![("events[0].name".to_string(), "NAME_RESERVED")]
        );
        let many = format!(
            r#"{{"client_id":"1","events":[{}]}}"#,
            vec![r#"{"name":"a"}"#; 26].join(",")
        );
        assert_eq!(
            codes(&many),
            vec![("events".to_string(), "EXCEEDED_MAX_ENTITIES")]
        );
        let old = format!(
            r#"{{"client_id":"1","timestamp_micros":{},"events":[{{"name":"a"}}]}}"#,
            NOW - 73 * 3_600_000_000
        );
        assert_eq!(
            codes(&old),
            vec![("timestamp_micros".to_string(), "VALUE_OUT_OF_BOUNDS")]
        );
        assert_eq!(codes("nope")[0].1, "VALUE_INVALID");
    }

    #[test]
    fn dropped_and_late_events_are_counted() {
        let old = NOW - 100 * 3_600_000_000;
        let r = decode(format!(r#"{{"client_id":"1","events":[{{"name":"ok"}},{{"name":"bad-name"}},{{"name":"old","timestamp_micros":{old}}}]}}"#).as_bytes(), w());
        assert_eq!((r.events.len(), r.dropped_events, r.late_events), (1, 2, 1));
        let whole = decode(format!(r#"{{"client_id":"1","timestamp_micros":{old},"events":[{{"name":"a"}},{{"name":"b"}}]}}"#).as_bytes(), w());
        assert_eq!((whole.dropped_events, whole.late_events), (2, 2));
        let no_client = decode(
            br#"{"events":[{"name":"a"},{"name":"b"},{"name":"c"}]}"#,
            w(),
        );
        assert_eq!((no_client.dropped_events, no_client.late_events), (3, 0));
        assert_eq!(decode(b"nope", w()).dropped_events, 1);
    }

    #[test]
    fn one_bad_event_does_not_drop_the_others() {
        let r = decode(
            br#"{"client_id":"1","events":[{"name":"ok_event"},{"name":"bad-name"}]}"#,
            w(),
        );
        assert_eq!(r.events.len(), 1);
        assert_eq!(r.messages.len(), 1);
    }
}
