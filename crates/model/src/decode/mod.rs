//! Decoders of untrusted wire formats into protocol-neutral [`Hit`]s.
//!
//! Every decoder takes raw bytes, never panics, and reports what was wrong with a
//! [`FieldError`] that names the offending field.

pub mod combined;
pub mod ga4;
pub mod gtag;
pub mod plausible;

use crate::event::{Revenue, Utm};
use crate::url_parts::PageUrl;

/// Most custom properties per event (Plausible's documented limit is 30 pairs).
pub const MAX_PROPS: usize = 30;
/// Longest property key, bytes (Plausible: 300 characters).
pub const MAX_PROP_KEY_BYTES: usize = 300;
/// Longest property value, bytes (Plausible: 2,000 characters).
pub const MAX_PROP_VALUE_BYTES: usize = 2000;
/// Longest event name accepted on the Plausible endpoint, bytes.
pub const MAX_EVENT_NAME_BYTES: usize = 120;
/// Longest URL accepted, bytes.
pub const MAX_URL_BYTES: usize = 4096;

/// A hit decoded from any protocol, before enrichment (visitor hash, geo, source).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Hit {
    /// `pageview` or a custom event name.
    pub name: String,
    /// The page the hit happened on.
    pub page: PageUrl,
    /// Page title.
    pub title: Option<String>,
    /// Referrer URL.
    pub referrer: Option<String>,
    /// Custom properties.
    pub props: Vec<(String, String)>,
    /// Revenue.
    pub revenue: Option<Revenue>,
    /// Engagement time, ms.
    pub engagement_ms: Option<u64>,
    /// Whether the hit affects bounce.
    pub interactive: bool,
    /// Client timestamp, UTC µs, when the protocol carries one.
    pub timestamp_us: Option<i64>,
    /// Client-supplied session id.
    pub session_id: Option<String>,
}

impl Hit {
    /// UTM parameters of the hit's page.
    pub fn utm(&self) -> &Utm {
        &self.page.utm
    }
}

/// A validation failure that names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// JSON path of the field (`events[2].name`, `props`).
    pub field: String,
    /// What was wrong, for a person to read.
    pub message: String,
}

impl FieldError {
    /// A new error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// ISO 4217 minor-unit exponent of a currency: 0, 3 or 4 for the currencies ISO 4217 lists
/// that way, 2 for every other code.
pub fn currency_exponent(code: &str) -> u32 {
    match code {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    }
}

/// Whether `code` looks like an ISO 4217 alphabetic code (three ASCII upper-case letters).
pub fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// Largest revenue amount accepted, in minor units (10^13: a hundred billion in a
/// two-decimal currency), so that sums over billions of events cannot overflow an i64.
pub const MAX_REVENUE_MINOR: i64 = 10_000_000_000_000;

/// Converts a decimal amount in major units (`"19.99"`) into minor units of `currency`,
/// exactly (no floating point), rounding half away from zero past the currency's exponent.
///
/// # Errors
/// A message when the text is not a plain decimal number or overflows.
pub fn decimal_to_minor(text: &str, currency: &str) -> Result<i64, String> {
    let exp = currency_exponent(currency);
    let t = text.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(format!("{text:?} is not a decimal number"));
    }
    let overflow = || format!("{text:?} is too large");
    let mut value: i64 = 0;
    for b in int.bytes() {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(b - b'0')))
            .ok_or_else(overflow)?;
    }
    let fb = frac.as_bytes();
    for i in 0..exp as usize {
        let d = fb.get(i).map_or(0, |b| i64::from(b - b'0'));
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(d))
            .ok_or_else(overflow)?;
    }
    if fb.get(exp as usize).is_some_and(|b| *b >= b'5') {
        value = value.checked_add(1).ok_or_else(overflow)?;
    }
    if value > MAX_REVENUE_MINOR {
        return Err(format!(
            "{text:?} is larger than {MAX_REVENUE_MINOR} minor units"
        ));
    }
    Ok(if neg { -value } else { value })
}

/// Text of a JSON scalar used as a decimal amount: strings as they are, numbers as printed.
pub(crate) fn amount_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_amounts_to_minor_units() {
        assert_eq!(decimal_to_minor("19.99", "EUR"), Ok(1999));
        assert_eq!(decimal_to_minor("19.995", "EUR"), Ok(2000));
        assert_eq!(decimal_to_minor("5", "USD"), Ok(500));
        assert_eq!(decimal_to_minor("1500", "JPY"), Ok(1500));
        assert_eq!(decimal_to_minor("1.234", "KWD"), Ok(1234));
        assert_eq!(decimal_to_minor("-2.5", "EUR"), Ok(-250));
        assert!(decimal_to_minor("1e3", "EUR").is_err());
        assert!(decimal_to_minor("", "EUR").is_err());
        assert!(decimal_to_minor("99999999999999999999", "EUR").is_err());
        assert!(decimal_to_minor("92233720368547758.07", "EUR").is_err());
        assert_eq!(
            decimal_to_minor("100000000000", "EUR"),
            Ok(MAX_REVENUE_MINOR)
        );
        assert!(decimal_to_minor("100000000000.01", "EUR").is_err());
    }
}
