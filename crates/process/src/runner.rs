//! The streaming processor: one task per log partition.
//!
//! Each task restores its checkpoint and open visits from the store, then loops: read a batch
//! from the log, feed the engine, and every `flush_interval` turn the engine's deltas into
//! absolute cell values (reading cells it has not cached from the store) and write them, the
//! changed visits and the new checkpoint in one [`WriteBatch`]. Because the batch is atomic in
//! the embedded store and the engine is deterministic, a crash at any instant followed by a
//! restart from the checkpoint yields the cells of an uninterrupted run.
//!
//! When the store fails, the task keeps the batch and retries it with exponential backoff
//! (reading from the log pauses meanwhile); when a site's metadata cannot be read, the task
//! stops before that event and reads it again after a pause. The log position only ever
//! passes events that were processed, so nothing is dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use footfall_log::{Log, Offset};
use footfall_model::bucket::day_bucket;
use footfall_model::clock::Clock;
use footfall_model::event::Event;
use footfall_model::event::{Protocol, GENERATION_CUT};
use footfall_model::rollup::Granularity;
use footfall_model::rollup::{CellKey, CellValue};
use footfall_store::{
    Checkpoint, GenerationState, Mirror, Store, VisitWrite, WriteBatch, LIVE_GENERATION, MIRROR_BIT,
};
use indexmap::IndexMap;
use tokio_util::sync::CancellationToken;

use crate::cap::{Route, ValueCap};
use crate::engine::{Engine, FastHasher, SiteInfo};

/// The consumer name under which the processor keeps checkpoints and commits log positions.
pub const CONSUMER: &str = "processor";

/// Default of [`RunnerConfig::max_values_per_bucket`]: enough for every page of a large shop
/// in a day, small enough that a day's breakdown stays a few MB.
pub const DEFAULT_MAX_VALUES_PER_BUCKET: u64 = 10_000;

/// Settings of the streaming processor.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// How often cells and positions are flushed.
    pub flush_interval: Duration,
    /// Most records read from the log at once.
    pub batch_size: usize,
    /// Flush early when this many cells have pending deltas.
    pub max_pending_cells: usize,
    /// Cached absolute cell values kept between flushes; the cache is cleared past this.
    pub max_cached_cells: usize,
    /// How long site metadata (time zone, currency) is cached.
    pub site_refresh: Duration,
    /// Most open visits kept; past it, at a flush, the visits whose last event arrived
    /// earliest are ended early (down to 90 % of the bound) and counted in
    /// `footfall_processor_visits_ended_early_total`.
    pub max_open_visits: usize,
    /// Most distinct values per (site, bucket, dimension); new values past it are folded into
    /// `(other)` (see [`crate::cap`]).
    pub max_values_per_bucket: u64,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            flush_interval: Duration::from_secs(2),
            batch_size: 5000,
            max_pending_cells: 200_000,
            max_cached_cells: 500_000,
            site_refresh: Duration::from_secs(10),
            max_open_visits: 2_000_000,
            max_values_per_bucket: DEFAULT_MAX_VALUES_PER_BUCKET,
        }
    }
}

/// Errors that stop a partition task (it is then restarted from its checkpoint).
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The store failed while restoring state at start.
    #[error("cannot restore processor state: {0}")]
    Restore(#[from] footfall_store::StoreError),
}

/// Runs one supervised task per partition that this process owns in consumer group
/// [`CONSUMER`] (every partition with the embedded log; see [`footfall_log::group`]) until
/// `shutdown` is cancelled; each task flushes before it returns, also when its partition is
/// revoked. A task that fails or panics is logged, counted in
/// `footfall_processor_restarts_total` and restarted from its last checkpoint after a
/// backoff, so a partition never silently stops.
pub async fn run(
    log: Arc<dyn Log>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: RunnerConfig,
    shutdown: CancellationToken,
) {
    // Exported at 0 from the start (docs/metrics.md).
    for name in [
        "footfall_processor_events_total",
        "footfall_processor_store_errors_total",
        "footfall_processor_restarts_total",
        "footfall_processor_undecodable_events_total",
        "footfall_processor_values_folded_total",
        "footfall_processor_visits_ended_early_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    // The bound on open visits is per process: each partition gets its share of it, counted
    // over all partitions, as the process may come to own all of them.
    let config = RunnerConfig {
        max_open_visits: (config.max_open_visits / log.partitions().max(1) as usize).max(1),
        ..config
    };
    let start = {
        let log = log.clone();
        move |partition, stop| {
            supervise(
                partition,
                log.clone(),
                store.clone(),
                clock.clone(),
                config.clone(),
                stop,
            )
        }
    };
    footfall_log::group::consume_owned(log, CONSUMER, shutdown, start).await;
}

async fn supervise(
    partition: u32,
    log: Arc<dyn Log>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: RunnerConfig,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let failure = match PartitionTask::start(
            partition,
            log.clone(),
            store.clone(),
            clock.clone(),
            config.clone(),
        )
        .await
        {
            // Spawned so that a panic is caught; aborted if this supervisor is dropped, so that
            // no partition is ever processed by two tasks.
            Ok(task) => match tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
                task.run(shutdown.clone()),
            ))
            .await
            {
                Ok(()) => return,
                Err(e) => format!("the partition task panicked: {e}"),
            },
            Err(e) => e.to_string(),
        };
        tracing::error!(partition, error = %failure, "processor partition failed; restarting from its checkpoint");
        metrics::counter!("footfall_processor_restarts_total").increment(1);
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

struct PartitionTask {
    partition: u32,
    log: Arc<dyn Log>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: RunnerConfig,
    engine: Engine,
    offset: Offset,
    complete_through_us: i64,
    cache: HashMap<CellKey, CellValue, FastHasher>,
    cap: ValueCap,
    /// Deltas taken from the engine (and mirrored) but not yet flushed, in first-touch order.
    pending: IndexMap<CellKey, CellValue>,
    /// Mirrors into reprocessed generations, with their site's time zone.
    mirrors: Vec<(Mirror, Tz)>,
    /// Mirrors registered since the last flush, written with its checkpoint.
    new_mirrors: Vec<Mirror>,
    /// Whether the last read reached the end of the partition.
    caught_up: bool,
    /// When the last read that reached the end of the partition began, UTC µs: every record
    /// appended before it has been processed, so visits idle then may end.
    idle_clock_us: i64,
    sites: HashMap<u64, (Option<SiteInfo>, i64)>,
}

impl PartitionTask {
    async fn start(
        partition: u32,
        log: Arc<dyn Log>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: RunnerConfig,
    ) -> Result<Self, RunnerError> {
        let checkpoint = store.restore_checkpoint(CONSUMER, partition).await?;
        let states = store.load_visits(partition).await?;
        let (engine, corrupt) = Engine::restore(&states);
        if corrupt > 0 {
            tracing::warn!(
                partition,
                corrupt,
                "dropped open visits whose saved state did not decode"
            );
        }
        tracing::info!(
            partition,
            offset = checkpoint.map_or(0, |c| c.offset),
            open_visits = engine.open_visits(),
            "processor partition started"
        );
        // Mirror a generation while a reprocess builds it or while it is served; not once it
        // failed, was interrupted or was rolled back.
        let states: HashMap<(u64, u32), GenerationState> = store
            .generations(None)
            .await?
            .into_iter()
            .map(|g| ((g.site_id, g.id), g.state))
            .collect();
        let mut mirrors = Vec::new();
        for m in store.mirrors(partition).await? {
            let keep = match states.get(&(m.site_id, m.generation)) {
                Some(GenerationState::Building) => true,
                Some(GenerationState::Ready) => store
                    .served(m.site_id)
                    .await?
                    .iter()
                    .any(|s| s.generation == m.generation),
                Some(GenerationState::Failed) | None => false,
            };
            if !keep {
                continue;
            }
            let tz = store.site(m.site_id).await?.map_or(Tz::UTC, |s| s.tz());
            mirrors.push((m, tz));
        }
        Ok(PartitionTask {
            pending: IndexMap::new(),
            mirrors,
            new_mirrors: Vec::new(),
            caught_up: false,
            idle_clock_us: i64::MIN,
            partition,
            log,
            store,
            clock,
            cap: ValueCap::new(config.max_values_per_bucket),
            config,
            engine,
            offset: checkpoint.map_or(0, |c| c.offset),
            complete_through_us: checkpoint.map_or(0, |c| c.complete_through_us),
            cache: HashMap::default(),
            sites: HashMap::new(),
        })
    }

    async fn run(mut self, shutdown: CancellationToken) {
        let mut last_flush = tokio::time::Instant::now();
        let mut dirty = false;
        let mut drain_until: Option<Offset> = None;
        loop {
            // On shutdown, drain: read what the log already holds without waiting, then stop,
            // so that a clean restart has nothing to replay.
            let draining = shutdown.is_cancelled();
            // Drain only what the log held when shutdown began (others may keep appending).
            if draining && drain_until.is_none() {
                drain_until = Some(
                    self.log
                        .end_offset(self.partition)
                        .await
                        .unwrap_or(self.offset),
                );
            }
            if draining && drain_until.is_some_and(|end| self.offset >= end) {
                break;
            }
            let until_flush = self
                .config
                .flush_interval
                .saturating_sub(last_flush.elapsed());
            let started_us = self.clock.now_us();
            let read = if draining {
                self.log
                    .read(
                        self.partition,
                        self.offset,
                        self.config.batch_size,
                        Duration::ZERO,
                    )
                    .await
            } else {
                tokio::select! {
                    r = self.log.read(self.partition, self.offset, self.config.batch_size, until_flush.min(Duration::from_millis(500))) => r,
                    () = shutdown.cancelled() => continue,
                }
            };
            match read {
                Ok(entries) => {
                    if draining && entries.is_empty() {
                        break;
                    }
                    let mut caught_up = entries.len() < self.config.batch_size;
                    if !entries.is_empty() {
                        dirty = true;
                        metrics::counter!("footfall_processor_events_total")
                            .increment(entries.len() as u64);
                    }
                    for entry in entries {
                        let decoded = Event::decode(&entry.payload);
                        if let Ok(e) = &decoded {
                            if e.name == GENERATION_CUT {
                                // A reprocess may follow a change of the site (its time
                                // zone): read the site afresh.
                                self.sites.remove(&e.site_id);
                            }
                        }
                        match decoded {
                            Ok(event) => match self.site(event.site_id).await {
                                Ok(Some(site)) => {
                                    if event.protocol == Protocol::Accounting
                                        && event.name == GENERATION_CUT
                                    {
                                        self.cut(&event, entry.offset, &site);
                                    } else if let Some(reason) = self.engine.process(&event, &site)
                                    {
                                        metrics::counter!("footfall_processor_bot_events_total", "reason" => reason.as_str()).increment(1);
                                    }
                                }
                                // A site deleted since the event was accepted.
                                Ok(None) => {}
                                Err(e) => {
                                    // Stop before this event and read it again after a pause:
                                    // the offset only passes events that were processed.
                                    tracing::warn!(partition = self.partition, error = %e, "site lookup failed; retrying");
                                    metrics::counter!("footfall_processor_store_errors_total")
                                        .increment(1);
                                    caught_up = false;
                                    if draining {
                                        // Stop draining: the rest is replayed after the restart.
                                        drain_until = Some(self.offset);
                                    }
                                    tokio::time::sleep(Duration::from_millis(500)).await;
                                    break;
                                }
                            },
                            Err(e) => {
                                metrics::counter!("footfall_processor_undecodable_events_total")
                                    .increment(1);
                                tracing::warn!(partition = self.partition, offset = entry.offset, error = %e, "skipped an event that does not decode");
                            }
                        }
                        self.offset = entry.offset + 1;
                    }
                    self.caught_up = caught_up;
                    if caught_up {
                        self.idle_clock_us = started_us;
                    }
                    if caught_up && self.complete_through_us < started_us {
                        self.complete_through_us = started_us;
                        dirty = true;
                    }
                }
                Err(e) if draining => {
                    tracing::warn!(partition = self.partition, error = %e, "log read failed while draining; stopping");
                    break;
                }
                Err(e) => {
                    tracing::warn!(partition = self.partition, error = %e, "log read failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            if last_flush.elapsed() >= self.config.flush_interval
                || self.engine.pending_cells() >= self.config.max_pending_cells
            {
                // Events end the visits their receipt shows to be idle; the wall clock does
                // only at the end of the log (behind it, a visit whose next event is already
                // in the log must not end for want of reading it).
                if self.caught_up && self.engine.close_idle(self.idle_clock_us) > 0 {
                    dirty = true;
                }
                if self.engine.open_visits() > self.config.max_open_visits {
                    let ended = self.engine.end_oldest(self.config.max_open_visits / 10 * 9);
                    metrics::counter!("footfall_processor_visits_ended_early_total")
                        .increment(ended as u64);
                    tracing::warn!(
                        partition = self.partition,
                        ended,
                        "open visits over processor.max_open_visits; ended the oldest early"
                    );
                    dirty = true;
                }
                if dirty {
                    self.flush().await;
                    dirty = false;
                }
                last_flush = tokio::time::Instant::now();
            }
        }
        self.flush().await;
        // The partition is another process's now (or none's): this one's series stop
        // counting, at 0, so that sums and maxima over processes show the new owner's.
        let partition = self.partition.to_string();
        metrics::gauge!("footfall_processor_freshness_lag_seconds", "partition" => partition.clone())
            .set(0.0);
        metrics::gauge!("footfall_log_consumer_lag_records", "group" => CONSUMER, "partition" => partition)
            .set(0.0);
        tracing::info!(
            partition = self.partition,
            offset = self.offset,
            "processor partition stopped"
        );
    }

    /// The site's metadata, cached for `site_refresh`; a failed refresh keeps using the
    /// cached value, and only fails when there is none.
    async fn site(&mut self, site_id: u64) -> Result<Option<SiteInfo>, footfall_store::StoreError> {
        let now = self.clock.now_us();
        let refresh_us = i64::try_from(self.config.site_refresh.as_micros()).unwrap_or(i64::MAX);
        if let Some((info, fetched)) = self.sites.get(&site_id) {
            if now - fetched < refresh_us {
                return Ok(info.clone());
            }
        }
        let info = match self.store.site(site_id).await {
            Ok(Some(s)) => Some(SiteInfo {
                domain: s.domain,
                timezone: s.timezone,
                currency: s.currency,
                generation: LIVE_GENERATION,
            }),
            Ok(None) => None,
            Err(e) => {
                return match self.sites.get(&site_id) {
                    Some((cached, _)) => {
                        tracing::warn!(site_id, error = %e, "site lookup failed; using cached metadata");
                        Ok(cached.clone())
                    }
                    None => Err(e),
                }
            }
        };
        self.sites.insert(site_id, (info.clone(), now));
        Ok(info)
    }

    /// Builds the batch from the engine's deltas and writes it, retrying until it is written
    /// (a shutdown deadline, if it passes first, ends the process; a restart then replays from
    /// the last checkpoint).
    /// Runs `op` until it succeeds, with exponential backoff from 100 ms to 10 s; each failure
    /// is logged and counted in `footfall_processor_store_errors_total`.
    async fn retry<T, F, Fut>(&self, what: &'static str, op: F) -> T
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, footfall_store::StoreError>>,
    {
        let mut backoff = Duration::from_millis(100);
        loop {
            match op().await {
                Ok(v) => return v,
                Err(e) => {
                    tracing::warn!(partition = self.partition, error = %e, what, "store call failed; retrying");
                    metrics::counter!("footfall_processor_store_errors_total").increment(1);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Reads into the cache the cells among `keys` it does not hold (missing cells as zero).
    async fn load_cells<'a>(&mut self, keys: impl Iterator<Item = &'a CellKey>) {
        let missing: Vec<CellKey> = keys
            .filter(|k| !self.cache.contains_key(*k))
            .cloned()
            .collect();
        if missing.is_empty() {
            return;
        }
        let loaded = self
            .retry("store read", || self.store.get_cells(&missing))
            .await;
        for (k, v) in missing.into_iter().zip(loaded) {
            self.cache.insert(k, v.unwrap_or_default());
        }
    }

    /// A reprocess's cut record for `site`: visits idle at the cut end now (the reprocess
    /// ends the same ones), and from here on the site's deltas for the cut's days are
    /// mirrored into its generation.
    fn cut(&mut self, e: &Event, offset: Offset, site: &SiteInfo) {
        let prop = |k: &str| {
            e.props
                .iter()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.parse::<i64>().ok())
        };
        let (Some(generation), Some(from_day), Some(to_day)) =
            (prop("generation"), prop("from_day"), prop("to_day"))
        else {
            tracing::warn!(
                partition = self.partition,
                offset,
                "a generation cut record lacks its props; ignored"
            );
            return;
        };
        let Ok(generation) = u32::try_from(generation) else {
            tracing::warn!(
                partition = self.partition,
                offset,
                generation,
                "a generation cut record names an impossible generation; ignored"
            );
            return;
        };
        self.engine.close_idle(e.received_at_us);
        self.take_mirrored();
        let mirror = Mirror {
            partition: self.partition,
            generation,
            site_id: e.site_id,
            from_day,
            to_day,
            cut_offset: offset,
        };
        let tz: Tz = site.timezone.parse().unwrap_or(Tz::UTC);
        self.mirrors.push((mirror, tz));
        self.new_mirrors.push(mirror);
        tracing::info!(
            partition = self.partition,
            generation,
            site_id = e.site_id,
            offset,
            "mirroring live events into a reprocessed generation"
        );
    }

    /// Moves the engine's deltas into `pending`, adding each delta of a mirrored site and day
    /// to the mirror's generation too.
    fn take_mirrored(&mut self) {
        for (k, d) in self.engine.take_deltas() {
            for (m, tz) in &self.mirrors {
                if m.site_id != k.site_id || k.generation != LIVE_GENERATION {
                    continue;
                }
                let day = match k.granularity {
                    Granularity::Day => k.bucket,
                    Granularity::Hour => day_bucket(*tz, k.bucket.saturating_mul(1_000_000)),
                };
                if (m.from_day..=m.to_day).contains(&day) {
                    let mirrored = CellKey {
                        generation: m.generation | MIRROR_BIT,
                        ..k.clone()
                    };
                    self.pending.entry(mirrored).or_default().merge(&d);
                }
            }
            self.pending.entry(k).or_default().merge(&d);
        }
    }

    fn cell_exists(&self, key: &CellKey) -> bool {
        self.cache.get(key).is_some_and(|c| !c.is_zero())
    }

    async fn flush(&mut self) {
        let started = std::time::Instant::now();
        // In first-touch order: the order in which new values are admitted under the cap.
        self.take_mirrored();
        let deltas = std::mem::take(&mut self.pending);
        self.load_cells(deltas.keys()).await;
        let unknown = self.cap.unknown_buckets(
            deltas
                .iter()
                .filter(|(k, d)| !d.is_zero() && !self.cell_exists(k))
                .map(|(k, _)| k),
        );
        if !unknown.is_empty() {
            let limit = self.cap.limit();
            let counts = self
                .retry("store count", || self.store.count_cells(&unknown, limit))
                .await;
            self.cap.set_counts(&unknown, &counts);
        }
        let mut routed: IndexMap<CellKey, CellValue> = IndexMap::with_capacity(deltas.len());
        let mut folded = 0u64;
        for (k, d) in deltas {
            let exists = self.cell_exists(&k);
            match self.cap.route(&k, exists, d.is_zero()) {
                Route::Keep => routed.entry(k).or_default().merge(&d),
                Route::Fold(other) => {
                    folded += 1;
                    routed.entry(other).or_default().merge(&d);
                }
                Route::Skip => {}
            }
        }
        if folded > 0 {
            metrics::counter!("footfall_processor_values_folded_total").increment(folded);
        }
        // `(other)` cells the cache does not hold yet.
        self.load_cells(routed.keys()).await;
        let mut cells = Vec::with_capacity(routed.len());
        for (k, d) in routed {
            let cell = self.cache.entry(k.clone()).or_default();
            cell.merge(&d);
            cells.push((k, cell.clone()));
        }
        let visits = self
            .engine
            .take_visit_changes()
            .into_iter()
            .map(|(site_id, visitor_id, state)| VisitWrite {
                partition: self.partition,
                site_id,
                visitor_id,
                state,
            })
            .collect();
        let batch = WriteBatch {
            consumer: CONSUMER.to_string(),
            cells,
            visits,
            checkpoints: vec![Checkpoint {
                partition: self.partition,
                offset: self.offset,
                complete_through_us: self.complete_through_us,
            }],
            mirrors: std::mem::take(&mut self.new_mirrors),
        };
        let batch = Arc::new(batch);
        self.retry("store write", || self.store.write_batch(batch.clone()))
            .await;
        if self.cache.len() > self.config.max_cached_cells {
            self.cache.clear();
            self.cap.clear();
        }
        if let Err(e) = self.log.commit(CONSUMER, self.partition, self.offset).await {
            tracing::warn!(partition = self.partition, error = %e, "log commit failed");
        }
        metrics::histogram!("footfall_processor_flush_seconds")
            .record(started.elapsed().as_secs_f64());
        let lag_s = (self.clock.now_us() - self.complete_through_us).max(0) as f64 / 1e6;
        metrics::gauge!("footfall_processor_freshness_lag_seconds", "partition" => self.partition.to_string()).set(lag_s);
        // Consumer lag: records appended to the partition that this processor has not read.
        if let Ok(end) = self.log.end_offset(self.partition).await {
            metrics::gauge!("footfall_log_consumer_lag_records", "group" => CONSUMER, "partition" => self.partition.to_string())
                .set(end.saturating_sub(self.offset) as f64);
        }
    }
}
