//! Reprocessing (DESIGN §4.6): recompute a range of days from the archive into a new
//! generation, with the same [`Engine`] and the same cap as live processing, then switch the
//! served generation for those days atomically.
//!
//! How a run keeps history exact while live ingestion goes on:
//!
//! 1. For each site, a **cut record** ([`GENERATION_CUT`]) is appended to the site's log
//!    partition. The reprocess covers the events before it; live processing, when it reads
//!    it, ends the visits that are idle at the cut (as the reprocess does at its end) and from
//!    then on adds every delta for the site's days in the range to the generation's *mirror*
//!    (`generation | MIRROR_BIT`). Late events that arrive during or after the run therefore
//!    reach the new generation, and visits open at the cut carry on there.
//! 2. The events are read from the archive, and from the log for what the archiver has not
//!    written yet, for the sites and a window of the range's days widened by
//!    [`LOOKBACK_US`] on both sides, so that visits that began before the range or end after
//!    it are reconstructed; events received during the range are read too (ingest accounting
//!    counts by receipt). They are processed per partition in offset order, the order live
//!    processing saw them in.
//! 3. Only cells of the range's days are kept; new values are admitted under the per-bucket
//!    cap in first-touch order, as live processing does. The cells are written, the
//!    generation is marked ready, and the site's served spans switch to it for the range.
//!
//! A dry run reads up to the end of the log, ends every visit at the end, writes nothing, and
//! reports old versus new daily figures. Visits longer than [`LOOKBACK_US`] that cross the
//! range's edges are not fully reconstructed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::NaiveDate;
use chrono_tz::Tz;
use footfall_archive::{Archive, ArchivedEvent, Selection};
use footfall_log::{Log, Record};
use footfall_model::bucket::{date_to_day, day_bucket, day_start_utc, day_to_date};
use footfall_model::clock::Clock;
use footfall_model::event::{Event, Protocol, GENERATION_CUT};
use footfall_model::rollup::{CellKey, CellValue, Dimension, Granularity};
use footfall_model::site::Site;
use footfall_store::{
    CellRange, Generation, GenerationState, Store, StoreError, WriteBatch, LIVE_GENERATION,
    MIRROR_BIT,
};
use indexmap::IndexMap;
use serde::Serialize;

use crate::cap::{Route, ValueCap};
use crate::engine::{CellDeltas, Engine, SiteInfo};
use crate::runner::RunnerConfig;

/// How far before and after the range events are read to reconstruct visits that cross its
/// edges: one day, µs.
pub const LOOKBACK_US: i64 = 86_400_000_000;

/// How far ahead of the clock a cut record's receipt time is set: 5 s, µs (see `run`).
const CUT_AHEAD_US: i64 = 5_000_000;

/// Cells written per store batch.
const CELLS_PER_BATCH: usize = 5000;

/// What to reprocess.
#[derive(Debug, Clone)]
pub struct Request {
    /// The sites (each in its own time zone).
    pub sites: Vec<Site>,
    /// First local day.
    pub from: NaiveDate,
    /// Last local day, inclusive.
    pub to: NaiveDate,
    /// Compute and compare only.
    pub dry_run: bool,
}

/// Progress of a run, for a progress bar.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    /// What the run is doing.
    pub phase: String,
    /// Units done in this phase (files, events or cells).
    pub done: u64,
    /// Units in this phase.
    pub total: u64,
    /// Events read so far.
    pub events: u64,
}

/// Daily figures of one site, before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayFigures {
    /// The site's domain.
    pub site: String,
    /// Local date.
    pub date: String,
    /// `[visitors, visits, pageviews, events]` as served before the run.
    pub old: [i64; 4],
    /// The same figures recomputed.
    pub new: [i64; 4],
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The domains of the sites reprocessed.
    pub sites: Vec<String>,
    /// The new generation (none for a dry run).
    pub generation: Option<u32>,
    /// Records read from the archive and the log for the sites and days (events, and the
    /// collector's accounting records).
    pub events: u64,
    /// Cells written (or that would be).
    pub cells: u64,
    /// Daily figures with any data before or after.
    pub days: Vec<DayFigures>,
}

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
pub enum ReprocessError {
    /// The request cannot be run.
    #[error("{0}")]
    Invalid(String),
    /// The archive failed.
    #[error(transparent)]
    Archive(#[from] footfall_archive::ArchiveError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The log failed.
    #[error(transparent)]
    Log(#[from] footfall_log::LogError),
}

/// What a run works with.
#[derive(Clone)]
pub struct Context {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The log.
    pub log: Arc<dyn Log>,
    /// The archive.
    pub archive: Archive,
    /// The clock (time of the cut records).
    pub clock: Arc<dyn Clock>,
    /// Live processing's settings (the cap must match).
    pub config: RunnerConfig,
}

struct SiteRun {
    site: Site,
    tz: Tz,
    from_day: i64,
    to_day: i64,
    partition: u32,
}

impl SiteRun {
    /// This site's record of generation `id`.
    fn record(
        &self,
        id: u32,
        state: GenerationState,
        cut_offset: u64,
        at_us: i64,
        events: u64,
    ) -> Generation {
        Generation {
            id,
            site_id: self.site.id,
            from_day: self.from_day,
            to_day: self.to_day,
            state,
            partition: self.partition,
            cut_offset,
            created_at_us: at_us,
            events,
        }
    }

    fn day_of(&self, k: &CellKey) -> i64 {
        match k.granularity {
            Granularity::Day => k.bucket,
            Granularity::Hour => day_bucket(self.tz, k.bucket.saturating_mul(1_000_000)),
        }
    }
}

fn set(progress: &Mutex<Progress>, f: impl FnOnce(&mut Progress)) {
    if let Ok(mut p) = progress.lock() {
        f(&mut p);
    }
}

/// Runs a reprocess; see the module docs.
///
/// # Errors
/// [`ReprocessError::Invalid`] for an empty site list or a reversed range;
/// [`ReprocessError::Archive`], [`ReprocessError::Store`] or [`ReprocessError::Log`] when a
/// backend fails (the generation is then marked failed and nothing is served from it).
pub async fn reprocess(
    ctx: &Context,
    req: Request,
    progress: Arc<Mutex<Progress>>,
) -> Result<Outcome, ReprocessError> {
    if req.sites.is_empty() {
        return Err(ReprocessError::Invalid("no site to reprocess".into()));
    }
    if req.to < req.from {
        return Err(ReprocessError::Invalid(format!(
            "--to {} is before --from {}",
            req.to, req.from
        )));
    }
    let partitions = ctx.log.partitions();
    let runs: Vec<SiteRun> = req
        .sites
        .iter()
        .map(|s| SiteRun {
            tz: s.tz(),
            from_day: date_to_day(req.from),
            to_day: date_to_day(req.to),
            partition: footfall_log::partition_for(s.id, partitions),
            site: s.clone(),
        })
        .collect();
    let generation = if req.dry_run {
        None
    } else {
        Some(ctx.store.allocate_generation().await?)
    };
    let mut switched: HashSet<u64> = HashSet::new();
    let result = run(ctx, &req, &runs, generation, &progress, &mut switched).await;
    if let (Err(_), Some(g)) = (&result, generation) {
        // Sites already switched keep serving (and mirroring) the generation.
        for r in runs.iter().filter(|r| !switched.contains(&r.site.id)) {
            let failed = r.record(g, GenerationState::Failed, 0, ctx.clock.now_us(), 0);
            if let Err(e) = ctx.store.put_generation(&failed).await {
                tracing::warn!(error = %e, generation = g, "could not mark a failed generation");
            }
        }
    }
    result
}

async fn run(
    ctx: &Context,
    req: &Request,
    runs: &[SiteRun],
    generation: Option<u32>,
    progress: &Mutex<Progress>,
    switched: &mut HashSet<u64>,
) -> Result<Outcome, ReprocessError> {
    let now = ctx.clock.now_us();
    // The cut's receipt time, a little ahead: live processing ends wall-clock-idle visits
    // only as of the start of a read that found nothing newer, which precedes the cut's
    // append by far less than this; so every visit it ended before reading the cut is idle
    // at the cut, and the run ends it too.
    let cut_at = now.saturating_add(CUT_AHEAD_US);
    // 1. The cut (or, for a dry run, the end of the log) per partition.
    let mut bounds: HashMap<u32, u64> = HashMap::new();
    let mut cut_received_us = None;
    if let Some(g) = generation {
        set(progress, |p| p.phase = "cutting the log".into());
        let mut ends = HashMap::new();
        for r in runs {
            ends.insert(r.partition, ctx.log.end_offset(r.partition).await?);
        }
        let mut cuts = Vec::with_capacity(runs.len());
        for r in runs {
            let mut cut = Event::pageview(r.site.id, 0, cut_at, "");
            cut.name = GENERATION_CUT.into();
            cut.protocol = Protocol::Accounting;
            cut.user_agent = String::new();
            cut.event_id = random_id()?;
            cut.props = vec![
                ("generation".into(), g.to_string()),
                ("from_day".into(), r.from_day.to_string()),
                ("to_day".into(), r.to_day.to_string()),
            ];
            cuts.push(cut);
        }
        // Recorded as building before the cut exists, so that a live processor that reads
        // the cut, saves its mirror and restarts finds the generation (its exact cut offset
        // follows once the cut is found).
        for r in runs {
            let building = r.record(g, GenerationState::Building, 0, now, 0);
            ctx.store.put_generation(&building).await?;
        }
        ctx.log
            .append(
                cuts.iter()
                    .map(|c| Record {
                        key: c.site_id,
                        payload: c.encode(),
                    })
                    .collect(),
            )
            .await?;
        let ids: HashSet<u128> = cuts.iter().map(|c| c.event_id).collect();
        for (&partition, &from) in &ends {
            let offset = find_cut(ctx.log.as_ref(), partition, from, &ids).await?;
            bounds.insert(partition, offset);
        }
        for r in runs {
            let cut = bounds.get(&r.partition).copied().unwrap_or_default();
            let building = r.record(g, GenerationState::Building, cut, now, 0);
            ctx.store.put_generation(&building).await?;
        }
        cut_received_us = Some(cut_at);
    } else {
        for r in runs {
            bounds.insert(r.partition, ctx.log.end_offset(r.partition).await?);
        }
    }

    // 2. Read.
    let start = runs
        .iter()
        .map(|r| day_start_utc(r.tz, req.from))
        .min()
        .unwrap_or(0);
    let end = runs
        .iter()
        .map(|r| {
            req.to
                .succ_opt()
                .map_or(i64::MAX, |d| day_start_utc(r.tz, d))
        })
        .max()
        .unwrap_or(0);
    let selection = Selection {
        sites: Some(runs.iter().map(|r| r.site.id).collect()),
        timestamps_us: (
            start.saturating_mul(1_000_000).saturating_sub(LOOKBACK_US),
            end.saturating_mul(1_000_000).saturating_add(LOOKBACK_US),
        ),
        received_us: (
            start.saturating_mul(1_000_000),
            end.saturating_mul(1_000_000),
        ),
        offsets_below: bounds.clone(),
    };
    let events = read_events(ctx, &selection, &bounds, progress).await?;
    let total = events.len() as u64;

    // 3. Process, per partition in offset order.
    set(progress, |p| {
        p.phase = "processing".into();
        p.done = 0;
        p.total = total;
    });
    let by_site: HashMap<u64, &SiteRun> = runs.iter().map(|r| (r.site.id, r)).collect();
    let infos: HashMap<u64, SiteInfo> = runs
        .iter()
        .map(|r| {
            (
                r.site.id,
                SiteInfo {
                    domain: r.site.domain.clone(),
                    timezone: r.site.timezone.clone(),
                    currency: r.site.currency.clone(),
                    // A dry run's cells are never written; any generation id serves.
                    generation: generation.unwrap_or(!MIRROR_BIT),
                },
            )
        })
        .collect();
    let mut deltas = CellDeltas::default();
    let mut per_site: HashMap<u64, u64> = HashMap::new();
    let mut engine = Engine::new();
    let mut current: Option<u32> = None;
    let finish = |engine: &mut Engine, deltas: &mut CellDeltas| {
        match cut_received_us {
            Some(at) => {
                engine.close_idle(at);
            }
            None => engine.close_all(),
        }
        for (k, d) in engine.take_deltas() {
            deltas.entry(k).or_default().merge(&d);
        }
    };
    for (i, r) in events.iter().enumerate() {
        if current != Some(r.partition) {
            if current.is_some() {
                finish(&mut engine, &mut deltas);
                engine = Engine::new();
            }
            current = Some(r.partition);
        }
        let e = &r.event;
        *per_site.entry(e.site_id).or_default() += 1;
        if e.protocol == Protocol::Accounting && e.name == GENERATION_CUT {
            // An earlier run's cut: live processing ended the idle visits there.
            engine.close_idle(e.received_at_us);
        } else if let Some(info) = infos.get(&e.site_id) {
            engine.process(e, info);
        }
        if i % 4096 == 0 {
            set(progress, |p| p.done = i as u64);
        }
    }
    if current.is_some() {
        finish(&mut engine, &mut deltas);
    }

    // 4. Keep the range's cells; admit new values under the cap in first-touch order.
    let mut cap = ValueCap::new(ctx.config.max_values_per_bucket);
    let kept: Vec<(CellKey, CellValue)> = deltas
        .into_iter()
        .filter(|(k, _)| {
            by_site
                .get(&k.site_id)
                .is_some_and(|r| (r.from_day..=r.to_day).contains(&r.day_of(k)))
        })
        .collect();
    let unknown = cap.unknown_buckets(kept.iter().map(|(k, _)| k));
    cap.set_counts(&unknown, &vec![0; unknown.len()]);
    let mut cells: IndexMap<CellKey, CellValue> = IndexMap::with_capacity(kept.len());
    for (k, d) in kept {
        let exists = cells.get(&k).is_some_and(|c| !c.is_zero());
        match cap.route(&k, exists, d.is_zero()) {
            Route::Keep => cells.entry(k).or_default().merge(&d),
            Route::Fold(other) => cells.entry(other).or_default().merge(&d),
            Route::Skip => {}
        }
    }
    cells.retain(|_, v| !v.is_zero());

    // 5. Compare, write, switch.
    let days = compare(ctx.store.as_ref(), runs, &cells).await?;
    let Some(g) = generation else {
        return Ok(Outcome {
            sites: runs.iter().map(|r| r.site.domain.clone()).collect(),
            generation: None,
            events: total,
            cells: cells.len() as u64,
            days,
        });
    };
    let n = cells.len() as u64;
    set(progress, |p| {
        p.phase = "writing cells".into();
        p.done = 0;
        p.total = n;
    });
    let all: Vec<(CellKey, CellValue)> = cells.into_iter().collect();
    for (i, chunk) in all.chunks(CELLS_PER_BATCH).enumerate() {
        ctx.store
            .write_batch(Arc::new(WriteBatch {
                consumer: "reprocess".into(),
                cells: chunk.to_vec(),
                ..Default::default()
            }))
            .await?;
        set(progress, |p| {
            p.done = ((i + 1) * CELLS_PER_BATCH).min(all.len()) as u64
        });
    }
    set(progress, |p| p.phase = "switching".into());
    for r in runs {
        let cut = bounds.get(&r.partition).copied().unwrap_or_default();
        let read = per_site.get(&r.site.id).copied().unwrap_or(0);
        let ready = r.record(g, GenerationState::Ready, cut, now, read);
        ctx.store.put_generation(&ready).await?;
        ctx.store
            .serve_span(r.site.id, r.from_day, r.to_day, g)
            .await?;
        switched.insert(r.site.id);
        tracing::info!(site = %r.site.domain, generation = g, from = %req.from, to = %req.to, "reprocessed generation served");
    }
    Ok(Outcome {
        sites: runs.iter().map(|r| r.site.domain.clone()).collect(),
        generation: Some(g),
        events: total,
        cells: n,
        days,
    })
}

fn random_id() -> Result<u128, ReprocessError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)
        .map_err(|e| ReprocessError::Invalid(format!("no OS randomness: {e}")))?;
    Ok(u128::from_le_bytes(b))
}

/// The offset of the first of the cut records `ids` at or after `from` in `partition`.
async fn find_cut(
    log: &dyn Log,
    partition: u32,
    from: u64,
    ids: &HashSet<u128>,
) -> Result<u64, ReprocessError> {
    let mut at = from;
    loop {
        let entries = log
            .read(partition, at, 1000, Duration::from_secs(1))
            .await?;
        if entries.is_empty() {
            return Err(ReprocessError::Invalid(format!(
                "the cut record appended to partition {partition} cannot be found"
            )));
        }
        for e in entries {
            at = e.offset + 1;
            if Event::decode(&e.payload).is_ok_and(|ev| ids.contains(&ev.event_id)) {
                return Ok(e.offset);
            }
        }
    }
}

/// The selected events from the archive and, past the archiver's position, from the log; one
/// per (partition, offset), in that order.
async fn read_events(
    ctx: &Context,
    selection: &Selection,
    bounds: &HashMap<u32, u64>,
    progress: &Mutex<Progress>,
) -> Result<Vec<ArchivedEvent>, ReprocessError> {
    // The archiver's positions first: every event below them is in a file by then, so the
    // archive read next plus the log from these positions misses nothing, whatever the
    // archiver writes meanwhile.
    let mut archived: HashMap<u32, u64> = HashMap::new();
    for &partition in bounds.keys() {
        let at = ctx
            .store
            .checkpoint(footfall_archive::archiver::CONSUMER, partition)
            .await?
            .map_or(0, |c| c.offset);
        archived.insert(partition, at);
    }
    // Compaction may replace files between the listing and the reads: list again then (the
    // merged file holds the same rows).
    let mut attempt = 0;
    let mut events = loop {
        attempt += 1;
        match read_archive(ctx, selection, bounds, progress).await {
            Err(footfall_archive::ArchiveError::ObjectStore(object_store::Error::NotFound {
                ..
            })) if attempt < 3 => continue,
            other => break other?,
        }
    };
    set(progress, |p| p.phase = "reading the log".into());
    for (&partition, &below) in bounds {
        let mut at = archived.get(&partition).copied().unwrap_or(0).min(below);
        while at < below {
            let entries = ctx.log.read(partition, at, 5000, Duration::ZERO).await?;
            if entries.is_empty() {
                break;
            }
            for e in entries {
                if e.offset >= below {
                    at = below;
                    break;
                }
                at = e.offset + 1;
                if let Ok(event) = Event::decode(&e.payload) {
                    let r = ArchivedEvent {
                        partition,
                        offset: e.offset,
                        event,
                    };
                    if selection.wants(&r) {
                        events.push(r);
                    }
                }
            }
        }
    }
    events.sort_by_key(|r| (r.partition, r.offset));
    events.dedup_by_key(|r| (r.partition, r.offset));
    let n = events.len() as u64;
    set(progress, |p| p.events = n);
    Ok(events)
}

async fn read_archive(
    ctx: &Context,
    selection: &Selection,
    bounds: &HashMap<u32, u64>,
    progress: &Mutex<Progress>,
) -> Result<Vec<ArchivedEvent>, footfall_archive::ArchiveError> {
    let files: Vec<_> = ctx
        .archive
        .list()
        .await?
        .into_iter()
        .filter(|f| bounds.contains_key(&f.partition) && selection.wants_file(f))
        .collect();
    set(progress, |p| {
        p.phase = "reading the archive".into();
        p.done = 0;
        p.total = files.len() as u64;
    });
    let mut events = Vec::new();
    for (i, f) in files.iter().enumerate() {
        events.extend(
            ctx.archive
                .read(f)
                .await?
                .into_iter()
                .filter(|r| selection.wants(r)),
        );
        let n = events.len() as u64;
        set(progress, |p| {
            p.done = i as u64 + 1;
            p.events = n;
        });
    }
    Ok(events)
}

/// `[visitors, visits, pageviews, events]` of a site total cell.
fn figures(c: &CellValue) -> [i64; 4] {
    [
        i64::try_from(c.visitors.estimate()).unwrap_or(i64::MAX),
        c.visits,
        c.pageviews,
        c.events,
    ]
}

/// Daily totals served now versus recomputed, for days with any data.
async fn compare(
    store: &dyn Store,
    runs: &[SiteRun],
    cells: &IndexMap<CellKey, CellValue>,
) -> Result<Vec<DayFigures>, StoreError> {
    let mut out = Vec::new();
    for r in runs {
        let served = store.served(r.site.id).await?;
        let mut old: BTreeMap<i64, CellValue> = BTreeMap::new();
        let mut generations: Vec<u32> = vec![LIVE_GENERATION];
        generations.extend(served.iter().map(|s| s.generation));
        generations.sort_unstable();
        generations.dedup();
        for g in generations {
            for gen in [g, g | MIRROR_BIT] {
                if gen == (LIVE_GENERATION | MIRROR_BIT) {
                    continue;
                }
                let range = CellRange {
                    site_id: r.site.id,
                    generation: gen,
                    granularity: Granularity::Day,
                    dimension: Dimension::Total,
                    from: r.from_day,
                    to: r.to_day,
                };
                for (k, v) in store.scan_cells(&range).await? {
                    if footfall_store::served_generation(&served, k.bucket) == g {
                        old.entry(k.bucket).or_default().merge(&v);
                    }
                }
            }
        }
        let new: BTreeMap<i64, &CellValue> = cells
            .iter()
            .filter(|(k, _)| {
                k.site_id == r.site.id
                    && k.granularity == Granularity::Day
                    && k.dimension == Dimension::Total
            })
            .map(|(k, v)| (k.bucket, v))
            .collect();
        let days: std::collections::BTreeSet<i64> = old.keys().chain(new.keys()).copied().collect();
        for day in days {
            out.push(DayFigures {
                site: r.site.domain.clone(),
                date: day_to_date(day).map_or_else(|| day.to_string(), |d| d.to_string()),
                old: old.get(&day).map_or([0; 4], figures),
                new: new.get(&day).map_or([0; 4], |c| figures(c)),
            });
        }
    }
    Ok(out)
}
