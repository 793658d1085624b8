//! The embedded log: one `redb` database file holding every partition.
//!
//! `redb` (a well-kept, ACID, copy-on-write B-tree engine) stores records under the key
//! `(partition, offset)`. A single writer thread performs **group commit**: it takes every
//! append request that is waiting (optionally lingering for more, see
//! [`EmbeddedLogConfig::commit_linger`]), writes them in one transaction, commits once with
//! fsync, and then answers all of them. Concurrent requests therefore
//! share the cost of a commit, and no request is answered before its records are durable.
//!
//! Layout (tables): `records (u32 partition, u64 offset) -> bytes`; `next_offsets u32 -> u64`;
//! `groups (group, partition) -> u64`; `producers producer -> u64`; `meta name -> u64`
//! (holds the partition count, which cannot change once the log exists: a changed count
//! would move sites to other partitions and break per-site order).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{oneshot, Notify};

use crate::{AppendOutcome, Entry, Log, LogError, Offset, Record};

const RECORDS: TableDefinition<(u32, u64), &[u8]> = TableDefinition::new("records");
const NEXT_OFFSETS: TableDefinition<u32, u64> = TableDefinition::new("next_offsets");
const GROUPS: TableDefinition<(&str, u32), u64> = TableDefinition::new("groups");
const PRODUCERS: TableDefinition<&str, u64> = TableDefinition::new("producers");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Most records written in one group commit; more waiting requests go in the next one.
const MAX_GROUP_RECORDS: usize = 50_000;
/// Depth of the queue of append requests waiting for the writer; past it appends fail with
/// [`LogError::Overloaded`].
const QUEUE_DEPTH: usize = 4096;

/// Settings of [`EmbeddedLog::open`].
#[derive(Debug, Clone)]
pub struct EmbeddedLogConfig {
    /// The database file.
    pub path: PathBuf,
    /// Partition count; must equal the count the file was created with.
    pub partitions: u32,
    /// How long the writer waits after the first waiting request for more requests to join
    /// the same commit. Zero (the default) commits as soon as the writer is free, which
    /// already groups the requests that arrived during the previous commit; a few hundred µs
    /// trade latency for fewer fsyncs under heavy load. Every append is durable (fsynced)
    /// before it is answered whatever this is: there is deliberately no mode that
    /// acknowledges first, because readers would then see records a crash could take back.
    pub commit_linger: Duration,
    /// Bytes of the engine's page cache (bounds the log's share of memory).
    pub cache_bytes: usize,
}

struct AppendRequest {
    records: Vec<Record>,
    producer: Option<(String, u64)>,
    reply: oneshot::Sender<Result<AppendOutcome, LogError>>,
}

/// The embedded log; see the module docs.
pub struct EmbeddedLog {
    db: Arc<Database>,
    partitions: u32,
    sender: Mutex<Option<SyncSender<AppendRequest>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    appended: Arc<Notify>,
    ends: Arc<Mutex<Vec<u64>>>,
}

fn storage(e: impl std::fmt::Display) -> LogError {
    LogError::Storage(e.to_string())
}

impl EmbeddedLog {
    /// Opens (or creates) the log file and starts its writer thread.
    ///
    /// # Errors
    /// [`LogError::Open`] when the file cannot be opened (in use by another process, not a
    /// log file, unreadable) or was created with another partition count.
    pub fn open(config: &EmbeddedLogConfig) -> Result<EmbeddedLog, LogError> {
        let open_err = |reason: String| LogError::Open {
            path: config.path.display().to_string(),
            reason,
        };
        if config.partitions == 0 {
            return Err(open_err("the partition count must be at least 1".into()));
        }
        if let Some(dir) = config.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        }
        let db = Database::builder()
            .set_cache_size(config.cache_bytes)
            .create(&config.path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => open_err(
                    "it is in use by another process (is `footfall serve` running?)".into(),
                ),
                other => open_err(other.to_string()),
            })?;
        let ends = init_tables(&db, config.partitions).map_err(|e| open_err(e.to_string()))?;
        let db = Arc::new(db);
        let ends = Arc::new(Mutex::new(ends));
        let appended = Arc::new(Notify::new());
        let (tx, rx) = mpsc::sync_channel(QUEUE_DEPTH);
        let writer = {
            let (db, ends, appended, linger) = (
                db.clone(),
                ends.clone(),
                appended.clone(),
                config.commit_linger,
            );
            let partitions = config.partitions;
            std::thread::Builder::new()
                .name("footfall-log-writer".into())
                .spawn(move || writer_loop(&db, partitions, &ends, &appended, linger, &rx))
                .map_err(|e| open_err(e.to_string()))?
        };
        Ok(EmbeddedLog {
            db,
            partitions: config.partitions,
            sender: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            appended,
            ends,
        })
    }

    /// Stops the writer after it has answered every queued request, and makes everything
    /// durable. Appends after this fail with [`LogError::Closed`].
    pub fn close(&self) {
        if let Ok(mut s) = self.sender.lock() {
            s.take();
        }
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    fn check_partition(&self, partition: u32) -> Result<(), LogError> {
        if partition < self.partitions {
            Ok(())
        } else {
            Err(LogError::NoSuchPartition(partition))
        }
    }

    async fn submit(
        &self,
        records: Vec<Record>,
        producer: Option<(String, u64)>,
    ) -> Result<AppendOutcome, LogError> {
        let (reply, rx) = oneshot::channel();
        let sender = self
            .sender
            .lock()
            .map_err(|_| LogError::Closed)?
            .clone()
            .ok_or(LogError::Closed)?;
        let request = AppendRequest {
            records,
            producer,
            reply,
        };
        // The queue is bounded: when the writer is that far behind, refuse rather than queue
        // without limit (the collector answers 503 with Retry-After).
        sender.try_send(request).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => LogError::Overloaded,
            mpsc::TrySendError::Disconnected(_) => LogError::Closed,
        })?;
        rx.await.map_err(|_| LogError::Closed)?
    }

    async fn read_now(
        &self,
        partition: u32,
        from: Offset,
        max: usize,
    ) -> Result<Vec<Entry>, LogError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<Entry>, LogError> {
            let txn = db.begin_read().map_err(storage)?;
            let table = match txn.open_table(RECORDS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(storage(e)),
            };
            let mut out = Vec::new();
            for item in table
                .range((partition, from)..=(partition, u64::MAX))
                .map_err(storage)?
                .take(max)
            {
                let (k, v) = item.map_err(storage)?;
                out.push(Entry {
                    offset: k.value().1,
                    payload: v.value().to_vec(),
                });
            }
            Ok(out)
        })
        .await
        .map_err(storage)?
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        self.close();
    }
}

fn init_tables(db: &Database, partitions: u32) -> Result<Vec<u64>, String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    let mut ends = vec![0u64; partitions as usize];
    {
        let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
        let existing = meta
            .get("partitions")
            .map_err(|e| e.to_string())?
            .map(|v| v.value());
        match existing {
            Some(p) if p != u64::from(partitions) => {
                return Err(format!("it was created with {p} partitions and the configuration asks for {partitions}; the partition count of an existing log cannot change"));
            }
            Some(_) => {}
            None => {
                meta.insert("partitions", u64::from(partitions))
                    .map_err(|e| e.to_string())?;
            }
        }
        txn.open_table(RECORDS).map_err(|e| e.to_string())?;
        txn.open_table(GROUPS).map_err(|e| e.to_string())?;
        txn.open_table(PRODUCERS).map_err(|e| e.to_string())?;
        let next = txn.open_table(NEXT_OFFSETS).map_err(|e| e.to_string())?;
        for (p, end) in ends.iter_mut().enumerate() {
            *end = next
                .get(p as u32)
                .map_err(|e| e.to_string())?
                .map_or(0, |v| v.value());
        }
    }
    txn.commit().map_err(|e| e.to_string())?;
    Ok(ends)
}

fn writer_loop(
    db: &Database,
    partitions: u32,
    ends: &Mutex<Vec<u64>>,
    appended: &Notify,
    linger: Duration,
    rx: &mpsc::Receiver<AppendRequest>,
) {
    let mut next: Vec<u64> = ends
        .lock()
        .map(|e| e.clone())
        .unwrap_or_else(|_| vec![0; partitions as usize]);
    loop {
        let Ok(first) = rx.recv() else { break };
        let mut count = first.records.len();
        let mut group = vec![first];
        let deadline = Instant::now() + linger;
        while count < MAX_GROUP_RECORDS {
            let more = match deadline.checked_duration_since(Instant::now()) {
                Some(wait) if !wait.is_zero() => rx
                    .recv_timeout(wait)
                    .map_err(|e| e == RecvTimeoutError::Disconnected),
                _ => rx
                    .try_recv()
                    .map_err(|e| e == mpsc::TryRecvError::Disconnected),
            };
            match more {
                Ok(r) => {
                    count += r.records.len();
                    group.push(r);
                }
                Err(_) => break,
            }
        }
        let before = next.clone();
        match write_group(db, partitions, &mut next, &group) {
            Ok(outcomes) => {
                if let Ok(mut e) = ends.lock() {
                    e.clone_from(&next);
                }
                for (req, outcome) in group.into_iter().zip(outcomes) {
                    let _ = req.reply.send(Ok(outcome));
                }
                appended.notify_waiters();
            }
            Err(e) => {
                tracing::error!(error = %e, "log group commit failed");
                next = before;
                for req in group {
                    let _ = req.reply.send(Err(LogError::Storage(e.clone())));
                }
            }
        }
    }
}

fn write_group(
    db: &Database,
    partitions: u32,
    next: &mut [u64],
    group: &[AppendRequest],
) -> Result<Vec<AppendOutcome>, String> {
    let mut txn = db.begin_write().map_err(|e| e.to_string())?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| e.to_string())?;
    txn.set_quick_repair(true);
    let mut outcomes = Vec::with_capacity(group.len());
    {
        let mut records = txn.open_table(RECORDS).map_err(|e| e.to_string())?;
        let mut producers = txn.open_table(PRODUCERS).map_err(|e| e.to_string())?;
        for req in group {
            if let Some((producer, seq)) = &req.producer {
                let last = producers
                    .get(producer.as_str())
                    .map_err(|e| e.to_string())?
                    .map(|v| v.value());
                if last.is_some_and(|l| l >= *seq) {
                    outcomes.push(AppendOutcome::Duplicate);
                    continue;
                }
                producers
                    .insert(producer.as_str(), *seq)
                    .map_err(|e| e.to_string())?;
            }
            for r in &req.records {
                let p = crate::partition_for(r.key, partitions);
                let offset = next[p as usize];
                records
                    .insert((p, offset), r.payload.as_slice())
                    .map_err(|e| e.to_string())?;
                next[p as usize] = offset + 1;
            }
            outcomes.push(AppendOutcome::Appended);
        }
        let mut offsets = txn.open_table(NEXT_OFFSETS).map_err(|e| e.to_string())?;
        for (p, n) in next.iter().enumerate() {
            offsets.insert(p as u32, *n).map_err(|e| e.to_string())?;
        }
    }
    txn.commit().map_err(|e| e.to_string())?;
    Ok(outcomes)
}

#[async_trait]
impl Log for EmbeddedLog {
    fn partitions(&self) -> u32 {
        self.partitions
    }

    async fn append(&self, records: Vec<Record>) -> Result<(), LogError> {
        if records.is_empty() {
            return Ok(());
        }
        self.submit(records, None).await.map(|_| ())
    }

    async fn append_sequenced(
        &self,
        producer: &str,
        sequence: u64,
        records: Vec<Record>,
    ) -> Result<AppendOutcome, LogError> {
        self.submit(records, Some((producer.to_string(), sequence)))
            .await
    }

    async fn producer_sequence(&self, producer: &str) -> Result<Option<u64>, LogError> {
        let db = self.db.clone();
        let producer = producer.to_string();
        tokio::task::spawn_blocking(move || -> Result<Option<u64>, LogError> {
            let txn = db.begin_read().map_err(storage)?;
            let t = txn.open_table(PRODUCERS).map_err(storage)?;
            Ok(t.get(producer.as_str())
                .map_err(storage)?
                .map(|v| v.value()))
        })
        .await
        .map_err(storage)?
    }

    async fn read(
        &self,
        partition: u32,
        from: Offset,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Entry>, LogError> {
        self.check_partition(partition)?;
        let notified = self.appended.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let entries = self.read_now(partition, from, max).await?;
        if !entries.is_empty() || wait.is_zero() {
            return Ok(entries);
        }
        let _ = tokio::time::timeout(wait, notified).await;
        self.read_now(partition, from, max).await
    }

    async fn check_writable(&self) -> Result<(), LogError> {
        let alive = self
            .writer
            .lock()
            .map_err(|_| LogError::Closed)?
            .as_ref()
            .is_some_and(|w| !w.is_finished());
        let sender = self.sender.lock().map_err(|_| LogError::Closed)?.clone();
        match sender {
            Some(_) if alive => Ok(()),
            _ => Err(LogError::Closed),
        }
    }

    async fn end_offset(&self, partition: u32) -> Result<Offset, LogError> {
        self.check_partition(partition)?;
        let ends = self.ends.lock().map_err(|_| LogError::Closed)?;
        Ok(ends[partition as usize])
    }

    async fn commit(&self, group: &str, partition: u32, offset: Offset) -> Result<(), LogError> {
        self.check_partition(partition)?;
        let db = self.db.clone();
        let group = group.to_string();
        tokio::task::spawn_blocking(move || -> Result<(), LogError> {
            let txn = db.begin_write().map_err(storage)?;
            txn.open_table(GROUPS)
                .map_err(storage)?
                .insert((group.as_str(), partition), offset)
                .map_err(storage)?;
            txn.commit().map_err(storage)
        })
        .await
        .map_err(storage)?
    }

    async fn committed(&self, group: &str, partition: u32) -> Result<Option<Offset>, LogError> {
        self.check_partition(partition)?;
        let db = self.db.clone();
        let group = group.to_string();
        tokio::task::spawn_blocking(move || -> Result<Option<Offset>, LogError> {
            let txn = db.begin_read().map_err(storage)?;
            let t = txn.open_table(GROUPS).map_err(storage)?;
            Ok(t.get((group.as_str(), partition))
                .map_err(storage)?
                .map(|v| v.value()))
        })
        .await
        .map_err(storage)?
    }

    async fn truncate(&self, partition: u32, before: Offset) -> Result<u64, LogError> {
        self.check_partition(partition)?;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || -> Result<u64, LogError> {
            let txn = db.begin_write().map_err(storage)?;
            let deleted;
            {
                let groups = txn.open_table(GROUPS).map_err(storage)?;
                let mut lowest: Option<u64> = None;
                for item in groups.iter().map_err(storage)? {
                    let (k, v) = item.map_err(storage)?;
                    if k.value().1 == partition {
                        lowest = Some(lowest.map_or(v.value(), |l: u64| l.min(v.value())));
                    }
                }
                let limit = lowest.map_or(0, |l| l.min(before));
                let mut records = txn.open_table(RECORDS).map_err(storage)?;
                let mut n = 0u64;
                records
                    .retain_in((partition, 0)..(partition, limit), |_, _| {
                        n += 1;
                        false
                    })
                    .map_err(storage)?;
                deleted = n;
            }
            txn.commit().map_err(storage)?;
            Ok(deleted)
        })
        .await
        .map_err(storage)?
    }
}

/// The default file of the embedded log under a data directory.
pub fn default_path(data_dir: &Path) -> PathBuf {
    data_dir.join("log").join("log.redb")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, partitions: u32) -> Result<EmbeddedLog, LogError> {
        EmbeddedLog::open(&EmbeddedLogConfig {
            path: dir.join("log.redb"),
            partitions,
            commit_linger: Duration::ZERO,
            cache_bytes: 16 << 20,
        })
    }

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 4).unwrap();
        crate::conformance::run_all(&log).await;
    }

    #[tokio::test]
    async fn records_survive_reopen_and_partition_count_is_fixed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = open(dir.path(), 2).unwrap();
            log.append(vec![
                Record {
                    key: 1,
                    payload: b"a".to_vec(),
                },
                Record {
                    key: 1,
                    payload: b"b".to_vec(),
                },
            ])
            .await
            .unwrap();
        }
        let log = open(dir.path(), 2).unwrap();
        let p = log.partition_for(1);
        assert_eq!(log.end_offset(p).await.unwrap(), 2);
        let got = log.read(p, 0, 10, Duration::ZERO).await.unwrap();
        assert_eq!(
            got.iter().map(|e| e.payload.clone()).collect::<Vec<_>>(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        drop(log);
        let err = open(dir.path(), 3).err().unwrap().to_string();
        assert!(err.contains("created with 2 partitions"), "{err}");
    }
}
