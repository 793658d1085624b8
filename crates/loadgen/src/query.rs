//! The dashboard query benchmark: the five queries a 30-day dashboard view sends (totals,
//! the daily series, top pages, top sources, top countries), timed one after another
//! against the query API, repeated.

use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};

use crate::http;
use crate::load::Percentiles;

/// The five queries of a 30-day dashboard view of `site`.
pub fn dashboard(site: &str) -> Vec<Value> {
    let base = |extra: Value| {
        let mut q = json!({"site_id": site, "date_range": "30d"});
        if let (Some(q), Some(extra)) = (q.as_object_mut(), extra.as_object()) {
            q.extend(extra.clone());
        }
        q
    };
    vec![
        base(
            json!({"metrics": ["visitors", "visits", "pageviews", "bounce_rate", "visit_duration"]}),
        ),
        base(json!({"metrics": ["visitors", "pageviews"], "dimensions": ["time:day"]})),
        base(
            json!({"metrics": ["visitors", "pageviews"], "dimensions": ["event:page"], "pagination": {"limit": 10}}),
        ),
        base(
            json!({"metrics": ["visitors"], "dimensions": ["visit:source"], "pagination": {"limit": 10}}),
        ),
        base(
            json!({"metrics": ["visitors"], "dimensions": ["visit:country"], "pagination": {"limit": 10}}),
        ),
    ]
}

/// What the dashboard benchmark measured for one site.
#[derive(Debug, Serialize)]
pub struct QueryReport {
    /// The site.
    pub site: String,
    /// Dashboards timed (after one untimed warm-up).
    pub dashboards: u64,
    /// Latency of each single query.
    pub query: Percentiles,
    /// Latency of the five queries of a dashboard, one after another.
    pub dashboard: Percentiles,
    /// Pageviews over the 30 days, as the first query answered (to check the data is there).
    pub pageviews: u64,
    /// Queries not answered `200`.
    pub errors: u64,
}

/// Times `dashboards` dashboard views of `site` against `base` (`http://host:port`).
///
/// # Errors
/// When the first (warm-up) dashboard is not answered `200`.
pub async fn run(
    base: &str,
    key: &str,
    site: &str,
    dashboards: u64,
) -> anyhow::Result<QueryReport> {
    let client = http::client(1);
    let url = format!("{base}/api/v2/query");
    let queries = dashboard(site);
    let mut pageviews = 0;
    for q in &queries {
        let (status, answer) = http::post_json(&client, &url, key, q)
            .await
            .map_err(|e| anyhow::anyhow!("query API at {url}: {e}"))?;
        anyhow::ensure!(status == 200, "query API answered {status}: {answer}");
        if pageviews == 0 {
            pageviews = answer["results"][0]["metrics"][2].as_u64().unwrap_or(0);
        }
    }
    let new = || Histogram::<u64>::new_with_bounds(1, 600_000_000, 3);
    let (mut single, mut whole) = (new()?, new()?);
    let mut errors = 0;
    for _ in 0..dashboards {
        let started = Instant::now();
        for q in &queries {
            let t = Instant::now();
            match http::post_json(&client, &url, key, q).await {
                Ok((200, _)) => {}
                _ => errors += 1,
            }
            single.record(t.elapsed().as_micros().max(1) as u64)?;
        }
        whole.record(started.elapsed().as_micros().max(1) as u64)?;
    }
    Ok(QueryReport {
        site: site.to_string(),
        dashboards,
        query: Percentiles::of(&single),
        dashboard: Percentiles::of(&whole),
        pageviews,
        errors,
    })
}
