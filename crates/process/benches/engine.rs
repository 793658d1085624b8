//! The processor's core per event (DESIGN §5, "processor: events/s per core through sessions,
//! all rollups and sketches"), without the log or the store:
//!
//! - `engine/sessionize_and_roll_up`: 100,000 events of the shared workload (three sites in
//!   three time zones, returning visitors, real User-Agents, referrers, UTM tags, goals with
//!   revenue) through [`Engine::process`], then the visits closed and the cell deltas taken,
//!   as a flush does; criterion's throughput is events per second on one core;
//! - `engine/merge_cells`: those deltas merged into the absolute cells they update (sums and
//!   visitor sketches), as the runner does before writing; throughput is cells per second.
//!
//! Run with `cargo bench -p footfall-process --bench engine`; `bench/run` records the figures.

mod common;

use std::collections::HashMap;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use footfall_model::rollup::{CellKey, CellValue};
use footfall_process::engine::{Engine, SiteInfo};

fn sites() -> Vec<SiteInfo> {
    ["Europe/Berlin", "America/New_York", "Asia/Kolkata"]
        .iter()
        .enumerate()
        .map(|(i, tz)| SiteInfo {
            domain: format!("s{}.example", i + 1),
            timezone: (*tz).into(),
            currency: "EUR".into(),
            generation: 1,
        })
        .collect()
}

fn run(events: &[footfall_model::event::Event], sites: &[SiteInfo]) -> Engine {
    let mut engine = Engine::new();
    for e in events {
        let site = &sites[(e.site_id as usize - 1) % sites.len()];
        engine.process(e, site);
    }
    engine.close_all();
    engine
}

fn bench(c: &mut Criterion) {
    let events = common::events();
    let sites = sites();
    let mut group = c.benchmark_group("engine");
    group.sample_size(10);
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("sessionize_and_roll_up", |b| {
        b.iter(|| {
            let mut engine = run(&events, &sites);
            engine.take_deltas().len()
        })
    });
    // The deltas of one run, merged into cells that already hold a run's worth.
    let deltas: Vec<(CellKey, CellValue)> =
        run(&events, &sites).take_deltas().into_iter().collect();
    let base: HashMap<CellKey, CellValue> = deltas.iter().cloned().collect();
    group.throughput(Throughput::Elements(deltas.len() as u64));
    group.bench_function("merge_cells", |b| {
        b.iter_batched(
            || base.clone(),
            |mut cells| {
                for (k, d) in &deltas {
                    cells.entry(k.clone()).or_default().merge(d);
                }
                cells.len()
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
