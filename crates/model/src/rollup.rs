//! Rollup cells (DESIGN §4.3): keys, dimensions, granularities and mergeable values.
//!
//! A cell key is (site, generation, granularity, dimension, bucket, value). A cell value
//! holds only sums and a sketch, so cells merge by addition; rates are computed at query
//! time from these sums. Sums may be negative in a *delta*: the processor retracts a visit's
//! previous contribution when the visit changes (a second pageview turns a bounce into a
//! non-bounce, a late earlier event moves the visit's start).

use serde::{Deserialize, Serialize};

use crate::sketch::{SketchError, VisitorSketch};

/// Bucket width. Weeks, months and years are merged from days at query time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Granularity {
    /// Local hours; bucket = UTC seconds of the local hour start.
    Hour = 1,
    /// Local calendar days; bucket = local date as days since 1970-01-01.
    Day = 2,
}

impl Granularity {
    /// Stable one-byte code used in store keys.
    pub fn code(self) -> u8 {
        self as u8
    }
    /// Inverse of [`Granularity::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Hour),
            2 => Some(Self::Day),
            _ => None,
        }
    }
}

/// Whether a dimension takes each event's own value or the visit's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The site total: events in their own bucket, visits in the bucket where they started.
    Total,
    /// Each event's own value, in the event's bucket.
    Event,
    /// The visit's value; the whole visit counts in the bucket where it started.
    Visit,
}

/// A rollup dimension. Codes are stable: they are part of stored keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Dimension {
    /// No breakdown: the site total (value is empty).
    Total = 0,
    /// `event:page`: the pageview's path.
    Page = 1,
    /// `visit:entry_page`: the path of the visit's first pageview.
    EntryPage = 2,
    /// `visit:exit_page`: the path of the visit's last pageview; written when the visit ends.
    ExitPage = 3,
    /// `event:hostname`.
    Hostname = 4,
    /// `visit:source`: the visit's referrer source.
    Source = 5,
    /// `visit:utm_source`.
    UtmSource = 6,
    /// `visit:utm_medium`.
    UtmMedium = 7,
    /// `visit:utm_campaign`.
    UtmCampaign = 8,
    /// `event:goal`: the name of a custom (non-pageview) event.
    Goal = 9,
    /// `visit:channel`: GA4 default channel group.
    Channel = 10,
    /// `visit:referrer`: the referrer's host and path.
    Referrer = 11,
    /// `visit:country`: ISO 3166-1 alpha-2 code.
    Country = 12,
    /// `visit:region`: ISO 3166-2 subdivision code.
    Region = 13,
    /// `visit:city`: city name.
    City = 14,
    /// `visit:browser`.
    Browser = 15,
    /// `visit:browser_version`: `<browser> <major>`, so versions of different browsers do not mix.
    BrowserVersion = 16,
    /// `visit:os`.
    Os = 17,
    /// `visit:os_version`: `<os> <version>`.
    OsVersion = 18,
    /// `visit:device`: Desktop, Mobile, Tablet, Other.
    Device = 19,
    /// `event:props:NAME`: value `NAME` + [`PROP_SEPARATOR`] + property value.
    Prop = 20,
    /// `ingest:outcome`: ingest accounting by receipt time (`accepted`, `bot`, `invalid`,
    /// `late`, `rate_limited`); only `events` is meaningful.
    Ingest = 21,
}

/// Separates a custom property's name from its value in [`Dimension::Prop`] cell values
/// (the ASCII unit separator, which property names cannot usefully contain).
pub const PROP_SEPARATOR: char = '\u{1f}';

/// The value that values past a site's cap on distinct values per (site, bucket, dimension)
/// are folded into (DESIGN §4.3; Google Analytics reports such rows as `(other)` too).
pub const OTHER: &str = "(other)";

/// The value a value of `dimension` is folded into past the cap: [`OTHER`], or for a custom
/// property `NAME` + [`PROP_SEPARATOR`] + [`OTHER`], so that the fold stays under its
/// property's name.
pub fn other_value(dimension: Dimension, value: &str) -> String {
    match (dimension, value.split_once(PROP_SEPARATOR)) {
        (Dimension::Prop, Some((name, _))) => format!("{name}{PROP_SEPARATOR}{OTHER}"),
        _ => OTHER.to_string(),
    }
}

/// Whether `value` is a fold target ([`other_value`]) of `dimension`.
pub fn is_other(dimension: Dimension, value: &str) -> bool {
    match dimension {
        Dimension::Prop => value
            .split_once(PROP_SEPARATOR)
            .is_some_and(|(_, v)| v == OTHER),
        _ => value == OTHER,
    }
}

impl Dimension {
    /// Every dimension, in code order.
    pub const ALL: [Dimension; 22] = [
        Dimension::Total,
        Dimension::Page,
        Dimension::EntryPage,
        Dimension::ExitPage,
        Dimension::Hostname,
        Dimension::Source,
        Dimension::UtmSource,
        Dimension::UtmMedium,
        Dimension::UtmCampaign,
        Dimension::Goal,
        Dimension::Channel,
        Dimension::Referrer,
        Dimension::Country,
        Dimension::Region,
        Dimension::City,
        Dimension::Browser,
        Dimension::BrowserVersion,
        Dimension::Os,
        Dimension::OsVersion,
        Dimension::Device,
        Dimension::Prop,
        Dimension::Ingest,
    ];

    /// Stable one-byte code used in store keys.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Inverse of [`Dimension::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.code() == code)
    }

    /// Whether the cap on distinct values per (site, bucket, dimension) applies: to every
    /// dimension but the site total (one value) and ingest accounting (five fixed values).
    pub fn is_capped(self) -> bool {
        !matches!(self, Dimension::Total | Dimension::Ingest)
    }

    /// How the dimension takes its value.
    pub fn scope(self) -> Scope {
        match self {
            Dimension::Total => Scope::Total,
            Dimension::Page
            | Dimension::Hostname
            | Dimension::Goal
            | Dimension::Prop
            | Dimension::Ingest => Scope::Event,
            _ => Scope::Visit,
        }
    }

    /// The name in Plausible's Stats API v2 (`event:page`, `visit:source`, ...); `None` for
    /// the total.
    pub fn api_name(self) -> Option<&'static str> {
        Some(match self {
            Dimension::Total => return None,
            Dimension::Page => "event:page",
            Dimension::EntryPage => "visit:entry_page",
            Dimension::ExitPage => "visit:exit_page",
            Dimension::Hostname => "event:hostname",
            Dimension::Source => "visit:source",
            Dimension::UtmSource => "visit:utm_source",
            Dimension::UtmMedium => "visit:utm_medium",
            Dimension::UtmCampaign => "visit:utm_campaign",
            Dimension::Goal => "event:goal",
            Dimension::Channel => "visit:channel",
            Dimension::Referrer => "visit:referrer",
            Dimension::Country => "visit:country",
            Dimension::Region => "visit:region",
            Dimension::City => "visit:city",
            Dimension::Browser => "visit:browser",
            Dimension::BrowserVersion => "visit:browser_version",
            Dimension::Os => "visit:os",
            Dimension::OsVersion => "visit:os_version",
            Dimension::Device => "visit:device",
            Dimension::Prop => "event:props",
            Dimension::Ingest => "ingest:outcome",
        })
    }

    /// Inverse of [`Dimension::api_name`].
    pub fn from_api_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.api_name() == Some(name))
    }
}

/// Identifies one rollup cell.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellKey {
    /// Internal site id.
    pub site_id: u64,
    /// Rollup generation (DESIGN §4.6); live processing writes the site's current one.
    pub generation: u32,
    /// Bucket width.
    pub granularity: Granularity,
    /// Dimension.
    pub dimension: Dimension,
    /// Bucket id; see [`crate::bucket`].
    pub bucket: i64,
    /// Dimension value; empty for [`Dimension::Total`].
    pub value: String,
}

/// Length of the fixed prefix of an encoded [`CellKey`]: site 8 + generation 4 +
/// granularity 1 + dimension 1 + bucket 8 bytes.
pub const CELL_KEY_PREFIX_LEN: usize = 22;

impl CellKey {
    /// Order-preserving byte encoding for ordered key-value stores: big-endian site,
    /// generation, granularity code, dimension code, bucket with its sign bit flipped, then the
    /// value's UTF-8 bytes. Cells of one (site, generation, granularity, dimension) are thus
    /// contiguous and ordered by bucket.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CELL_KEY_PREFIX_LEN + self.value.len());
        out.extend_from_slice(&Self::prefix(
            self.site_id,
            self.generation,
            self.granularity,
            self.dimension,
            self.bucket,
        ));
        out.extend_from_slice(self.value.as_bytes());
        out
    }

    /// The encoded prefix shared by every value of one bucket.
    pub fn prefix(
        site_id: u64,
        generation: u32,
        granularity: Granularity,
        dimension: Dimension,
        bucket: i64,
    ) -> [u8; CELL_KEY_PREFIX_LEN] {
        let mut out = [0u8; CELL_KEY_PREFIX_LEN];
        out[0..8].copy_from_slice(&site_id.to_be_bytes());
        out[8..12].copy_from_slice(&generation.to_be_bytes());
        out[12] = granularity.code();
        out[13] = dimension.code();
        out[14..22].copy_from_slice(&((bucket as u64) ^ (1 << 63)).to_be_bytes());
        out
    }

    /// Inverse of [`CellKey::encode`]; `None` for bytes that are not a key.
    pub fn decode(bytes: &[u8]) -> Option<CellKey> {
        if bytes.len() < CELL_KEY_PREFIX_LEN {
            return None;
        }
        let site_id = u64::from_be_bytes(bytes[0..8].try_into().ok()?);
        let generation = u32::from_be_bytes(bytes[8..12].try_into().ok()?);
        let granularity = Granularity::from_code(bytes[12])?;
        let dimension = Dimension::from_code(bytes[13])?;
        let bucket = (u64::from_be_bytes(bytes[14..22].try_into().ok()?) ^ (1 << 63)) as i64;
        let value = std::str::from_utf8(&bytes[22..]).ok()?.to_string();
        Some(CellKey {
            site_id,
            generation,
            granularity,
            dimension,
            bucket,
            value,
        })
    }
}

/// The sums and sketch of one cell (or a delta to add to one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CellValue {
    /// Distinct visitors.
    pub visitors: VisitorSketch,
    /// Visits (sessions).
    pub visits: i64,
    /// Pageviews.
    pub pageviews: i64,
    /// Events of any name, pageviews included.
    pub events: i64,
    /// Visits with at most one pageview and no interactive custom event.
    pub bounces: i64,
    /// Sum of visit durations, seconds.
    pub visit_duration_s: i64,
    /// Revenue in the site's currency, minor units.
    pub revenue_minor: i64,
}

/// The stored form. `visitors` borrows its bytes: postcard writes a byte slice and a `Vec<u8>`
/// alike (a varint length, then the bytes; postcard wire-format spec), so cells written as a
/// `Vec<u8>` read back unchanged, without a per-byte decode.
#[derive(Serialize, Deserialize)]
struct StoredCell<'a> {
    #[serde(borrow)]
    visitors: &'a [u8],
    visits: i64,
    pageviews: i64,
    events: i64,
    bounces: i64,
    visit_duration_s: i64,
    revenue_minor: i64,
}

/// Errors of [`CellValue::decode`].
#[derive(Debug, thiserror::Error)]
pub enum CellDecodeError {
    /// The sums did not decode.
    #[error("stored cell is corrupt: {0}")]
    Corrupt(#[from] postcard::Error),
    /// The sketch did not decode.
    #[error(transparent)]
    Sketch(#[from] SketchError),
}

impl CellValue {
    /// Adds `other` into `self`: sums add (saturating at the i64 bounds), sketches merge.
    pub fn merge(&mut self, other: &CellValue) {
        self.visitors.merge(&other.visitors);
        self.add_sums(other);
    }

    /// Adds `other`'s sums (not its sketch) into `self`, saturating at the i64 bounds.
    fn add_sums(&mut self, other: &CellValue) {
        self.visits = self.visits.saturating_add(other.visits);
        self.pageviews = self.pageviews.saturating_add(other.pageviews);
        self.events = self.events.saturating_add(other.events);
        self.bounces = self.bounces.saturating_add(other.bounces);
        self.visit_duration_s = self.visit_duration_s.saturating_add(other.visit_duration_s);
        self.revenue_minor = self.revenue_minor.saturating_add(other.revenue_minor);
    }

    /// The sum of `values`, as if merged one by one into an empty cell, but with the sketches
    /// merged in one pass ([`VisitorSketch::union_all`]): a 30-day query merges 30 daily
    /// cells per answer row.
    pub fn merge_all(values: &[CellValue]) -> CellValue {
        let mut out = CellValue {
            visitors: VisitorSketch::union_all(values.iter().map(|v| &v.visitors)),
            ..CellValue::default()
        };
        values.iter().for_each(|v| out.add_sums(v));
        out
    }

    /// Whether every sum is zero and the sketch is empty.
    pub fn is_zero(&self) -> bool {
        self.visitors.is_empty()
            && self.visits == 0
            && self.pageviews == 0
            && self.events == 0
            && self.bounces == 0
            && self.visit_duration_s == 0
            && self.revenue_minor == 0
    }

    /// Compact binary form (postcard; sketch as [`VisitorSketch::to_bytes`]).
    pub fn encode(&self) -> Vec<u8> {
        let visitors = self.visitors.to_bytes();
        let stored = StoredCell {
            visitors: &visitors,
            visits: self.visits,
            pageviews: self.pageviews,
            events: self.events,
            bounces: self.bounces,
            visit_duration_s: self.visit_duration_s,
            revenue_minor: self.revenue_minor,
        };
        postcard::to_stdvec(&stored).unwrap_or_default()
    }

    /// Inverse of [`CellValue::encode`].
    ///
    /// # Errors
    /// [`CellDecodeError`] for corrupt bytes.
    pub fn decode(bytes: &[u8]) -> Result<CellValue, CellDecodeError> {
        let s: StoredCell = postcard::from_bytes(bytes)?;
        Ok(CellValue {
            visitors: VisitorSketch::from_bytes(s.visitors)?,
            visits: s.visits,
            pageviews: s.pageviews,
            events: s.events,
            bounces: s.bounces,
            visit_duration_s: s.visit_duration_s,
            revenue_minor: s.revenue_minor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout cells were written with before `StoredCell` borrowed its bytes.
    #[derive(Serialize)]
    struct OwnedStoredCell {
        visitors: Vec<u8>,
        visits: i64,
        pageviews: i64,
        events: i64,
        bounces: i64,
        visit_duration_s: i64,
        revenue_minor: i64,
    }

    #[test]
    fn cells_written_with_owned_sketch_bytes_decode() {
        let mut visitors = VisitorSketch::new();
        [11u64, 7, 42].iter().for_each(|i| visitors.insert(*i));
        let old = postcard::to_stdvec(&OwnedStoredCell {
            visitors: visitors.to_bytes(),
            visits: 3,
            pageviews: -4,
            events: 5,
            bounces: 1,
            visit_duration_s: 70,
            revenue_minor: 1999,
        })
        .unwrap();
        let c = CellValue::decode(&old).unwrap();
        assert_eq!(c.visitors.estimate(), 3);
        assert_eq!((c.visits, c.pageviews, c.events, c.bounces), (3, -4, 5, 1));
        assert_eq!((c.visit_duration_s, c.revenue_minor), (70, 1999));
        // And the new encoding writes the same bytes.
        assert_eq!(c.encode(), old);
    }

    #[test]
    fn merge_all_adds_sums_and_unions_visitors() {
        let cell = |ids: &[u64], n: i64| {
            let mut c = CellValue {
                visits: n,
                pageviews: 2 * n,
                events: 3 * n,
                bounces: n,
                visit_duration_s: 10 * n,
                revenue_minor: 100 * n,
                ..CellValue::default()
            };
            ids.iter().for_each(|i| c.visitors.insert(*i));
            c
        };
        let all = CellValue::merge_all(&[cell(&[1, 2], 1), cell(&[2, 3], 2), cell(&[9], 4)]);
        assert_eq!(all.visitors.estimate(), 4); // {1, 2, 3, 9}
        assert_eq!(
            (all.visits, all.pageviews, all.events, all.bounces),
            (7, 14, 21, 7)
        );
        assert_eq!((all.visit_duration_s, all.revenue_minor), (70, 700));
        assert!(CellValue::merge_all(&[]).is_zero());
    }

    #[test]
    fn key_encoding_orders_by_bucket_including_negative() {
        let k = |bucket: i64, value: &str| CellKey {
            site_id: 3,
            generation: 1,
            granularity: Granularity::Hour,
            dimension: Dimension::Page,
            bucket,
            value: value.into(),
        };
        let keys = [k(-5, "/z"), k(0, "/a"), k(0, "/b"), k(7, "")];
        let enc: Vec<Vec<u8>> = keys.iter().map(CellKey::encode).collect();
        assert!(enc.windows(2).all(|w| w[0] < w[1]));
        for (key, bytes) in keys.iter().zip(&enc) {
            assert_eq!(&CellKey::decode(bytes).unwrap(), key);
        }
    }

    #[test]
    fn api_names_round_trip() {
        for d in Dimension::ALL {
            if let Some(n) = d.api_name() {
                assert_eq!(Dimension::from_api_name(n), Some(d));
            }
            assert_eq!(Dimension::from_code(d.code()), Some(d));
        }
    }

    #[test]
    fn value_merge_and_encoding() {
        let mut a = CellValue {
            visits: 2,
            bounces: 1,
            ..Default::default()
        };
        a.visitors.insert(9);
        let b = CellValue {
            visits: -1,
            bounces: -1,
            pageviews: 3,
            ..Default::default()
        };
        a.merge(&b);
        assert_eq!((a.visits, a.bounces, a.pageviews), (1, 0, 3));
        assert_eq!(CellValue::decode(&a.encode()).unwrap(), a);
    }
}
