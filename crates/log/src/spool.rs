//! A bounded spool on local disk in front of a remote log: the buffer that a fluentd sidecar
//! keeps in the original architecture, so that the collector keeps accepting while Kafka is
//! unreachable (DESIGN R4: acknowledged means kept).
//!
//! - While the spool is empty, [`Log::append`] goes straight to the inner log. When that
//!   fails, the records are written to the spool instead (a `redb` file, committed with fsync
//!   before the append returns), and the append succeeds: the collector answers `2xx`.
//! - While the spool holds anything, every append goes to the spool, behind what is there,
//!   so that the spool drains in the order it was filled.
//! - A drainer task appends the oldest spooled batches to the inner log, up to 1,000 batches
//!   or 8 MiB in one append (so it drains faster than requests arrive one at a time), deletes
//!   them once the inner log has them, and goes on until the spool is empty; while the inner
//!   log keeps failing it retries every `retry_interval`. A spool left by a stopped process is
//!   drained when the next one starts. A batch that does not decode (disk damage) is dropped
//!   and counted in `footfall_spool_damaged_batches_total` rather than stopping the drain.
//! - Past `max_bytes` of spooled payload, appends fail with [`LogError::Overloaded`], which
//!   the collector answers with `503` and `Retry-After`: never `2xx` for an event it could not
//!   keep.
//! - Everything else (reads, offsets, commits, sequenced appends of imports, which retry on
//!   their own) goes to the inner log.
//!
//! - A direct append that failed may still have reached the log: a broker that hung while
//!   holding the request can append it when it resumes, after the producer gave up. Such a
//!   batch is spooled as **uncertain**, with the offset past the last record the inner log is
//!   known to have appended to each of its partitions ([`Log::appended_through`]). Before the
//!   drainer appends it, it reads those partitions from there and leaves out every record
//!   already in the log (byte-equal payload; an encoded event carries its receipt time in µs
//!   and its visitor, so two distinct events are not byte-equal in practice).
//!
//! Limit: a batch that the inner log took but whose deletion from the spool did not happen (a
//! crash in between) is appended again by the next drainer (rare; duplicates rather than
//! loses).
//!
//! Written here rather than taken from a library because it is a thin ordering rule over an
//! embedded database (`redb`), specific to the [`Log`] contract.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use tokio::sync::{Mutex, Notify};

use crate::{AppendOutcome, Entry, Log, LogError, Offset, Record};

/// Spooled batches by sequence number (the order they were spooled in).
const BATCHES: TableDefinition<u64, &[u8]> = TableDefinition::new("batches");
/// Uncertain batches (see the module docs): sequence number → for each partition of the
/// batch, (partition u32, offset u64) little endian, where to start looking for its records.
const UNCERTAIN: TableDefinition<u64, &[u8]> = TableDefinition::new("uncertain");

/// Most records read back to look for an uncertain batch's records in one partition; past
/// it the batch is appended as it is (and may be in the log twice).
const PROBE_LIMIT: u64 = 1_000_000;

/// Where the spool lives and how much it may hold.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// The spool file (created if missing).
    pub path: PathBuf,
    /// Most bytes of spooled records (keys and payloads) before appends fail.
    pub max_bytes: u64,
    /// How long the drainer waits before trying the inner log again after a failure.
    pub retry_interval: Duration,
}

struct State {
    /// Spooled batches and their bytes.
    batches: u64,
    bytes: u64,
    next_seq: u64,
}

/// A log whose appends fall back to a local spool; see the module docs.
pub struct SpooledLog<L: Log> {
    inner: Arc<L>,
    db: Arc<Database>,
    state: Arc<Mutex<State>>,
    spooled: Arc<Notify>,
    max_bytes: u64,
    drainer: tokio::task::JoinHandle<()>,
}

fn storage(e: impl std::fmt::Display) -> LogError {
    LogError::Storage(format!("spool: {e}"))
}

/// Record batch encoding: for each record its key (u64), payload length (u32) and payload,
/// little endian.
fn encode(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(|r| 12 + r.payload.len()).sum());
    for r in records {
        out.extend_from_slice(&r.key.to_le_bytes());
        out.extend_from_slice(&(r.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&r.payload);
    }
    out
}

fn decode(mut bytes: &[u8]) -> Result<Vec<Record>, LogError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let bad = || storage("a spooled batch is damaged");
        let key = u64::from_le_bytes(
            bytes
                .get(..8)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        );
        let len = u32::from_le_bytes(
            bytes
                .get(8..12)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?,
        ) as usize;
        let payload = bytes.get(12..12 + len).ok_or_else(bad)?.to_vec();
        out.push(Record { key, payload });
        bytes = &bytes[12 + len..];
    }
    Ok(out)
}

impl<L: Log> SpooledLog<L> {
    /// Opens (or creates) the spool in front of `inner` and starts its drainer, which first
    /// drains what an earlier process left.
    ///
    /// # Errors
    /// [`LogError::Open`] when the spool file cannot be opened (in use by another process,
    /// unreadable).
    pub fn open(inner: Arc<L>, config: &SpoolConfig) -> Result<SpooledLog<L>, LogError> {
        let open_err = |reason: String| LogError::Open {
            path: config.path.display().to_string(),
            reason,
        };
        if let Some(dir) = config.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        }
        let db = Database::create(&config.path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                open_err("the spool is in use by another process".into())
            }
            other => open_err(other.to_string()),
        })?;
        let (batches, bytes, next_seq) = (|| -> Result<(u64, u64, u64), String> {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            let found = {
                txn.open_table(UNCERTAIN).map_err(|e| e.to_string())?;
                let table = txn.open_table(BATCHES).map_err(|e| e.to_string())?;
                let mut bytes = 0;
                for item in table.iter().map_err(|e| e.to_string())? {
                    let (_, v) = item.map_err(|e| e.to_string())?;
                    bytes += v.value().len() as u64;
                }
                let last = table
                    .last()
                    .map_err(|e| e.to_string())?
                    .map_or(0, |(k, _)| k.value() + 1);
                (table.len().map_err(|e| e.to_string())?, bytes, last)
            };
            txn.commit().map_err(|e| e.to_string())?;
            Ok(found)
        })()
        .map_err(open_err)?;
        if batches > 0 {
            tracing::warn!(
                batches,
                bytes,
                "the spool holds events from before; draining them to the log"
            );
        }
        // Exported from the start (docs/metrics.md).
        for name in [
            "footfall_spool_refused_total",
            "footfall_spool_late_deliveries_total",
            "footfall_spool_damaged_batches_total",
        ] {
            metrics::counter!(name).increment(0);
        }
        metrics::gauge!("footfall_spool_bytes").set(bytes as f64);
        let db = Arc::new(db);
        let state = Arc::new(Mutex::new(State {
            batches,
            bytes,
            next_seq,
        }));
        let spooled = Arc::new(Notify::new());
        let drainer = tokio::spawn(drain(
            inner.clone(),
            db.clone(),
            state.clone(),
            spooled.clone(),
            config.retry_interval,
        ));
        Ok(SpooledLog {
            inner,
            db,
            state,
            spooled,
            max_bytes: config.max_bytes,
            drainer,
        })
    }

    /// Batches and bytes waiting in the spool.
    pub async fn backlog(&self) -> (u64, u64) {
        let s = self.state.lock().await;
        (s.batches, s.bytes)
    }

    /// Writes `records` to the spool behind what is there. The write and the bookkeeping run
    /// in a task of their own, so that a request dropped halfway (a client that hangs up) can
    /// never leave a committed batch that the counters and the sequence numbers do not know.
    async fn spool(&self, records: &[Record]) -> Result<(), LogError> {
        self.spool_uncertain(records, None).await
    }

    /// [`Self::spool`], marking the batch uncertain when `probe` is given.
    async fn spool_uncertain(
        &self,
        records: &[Record],
        probe: Option<Vec<(u32, u64)>>,
    ) -> Result<(), LogError> {
        let bytes = encode(records);
        let probe = probe.map(|ps| {
            ps.iter()
                .flat_map(|(p, o)| p.to_le_bytes().into_iter().chain(o.to_le_bytes()))
                .collect::<Vec<u8>>()
        });
        let (db, state, spooled, max_bytes) = (
            self.db.clone(),
            self.state.clone(),
            self.spooled.clone(),
            self.max_bytes,
        );
        let events = records.len() as u64;
        tokio::spawn(async move {
            let mut state = state.lock().await;
            let len = bytes.len() as u64;
            if state.bytes + len > max_bytes {
                metrics::counter!("footfall_spool_refused_total").increment(events);
                return Err(LogError::Overloaded);
            }
            let seq = state.next_seq;
            tokio::task::spawn_blocking(move || -> Result<(), LogError> {
                let mut txn = db.begin_write().map_err(storage)?;
                txn.set_durability(Durability::Immediate).map_err(storage)?;
                {
                    let mut table = txn.open_table(BATCHES).map_err(storage)?;
                    table.insert(seq, bytes.as_slice()).map_err(storage)?;
                    if let Some(probe) = &probe {
                        let mut uncertain = txn.open_table(UNCERTAIN).map_err(storage)?;
                        uncertain.insert(seq, probe.as_slice()).map_err(storage)?;
                    }
                }
                txn.commit().map_err(storage)
            })
            .await
            .map_err(storage)??;
            state.next_seq += 1;
            state.batches += 1;
            state.bytes += len;
            metrics::gauge!("footfall_spool_bytes").set(state.bytes as f64);
            spooled.notify_one();
            Ok(())
        })
        .await
        .map_err(storage)?
    }
}

impl<L: Log> Drop for SpooledLog<L> {
    fn drop(&mut self) {
        self.drainer.abort();
    }
}

/// Most spooled batches (and bytes) the drainer hands to the inner log in one append, so that
/// the spool drains faster than one request at a time while traffic keeps arriving.
const DRAIN_BATCHES: usize = 1_000;
const DRAIN_BYTES: usize = 8 << 20;

/// A spooled batch: sequence number, encoded records, and where to look for them when the
/// batch is uncertain.
type SpooledBatch = (u64, Vec<u8>, Option<Vec<(u32, u64)>>);

fn decode_probe(bytes: &[u8]) -> Vec<(u32, u64)> {
    bytes
        .chunks_exact(12)
        .filter_map(|c| {
            let p = u32::from_le_bytes(c[..4].try_into().ok()?);
            let o = u64::from_le_bytes(c[4..].try_into().ok()?);
            Some((p, o))
        })
        .collect()
}

/// The records of an uncertain batch that are not in the log yet: each partition named in
/// `probe` is read from its offset to its end, and records found there are left out
/// (partitions not named, or too far behind, are not read: their records are kept).
async fn not_yet_appended<L: Log>(
    inner: &L,
    records: Vec<Record>,
    probe: &[(u32, u64)],
) -> Result<Vec<Record>, LogError> {
    let mut found: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
    for &(partition, from) in probe {
        let end = inner.end_offset(partition).await?;
        if end.saturating_sub(from) > PROBE_LIMIT {
            tracing::warn!(
                partition,
                from,
                end,
                "an uncertain batch is too far behind to look for; appending it as it is"
            );
            continue;
        }
        let wanted: std::collections::HashSet<&[u8]> = records
            .iter()
            .filter(|r| inner.partition_for(r.key) == partition)
            .map(|r| r.payload.as_slice())
            .collect();
        let mut at = from;
        while at < end {
            let entries = inner
                .read(partition, at, 5000, Duration::from_millis(100))
                .await?;
            let Some(last) = entries.last() else { break };
            at = last.offset + 1;
            for e in entries {
                if wanted.contains(e.payload.as_slice()) {
                    found.insert(e.payload);
                }
            }
        }
    }
    if !found.is_empty() {
        tracing::warn!(
            records = found.len(),
            "records of a failed append had reached the log after all; they are not appended again"
        );
        metrics::counter!("footfall_spool_late_deliveries_total").increment(found.len() as u64);
    }
    Ok(records
        .into_iter()
        .filter(|r| !found.contains(&r.payload))
        .collect())
}

/// Appends spooled batches to `inner`, oldest first and many at a time, until the spool is
/// empty; then waits to be told of the next one.
async fn drain<L: Log>(
    inner: Arc<L>,
    db: Arc<Database>,
    state: Arc<Mutex<State>>,
    spooled: Arc<Notify>,
    retry_interval: Duration,
) {
    loop {
        let oldest = {
            let db = db.clone();
            tokio::task::spawn_blocking(move || -> Result<Vec<SpooledBatch>, LogError> {
                let txn = db.begin_read().map_err(storage)?;
                let table = txn.open_table(BATCHES).map_err(storage)?;
                let uncertain = txn.open_table(UNCERTAIN).map_err(storage)?;
                let mut out = Vec::new();
                let mut size = 0;
                for item in table.iter().map_err(storage)? {
                    let (k, v) = item.map_err(storage)?;
                    size += v.value().len();
                    let probe = uncertain
                        .get(k.value())
                        .map_err(storage)?
                        .map(|p| decode_probe(p.value()));
                    out.push((k.value(), v.value().to_vec(), probe));
                    if out.len() >= DRAIN_BATCHES || size >= DRAIN_BYTES {
                        break;
                    }
                }
                Ok(out)
            })
            .await
        };
        let batches = match oldest {
            Ok(Ok(b)) if b.is_empty() => {
                spooled.notified().await;
                continue;
            }
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reading the spool failed; retrying");
                tokio::time::sleep(retry_interval).await;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the spool failed; retrying");
                tokio::time::sleep(retry_interval).await;
                continue;
            }
        };
        let mut records = Vec::new();
        let mut size = 0u64;
        let mut probe_failed = false;
        for (seq, bytes, probe) in &batches {
            size += bytes.len() as u64;
            match decode(bytes) {
                Ok(r) => match probe {
                    None => records.extend(r),
                    Some(probe) => match not_yet_appended(inner.as_ref(), r, probe).await {
                        Ok(r) => records.extend(r),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot read the log back for an uncertain batch; retrying");
                            probe_failed = true;
                            break;
                        }
                    },
                },
                // Only disk damage does this; such a batch can never be appended, and keeping
                // it would stop the drain for good.
                Err(e) => {
                    metrics::counter!("footfall_spool_damaged_batches_total").increment(1);
                    tracing::error!(seq, error = %e, "a spooled batch does not decode and is dropped");
                }
            }
        }
        if probe_failed {
            tokio::time::sleep(retry_interval).await;
            continue;
        }
        if !records.is_empty() {
            if let Err(e) = inner.append(records).await {
                tracing::warn!(error = %e, "the log still refuses appends; the spool keeps its events");
                tokio::time::sleep(retry_interval).await;
                continue;
            }
        }
        // Delete under the state lock, so that an append deciding whether the spool is
        // empty sees the deletion and the count together.
        let mut s = state.lock().await;
        let seqs: Vec<u64> = batches.iter().map(|(seq, _, _)| *seq).collect();
        let removed = {
            let db = db.clone();
            tokio::task::spawn_blocking(move || -> Result<(), LogError> {
                let mut txn = db.begin_write().map_err(storage)?;
                txn.set_durability(Durability::Immediate).map_err(storage)?;
                {
                    let mut table = txn.open_table(BATCHES).map_err(storage)?;
                    let mut uncertain = txn.open_table(UNCERTAIN).map_err(storage)?;
                    for seq in seqs {
                        table.remove(seq).map_err(storage)?;
                        uncertain.remove(seq).map_err(storage)?;
                    }
                }
                txn.commit().map_err(storage)
            })
            .await
            .map_err(storage)
            .and_then(|r| r)
        };
        match removed {
            Ok(()) => {
                s.batches = s.batches.saturating_sub(batches.len() as u64);
                s.bytes = s.bytes.saturating_sub(size);
                metrics::gauge!("footfall_spool_bytes").set(s.bytes as f64);
                if s.batches == 0 {
                    tracing::info!("the spool is drained");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "deleting drained batches from the spool failed; they will be appended again");
                drop(s);
                tokio::time::sleep(retry_interval).await;
            }
        }
    }
}

#[async_trait]
impl<L: Log> Log for SpooledLog<L> {
    fn partitions(&self) -> u32 {
        self.inner.partitions()
    }

    fn partition_for(&self, key: u64) -> u32 {
        self.inner.partition_for(key)
    }

    async fn append(&self, records: Vec<Record>) -> Result<(), LogError> {
        // (An append that finds the spool empty while another is being spooled may reach the
        // log first: that only reorders requests that were in flight together.)
        if self.state.lock().await.batches > 0 {
            return self.spool(&records).await;
        }
        // Where this append's records can land at the earliest, should its outcome be unknown.
        let mut probe: Vec<(u32, u64)> = Vec::new();
        for r in &records {
            let p = self.inner.partition_for(r.key);
            if !probe.iter().any(|(q, _)| *q == p) {
                if let Some(from) = self.inner.appended_through(p) {
                    probe.push((p, from));
                }
            }
        }
        match self.inner.append(records.clone()).await {
            Ok(()) => Ok(()),
            Err(LogError::NoSuchPartition(p)) => Err(LogError::NoSuchPartition(p)),
            Err(e) => {
                tracing::warn!(error = %e, "the log refused an append; spooling it");
                self.spool_uncertain(&records, Some(probe)).await
            }
        }
    }

    async fn append_sequenced(
        &self,
        producer: &str,
        sequence: u64,
        records: Vec<Record>,
    ) -> Result<AppendOutcome, LogError> {
        self.inner
            .append_sequenced(producer, sequence, records)
            .await
    }

    async fn producer_sequence(&self, producer: &str) -> Result<Option<u64>, LogError> {
        self.inner.producer_sequence(producer).await
    }

    async fn read(
        &self,
        partition: u32,
        from: Offset,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Entry>, LogError> {
        self.inner.read(partition, from, max, wait).await
    }

    async fn end_offset(&self, partition: u32) -> Result<Offset, LogError> {
        self.inner.end_offset(partition).await
    }

    async fn commit(&self, group: &str, partition: u32, offset: Offset) -> Result<(), LogError> {
        self.inner.commit(group, partition, offset).await
    }

    async fn committed(&self, group: &str, partition: u32) -> Result<Option<Offset>, LogError> {
        self.inner.committed(group, partition).await
    }

    async fn truncate(&self, partition: u32, before: Offset) -> Result<u64, LogError> {
        self.inner.truncate(partition, before).await
    }

    fn appended_through(&self, partition: u32) -> Option<Offset> {
        self.inner.appended_through(partition)
    }

    async fn join(&self, group: &str) -> Result<Box<dyn crate::group::Membership>, LogError> {
        self.inner.join(group).await
    }

    async fn check_writable(&self) -> Result<(), LogError> {
        // Writable while the spool has room, whether or not the inner log answers.
        let s = self.state.lock().await;
        if s.bytes < self.max_bytes {
            Ok(())
        } else {
            Err(LogError::Overloaded)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::{EmbeddedLog, EmbeddedLogConfig};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// An embedded log that refuses appends while `down`; while `ghost`, it keeps an append
    /// and yet reports it failed (a broker that answered too late).
    struct Flaky {
        inner: EmbeddedLog,
        down: AtomicBool,
        ghost: AtomicBool,
        /// Offset past the last append it reported as done (one partition is used).
        through: std::sync::atomic::AtomicU64,
    }

    #[async_trait]
    impl Log for Flaky {
        fn partitions(&self) -> u32 {
            self.inner.partitions()
        }
        async fn append(&self, records: Vec<Record>) -> Result<(), LogError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(LogError::Storage("broker unreachable".into()));
            }
            let p = self.partition_for(records[0].key);
            self.inner.append(records).await?;
            if self.ghost.load(Ordering::SeqCst) {
                return Err(LogError::Storage("delivery timed out".into()));
            }
            let end = self.inner.end_offset(p).await?;
            self.through.store(end, Ordering::SeqCst);
            Ok(())
        }
        fn appended_through(&self, _p: u32) -> Option<Offset> {
            Some(self.through.load(Ordering::SeqCst))
        }
        async fn append_sequenced(
            &self,
            p: &str,
            s: u64,
            r: Vec<Record>,
        ) -> Result<AppendOutcome, LogError> {
            self.inner.append_sequenced(p, s, r).await
        }
        async fn producer_sequence(&self, p: &str) -> Result<Option<u64>, LogError> {
            self.inner.producer_sequence(p).await
        }
        async fn read(
            &self,
            p: u32,
            f: Offset,
            m: usize,
            w: Duration,
        ) -> Result<Vec<Entry>, LogError> {
            self.inner.read(p, f, m, w).await
        }
        async fn end_offset(&self, p: u32) -> Result<Offset, LogError> {
            self.inner.end_offset(p).await
        }
        async fn commit(&self, g: &str, p: u32, o: Offset) -> Result<(), LogError> {
            self.inner.commit(g, p, o).await
        }
        async fn committed(&self, g: &str, p: u32) -> Result<Option<Offset>, LogError> {
            self.inner.committed(g, p).await
        }
        async fn truncate(&self, p: u32, b: Offset) -> Result<u64, LogError> {
            self.inner.truncate(p, b).await
        }
    }

    fn rec(n: u32) -> Record {
        Record {
            key: 7,
            payload: format!("event-{n}").into_bytes(),
        }
    }

    async fn payloads(log: &impl Log) -> Vec<String> {
        let p = log.partition_for(7);
        log.read(p, 0, 1000, Duration::ZERO)
            .await
            .unwrap()
            .into_iter()
            .map(|e| String::from_utf8(e.payload).unwrap())
            .collect()
    }

    impl Flaky {
        /// A working embedded log of `partitions` in `dir`, to be made to fail.
        fn over(dir: &std::path::Path, partitions: u32) -> Arc<Flaky> {
            Arc::new(Flaky {
                inner: EmbeddedLog::open(&EmbeddedLogConfig {
                    path: dir.join("log.redb"),
                    partitions,
                    commit_linger: Duration::ZERO,
                    cache_bytes: 1 << 20,
                })
                .unwrap(),
                down: AtomicBool::new(false),
                ghost: AtomicBool::new(false),
                through: std::sync::atomic::AtomicU64::new(0),
            })
        }
    }

    fn config(dir: &std::path::Path, max_bytes: u64) -> SpoolConfig {
        SpoolConfig {
            path: dir.join("spool.redb"),
            max_bytes,
            retry_interval: Duration::from_millis(20),
        }
    }

    #[tokio::test]
    async fn an_outage_is_spooled_drained_in_order_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let inner = Flaky::over(dir.path(), 2);
        // Each record is 8 + 4 + 7 = 19 bytes ("event-N" for one-digit N): room for 4.
        let log = SpooledLog::open(inner.clone(), &config(dir.path(), 4 * 19)).unwrap();
        log.append(vec![rec(1)]).await.unwrap();
        inner.down.store(true, Ordering::SeqCst);
        log.append(vec![rec(2)]).await.unwrap();
        log.append(vec![rec(3), rec(4)]).await.unwrap();
        log.append(vec![rec(5)]).await.unwrap();
        assert_eq!(log.backlog().await, (3, 4 * 19));
        // Full: refused, not acknowledged.
        assert!(matches!(
            log.append(vec![rec(6)]).await,
            Err(LogError::Overloaded)
        ));
        assert!(log.check_writable().await.is_err());
        assert_eq!(payloads(inner.as_ref()).await, ["event-1"]);
        inner.down.store(false, Ordering::SeqCst);
        // Appended once the broker is back: behind the spooled events whether it is spooled
        // (the drainer has not caught up yet) or appended directly (it has).
        let mut appended = false;
        for _ in 0..200 {
            if !appended {
                appended = log.append(vec![rec(7)]).await.is_ok();
            }
            if appended && log.backlog().await.0 == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(log.backlog().await, (0, 0));
        assert_eq!(
            payloads(inner.as_ref()).await,
            ["event-1", "event-2", "event-3", "event-4", "event-5", "event-7"]
        );
    }

    #[tokio::test]
    async fn a_spool_left_by_a_stopped_process_is_drained_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let inner = Arc::new(Flaky {
            inner: EmbeddedLog::open(&EmbeddedLogConfig {
                path: dir.path().join("log.redb"),
                partitions: 2,
                commit_linger: Duration::ZERO,
                cache_bytes: 1 << 20,
            })
            .unwrap(),
            down: AtomicBool::new(true),
            ghost: AtomicBool::new(false),
            through: std::sync::atomic::AtomicU64::new(0),
        });
        {
            let log = SpooledLog::open(inner.clone(), &config(dir.path(), 1 << 20)).unwrap();
            log.append(vec![rec(1), rec(2)]).await.unwrap();
            assert_eq!(log.backlog().await.0, 1);
        }
        // The stopped drainer lets go of the spool file.
        tokio::time::sleep(Duration::from_millis(100)).await;
        inner.down.store(false, Ordering::SeqCst);
        let log = SpooledLog::open(inner.clone(), &config(dir.path(), 1 << 20)).unwrap();
        for _ in 0..200 {
            if log.backlog().await.0 == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(payloads(inner.as_ref()).await, ["event-1", "event-2"]);
    }

    #[test]
    fn batches_round_trip_and_damage_is_an_error() {
        let records = vec![
            rec(1),
            Record {
                key: u64::MAX,
                payload: Vec::new(),
            },
        ];
        assert_eq!(decode(&encode(&records)).unwrap(), records);
        let mut bytes = encode(&records);
        bytes.truncate(bytes.len() - 3);
        assert!(decode(&bytes[..15]).is_err());
    }

    #[tokio::test]
    async fn an_append_that_failed_but_reached_the_log_is_not_appended_twice() {
        let dir = tempfile::tempdir().unwrap();
        let inner = Flaky::over(dir.path(), 1);
        let log = SpooledLog::open(inner.clone(), &config(dir.path(), 1 << 20)).unwrap();
        log.append(vec![rec(1)]).await.unwrap();
        // The broker keeps event 2 but answers too late: the append fails and is spooled.
        inner.ghost.store(true, Ordering::SeqCst);
        log.append(vec![rec(2)]).await.unwrap();
        inner.ghost.store(false, Ordering::SeqCst);
        inner.down.store(true, Ordering::SeqCst);
        log.append(vec![rec(3)]).await.unwrap();
        inner.down.store(false, Ordering::SeqCst);
        for _ in 0..200 {
            if log.backlog().await.0 == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(log.backlog().await, (0, 0));
        assert_eq!(
            payloads(inner.as_ref()).await,
            ["event-1", "event-2", "event-3"]
        );
    }
}
