//! The decoders per request (DESIGN §4.1, §5): what the collector pays to turn bytes into
//! events before enrichment and the log append.
//!
//! - `decode/plausible_event`: one Plausible Events API body with a referrer and UTM tags;
//! - `decode/ga4_batch_of_25`: one GA4 Measurement Protocol body of 25 `page_view` events
//!   (GA4's limit per request); throughput is events per second;
//! - `decode/access_log_line`: one nginx combined-format line, as `footfall import` reads it.
//!
//! Run with `cargo bench -p footfall-model --bench decode`; `bench/run` records the figures.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use footfall_model::decode::{combined, ga4, plausible};

const PLAUSIBLE: &str = r#"{"name":"pageview","url":"https://shop.example/products/item-17?utm_source=newsletter&utm_medium=email&utm_campaign=spring","domain":"shop.example","referrer":"https://www.google.com/","props":{"plan":"pro"}}"#;

const LINE: &str = r#"93.184.216.34 - - [01/Mar/2024:10:15:32 +0000] "GET /products/item-17?ref=hn HTTP/1.1" 200 5120 "https://news.ycombinator.com/item?id=1" "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36""#;

/// 2024-03-01T10:00:00Z, µs.
const NOW_US: i64 = 1_709_287_200_000_000;

fn ga4_body() -> String {
    let events: Vec<String> = (0..25)
        .map(|i| {
            format!(
                r#"{{"name":"page_view","params":{{"page_location":"https://shop.example/products/item-{i}","page_referrer":"https://www.google.com/","engagement_time_msec":100}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"client_id":"123456.789","events":[{}]}}"#,
        events.join(",")
    )
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("plausible_event", |b| {
        b.iter(|| plausible::decode(PLAUSIBLE.as_bytes()).is_ok())
    });
    let body = ga4_body();
    let window = ga4::TimeWindow {
        now_us: NOW_US,
        max_backdate_us: 72 * 3_600_000_000,
        max_future_us: 300_000_000,
    };
    group.throughput(Throughput::Elements(25));
    group.bench_function("ga4_batch_of_25", |b| {
        b.iter(|| ga4::decode(body.as_bytes(), window).events.len())
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("access_log_line", |b| {
        b.iter(|| combined::parse_line(LINE).is_ok())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
