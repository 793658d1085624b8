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
