//! Plausible Events API (`POST /api/event`) request bodies.
//!
//! Field names follow Plausible's documentation of the Events API: `name`, `url`, `domain`,
//! `referrer`, `props`, `revenue {currency, amount}`, `interactive`; the compact names that
//! Plausible's own tracker sends (`n`, `u`, `d`, `r`, `p`/`m`, `$`, `i`, `h`) are accepted
//! too, and `props`/`revenue` may arrive as JSON-encoded strings as older trackers send them.

use serde_json::{Map, Value};

use super::{
    amount_text, decimal_to_minor, is_currency_code, FieldError, Hit, MAX_EVENT_NAME_BYTES,
    MAX_PROPS, MAX_PROP_KEY_BYTES, MAX_PROP_VALUE_BYTES, MAX_URL_BYTES,
};
use crate::event::Revenue;
use crate::url_parts::{parse_page_url, truncate};

/// Most domains one event may name.
pub const MAX_DOMAINS: usize = 10;

/// A decoded Plausible event.
#[derive(Debug, Clone, PartialEq)]
pub struct PlausibleEvent {
    /// The site domains the event is for (`domain` may list several, comma-separated).
    pub domains: Vec<String>,
    /// The hit.
    pub hit: Hit,
}

fn field<'a>(obj: &'a Map<String, Value>, long: &str, short: &str) -> Option<&'a Value> {
    obj.get(long)
        .or_else(|| obj.get(short))
        .filter(|v| !v.is_null())
}

fn required_str<'a>(
    obj: &'a Map<String, Value>,
    long: &str,
    short: &str,
) -> Result<&'a str, FieldError> {
    match field(obj, long, short) {
        None => Err(FieldError::new(long, "is required")),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(FieldError::new(long, "must not be empty"))
        }
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(FieldError::new(long, "must be a string")),
    }
}

/// Decodes one Plausible event body.
///
/// # Errors
/// [`FieldError`] naming the field: invalid JSON (`body`), a missing or mistyped `name`,
/// `url` or `domain`, a non-http URL, too many or too long properties, a malformed revenue.
pub fn decode(body: &[u8]) -> Result<PlausibleEvent, FieldError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| FieldError::new("body", format!("is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(FieldError::new("body", "must be a JSON object"));
    };
    let name = required_str(&obj, "name", "n")?.trim();
    if name.len() > MAX_EVENT_NAME_BYTES {
        return Err(FieldError::new(
            "name",
            format!("is longer than {MAX_EVENT_NAME_BYTES} bytes"),
        ));
    }
    let url = required_str(&obj, "url", "u")?;
    if url.len() > MAX_URL_BYTES {
        return Err(FieldError::new(
            "url",
            format!("is longer than {MAX_URL_BYTES} bytes"),
        ));
    }
    let mut page = parse_page_url(url).map_err(|e| FieldError::new("url", e.to_string()))?;
    if matches!(field(&obj, "hashMode", "h"), Some(Value::Bool(true)))
        || field(&obj, "hashMode", "h")
            .and_then(Value::as_f64)
            .is_some_and(|n| n != 0.0)
    {
        page.hash_mode = true;
    }
    let domains: Vec<String> = required_str(&obj, "domain", "d")?
        .split(',')
        .map(|d| d.trim().to_ascii_lowercase())
        .filter(|d| !d.is_empty())
        .collect();
    if domains.is_empty() {
        return Err(FieldError::new("domain", "must name at least one domain"));
    }
    if domains.len() > MAX_DOMAINS {
        return Err(FieldError::new(
            "domain",
            format!(
                "names {} domains, at most {MAX_DOMAINS} are allowed",
                domains.len()
            ),
        ));
    }
    if let Some(bad) = domains.iter().find(|d| {
        d.len() > 253
            || !d
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    }) {
        return Err(FieldError::new(
            "domain",
            format!("{:?} is not a domain name", truncate(bad, 64)),
        ));
    }
    let referrer = match field(&obj, "referrer", "r") {
        None => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(truncate(s, MAX_URL_BYTES)),
        Some(_) => return Err(FieldError::new("referrer", "must be a string")),
    };
    let interactive = match field(&obj, "interactive", "i") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(FieldError::new("interactive", "must be a boolean")),
    };
    let props = match obj
        .get("props")
        .or_else(|| obj.get("p"))
        .or_else(|| obj.get("meta"))
        .or_else(|| obj.get("m"))
    {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => decode_props(v)?,
    };
    let revenue = match field(&obj, "revenue", "$") {
        None => None,
        Some(v) => Some(decode_revenue(v)?),
    };
    Ok(PlausibleEvent {
        domains,
        hit: Hit {
            name: if name == "pageview" {
                crate::event::PAGEVIEW.to_string()
            } else {
                name.to_string()
            },
            page,
            title: None,
            referrer,
            props,
            revenue,
            // Engagement events carry the engaged time in `e` (ms); `sd` (scroll depth) is
            // not kept.
            engagement_ms: obj
                .get("e")
                .and_then(Value::as_f64)
                .filter(|ms| ms.is_finite() && *ms >= 0.0)
                .map(|ms| ms as u64),
            interactive,
            timestamp_us: None,
            session_id: None,
        },
    })
}

fn embedded_json(v: &Value, field: &str) -> Result<Value, FieldError> {
    match v {
        Value::String(s) => serde_json::from_str(s)
            .map_err(|_| FieldError::new(field, "must be an object or a JSON-encoded object")),
        other => Ok(other.clone()),
    }
}

fn decode_props(v: &Value) -> Result<Vec<(String, String)>, FieldError> {
    let Value::Object(map) = embedded_json(v, "props")? else {
        return Err(FieldError::new("props", "must be an object"));
    };
    if map.len() > MAX_PROPS {
        return Err(FieldError::new(
            "props",
            format!(
                "has {} properties, at most {MAX_PROPS} are allowed",
                map.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let path = format!("props.{}", truncate(&k, 64));
        if k.contains(crate::rollup::PROP_SEPARATOR) {
            return Err(FieldError::new(
                path,
                "key must not contain the control character U+001F",
            ));
        }
        if k.is_empty() || k.len() > MAX_PROP_KEY_BYTES {
            return Err(FieldError::new(
                path,
                format!("key must be 1 to {MAX_PROP_KEY_BYTES} bytes"),
            ));
        }
        let text = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => continue,
            _ => {
                return Err(FieldError::new(
                    path,
                    "value must be a string, number or boolean",
                ))
            }
        };
        if text.len() > MAX_PROP_VALUE_BYTES {
            return Err(FieldError::new(
                path,
                format!("value is longer than {MAX_PROP_VALUE_BYTES} bytes"),
            ));
        }
        out.push((k, text));
    }
    out.sort();
    Ok(out)
}

fn decode_revenue(v: &Value) -> Result<Revenue, FieldError> {
    let Value::Object(map) = embedded_json(v, "revenue")? else {
        return Err(FieldError::new(
            "revenue",
            "must be an object with currency and amount",
        ));
    };
    let currency = match map.get("currency") {
        Some(Value::String(c)) if is_currency_code(&c.to_ascii_uppercase()) => {
            c.to_ascii_uppercase()
        }
        _ => {
            return Err(FieldError::new(
                "revenue.currency",
                "must be an ISO 4217 code such as \"EUR\"",
            ))
        }
    };
    let amount = map
        .get("amount")
        .and_then(amount_text)
        .ok_or_else(|| FieldError::new("revenue.amount", "must be a number or a decimal string"))?;
    let amount_minor =
        decimal_to_minor(&amount, &currency).map_err(|m| FieldError::new("revenue.amount", m))?;
    Ok(Revenue {
        amount_minor,
        currency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_fields() {
        let e = decode(br#"{"name":"Signup","url":"https://shop.example/join?utm_source=nl","domain":"shop.example","referrer":"https://news.example/","props":{"plan":"pro","seats":3},"revenue":{"currency":"eur","amount":"19.99"},"interactive":false}"#).unwrap();
        assert_eq!(e.domains, vec!["shop.example"]);
        assert_eq!(e.hit.name, "Signup");
        assert_eq!(e.hit.page.path, "/join");
        assert_eq!(e.hit.page.utm.source.as_deref(), Some("nl"));
        assert_eq!(
            e.hit.props,
            vec![("plan".into(), "pro".into()), ("seats".into(), "3".into())]
        );
        assert_eq!(
            e.hit.revenue,
            Some(Revenue {
                amount_minor: 1999,
                currency: "EUR".into()
            })
        );
        assert!(!e.hit.interactive);
    }

    #[test]
    fn compact_fields_and_string_encoded_props() {
        let e = decode(br#"{"n":"pageview","u":"https://a.example/#/x","d":"a.example,b.example","r":null,"p":"{\"k\":\"v\"}","h":1}"#).unwrap();
        assert_eq!(e.domains, vec!["a.example", "b.example"]);
        assert!(e.hit.page.hash_mode);
        assert_eq!(
            crate::url_parts::page_path(&e.hit.page, Default::default()),
            "/#/x"
        );
        assert_eq!(e.hit.props, vec![("k".into(), "v".into())]);
        // The official tracker's engagement event: engaged time `e` in ms, scroll depth `sd`.
        let e = decode(br#"{"n":"engagement","u":"https://a.example/","d":"a.example","e":1234,"sd":40,"v":36}"#).unwrap();
        assert_eq!(e.hit.name, crate::event::ENGAGEMENT);
        assert_eq!(e.hit.engagement_ms, Some(1234));
    }

    #[test]
    fn errors_name_the_field() {
        let f = |b: &[u8]| decode(b).unwrap_err().field;
        assert_eq!(f(b"{"), "body");
        assert_eq!(f(b"[]"), "body");
        assert_eq!(
            f(br#"{"url":"https://a.example/","domain":"a.example"}"#),
            "name"
        );
        assert_eq!(
            f(br#"{"name":"pageview","url":"javascript:alert(1)","domain":"a.example"}"#),
            "url"
        );
        assert_eq!(
            f(br#"{"name":"pageview","url":"https://a.example/","domain":7}"#),
            "domain"
        );
        assert_eq!(f(br#"{"name":"x","url":"https://a.example/","domain":"a.example","props":{"k":[1]}}"#), "props.k");
        assert_eq!(f(br#"{"name":"x","url":"https://a.example/","domain":"a.example","revenue":{"currency":"EUR","amount":"abc"}}"#), "revenue.amount");
    }
}
