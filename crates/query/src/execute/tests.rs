//! Hand-computed answers over cells written directly into an embedded store.

use chrono::{DateTime, NaiveDate};
use footfall_model::bucket::date_to_day;
use footfall_model::rollup::{CellKey, CellValue, Dimension, Granularity};
use footfall_model::site::Site;
use footfall_store::embedded::EmbeddedStore;
use footfall_store::{Store, WriteBatch};
use serde_json::json;

use super::*;
use crate::request::parse;

fn site(tz: &str) -> Site {
    Site {
        id: 1,
        domain: "shop.example".into(),
        timezone: tz.into(),
        currency: "EUR".into(),
        measurement_id: "G-X".into(),
        api_secret_hash: String::new(),
        created_at_us: 0,
        keep_query_params: Vec::new(),
        hash_routing: false,
    }
}

fn day(s: &str) -> i64 {
    date_to_day(NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap())
}

fn utc_s(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).unwrap().timestamp()
}

/// A cell with `visitors` and sums `[visits, pageviews, bounces, duration_s]`; events equal
/// pageviews.
fn cell(
    g: Granularity,
    d: Dimension,
    bucket: i64,
    value: &str,
    visitors: &[u64],
    sums: [i64; 4],
) -> (CellKey, CellValue) {
    let [visits, pageviews, bounces, visit_duration_s] = sums;
    let mut c = CellValue {
        visits,
        pageviews,
        events: pageviews,
        bounces,
        visit_duration_s,
        ..Default::default()
    };
    visitors.iter().for_each(|v| c.visitors.insert(*v));
    (
        CellKey {
            site_id: 1,
            generation: 1,
            granularity: g,
            dimension: d,
            bucket,
            value: value.into(),
        },
        c,
    )
}

/// A store in a temporary directory (kept alive by the returned guard) holding `cells`.
async fn store_with(cells: Vec<(CellKey, CellValue)>) -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("s.redb")).unwrap();
    store
        .write_batch(std::sync::Arc::new(WriteBatch {
            consumer: "processor".into(),
            cells,
            ..Default::default()
        }))
        .await
        .unwrap();
    (dir, store)
}

async fn answer(
    cells: Vec<(CellKey, CellValue)>,
    tz: &str,
    query: serde_json::Value,
    now: &str,
) -> Answer {
    let (_dir, store) = store_with(cells).await;
    let q = parse(query.to_string().as_bytes()).unwrap();
    let now_us = DateTime::parse_from_rfc3339(now)
        .unwrap()
        .timestamp_micros();
    execute(&store, 4, &site(tz), &q, now_us).await.unwrap()
}

#[tokio::test]
async fn berlin_fall_back_day_has_25_hourly_buckets_and_spring_forward_23() {
    // 00:30 UTC and 01:30 UTC on 2024-10-27 are both 02:30 local (CEST, then CET).
    let cells = vec![
        cell(
            Granularity::Hour,
            Dimension::Total,
            utc_s("2024-10-27T00:00:00Z"),
            "",
            &[1],
            [1, 1, 1, 0],
        ),
        cell(
            Granularity::Hour,
            Dimension::Total,
            utc_s("2024-10-27T01:00:00Z"),
            "",
            &[2],
            [1, 3, 0, 60],
        ),
    ];
    let q = json!({"site_id": "shop.example", "metrics": ["visits", "pageviews"], "date_range": ["2024-10-27", "2024-10-27"], "dimensions": ["time:hour"]});
    let a = answer(cells, "Europe/Berlin", q, "2024-11-01T00:00:00Z").await;
    assert_eq!(a.results.len(), 25);
    assert_eq!(a.results[0].dimensions, vec!["2024-10-27T00:00:00+02:00"]);
    assert_eq!(a.results[2].dimensions, vec!["2024-10-27T02:00:00+02:00"]);
    assert_eq!(a.results[2].metrics, vec![json!(1), json!(1)]);
    assert_eq!(a.results[3].dimensions, vec!["2024-10-27T02:00:00+01:00"]);
    assert_eq!(a.results[3].metrics, vec![json!(1), json!(3)]);
    assert_eq!(a.results[24].dimensions, vec!["2024-10-27T23:00:00+01:00"]);
    assert_eq!(
        a.results
            .iter()
            .filter(|r| r.metrics[0] == json!(0))
            .count(),
        23,
        "zero-filled"
    );

    let q = json!({"site_id": "shop.example", "metrics": ["visits"], "date_range": ["2024-03-31", "2024-03-31"], "dimensions": ["time:hour"]});
    let a = answer(vec![], "Europe/Berlin", q, "2024-11-01T00:00:00Z").await;
    assert_eq!(a.results.len(), 23);
    // 02:00 local does not exist that day: 01:00 CET is followed by 03:00 CEST.
    assert_eq!(a.results[1].dimensions, vec!["2024-03-31T01:00:00+01:00"]);
    assert_eq!(a.results[2].dimensions, vec!["2024-03-31T03:00:00+02:00"]);
}

#[tokio::test]
async fn kolkata_hourly_buckets_begin_at_half_past_utc() {
    // A cell for the local hour 15:00 IST is stored under 09:30 UTC.
    let cells = vec![cell(
        Granularity::Hour,
        Dimension::Total,
        utc_s("2024-01-15T09:30:00Z"),
        "",
        &[1],
        [1, 2, 0, 30],
    )];
    let q = json!({"site_id": "shop.example", "metrics": ["pageviews"], "date_range": ["2024-01-15", "2024-01-15"], "dimensions": ["time:hour"]});
    let a = answer(cells, "Asia/Kolkata", q, "2024-02-01T00:00:00Z").await;
    assert_eq!(a.results.len(), 24);
    assert_eq!(a.results[0].dimensions, vec!["2024-01-15T00:00:00+05:30"]);
    assert_eq!(a.results[15].dimensions, vec!["2024-01-15T15:00:00+05:30"]);
    assert_eq!(a.results[15].metrics, vec![json!(2)]);
}

#[tokio::test]
async fn visitors_over_a_week_are_merged_not_summed() {
    // Day i (0..7) has visitors {i, i+1}: 14 per-day visitors summed, but 8 distinct.
    let start = day("2024-05-01");
    let cells: Vec<_> = (0..7u64)
        .map(|i| {
            cell(
                Granularity::Day,
                Dimension::Total,
                start + i as i64,
                "",
                &[i, i + 1],
                [2, 2, 1, 10],
            )
        })
        .collect();
    let q = json!({"site_id": "shop.example", "metrics": ["visitors", "visits"], "date_range": ["2024-05-01", "2024-05-07"]});
    let a = answer(cells, "UTC", q, "2024-06-01T00:00:00Z").await;
    assert_eq!(
        a.results,
        vec![Row {
            dimensions: vec![],
            metrics: vec![json!(8), json!(14)]
        }]
    );
    assert!(!a.meta.approximate);
    assert_eq!(
        a.meta.date_range,
        ["2024-05-01".to_string(), "2024-05-07".to_string()]
    );
}

#[tokio::test]
async fn rates_are_recomputed_from_sums() {
    // Day 1: 1 visit, 1 bounce (100 %), 0 s. Day 2: 3 visits, 0 bounces, 600 s, 9 pageviews.
    // Over both days: bounce rate 1/4 = 25.0 % (not the 50 % mean of the daily rates),
    // duration 600/4 = 150 s, views per visit (1+9)/4 = 2.5.
    let cells = vec![
        cell(
            Granularity::Day,
            Dimension::Total,
            day("2024-05-01"),
            "",
            &[1],
            [1, 1, 1, 0],
        ),
        cell(
            Granularity::Day,
            Dimension::Total,
            day("2024-05-02"),
            "",
            &[2, 3],
            [3, 9, 0, 600],
        ),
    ];
    let q = json!({"site_id": "shop.example", "metrics": ["bounce_rate", "visit_duration", "views_per_visit"], "date_range": ["2024-05-01", "2024-05-02"], "dimensions": ["time:day"]});
    let a = answer(cells.clone(), "UTC", q, "2024-06-01T00:00:00Z").await;
    assert_eq!(
        a.results[0].metrics,
        vec![json!(100.0), json!(0), json!(1.0)]
    );
    assert_eq!(
        a.results[1].metrics,
        vec![json!(0.0), json!(200), json!(3.0)]
    );
    let q = json!({"site_id": "shop.example", "metrics": ["bounce_rate", "visit_duration", "views_per_visit"], "date_range": ["2024-05-01", "2024-05-02"]});
    let a = answer(cells, "UTC", q, "2024-06-01T00:00:00Z").await;
    assert_eq!(
        a.results[0].metrics,
        vec![json!(25.0), json!(150), json!(2.5)]
    );
}

#[tokio::test]
async fn breakdown_filters_order_and_pagination() {
    let d = day("2024-05-01");
    let cells = vec![
        cell(
            Granularity::Day,
            Dimension::Source,
            d,
            "google.com",
            &[1, 2, 3],
            [3, 3, 1, 0],
        ),
        cell(
            Granularity::Day,
            Dimension::Source,
            d,
            "Direct / None",
            &[4],
            [1, 1, 1, 0],
        ),
        cell(
            Granularity::Day,
            Dimension::Source,
            d,
            "bing.com",
            &[5, 6],
            [2, 2, 0, 0],
        ),
    ];
    let q = json!({"site_id": "shop.example", "metrics": ["visitors"], "date_range": ["2024-05-01", "2024-05-01"], "dimensions": ["visit:source"], "filters": [["is_not", "visit:source", ["Direct / None"]]]});
    let a = answer(cells.clone(), "UTC", q, "2024-06-01T00:00:00Z").await;
    let rows: Vec<(String, serde_json::Value)> = a
        .results
        .into_iter()
        .map(|r| (r.dimensions[0].clone(), r.metrics[0].clone()))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("google.com".to_string(), json!(3)),
            ("bing.com".to_string(), json!(2))
        ]
    );
    let q = json!({"site_id": "shop.example", "metrics": ["visitors"], "date_range": ["2024-05-01", "2024-05-01"], "dimensions": ["visit:source"], "order_by": [["visitors", "asc"]], "pagination": {"limit": 1, "offset": 1}});
    let a = answer(cells.clone(), "UTC", q, "2024-06-01T00:00:00Z").await;
    assert_eq!(a.results[0].dimensions, vec!["bing.com"]);
    assert_eq!(a.meta.total_rows, 3);
    // A filter without a breakdown: totals over the matching values, visitors merged.
    let q = json!({"site_id": "shop.example", "metrics": ["visitors", "visits"], "date_range": "day", "filters": [["is", "visit:source", ["google.com", "bing.com"]]]});
    let a = answer(cells, "UTC", q, "2024-05-01T12:00:00Z").await;
    assert_eq!(a.results[0].metrics, vec![json!(5), json!(5)]);
}

#[tokio::test]
async fn weeks_start_on_monday_and_months_merge_days() {
    // 2024-04-29 is a Monday. Days 04-28 (Sun), 04-29 (Mon), 05-01 (Wed) with 1 visit each.
    let cells = vec![
        cell(
            Granularity::Day,
            Dimension::Total,
            day("2024-04-28"),
            "",
            &[1],
            [1, 1, 0, 0],
        ),
        cell(
            Granularity::Day,
            Dimension::Total,
            day("2024-04-29"),
            "",
            &[1],
            [1, 1, 0, 0],
        ),
        cell(
            Granularity::Day,
            Dimension::Total,
            day("2024-05-01"),
            "",
            &[2],
            [1, 1, 0, 0],
        ),
    ];
    let q = json!({"site_id": "shop.example", "metrics": ["visits", "visitors"], "date_range": ["2024-04-28", "2024-05-05"], "dimensions": ["time:week"]});
    let a = answer(cells.clone(), "UTC", q, "2024-06-01T00:00:00Z").await;
    let rows: Vec<(String, Vec<serde_json::Value>)> = a
        .results
        .into_iter()
        .map(|r| (r.dimensions[0].clone(), r.metrics))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("2024-04-28".to_string(), vec![json!(1), json!(1)]),
            ("2024-04-29".to_string(), vec![json!(2), json!(2)])
        ]
    );
    let q = json!({"site_id": "shop.example", "metrics": ["visits"], "date_range": ["2024-04-01", "2024-05-31"], "dimensions": ["time:month"]});
    let a = answer(cells, "UTC", q, "2024-06-01T00:00:00Z").await;
    let rows: Vec<(String, serde_json::Value)> = a
        .results
        .into_iter()
        .map(|r| (r.dimensions[0].clone(), r.metrics[0].clone()))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("2024-04-01".to_string(), json!(2)),
            ("2024-05-01".to_string(), json!(1))
        ]
    );
}

#[tokio::test]
async fn revenue_is_summed_in_minor_units_and_shown_in_major_units() {
    // 19.99 + 5.01 EUR = 25.00 EUR, stored as 1999 + 501 cents.
    let d = day("2024-05-01");
    let mut a = cell(
        Granularity::Day,
        Dimension::Goal,
        d,
        "Purchase",
        &[1],
        [0, 0, 0, 0],
    );
    a.1.revenue_minor = 1999;
    let mut b = cell(
        Granularity::Day,
        Dimension::Goal,
        d + 1,
        "Purchase",
        &[2],
        [0, 0, 0, 0],
    );
    b.1.revenue_minor = 501;
    let q = json!({"site_id": "shop.example", "metrics": ["total_revenue"], "date_range": ["2024-05-01", "2024-05-02"], "dimensions": ["event:goal"]});
    let ans = answer(vec![a, b], "UTC", q, "2024-06-01T00:00:00Z").await;
    assert_eq!(
        ans.results,
        vec![Row {
            dimensions: vec!["Purchase".into()],
            metrics: vec![json!(25.0)]
        }]
    );
    assert_eq!(ans.meta.currency, "EUR");
}

#[tokio::test]
async fn custom_property_breakdowns_read_only_the_named_property() {
    let d = day("2024-05-01");
    let sep = footfall_model::rollup::PROP_SEPARATOR;
    let cells = vec![
        cell(
            Granularity::Day,
            Dimension::Prop,
            d,
            &format!("plan{sep}pro"),
            &[1, 2],
            [2, 2, 0, 0],
        ),
        cell(
            Granularity::Day,
            Dimension::Prop,
            d,
            &format!("plan{sep}free"),
            &[3],
            [1, 1, 0, 0],
        ),
        cell(
            Granularity::Day,
            Dimension::Prop,
            d,
            &format!("size{sep}xl"),
            &[4, 5, 6],
            [3, 3, 0, 0],
        ),
    ];
    let q = json!({"site_id": "shop.example", "metrics": ["visitors"], "date_range": ["2024-05-01", "2024-05-01"], "dimensions": ["event:props:plan"]});
    let a = answer(cells.clone(), "UTC", q, "2024-06-01T00:00:00Z").await;
    assert_eq!(
        a.results,
        vec![
            Row {
                dimensions: vec!["pro".into()],
                metrics: vec![json!(2)]
            },
            Row {
                dimensions: vec!["free".into()],
                metrics: vec![json!(1)]
            }
        ]
    );
    let q = json!({"site_id": "shop.example", "metrics": ["visitors"], "date_range": ["2024-05-01", "2024-05-01"], "filters": [["is", "event:props:size", ["xl"]]]});
    assert_eq!(
        answer(cells, "UTC", q, "2024-06-01T00:00:00Z")
            .await
            .results[0]
            .metrics,
        vec![json!(3)]
    );
}

#[tokio::test]
async fn folded_values_are_reported_in_meta_only_for_the_range_and_dimension_read() {
    let d1 = day("2024-05-01");
    let d2 = day("2024-05-02");
    let cells = vec![
        cell(
            Granularity::Day,
            Dimension::Total,
            d1,
            "",
            &[1, 2, 3],
            [3, 5, 0, 0],
        ),
        cell(
            Granularity::Day,
            Dimension::Page,
            d1,
            "/a",
            &[1],
            [1, 2, 0, 0],
        ),
        cell(
            Granularity::Day,
            Dimension::Page,
            d1,
            OTHER,
            &[2, 3],
            [2, 3, 0, 0],
        ),
        cell(
            Granularity::Day,
            Dimension::Page,
            d2,
            "/a",
            &[4],
            [1, 1, 0, 0],
        ),
    ];
    let q = |range: [&str; 2], extra: serde_json::Value| {
        let mut q =
            json!({"site_id": "shop.example", "metrics": ["pageviews"], "date_range": range});
        for (k, v) in extra.as_object().unwrap() {
            q[k] = v.clone();
        }
        q
    };
    let now = "2024-05-10T00:00:00Z";
    let both = ["2024-05-01", "2024-05-02"];
    let a = answer(
        cells.clone(),
        "UTC",
        q(both, json!({"dimensions": ["event:page"]})),
        now,
    )
    .await;
    assert!(a.meta.folded && a.meta.approximate);
    let rows: Vec<(String, serde_json::Value)> = a
        .results
        .iter()
        .map(|r| (r.dimensions[0].clone(), r.metrics[0].clone()))
        .collect();
    assert_eq!(
        rows,
        vec![("(other)".into(), json!(3)), ("/a".into(), json!(3))]
    );
    // A filter on a folded dimension may understate the value: said too.
    let filtered = q(both, json!({"filters": [["is", "event:page", ["/a"]]]}));
    let a = answer(cells.clone(), "UTC", filtered, now).await;
    assert!(a.meta.folded);
    assert_eq!(a.results[0].metrics, vec![json!(3)]);
    // Not folded: the second day alone, or the site total.
    let second = ["2024-05-02", "2024-05-02"];
    let a = answer(
        cells.clone(),
        "UTC",
        q(second, json!({"dimensions": ["event:page"]})),
        now,
    )
    .await;
    assert!(!a.meta.folded && !a.meta.approximate);
    let a = answer(cells, "UTC", q(both, json!({})), now).await;
    assert!(!a.meta.folded);
    assert_eq!(a.results[0].metrics, vec![json!(5)]);
}

#[tokio::test]
async fn reprocessed_days_are_served_from_their_generation_plus_its_mirror() {
    let (d1, d2) = (day("2024-05-01"), day("2024-05-02"));
    let in_gen = |g: u32, c: (CellKey, CellValue)| {
        let (mut k, v) = c;
        k.generation = g;
        (k, v)
    };
    let cells = vec![
        cell(
            Granularity::Day,
            Dimension::Total,
            d1,
            "",
            &[1],
            [1, 1, 0, 0],
        ),
        cell(
            Granularity::Day,
            Dimension::Total,
            d2,
            "",
            &[2],
            [1, 10, 0, 0],
        ),
        in_gen(
            5,
            cell(
                Granularity::Day,
                Dimension::Total,
                d2,
                "",
                &[2],
                [1, 2, 0, 0],
            ),
        ),
        in_gen(
            5 | footfall_store::MIRROR_BIT,
            cell(
                Granularity::Day,
                Dimension::Total,
                d2,
                "",
                &[3],
                [1, 4, 0, 0],
            ),
        ),
        // Generation 6 exists but is not served.
        in_gen(
            6,
            cell(
                Granularity::Day,
                Dimension::Total,
                d1,
                "",
                &[9],
                [1, 100, 0, 0],
            ),
        ),
    ];
    let (_dir, store) = store_with(cells).await;
    store.serve_span(1, d2, d2, 5).await.unwrap();
    let run = |q: serde_json::Value| {
        let q = parse(q.to_string().as_bytes()).unwrap();
        let store = &store;
        async move {
            let now = DateTime::parse_from_rfc3339("2024-05-10T00:00:00Z")
                .unwrap()
                .timestamp_micros();
            execute(store, 4, &site("UTC"), &q, now).await.unwrap()
        }
    };
    let a = run(json!({"site_id": "shop.example", "metrics": ["visitors", "pageviews"], "date_range": ["2024-05-01", "2024-05-02"], "dimensions": ["time:day"]})).await;
    // Day 1 from generation 1: 1 pageview; day 2 from generation 5 and its mirror: 2 + 4
    // pageviews by visitors 2 and 3 (generation 1's 10 pageviews are not served).
    assert_eq!(a.results[0].metrics, vec![json!(1), json!(1)]);
    assert_eq!(a.results[1].metrics, vec![json!(2), json!(6)]);
    assert_eq!(
        (a.meta.generation, a.meta.generations.clone()),
        (5, vec![1, 5])
    );
    let a = run(json!({"site_id": "shop.example", "metrics": ["pageviews"], "date_range": ["2024-05-01", "2024-05-01"]})).await;
    assert_eq!((a.meta.generation, a.meta.generations), (1, vec![1]));
}
