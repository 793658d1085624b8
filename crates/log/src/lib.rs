//! The log contract (DESIGN §4.2): a durable, partitioned, replayable sequence of encoded
//! events between the collector and its consumers (processor, archiver).
//!
//! - Records are partitioned by site, so one consumer reads all events of a site in order.
//! - [`Log::append`] returns only once the records are durable (per the implementation's
//!   durability policy); the collector acknowledges a request only after that.
//! - Consumers keep their own positions; [`Log::commit`] records a consumer group's position
//!   so that lag can be reported and [`Log::truncate`] may drop what every group has passed.
//! - [`Log::append_sequenced`] is the idempotent-producer form used by imports: an append
//!   whose sequence number is not above the producer's last one is ignored, atomically with
//!   the append, so a re-run after a crash never writes a batch twice.
//!
//! Implementations: [`embedded::EmbeddedLog`] (default, one machine) and, with the `kafka`
//! feature, `kafka::KafkaLog` (scaled-out mode).

pub mod embedded;
pub mod group;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod spool;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::time::Duration;

use async_trait::async_trait;

/// Position of a record within its partition; the first record has offset 0.
pub type Offset = u64;

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The key that chooses the partition: the site id.
    pub key: u64,
    /// The encoded event.
    pub payload: Vec<u8>,
}

/// A record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its offset in the partition.
    pub offset: Offset,
    /// The encoded event.
    pub payload: Vec<u8>,
}

/// Result of [`Log::append_sequenced`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The records were appended and the producer's sequence advanced.
    Appended,
    /// The producer had already appended this sequence number; nothing was written.
    Duplicate,
}

/// Errors of log operations.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The underlying storage failed (disk full, I/O error, corrupt file).
    #[error("log storage failed: {0}")]
    Storage(String),
    /// The log is shutting down or its writer has stopped.
    #[error("log is closed")]
    Closed,
    /// Too many appends are waiting; retry shortly.
    #[error("the log's append queue is full")]
    Overloaded,
    /// A partition number outside `0..partitions`.
    #[error("partition {0} does not exist")]
    NoSuchPartition(u32),
    /// The log at this address cannot be opened (in use by another process, bad path).
    #[error("cannot open log at {path}: {reason}")]
    Open {
        /// Where.
        path: String,
        /// Why.
        reason: String,
    },
}

/// The log contract; see the crate docs.
#[async_trait]
pub trait Log: Send + Sync + 'static {
    /// Number of partitions.
    fn partitions(&self) -> u32;

    /// The partition that records with this key go to.
    fn partition_for(&self, key: u64) -> u32 {
        partition_for(key, self.partitions())
    }

    /// Appends records durably; returns when they are durable.
    ///
    /// # Errors
    /// [`LogError::Storage`] when nothing could be made durable (then nothing was appended).
    async fn append(&self, records: Vec<Record>) -> Result<(), LogError>;

    /// Appends records as `producer`'s batch number `sequence`, unless the producer's
    /// recorded sequence is already `>= sequence`; the check and the append are atomic.
    ///
    /// # Errors
    /// As [`Log::append`].
    async fn append_sequenced(
        &self,
        producer: &str,
        sequence: u64,
        records: Vec<Record>,
    ) -> Result<AppendOutcome, LogError>;

    /// The last sequence number `producer` appended, if any.
    ///
    /// # Errors
    /// [`LogError::Storage`].
    async fn producer_sequence(&self, producer: &str) -> Result<Option<u64>, LogError>;

    /// Reads up to `max` records of `partition` starting at `from`. If none is available,
    /// waits up to `wait` for one to be appended, then returns what there is (maybe nothing).
    ///
    /// # Errors
    /// [`LogError::NoSuchPartition`], [`LogError::Storage`].
    async fn read(
        &self,
        partition: u32,
        from: Offset,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Entry>, LogError>;

    /// The offset the next record appended to `partition` will get.
    ///
    /// # Errors
    /// [`LogError::NoSuchPartition`], [`LogError::Storage`].
    async fn end_offset(&self, partition: u32) -> Result<Offset, LogError>;

    /// Records that consumer `group` has processed `partition` up to (excluding) `offset`.
    ///
    /// # Errors
    /// [`LogError::Storage`].
    async fn commit(&self, group: &str, partition: u32, offset: Offset) -> Result<(), LogError>;

    /// The position last committed by `group` for `partition`.
    ///
    /// # Errors
    /// [`LogError::Storage`].
    async fn committed(&self, group: &str, partition: u32) -> Result<Option<Offset>, LogError>;

    /// Deletes the records of `partition` below `before`, but never past the lowest position
    /// committed by any consumer group; returns how many records were deleted.
    ///
    /// # Errors
    /// [`LogError::Storage`].
    async fn truncate(&self, partition: u32, before: Offset) -> Result<u64, LogError>;

    /// The offset past the last record this process knows it appended to `partition`, if the
    /// backend keeps track (the Kafka log does, from its delivery reports): records of a later
    /// append land at or after it. The spool uses it to find out whether a failed append
    /// reached the log after all.
    fn appended_through(&self, partition: u32) -> Option<Offset> {
        let _ = partition;
        None
    }

    /// Joins consumer group `group` (see [`group`]): the returned membership says which
    /// partitions this process consumes. By default the process is the group's only member
    /// and owns every partition.
    ///
    /// # Errors
    /// [`LogError::Storage`] when the group cannot be joined (the caller retries).
    async fn join(&self, group: &str) -> Result<Box<dyn group::Membership>, LogError> {
        let _ = group;
        Ok(Box::new(group::SoleMember::new(self.partitions())))
    }

    /// Whether the log can take appends, as far as can be told without writing (for
    /// readiness probes): for the embedded log, its writer thread is running; by default, the
    /// log answers.
    ///
    /// # Errors
    /// [`LogError::Closed`], or the backend's own error.
    async fn check_writable(&self) -> Result<(), LogError> {
        self.end_offset(0).await.map(|_| ())
    }
}

/// Default partitioner: a multiplicative hash of the key (Knuth's 2^64/φ constant) reduced to
/// `partitions`, so consecutive site ids spread evenly.
pub fn partition_for(key: u64, partitions: u32) -> u32 {
    let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((h >> 32) % u64::from(partitions.max(1))) as u32
}
