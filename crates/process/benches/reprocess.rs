//! Reprocessing throughput and archive size (DESIGN §4.6, §5): 100,000 events of a realistic
//! mix (three sites, returning visitors, visits of several pageviews, real User-Agents,
//! referrers, UTM tags, goals with revenue) are written to a Parquet archive as the archiver
//! writes them; the benchmark reprocesses one week of them (a dry run: read, decode, process,
//! compare; no store writes). Run with `cargo bench -p footfall-process --bench reprocess`;
//! it prints the archive's bytes per event, and criterion's throughput is events per second
//! on one core (the run is single-threaded). Figures go to bench/report.md.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::NaiveDate;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use footfall_archive::{Archive, ArchivedEvent, S3Settings};
use footfall_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use footfall_log::{Log, Record};
use footfall_model::clock::ManualClock;
use footfall_model::event::Event;
use footfall_process::reprocess::{reprocess, Context, Request};
use footfall_process::runner::RunnerConfig;
use footfall_store::embedded::EmbeddedStore;
use footfall_store::{Checkpoint, NewSite, Store, WriteBatch};

mod common;

use common::{events, EVENTS, T0};

/// Compacts every hour of the four partitions, then returns the archive's size in bytes.
async fn compacted_bytes(archive: &Archive) -> u64 {
    for p in 0..4 {
        archive.compact(p, i64::MAX).await.expect("compact");
    }
    archive
        .list()
        .await
        .expect("list")
        .iter()
        .map(|f| f.size)
        .sum()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(
        EmbeddedLog::open(&EmbeddedLogConfig {
            path: dir.path().join("log.redb"),
            partitions: 4,
            commit_linger: Duration::ZERO,
            cache_bytes: 16 << 20,
        })
        .expect("log"),
    );
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).expect("store"));
    let url = url::Url::from_directory_path(dir.path().join("archive")).expect("url");
    std::fs::create_dir_all(dir.path().join("archive")).expect("dir");
    let archive = Archive::open(url.as_str(), &S3Settings::default()).expect("archive");
    let sites = rt.block_on(async {
        let mut sites = Vec::new();
        for (i, tz) in ["Europe/Berlin", "America/New_York", "Asia/Kolkata"]
            .iter()
            .enumerate()
        {
            sites.push(
                store
                    .create_site(NewSite {
                        domain: format!("s{}.example", i + 1),
                        timezone: (*tz).into(),
                        currency: "EUR".into(),
                        measurement_id: format!("G-{i}"),
                        api_secret_hash: String::new(),
                        created_at_us: 0,
                    })
                    .await
                    .expect("site"),
            );
        }
        // Appended to the log, then archived from it in batches of 500 events, as a busy
        // archiver flushes, and compacted; the archiver's position is the end of the log.
        let all = events();
        for chunk in all.chunks(1000) {
            let records = chunk
                .iter()
                .map(|e| Record {
                    key: e.site_id,
                    payload: e.encode(),
                })
                .collect();
            log.append(records).await.expect("append");
        }
        let mut written = 0;
        let mut checkpoints = Vec::new();
        for partition in 0..4 {
            let mut at = 0;
            loop {
                let entries = log
                    .read(partition, at, 500, Duration::ZERO)
                    .await
                    .expect("read");
                let Some(last) = entries.last() else {
                    break;
                };
                at = last.offset + 1;
                let batch: Vec<ArchivedEvent> = entries
                    .iter()
                    .map(|e| ArchivedEvent {
                        partition,
                        offset: e.offset,
                        event: Event::decode(&e.payload).expect("decode"),
                    })
                    .collect();
                let files = archive.write(&batch).await.expect("write");
                written += files.iter().map(|f| f.size).sum::<u64>();
            }
            checkpoints.push(Checkpoint {
                partition,
                offset: at,
                complete_through_us: 0,
            });
        }
        store
            .write_batch(Arc::new(WriteBatch {
                consumer: footfall_archive::archiver::CONSUMER.into(),
                checkpoints,
                ..Default::default()
            }))
            .await
            .expect("checkpoint");
        let compacted = compacted_bytes(&archive).await;
        // The same events as if they had all arrived within one hour, as at DESIGN's volume
        // (a billion events a day over 64 partitions is 650,000 events per partition-hour):
        // one compacted file per site's partition (three sites: about 33,000 events each).
        let volume_dir = dir.path().join("archive-volume");
        std::fs::create_dir_all(&volume_dir).expect("dir");
        let volume = Archive::open(
            url::Url::from_directory_path(&volume_dir)
                .expect("url")
                .as_str(),
            &S3Settings::default(),
        )
        .expect("archive");
        let mut per_partition: Vec<Vec<ArchivedEvent>> = vec![Vec::new(); 4];
        for (i, e) in all.iter().enumerate() {
            let mut event = e.clone();
            event.received_at_us = T0 + (i as i64 % 3_600) * 1_000_000;
            let p = (e.site_id % 4) as usize;
            let offset = per_partition[p].len() as u64;
            per_partition[p].push(ArchivedEvent {
                partition: p as u32,
                offset,
                event,
            });
        }
        for rows in &per_partition {
            for chunk in rows.chunks(500) {
                volume.write(chunk).await.expect("write");
            }
        }
        let at_volume = compacted_bytes(&volume).await;
        eprintln!(
            "archive: {EVENTS} events; {:.1} bytes/event in 500-event files, {:.1} bytes/event after hourly compaction, {:.1} bytes/event at volume",
            written as f64 / EVENTS as f64,
            compacted as f64 / EVENTS as f64,
            at_volume as f64 / EVENTS as f64
        );
        sites
    });
    let ctx = Context {
        store,
        log,
        archive,
        clock: Arc::new(ManualClock::new(T0 + 30 * 86_400_000_000)),
        config: RunnerConfig::default(),
    };
    let request = Request {
        sites,
        from: NaiveDate::from_ymd_opt(2024, 3, 4).expect("date"),
        to: NaiveDate::from_ymd_opt(2024, 3, 10).expect("date"),
        dry_run: true,
    };
    let run = || {
        rt.block_on(reprocess(
            &ctx,
            request.clone(),
            Arc::new(Mutex::new(Default::default())),
        ))
        .expect("reprocess")
    };
    let read = run().events;
    let mut g = c.benchmark_group("reprocess");
    g.throughput(Throughput::Elements(read));
    g.sample_size(10);
    g.bench_function(format!("one week, {read} events read (dry run)"), |b| {
        b.iter(run)
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
