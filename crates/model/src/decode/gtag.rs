//! GA4 browser hits (`/g/collect`): the wire format that gtag.js sends when a site sets
//! `transport_url` / `server_container_url`.
//!
//! Shared parameters travel in the query string; a `POST` body holds one event per line, each
//! line URL-encoded parameters of its own that override the shared ones; with no body, the
//! query string is the one event. The field names are the ones gtag.js uses (and that
//! client libraries such as `@analytics-debugger/ga4mp` document): `v` (protocol version, must
//! be `2`), `tid` (measurement id), `cid` (client id), `uid` (user id), `sid` (session id),
//! `en` (event name), `dl` (page location), `dr` (referrer), `dt` (title), `_et` (engagement
//! time, ms), `cu` (currency), `ep.NAME` (text event parameter), `epn.NAME` (numeric event
//! parameter), `up.NAME` / `upn.NAME` (user properties). Everything else (`sct`, `seg`, `_p`,
//! `gcs`, `sr`, `ul`, `_uip`, …) is ignored; in particular `_uip`, a client-chosen IP address,
//! is never trusted.
//!
//! Each hit is translated into the Measurement Protocol's JSON shape and decoded by
//! [`super::ga4::decode`], so both protocols share one set of rules and limits and the same hit
//! sent either way yields the same [`Hit`]s.

use serde_json::{json, Map, Value};

use super::ga4::{self, Ga4Request, TimeWindow, ValidationMessage};

/// What a `/g/collect` request decoded into.
#[derive(Debug, Clone, Default)]
pub struct GtagRequest {
    /// `tid`, the measurement id that names the site; `None` when no hit carried one.
    pub measurement_id: Option<String>,
    /// The hits, decoded as a Measurement Protocol request.
    pub request: Ga4Request,
}

/// Most hits (body lines) per request, as for the Measurement Protocol.
pub const MAX_LINES: usize = ga4::MAX_EVENTS;

/// Decodes one request from its raw query string (without `?`) and body. Never fails:
/// problems become validation messages, as with [`ga4::decode`]. A request whose hits name
/// different client ids or measurement ids keeps those of the first hit and drops the rest.
pub fn decode(query: &str, body: &[u8], window: TimeWindow) -> GtagRequest {
    let shared: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let text = String::from_utf8_lossy(body);
    let mut lines: Vec<Vec<(String, String)>> = text
        .split(['\n', '\r'])
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            url::form_urlencoded::parse(l.trim().as_bytes())
                .into_owned()
                .collect()
        })
        .collect();
    if lines.is_empty() {
        lines.push(Vec::new());
    }
    let mut out = GtagRequest::default();
    let mut messages = Vec::new();
    let mut dropped = 0;
    if lines.len() > MAX_LINES {
        dropped += lines.len() - MAX_LINES;
        messages.push(ValidationMessage::new(
            "body",
            format!("a request may hold at most {MAX_LINES} hits"),
            "EXCEEDED_MAX_ENTITIES",
        ));
        lines.truncate(MAX_LINES);
    }
    let mut client_id: Option<String> = None;
    let mut user_id: Option<String> = None;
    let mut user_properties = Map::new();
    let mut events = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        // The line's own parameters win over the shared ones.
        let get = |k: &str| {
            line.iter()
                .chain(shared.iter())
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        if get("v") != Some("2") {
            dropped += 1;
            messages.push(ValidationMessage::new(
                format!("hits[{i}].v"),
                "the protocol version v must be 2",
                "VALUE_INVALID",
            ));
            continue;
        }
        let tid = get("tid").unwrap_or_default();
        match &out.measurement_id {
            None if !tid.is_empty() => out.measurement_id = Some(tid.to_string()),
            Some(m) if m == tid => {}
            _ => {
                dropped += 1;
                messages.push(ValidationMessage::new(
                    format!("hits[{i}].tid"),
                    "every hit of a request must name the same measurement id",
                    "VALUE_INVALID",
                ));
                continue;
            }
        }
        let cid = get("cid").unwrap_or_default();
        match &client_id {
            None if !cid.is_empty() => client_id = Some(cid.to_string()),
            Some(c) if c == cid => {}
            _ => {
                dropped += 1;
                messages.push(ValidationMessage::new(
                    format!("hits[{i}].cid"),
                    "every hit needs the request's client id cid",
                    "VALUE_REQUIRED",
                ));
                continue;
            }
        }
        if user_id.is_none() {
            user_id = get("uid").map(str::to_string);
        }
        // Everywhere the line's own parameters come before the shared ones and the first of
        // duplicates wins, as in `get`; the named fields (`dl`, `cu`, …) win over `ep.*`
        // parameters of the same meaning.
        let mut params = Map::new();
        for (k, v) in line.iter().chain(shared.iter()) {
            let (map, name, value) = if let Some(n) = k.strip_prefix("ep.") {
                (&mut params, n, Value::String(v.clone()))
            } else if let Some(n) = k.strip_prefix("epn.") {
                (&mut params, n, number(v))
            } else if let Some(n) = k.strip_prefix("up.") {
                (&mut user_properties, n, json!({"value": v}))
            } else if let Some(n) = k.strip_prefix("upn.") {
                (&mut user_properties, n, json!({"value": number(v)}))
            } else {
                continue;
            };
            map.entry(name.to_string()).or_insert(value);
        }
        for (k, field) in [
            ("dl", "page_location"),
            ("dr", "page_referrer"),
            ("dt", "page_title"),
            ("sid", "session_id"),
            ("_et", "engagement_time_msec"),
            ("cu", "currency"),
        ] {
            if let Some(v) = get(k).filter(|v| !v.is_empty()) {
                params.insert(field.to_string(), Value::String(v.to_string()));
            }
        }
        // gtag.js reports engaged time in `user_engagement` hits, a name the Measurement
        // Protocol reserves; they become Footfall's engagement events (see
        // `event::ENGAGEMENT`), which extend their visit and count in no metric.
        let name = match get("en").unwrap_or_default() {
            "user_engagement" => crate::event::ENGAGEMENT,
            other => other,
        };
        events.push(json!({"name": name, "params": params}));
    }
    let Some(client_id) = client_id else {
        out.request.messages = messages;
        out.request.messages.push(ValidationMessage::new(
            "cid",
            "the client id cid is required",
            "VALUE_REQUIRED",
        ));
        out.request.dropped_events = dropped + events.len();
        return out;
    };
    if events.is_empty() {
        out.request.messages = messages;
        out.request.dropped_events = dropped;
        return out;
    }
    let mut body = json!({"client_id": client_id, "events": events});
    if let Some(u) = user_id {
        body["user_id"] = Value::String(u);
    }
    if !user_properties.is_empty() {
        body["user_properties"] = Value::Object(user_properties);
    }
    out.request = ga4::decode(body.to_string().as_bytes(), window);
    out.request.dropped_events += dropped;
    messages.append(&mut out.request.messages);
    out.request.messages = messages;
    out
}

/// A numeric parameter as a JSON number when it parses as one, else as sent.
fn number(v: &str) -> Value {
    v.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or_else(|| Value::String(v.to_string()), Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: TimeWindow = TimeWindow {
        now_us: 1_700_000_000_000_000,
        max_backdate_us: 72 * 3_600_000_000,
        max_future_us: 60_000_000,
    };

    #[test]
    fn shared_query_and_one_event_per_line() {
        let q = "v=2&tid=G-TEST1&cid=111.222&sid=999&dl=https%3A%2F%2Fshop.example%2Fa&dr=https%3A%2F%2Fwww.google.com%2F&dt=Shop";
        let body = b"en=page_view&_et=12\r\nen=purchase&epn.value=19.99&cu=EUR&ep.coupon=SPRING&dl=https%3A%2F%2Fshop.example%2Fcart";
        let r = decode(q, body, WINDOW);
        assert_eq!(r.measurement_id.as_deref(), Some("G-TEST1"));
        assert!(r.request.messages.is_empty(), "{:?}", r.request.messages);
        assert_eq!(r.request.client_id.as_deref(), Some("111.222"));
        let ev = &r.request.events;
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].name, crate::event::PAGEVIEW);
        assert_eq!(ev[0].page.path, "/a");
        assert_eq!(ev[0].referrer.as_deref(), Some("https://www.google.com/"));
        assert_eq!(ev[0].title.as_deref(), Some("Shop"));
        assert_eq!(ev[0].engagement_ms, Some(12));
        // The line's own page location wins over the shared one.
        assert_eq!(ev[1].name, "purchase");
        assert_eq!(ev[1].page.path, "/cart");
        let rev = ev[1].revenue.as_ref().expect("revenue");
        assert_eq!((rev.amount_minor, rev.currency.as_str()), (1999, "EUR"));
        assert!(ev[1]
            .props
            .iter()
            .any(|(k, v)| k == "coupon" && v == "SPRING"));
        assert_eq!(ev[0].session_id.as_deref(), Some("999"));
    }

    #[test]
    fn a_lines_own_values_win_and_named_fields_win_over_ep_parameters() {
        let q = "v=2&tid=G-X&cid=1.2&cu=USD&ep.page_location=https%3A%2F%2Fevil.example%2F&ep.k=shared&epn.value=1";
        let body = b"en=purchase&dl=https%3A%2F%2Fshop.example%2Fcart&cu=EUR&ep.k=line&ep.k=second&epn.value=2";
        let r = decode(q, body, WINDOW);
        let e = &r.request.events[0];
        assert_eq!(e.page.path, "/cart");
        assert_eq!(e.page.hostname, "shop.example");
        let rev = e.revenue.as_ref().expect("revenue");
        assert_eq!((rev.amount_minor, rev.currency.as_str()), (200, "EUR"));
        assert!(
            e.props.iter().any(|(k, v)| k == "k" && v == "line"),
            "{:?}",
            e.props
        );
    }

    #[test]
    fn user_engagement_hits_become_engagement_events() {
        let r = decode(
            "v=2&tid=G-X&cid=1.2&en=user_engagement&_et=4200&dl=https%3A%2F%2Fa.example%2F",
            b"",
            WINDOW,
        );
        assert!(r.request.messages.is_empty(), "{:?}", r.request.messages);
        assert_eq!(r.request.events[0].name, crate::event::ENGAGEMENT);
        assert_eq!(r.request.events[0].engagement_ms, Some(4200));
    }

    #[test]
    fn a_get_without_body_is_one_event() {
        let q = "v=2&tid=G-X&cid=1.2&en=sign_up&ep.plan=pro";
        let r = decode(q, b"", WINDOW);
        assert_eq!(r.request.events.len(), 1);
        assert_eq!(r.request.events[0].name, "sign_up");
    }

    #[test]
    fn bad_versions_missing_client_ids_and_mixed_sites_are_dropped_with_messages() {
        let r = decode("v=1&tid=G-X&cid=1.2&en=a", b"", WINDOW);
        assert!(r.request.events.is_empty());
        assert_eq!(r.request.dropped_events, 1);
        assert!(r.request.messages[0].field_path.ends_with(".v"));

        let r = decode("v=2&tid=G-X&en=a", b"", WINDOW);
        assert!(r.request.events.is_empty());
        assert!(r
            .request
            .messages
            .iter()
            .any(|m| m.field_path.contains("cid")));

        let r = decode("v=2&cid=1.2", b"tid=G-A&en=a\ntid=G-B&en=b", WINDOW);
        assert_eq!(r.measurement_id.as_deref(), Some("G-A"));
        assert_eq!(r.request.events.len(), 1);
        assert_eq!(r.request.dropped_events, 1);
    }

    #[test]
    fn invalid_events_follow_measurement_protocol_rules() {
        // A page_view without a page location and a reserved name are both dropped.
        let r = decode(
            "v=2&tid=G-X&cid=1.2",
            b"en=page_view\nen=session_start",
            WINDOW,
        );
        assert!(r.request.events.is_empty());
        assert_eq!(r.request.dropped_events, 2);
    }
}
