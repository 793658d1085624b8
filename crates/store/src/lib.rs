//! The store contract (DESIGN §4.4): rollup cells, processor checkpoints and state, and the
//! metadata of sites, API keys and visitor-hash salts.
//!
//! Cells are written as **absolute values** together with the processor's checkpoint in one
//! [`WriteBatch`]. The embedded store applies a batch atomically. Writing absolute values
//! (rather than increments) is what lets a store without multi-row transactions apply a
//! batch idempotently: replaying a batch writes the same values again.
//!
//! Implementations: [`embedded::EmbeddedStore`] (default); Cassandra/ScyllaDB in scaled-out
//! mode. Every implementation runs [`conformance`].

pub mod embedded;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use async_trait::async_trait;
use footfall_model::rollup::{CellKey, CellValue, Dimension, Granularity};
pub use footfall_model::site::Site;
use serde::{Deserialize, Serialize};

/// The generation live processing writes and queries read until reprocessing introduces
/// others (DESIGN §4.6).
pub const LIVE_GENERATION: u32 = 1;

/// Bit set in the id of a generation's **mirror**: the cells that live processing adds to a
/// reprocessed generation for events after the reprocess's cut (DESIGN §4.6). A query that
/// serves generation `g` reads `g` and `g | MIRROR_BIT` and adds them.
pub const MIRROR_BIT: u32 = 1 << 31;

/// The state of a reprocessed generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GenerationState {
    /// A reprocess is writing it.
    Building,
    /// Complete; it can be served.
    Ready,
    /// Its reprocess failed or was interrupted; never served, no longer mirrored.
    Failed,
}

/// A generation of one site's rollups written by `footfall reprocess`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// Generation id (2, 3, …; 1 is live processing).
    pub id: u32,
    /// Site.
    pub site_id: u64,
    /// First and last local day it covers (days since 1970-01-01 in the site's time zone).
    pub from_day: i64,
    /// Last day, inclusive.
    pub to_day: i64,
    /// Its state.
    pub state: GenerationState,
    /// The site's log partition.
    pub partition: u32,
    /// Offset of the reprocess's cut record in that partition: the reprocess covers the
    /// events below it, live processing mirrors the events above it.
    pub cut_offset: u64,
    /// Creation time, UTC µs.
    pub created_at_us: i64,
    /// Events the reprocess read.
    pub events: u64,
}

/// A span of days served from one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedSpan {
    /// First local day, inclusive.
    pub from_day: i64,
    /// Last local day, inclusive.
    pub to_day: i64,
    /// The generation served for these days.
    pub generation: u32,
}

/// The generation that serves `day` under `spans` ([`LIVE_GENERATION`] outside them).
pub fn served_generation(spans: &[ServedSpan], day: i64) -> u32 {
    spans
        .iter()
        .find(|s| (s.from_day..=s.to_day).contains(&day))
        .map_or(LIVE_GENERATION, |s| s.generation)
}

/// `spans` with days `from..=to` served from `generation` instead (spans it overlaps are
/// cut), sorted by day.
pub fn with_span(
    spans: &[ServedSpan],
    from_day: i64,
    to_day: i64,
    generation: u32,
) -> Vec<ServedSpan> {
    let mut out = Vec::with_capacity(spans.len() + 2);
    for s in spans {
        if s.to_day < from_day || s.from_day > to_day {
            out.push(*s);
            continue;
        }
        if s.from_day < from_day {
            out.push(ServedSpan {
                to_day: from_day - 1,
                ..*s
            });
        }
        if s.to_day > to_day {
            out.push(ServedSpan {
                from_day: to_day + 1,
                ..*s
            });
        }
    }
    if generation != LIVE_GENERATION {
        out.push(ServedSpan {
            from_day,
            to_day,
            generation,
        });
    }
    out.sort_by_key(|s| s.from_day);
    out
}

/// Errors of store operations.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage failed (I/O, disk full, corrupt data, unreachable cluster).
    #[error("store failed: {0}")]
    Storage(String),
    /// A unique value is taken (a domain or measurement id that already exists).
    #[error("{0} already exists")]
    Conflict(String),
    /// The thing to update does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// The store cannot be opened.
    #[error("cannot open store at {path}: {reason}")]
    Open {
        /// Where.
        path: String,
        /// Why.
        reason: String,
    },
}

/// A consumer's position in one log partition, written with the cells it produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Log partition.
    pub partition: u32,
    /// Next offset to read: every record below it is reflected in the store.
    pub offset: u64,
    /// Every event the log had accepted before this instant (UTC µs) is reflected; 0 when
    /// unknown.
    pub complete_through_us: i64,
}

/// An open visit's state to save (`Some`) or to delete (`None`), as opaque bytes owned by
/// the processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitWrite {
    /// Log partition of the site.
    pub partition: u32,
    /// Site.
    pub site_id: u64,
    /// Visitor hash.
    pub visitor_id: u64,
    /// Encoded state, or `None` to delete.
    pub state: Option<Vec<u8>>,
}

/// What a processor flush writes, atomically in the embedded store.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    /// Consumer name whose checkpoints these are (`processor`).
    pub consumer: String,
    /// Absolute cell values; a zero value deletes the cell.
    pub cells: Vec<(CellKey, CellValue)>,
    /// Open-visit state changes.
    pub visits: Vec<VisitWrite>,
    /// New positions.
    pub checkpoints: Vec<Checkpoint>,
    /// Mirrors registered by live processing since the last batch.
    pub mirrors: Vec<Mirror>,
}

/// A mirror that live processing keeps for a reprocessed generation: the cell deltas of the
/// site's events after `cut_offset` in `partition`, for the site's days
/// `from_day..=to_day`, are also added to generation `generation | MIRROR_BIT`. Registered
/// when the processor reads the reprocess's cut record, in the same batch as the checkpoint
/// that passes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mirror {
    /// Log partition.
    pub partition: u32,
    /// The reprocessed generation (without [`MIRROR_BIT`]).
    pub generation: u32,
    /// Site.
    pub site_id: u64,
    /// First local day, inclusive.
    pub from_day: i64,
    /// Last local day, inclusive.
    pub to_day: i64,
    /// Offset of the cut record.
    pub cut_offset: u64,
}

/// A cell range to read: one site, generation, granularity and dimension, buckets
/// `from..=to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellRange {
    /// Site.
    pub site_id: u64,
    /// Generation.
    pub generation: u32,
    /// Granularity.
    pub granularity: Granularity,
    /// Dimension.
    pub dimension: Dimension,
    /// First bucket, inclusive.
    pub from: i64,
    /// Last bucket, inclusive.
    pub to: i64,
}

/// An API key as stored: only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// BLAKE3 hash of the key, hex; the key itself is never stored.
    pub hash: String,
    /// First characters of the key, to tell keys apart in listings (`ff_abc…`).
    pub prefix: String,
    /// Sites this key may read.
    pub site_ids: Vec<u64>,
    /// Creation time, UTC µs.
    pub created_at_us: i64,
}

/// Fields of a new site; the store allocates its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSite {
    /// Domain, lower case.
    pub domain: String,
    /// IANA time zone.
    pub timezone: String,
    /// ISO 4217 currency.
    pub currency: String,
    /// Measurement id.
    pub measurement_id: String,
    /// Hash of the Measurement Protocol secret.
    pub api_secret_hash: String,
    /// Creation time, UTC µs.
    pub created_at_us: i64,
}

impl NewSite {
    /// The site as created with the allocated `id`: no kept query parameters, no hash routing.
    pub fn into_site(self, id: u64) -> Site {
        Site {
            id,
            domain: self.domain,
            timezone: self.timezone,
            currency: self.currency,
            measurement_id: self.measurement_id,
            api_secret_hash: self.api_secret_hash,
            created_at_us: self.created_at_us,
            keep_query_params: Vec::new(),
            hash_routing: false,
        }
    }
}

/// The store contract; see the crate docs. All methods may fail with
/// [`StoreError::Storage`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies a processor flush. The batch is shared so that a caller retrying after an
    /// error does not copy it.
    async fn write_batch(&self, batch: std::sync::Arc<WriteBatch>) -> Result<(), StoreError>;
    /// Reads cells by key; `None` for cells that do not exist. Same order as `keys`.
    async fn get_cells(&self, keys: &[CellKey]) -> Result<Vec<Option<CellValue>>, StoreError>;
    /// Reads every cell in a range, ordered by bucket, then value.
    async fn scan_cells(&self, range: &CellRange) -> Result<Vec<(CellKey, CellValue)>, StoreError>;
    /// Counts the cells in each range (one count per range, same order): the processor's
    /// cap on distinct values per (site, bucket, dimension) reads it for single-bucket
    /// ranges. Counting stops at `limit` (a count of `limit` means "at least `limit`").
    async fn count_cells(&self, ranges: &[CellRange], limit: u64) -> Result<Vec<u64>, StoreError>;
    /// The earliest day bucket with data for a site's total, if any.
    async fn first_day(&self, site_id: u64, generation: u32) -> Result<Option<i64>, StoreError>;
    /// A consumer's checkpoint for a partition.
    async fn checkpoint(
        &self,
        consumer: &str,
        partition: u32,
    ) -> Result<Option<Checkpoint>, StoreError>;
    /// A consumer's checkpoint for a partition as its new owner reads it before resuming: a
    /// store that applies a batch in several steps finishes here a batch that the previous
    /// owner left half-applied (the Cassandra store's redo log), so only the partition's
    /// owner may call it. By default, [`Store::checkpoint`].
    async fn restore_checkpoint(
        &self,
        consumer: &str,
        partition: u32,
    ) -> Result<Option<Checkpoint>, StoreError> {
        self.checkpoint(consumer, partition).await
    }
    /// The mirrors registered for a partition.
    async fn mirrors(&self, partition: u32) -> Result<Vec<Mirror>, StoreError>;
    /// Open-visit states saved for a partition.
    async fn load_visits(&self, partition: u32) -> Result<Vec<Vec<u8>>, StoreError>;

    /// Creates a site, allocating its id.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] if the domain or measurement id is taken.
    async fn create_site(&self, site: NewSite) -> Result<Site, StoreError>;
    /// Replaces a site's mutable fields (time zone, currency, path rules) by id.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown id.
    async fn update_site(&self, site: &Site) -> Result<(), StoreError>;
    /// Looks a site up by id.
    async fn site(&self, id: u64) -> Result<Option<Site>, StoreError>;
    /// Looks a site up by domain.
    async fn site_by_domain(&self, domain: &str) -> Result<Option<Site>, StoreError>;
    /// Looks a site up by measurement id.
    async fn site_by_measurement_id(
        &self,
        measurement_id: &str,
    ) -> Result<Option<Site>, StoreError>;
    /// Every site, by id.
    async fn list_sites(&self) -> Result<Vec<Site>, StoreError>;

    /// Allocates a new generation id (2, 3, …), never handed out twice.
    async fn allocate_generation(&self) -> Result<u32, StoreError>;
    /// Saves a generation record (replacing the one with its site and id).
    async fn put_generation(&self, generation: &Generation) -> Result<(), StoreError>;
    /// The generation records of one site, or of every site, by site and id.
    async fn generations(&self, site_id: Option<u64>) -> Result<Vec<Generation>, StoreError>;
    /// The site's served spans: the newest entry of its history (empty: everything is served
    /// from [`LIVE_GENERATION`]).
    async fn served(&self, site_id: u64) -> Result<Vec<ServedSpan>, StoreError>;
    /// Serves days `from_day..=to_day` of the site from `generation` ([`with_span`] of the
    /// current spans), keeping the previous spans for [`Store::pop_served`]; one atomic
    /// read-modify-write. Returns the new spans.
    async fn serve_span(
        &self,
        site_id: u64,
        from_day: i64,
        to_day: i64,
        generation: u32,
    ) -> Result<Vec<ServedSpan>, StoreError>;
    /// Restores the site's previous served spans and returns them; atomic.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when there is nothing to roll back to.
    async fn pop_served(&self, site_id: u64) -> Result<Vec<ServedSpan>, StoreError>;

    /// Saves an API key record.
    async fn put_key(&self, key: &ApiKey) -> Result<(), StoreError>;
    /// Looks an API key up by its hash.
    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError>;

    /// The 32-byte salt named `name`; if absent, `candidate` (fresh random bytes from the
    /// caller) is stored and returned. Concurrent callers get the same salt.
    async fn salt(&self, name: &str, candidate: [u8; 32]) -> Result<[u8; 32], StoreError>;
    /// Names of every stored salt.
    async fn salt_names(&self) -> Result<Vec<String>, StoreError>;
    /// Deletes a salt.
    async fn delete_salt(&self, name: &str) -> Result<(), StoreError>;
}

#[cfg(test)]
mod span_tests {
    use super::*;

    fn span(from_day: i64, to_day: i64, generation: u32) -> ServedSpan {
        ServedSpan {
            from_day,
            to_day,
            generation,
        }
    }

    #[test]
    fn a_new_span_cuts_the_spans_it_overlaps() {
        let spans = vec![span(10, 20, 2)];
        assert_eq!(
            with_span(&spans, 15, 25, 3),
            vec![span(10, 14, 2), span(15, 25, 3)]
        );
        assert_eq!(
            with_span(&spans, 12, 13, 4),
            vec![span(10, 11, 2), span(12, 13, 4), span(14, 20, 2)]
        );
        assert_eq!(with_span(&spans, 0, 30, LIVE_GENERATION), vec![]);
        assert_eq!(served_generation(&spans, 9), LIVE_GENERATION);
        assert_eq!(served_generation(&spans, 10), 2);
        assert_eq!(served_generation(&spans, 20), 2);
    }
}
