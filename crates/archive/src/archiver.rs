//! The archiver role: one task per log partition that reads the log independently of the
//! processor (consumer [`CONSUMER`]) and writes what it read to the [`Archive`].
//!
//! A task buffers events and writes them when `flush_interval` has passed since the buffer's
//! first event, when it holds `max_file_events`, or on shutdown; only after the files are
//! written does it save its position (a store checkpoint and a log commit), so an event is
//! never past the archiver's position without being in a file. A crash between the two
//! writes the same events again on restart; readers keep one row per (partition, offset).

use std::sync::Arc;
use std::time::Duration;

use footfall_log::{Log, Offset};
use footfall_model::event::Event;
use footfall_store::{Checkpoint, Store, WriteBatch};
use tokio_util::sync::CancellationToken;

use crate::{Archive, ArchivedEvent};

/// The consumer name of the archiver's checkpoints and log commits.
pub const CONSUMER: &str = "archiver";

/// How often a partition's archiver looks for closed hours to compact.
const COMPACT_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// How long after an hour of receipt ends (in the log's own receipt times) its files are
/// merged: 10 minutes, µs, ample for the skew between concurrent collectors.
const COMPACT_AFTER_US: i64 = 600_000_000;

/// Settings of the archiver.
#[derive(Debug, Clone)]
pub struct ArchiverConfig {
    /// Longest time an event waits in memory before it is written, which is also the age of
    /// the newest data a reprocess can read from the archive alone.
    pub flush_interval: Duration,
    /// Most events per written batch (a batch is split into one file per hour of receipt).
    pub max_file_events: usize,
    /// Most records read from the log at once.
    pub batch_size: usize,
}

impl Default for ArchiverConfig {
    fn default() -> Self {
        ArchiverConfig {
            flush_interval: Duration::from_secs(60),
            max_file_events: 200_000,
            batch_size: 5000,
        }
    }
}

/// Runs one supervised task per partition this process owns in consumer group [`CONSUMER`]
/// (see `footfall_log::group`) until `shutdown`; each writes what it holds before it returns,
/// also when its partition is revoked. A failing task is logged and restarted from its last
/// position.
pub async fn run(
    log: Arc<dyn Log>,
    store: Arc<dyn Store>,
    archive: Archive,
    config: ArchiverConfig,
    shutdown: CancellationToken,
) {
    // Exported at 0 from the start (docs/metrics.md).
    for name in [
        "footfall_archive_events_written_total",
        "footfall_archive_bytes_written_total",
        "footfall_archiver_restarts_total",
        "footfall_archiver_undecodable_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    let start = {
        let log = log.clone();
        move |partition, shutdown: CancellationToken| {
            let task = PartitionArchiver {
                partition,
                log: log.clone(),
                store: store.clone(),
                archive: archive.clone(),
                config: config.clone(),
            };
            async move {
                let mut backoff = Duration::from_millis(200);
                loop {
                    let t = task.clone();
                    let s = shutdown.clone();
                    match tokio_util::task::AbortOnDropHandle::new(tokio::spawn(t.run(s))).await {
                        Ok(Ok(())) => return,
                        Ok(Err(e)) => {
                            tracing::error!(partition, error = %e, "archiver partition failed; restarting from its position");
                        }
                        Err(e) => {
                            tracing::error!(partition, error = %e, "archiver partition panicked; restarting from its position");
                        }
                    }
                    metrics::counter!("footfall_archiver_restarts_total").increment(1);
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    };
    footfall_log::group::consume_owned(log, CONSUMER, shutdown, start).await;
}

#[derive(Clone)]
struct PartitionArchiver {
    partition: u32,
    log: Arc<dyn Log>,
    store: Arc<dyn Store>,
    archive: Archive,
    config: ArchiverConfig,
}

impl PartitionArchiver {
    async fn run(self, shutdown: CancellationToken) -> Result<(), String> {
        let p = self.partition;
        let mut offset: Offset = self
            .store
            .restore_checkpoint(CONSUMER, p)
            .await
            .map_err(|e| e.to_string())?
            .map_or(0, |c| c.offset);
        let mut saved = offset;
        let mut buffer: Vec<ArchivedEvent> = Vec::new();
        let mut oldest: Option<tokio::time::Instant> = None;
        let mut drain_until: Option<Offset> = None;
        // Latest receipt time read; an hour of receipt is closed once this is past its end
        // by COMPACT_AFTER_US, and its small files are then merged.
        let mut watermark_us = i64::MIN;
        let mut last_compaction = tokio::time::Instant::now();
        loop {
            let draining = shutdown.is_cancelled();
            if draining && drain_until.is_none() {
                drain_until = Some(self.log.end_offset(p).await.unwrap_or(offset));
            }
            let drained = drain_until.is_some_and(|end| offset >= end);
            if !drained {
                let wait = if draining {
                    Duration::ZERO
                } else {
                    Duration::from_millis(500)
                };
                let read = tokio::select! {
                    r = self.log.read(p, offset, self.config.batch_size, wait) => r,
                    () = shutdown.cancelled(), if !draining => continue,
                };
                match read {
                    Ok(entries) => {
                        if draining && entries.is_empty() {
                            drain_until = Some(offset);
                        }
                        for entry in entries {
                            offset = entry.offset + 1;
                            match Event::decode(&entry.payload) {
                                Ok(event) => {
                                    watermark_us = watermark_us.max(event.received_at_us);
                                    oldest.get_or_insert_with(tokio::time::Instant::now);
                                    buffer.push(ArchivedEvent {
                                        partition: p,
                                        offset: entry.offset,
                                        event,
                                    });
                                }
                                Err(e) => {
                                    tracing::warn!(partition = p, offset = entry.offset, error = %e, "log record does not decode; not archived");
                                    metrics::counter!("footfall_archiver_undecodable_total")
                                        .increment(1);
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(partition = p, error = %e, "log read failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            let due = oldest.is_some_and(|t| t.elapsed() >= self.config.flush_interval)
                || buffer.len() >= self.config.max_file_events;
            let done = drain_until.is_some_and(|end| offset >= end);
            if due || (done && (offset > saved || !buffer.is_empty())) {
                self.flush(&mut buffer, offset).await?;
                saved = offset;
                oldest = None;
                if !draining && last_compaction.elapsed() >= COMPACT_EVERY {
                    last_compaction = tokio::time::Instant::now();
                    match self
                        .archive
                        .compact(p, watermark_us.saturating_sub(COMPACT_AFTER_US))
                        .await
                    {
                        Ok(0) => {}
                        Ok(n) => {
                            tracing::info!(partition = p, files = n, "archive hours compacted")
                        }
                        Err(e) => {
                            tracing::warn!(partition = p, error = %e, "archive compaction failed; retrying later")
                        }
                    }
                }
            }
            if done {
                // The partition is another process's now (or none's): this one's lag series
                // stops counting, at 0.
                metrics::gauge!("footfall_log_consumer_lag_records", "group" => CONSUMER, "partition" => p.to_string())
                    .set(0.0);
                return Ok(());
            }
        }
    }

    /// Writes the buffer, then saves `offset` as the archiver's position.
    async fn flush(&self, buffer: &mut Vec<ArchivedEvent>, offset: Offset) -> Result<(), String> {
        if !buffer.is_empty() {
            let files = self
                .archive
                .write(buffer)
                .await
                .map_err(|e| e.to_string())?;
            tracing::debug!(
                partition = self.partition,
                files = files.len(),
                events = buffer.len(),
                "archived"
            );
            buffer.clear();
        }
        self.store
            .write_batch(Arc::new(WriteBatch {
                consumer: CONSUMER.to_string(),
                checkpoints: vec![Checkpoint {
                    partition: self.partition,
                    offset,
                    complete_through_us: 0,
                }],
                ..Default::default()
            }))
            .await
            .map_err(|e| e.to_string())?;
        if let Err(e) = self.log.commit(CONSUMER, self.partition, offset).await {
            tracing::warn!(partition = self.partition, error = %e, "archiver log commit failed");
        }
        metrics::gauge!("footfall_archiver_offset", "partition" => self.partition.to_string())
            .set(offset as f64);
        // Consumer lag: records appended to the partition that are not in a file yet.
        if let Ok(end) = self.log.end_offset(self.partition).await {
            metrics::gauge!("footfall_log_consumer_lag_records", "group" => CONSUMER, "partition" => self.partition.to_string())
                .set(end.saturating_sub(offset) as f64);
        }
        Ok(())
    }
}
