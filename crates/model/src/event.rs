//! The event contract (DESIGN §4.1): what the log carries and the archive keeps.
//!
//! An [`Event`] holds every fact needed to recompute rollups and nothing that identifies a
//! person: the client IP address is never part of it (only the keyed visitor hash and the geo
//! fields resolved from the IP at ingest are).

use serde::{Deserialize, Serialize};

/// The name of the event that counts as a pageview.
pub const PAGEVIEW: &str = "pageview";

/// Name of the engagement events that Plausible's tracker sends when a visitor leaves a page
/// (with `e`, engaged time in ms, and `sd`, scroll depth in %), and that gtag.js's
/// `user_engagement` hits on `/g/collect` become. They are not custom events:
/// they count in no metric of their own and only extend the visit they belong to, so that
/// its duration includes the time on its last page; one that belongs to no open visit is
/// ignored.
pub const ENGAGEMENT: &str = "engagement";

/// The name of an accounting record: the collector's count of a site's hits it did not
/// accept, by outcome (props `outcome` and `count`). Not an analytics event.
pub const INGEST_ACCOUNTING: &str = "$ingest";

/// The name of a reprocess's cut record (protocol [`Protocol::Accounting`]): appended to a
/// site's partition by `footfall reprocess` with props `generation`, `from_day` and `to_day`.
/// The reprocess covers the site's events before it; live processing, on reading it, mirrors
/// the site's later events into that generation. Not an analytics event.
pub const GENERATION_CUT: &str = "$generation";

/// Encoding version written as the first byte of every encoded event.
///
/// Bump it when the layout of [`Event`] changes, and keep decoding the old versions.
pub const ENCODING_VERSION: u8 = 2;

/// Which wire protocol an event came in through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// Plausible Events API (`POST /api/event`).
    Plausible,
    /// GA4 Measurement Protocol (`POST /mp/collect`).
    Ga4MeasurementProtocol,
    /// Access-log import (`footfall import`).
    AccessLog,
    /// The collector's own accounting records ([`INGEST_ACCOUNTING`]); no client can send
    /// these.
    Accounting,
    /// GA4 browser hits in gtag.js's wire format (`/g/collect`); unlike the Measurement
    /// Protocol, the User-Agent and address are the visitor's own.
    Ga4Gtag,
}

/// UTM campaign parameters, as sent (not yet canonicalised).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utm {
    /// `utm_source`.
    pub source: Option<String>,
    /// `utm_medium`.
    pub medium: Option<String>,
    /// `utm_campaign`.
    pub campaign: Option<String>,
    /// `utm_term`.
    pub term: Option<String>,
    /// `utm_content`.
    pub content: Option<String>,
}

/// Revenue attached to an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revenue {
    /// Amount in minor currency units (cents for USD, yen for JPY), per ISO 4217's exponent.
    pub amount_minor: i64,
    /// ISO 4217 alphabetic code, upper case (`"EUR"`).
    pub currency: String,
}

/// One analytics event, as carried by the log and kept in the archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id, for de-duplication; random for live hits, derived from the source line for
    /// imports.
    pub event_id: u128,
    /// Internal numeric id of the site.
    pub site_id: u64,
    /// When the collector accepted the event, UTC, µs since the Unix epoch.
    pub received_at_us: i64,
    /// When the event happened, UTC, µs since the Unix epoch (the client's timestamp when it
    /// was accepted, otherwise `received_at_us`).
    pub timestamp_us: i64,
    /// `pageview` or a custom event name.
    pub name: String,
    /// Lower-case hostname of the page.
    pub hostname: String,
    /// Path of the page as reported: normalised, plus the site's kept query parameters and,
    /// with hash routing, the fragment's route ([`crate::url_parts::page_path`]). Derived at
    /// ingest with the site's rules of that moment.
    pub path: String,
    /// Page title, when the protocol carries one.
    pub title: Option<String>,
    /// Referrer URL, as sent.
    pub referrer: Option<String>,
    /// UTM parameters, from the page URL or protocol fields.
    pub utm: Utm,
    /// Custom properties, at most [`crate::decode::MAX_PROPS`] pairs.
    pub props: Vec<(String, String)>,
    /// Revenue, if any.
    pub revenue: Option<Revenue>,
    /// Engagement time reported by the client, ms.
    pub engagement_ms: Option<u64>,
    /// `false` for events that must not affect bounce (Plausible `interactive: false`,
    /// GA4 `non_interaction`).
    pub interactive: bool,
    /// Keyed, non-reversible hash that identifies the visitor (DESIGN §4.5).
    pub visitor_id: u64,
    /// The visitor hash computed with the previous daily salt, so that a visit in progress
    /// across the salt rotation continues (cookieless protocols only).
    pub prev_visitor_id: Option<u64>,
    /// Client-supplied session id (GA4 `session_id`), hashed to 64 bits.
    pub session_id: Option<u64>,
    /// Raw `User-Agent` header, kept so that parsing and bot rules can be re-run.
    pub user_agent: String,
    /// Screen size as sent (`"1920x1080"`), if any.
    pub screen: Option<String>,
    /// Language tag as sent (`"de-DE"`), if any.
    pub language: Option<String>,
    /// ISO 3166-1 alpha-2 country resolved at ingest, if known.
    pub country: Option<String>,
    /// Region (ISO 3166-2 subdivision) resolved at ingest, if known.
    pub region: Option<String>,
    /// City name resolved at ingest, if known.
    pub city: Option<String>,
    /// The protocol the event arrived through.
    pub protocol: Protocol,
    /// The bot rule that matched at ingest (`crawler`, `headless`, …), if any. Informational
    /// for readers of the log and the archive: processing re-applies the current rules to
    /// the raw User-Agent and referrer, so reprocessing can reclassify.
    pub bot: Option<String>,
}

/// Layout of encoding version 1: [`Event`] without `bot`. Decoded into an [`Event`] with
/// `bot: None`.
#[derive(Serialize, Deserialize)]
struct EventV1 {
    event_id: u128,
    site_id: u64,
    received_at_us: i64,
    timestamp_us: i64,
    name: String,
    hostname: String,
    path: String,
    title: Option<String>,
    referrer: Option<String>,
    utm: Utm,
    props: Vec<(String, String)>,
    revenue: Option<Revenue>,
    engagement_ms: Option<u64>,
    interactive: bool,
    visitor_id: u64,
    prev_visitor_id: Option<u64>,
    session_id: Option<u64>,
    user_agent: String,
    screen: Option<String>,
    language: Option<String>,
    country: Option<String>,
    region: Option<String>,
    city: Option<String>,
    protocol: Protocol,
}

impl From<EventV1> for Event {
    fn from(v: EventV1) -> Event {
        Event {
            event_id: v.event_id,
            site_id: v.site_id,
            received_at_us: v.received_at_us,
            timestamp_us: v.timestamp_us,
            name: v.name,
            hostname: v.hostname,
            path: v.path,
            title: v.title,
            referrer: v.referrer,
            utm: v.utm,
            props: v.props,
            revenue: v.revenue,
            engagement_ms: v.engagement_ms,
            interactive: v.interactive,
            visitor_id: v.visitor_id,
            prev_visitor_id: v.prev_visitor_id,
            session_id: v.session_id,
            user_agent: v.user_agent,
            screen: v.screen,
            language: v.language,
            country: v.country,
            region: v.region,
            city: v.city,
            protocol: v.protocol,
            bot: None,
        }
    }
}

/// Errors of [`Event::decode`].
#[derive(Debug, thiserror::Error)]
pub enum EventDecodeError {
    /// The buffer was empty.
    #[error("encoded event is empty")]
    Empty,
    /// The version byte names an encoding this build does not know.
    #[error("encoded event has version {0}, this build reads versions 1 to {ENCODING_VERSION}")]
    UnknownVersion(u8),
    /// The payload did not decode.
    #[error("encoded event is corrupt: {0}")]
    Corrupt(#[from] postcard::Error),
}

impl Event {
    /// Whether the event is a pageview.
    pub fn is_pageview(&self) -> bool {
        self.name == PAGEVIEW
    }

    /// Encodes as `[ENCODING_VERSION] ++ postcard(event)`.
    pub fn encode(&self) -> Vec<u8> {
        let out = vec![ENCODING_VERSION];
        // Serialising plain owned data into a Vec cannot fail.
        match postcard::to_extend(self, out) {
            Ok(v) => v,
            Err(_) => vec![ENCODING_VERSION],
        }
    }

    /// Decodes what [`Event::encode`] wrote.
    ///
    /// # Errors
    /// [`EventDecodeError`] for an empty buffer, an unknown version or a corrupt payload.
    pub fn decode(bytes: &[u8]) -> Result<Event, EventDecodeError> {
        let (&version, rest) = bytes.split_first().ok_or(EventDecodeError::Empty)?;
        match version {
            1 => Ok(postcard::from_bytes::<EventV1>(rest)?.into()),
            ENCODING_VERSION => Ok(postcard::from_bytes(rest)?),
            other => Err(EventDecodeError::UnknownVersion(other)),
        }
    }

    /// A minimal pageview, for tests and examples.
    pub fn pageview(site_id: u64, visitor_id: u64, timestamp_us: i64, path: &str) -> Event {
        Event {
            event_id: 0,
            site_id,
            received_at_us: timestamp_us,
            timestamp_us,
            name: PAGEVIEW.to_string(),
            hostname: String::new(),
            path: path.to_string(),
            title: None,
            referrer: None,
            utm: Utm::default(),
            props: Vec::new(),
            revenue: None,
            engagement_ms: None,
            interactive: true,
            visitor_id,
            prev_visitor_id: None,
            session_id: None,
            user_agent: "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
                .to_string(),
            screen: None,
            language: None,
            country: None,
            region: None,
            city: None,
            protocol: Protocol::Plausible,
            bot: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let mut e = Event::pageview(7, 42, 1_700_000_000_000_000, "/a");
        e.props.push(("plan".into(), "pro".into()));
        e.revenue = Some(Revenue {
            amount_minor: 1999,
            currency: "EUR".into(),
        });
        let bytes = e.encode();
        assert_eq!(bytes[0], ENCODING_VERSION);
        assert_eq!(Event::decode(&bytes).unwrap(), e);
    }

    #[test]
    fn version_1_events_still_decode() {
        let v1 = EventV1 {
            event_id: 5,
            site_id: 7,
            received_at_us: 10,
            timestamp_us: 9,
            name: "pageview".into(),
            hostname: "a.example".into(),
            path: "/x".into(),
            title: None,
            referrer: None,
            utm: Utm::default(),
            props: vec![],
            revenue: None,
            engagement_ms: None,
            interactive: true,
            visitor_id: 42,
            prev_visitor_id: None,
            session_id: None,
            user_agent: "UA".into(),
            screen: None,
            language: None,
            country: Some("DE".into()),
            region: None,
            city: None,
            protocol: Protocol::AccessLog,
        };
        let mut bytes = vec![1u8];
        bytes.extend(postcard::to_stdvec(&v1).unwrap());
        let e = Event::decode(&bytes).unwrap();
        assert_eq!(
            (
                e.site_id,
                e.visitor_id,
                e.path.as_str(),
                e.country.as_deref(),
                e.bot
            ),
            (7, 42, "/x", Some("DE"), None)
        );
    }

    #[test]
    fn decode_rejects_unknown_version_and_garbage() {
        assert!(matches!(Event::decode(&[]), Err(EventDecodeError::Empty)));
        assert!(matches!(
            Event::decode(&[99, 1, 2]),
            Err(EventDecodeError::UnknownVersion(99))
        ));
        assert!(matches!(
            Event::decode(&[ENCODING_VERSION, 0xff]),
            Err(EventDecodeError::Corrupt(_))
        ));
    }
}
