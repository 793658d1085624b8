//! DESIGN §4.3: "a crash at any instant followed by a restart yields exactly the cells that an
//! uninterrupted run yields". The streaming runner is killed (its task aborted, without its
//! final flush) dozens of times while it works through a log of multi-site traffic with
//! out-of-order events; after each kill it restarts from what the store holds. Its final cells
//! are compared, cell by cell, with those of a run that was never interrupted.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use footfall_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use footfall_log::{Log, Record};
use footfall_model::clock::ManualClock;
use footfall_model::event::{Event, Revenue, Utm};
use footfall_model::rollup::{CellKey, CellValue, Dimension, Granularity};
use footfall_process::runner::{run, RunnerConfig, CONSUMER};
use footfall_store::embedded::EmbeddedStore;
use footfall_store::{CellRange, NewSite, Store};
use tokio_util::sync::CancellationToken;

const T0: i64 = 1_714_550_400_000_000; // 2024-05-01T08:00:00Z

/// Deterministic traffic: 3 sites in 3 time zones, 40 visitors, pageviews and goals with
/// revenue, arriving 20 s apart but timestamped up to 10 minutes earlier (out of order).
fn traffic(n: u64) -> Vec<Event> {
    let mut x: u64 = 42;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let r = next();
            let received = T0 + i as i64 * 20_000_000;
            let site = 1 + r % 3;
            let mut e = Event::pageview(
                site,
                r % 40,
                received - (r % 600) as i64 * 1_000_000,
                &format!("/p{}", r % 7),
            );
            e.received_at_us = received;
            e.hostname = "shop.example".into();
            if r % 5 == 0 {
                e.referrer = Some("https://search.example/".into());
            }
            if r % 11 == 0 {
                e.utm = Utm {
                    source: Some("mail".into()),
                    medium: Some("email".into()),
                    campaign: Some("may".into()),
                    ..Utm::default()
                };
            }
            if r % 9 == 0 {
                e.name = "Purchase".into();
                e.revenue = Some(Revenue {
                    amount_minor: 1000 + (r % 500) as i64,
                    currency: "EUR".into(),
                });
            }
            e
        })
        .collect()
}

async fn setup(dir: &std::path::Path) -> (Arc<EmbeddedLog>, Arc<EmbeddedStore>) {
    let log = Arc::new(
        EmbeddedLog::open(&EmbeddedLogConfig {
            path: dir.join("log.redb"),
            partitions: 2,
            commit_linger: Duration::ZERO,
            cache_bytes: 16 << 20,
        })
        .unwrap(),
    );
    let store = Arc::new(EmbeddedStore::open(&dir.join("store.redb")).unwrap());
    for (i, tz) in ["Europe/Berlin", "Asia/Kolkata", "America/New_York"]
        .iter()
        .enumerate()
    {
        let new = NewSite {
            domain: format!("s{i}.example"),
            timezone: (*tz).into(),
            currency: "EUR".into(),
            measurement_id: format!("G-{i}"),
            api_secret_hash: String::new(),
            created_at_us: 0,
        };
        store.create_site(new).await.unwrap();
    }
    (log, store)
}

async fn caught_up(log: &EmbeddedLog, store: &dyn Store) -> bool {
    for p in 0..log.partitions() {
        let end = log.end_offset(p).await.unwrap();
        if store
            .checkpoint(CONSUMER, p)
            .await
            .unwrap()
            .map_or(0, |c| c.offset)
            < end
        {
            return false;
        }
    }
    true
}

async fn all_cells(store: &dyn Store) -> Vec<(CellKey, CellValue)> {
    let mut out = Vec::new();
    for site_id in 1..=3 {
        for granularity in [Granularity::Hour, Granularity::Day] {
            for dimension in Dimension::ALL {
                let range = CellRange {
                    site_id,
                    generation: 1,
                    granularity,
                    dimension,
                    from: i64::MIN,
                    to: i64::MAX,
                };
                out.extend(store.scan_cells(&range).await.unwrap());
            }
        }
    }
    out
}

fn config() -> RunnerConfig {
    RunnerConfig {
        flush_interval: Duration::from_millis(5),
        batch_size: 10,
        ..RunnerConfig::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs the runner over `events` twice, once uninterrupted and once killed again and again,
/// asserts that both end with identical cells, and returns them.
fn uninterrupted_and_killed(
    events: &[Event],
    config: fn() -> RunnerConfig,
) -> Vec<(CellKey, CellValue)> {
    // The clock stays at the first arrival, so no visit is ended as idle in either run.
    let clock = Arc::new(ManualClock::new(T0));
    let main = runtime();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (log_a, store_a) = main.block_on(setup(dir_a.path()));
    let (log_b, store_b) = main.block_on(setup(dir_b.path()));
    main.block_on(async {
        for chunk in events.chunks(100) {
            let records: Vec<Record> = chunk
                .iter()
                .map(|e| Record {
                    key: e.site_id,
                    payload: e.encode(),
                })
                .collect();
            log_a.append(records.clone()).await.unwrap();
            log_b.append(records).await.unwrap();
        }
    });

    // Uninterrupted.
    main.block_on(async {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            log_a.clone(),
            store_a.clone(),
            clock.clone(),
            config(),
            stop.clone(),
        ));
        while !caught_up(&log_a, store_a.as_ref()).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
        task.await.unwrap();
    });

    // Killed again and again: each life is a runtime of its own, dropped at a moment that
    // varies, which stops every task at once, as the death of a process does (a store write
    // already handed to its blocking thread completes or not as a whole).
    let mut kills = 0;
    let mut pause = 10u64;
    while !main.block_on(caught_up(&log_b, store_b.as_ref())) {
        let life = runtime();
        life.spawn(run(
            log_b.clone(),
            store_b.clone(),
            clock.clone(),
            config(),
            CancellationToken::new(),
        ));
        std::thread::sleep(Duration::from_millis(pause));
        drop(life);
        kills += 1;
        // 10 to 39 ms, varying so that the kills land at different points of the cycle.
        pause = 10 + (pause * 7) % 30;
    }

    let (a, b) = main.block_on(async {
        (
            all_cells(store_a.as_ref()).await,
            all_cells(store_b.as_ref()).await,
        )
    });
    assert!(a.len() > 100, "the workload produced {} cells", a.len());
    assert_eq!(a.len(), b.len());
    for ((ka, va), (kb, vb)) in a.iter().zip(&b) {
        assert_eq!(ka, kb);
        assert_eq!(va, vb, "cell {ka:?}");
    }
    eprintln!("{kills} kills; {} cells identical", a.len());
    assert!(
        kills >= 10,
        "only {kills} kills happened; the test proves little"
    );
    a
}

#[test]
fn killed_and_restarted_runner_yields_the_cells_of_an_uninterrupted_run() {
    uninterrupted_and_killed(&traffic(6000), config);
}

/// With a cap of 4 values per bucket (the traffic has 7 pages), the values past it fold into
/// `(other)` identically whatever the kills, the first 4 pages of each bucket in log order are
/// the ones kept, and nothing is lost: a bucket's page cells add up to its total.
#[test]
fn capped_values_fold_into_other_identically_after_kills() {
    use footfall_model::bucket::day_bucket;
    use footfall_model::rollup::OTHER;
    use std::collections::{BTreeMap, BTreeSet};
    const CAP: u64 = 4;
    fn capped() -> RunnerConfig {
        RunnerConfig {
            max_values_per_bucket: CAP,
            ..config()
        }
    }
    let events = traffic(3000);
    let cells = uninterrupted_and_killed(&events, capped);

    // Expected kept pages of each (site, day), worked out from the log: the first CAP distinct
    // paths of the site's pageviews timestamped in that local day, in log order.
    let tz = |site: u64| -> chrono_tz::Tz {
        ["Europe/Berlin", "Asia/Kolkata", "America/New_York"][site as usize - 1]
            .parse()
            .unwrap()
    };
    let mut expected: BTreeMap<(u64, i64), Vec<String>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.is_pageview()) {
        let kept = expected
            .entry((e.site_id, day_bucket(tz(e.site_id), e.timestamp_us)))
            .or_default();
        if kept.len() < CAP as usize && !kept.contains(&e.path) {
            kept.push(e.path.clone());
        }
    }
    let mut kept: BTreeMap<(u64, i64), BTreeSet<String>> = BTreeMap::new();
    let mut page_views: BTreeMap<(u64, i64), i64> = BTreeMap::new();
    let mut total_views: BTreeMap<(u64, i64), i64> = BTreeMap::new();
    let mut folded_buckets = 0;
    for (k, v) in cells
        .iter()
        .filter(|(k, _)| k.granularity == Granularity::Day)
    {
        let at = (k.site_id, k.bucket);
        match k.dimension {
            Dimension::Page => {
                *page_views.entry(at).or_default() += v.pageviews;
                if k.value == OTHER {
                    folded_buckets += 1;
                } else {
                    kept.entry(at).or_default().insert(k.value.clone());
                }
            }
            Dimension::Total => *total_views.entry(at).or_default() += v.pageviews,
            _ => {}
        }
    }
    assert!(
        folded_buckets > 0,
        "the cap never applied; the test proves little"
    );
    let expected: BTreeMap<(u64, i64), BTreeSet<String>> = expected
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect();
    assert_eq!(kept, expected);
    assert_eq!(page_views, total_views, "folding loses no pageview");
    for granularity in [Granularity::Hour, Granularity::Day] {
        let mut per_bucket: BTreeMap<(u64, Dimension, i64), u64> = BTreeMap::new();
        for (k, _) in cells.iter().filter(|(k, _)| k.granularity == granularity) {
            if k.value != OTHER {
                *per_bucket
                    .entry((k.site_id, k.dimension, k.bucket))
                    .or_default() += 1;
            }
        }
        assert!(per_bucket.values().all(|n| *n <= CAP), "{granularity:?}");
    }
}

/// The engine alone: saving its open visits and restoring them into a fresh engine after every
/// single event gives the same cells as one pass (the state it saves is all the state it has).
#[test]
fn engine_with_save_and_restore_after_every_event_matches_one_pass() {
    use footfall_process::engine::{Engine, SiteInfo};
    use std::collections::BTreeMap;
    let site = |id: u64| SiteInfo {
        domain: format!("s{id}.example"),
        timezone: "UTC".into(),
        currency: "EUR".into(),
        generation: 1,
    };
    let events: Vec<Event> = traffic(4000)
        .into_iter()
        .filter(|e| e.site_id == 1)
        .collect();
    let fold = |cells: &mut BTreeMap<CellKey, CellValue>, e: &mut Engine| {
        for (k, d) in e.take_deltas() {
            cells.entry(k).or_default().merge(&d);
        }
    };
    let mut one = Engine::new();
    let mut a = BTreeMap::new();
    for e in &events {
        one.process(e, &site(e.site_id));
    }
    fold(&mut a, &mut one);
    let mut b = BTreeMap::new();
    let mut saved: std::collections::HashMap<(u64, u64), Vec<u8>> = Default::default();
    for e in &events {
        let states: Vec<Vec<u8>> = saved.values().cloned().collect();
        let (mut eng, _) = Engine::restore(&states);
        eng.process(e, &site(e.site_id));
        fold(&mut b, &mut eng);
        for (s, v, st) in eng.take_visit_changes() {
            match st {
                Some(st) => saved.insert((s, v), st),
                None => saved.remove(&(s, v)),
            };
        }
    }
    a.retain(|_, v| !v.is_zero());
    b.retain(|_, v| !v.is_zero());
    for (k, v) in &a {
        assert_eq!(Some(v), b.get(k), "{k:?}");
    }
    assert_eq!(a.len(), b.len());
}
