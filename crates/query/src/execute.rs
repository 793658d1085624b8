//! Planning a [`Query`] over rollup cells and computing its answer.
//!
//! One dimension is read per query (the breakdown dimension, else the filter's, else the
//! site total) at hour granularity for `time:hour` and day granularity otherwise. Cells are
//! grouped by answer row; within a row sums add and visitor sketches merge (so visitors over
//! a week are a union, not a sum of days). Rates are computed from the sums:
//!
//! - `bounce_rate` = 100 × bounces / visits, 1 decimal, clamped to 0..=100;
//! - `views_per_visit` = pageviews / visits, 2 decimals;
//! - `visit_duration` = visit duration sum / visits, whole seconds;
//! - `total_revenue` = revenue sum in the site's currency, major units (minor units are what is
//!   stored and summed; the division happens once, here);
//!
//! each 0 when there are no visits.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use footfall_model::bucket::{
    date_to_day, day_start_utc, day_to_date, hour_label, hours_of_day, local_date,
};
use footfall_model::rollup::{CellValue, Dimension, Granularity, OTHER};
use footfall_model::site::Site;
use footfall_store::{CellRange, ServedSpan, Store, StoreError, LIVE_GENERATION, MIRROR_BIT};
use serde::Serialize;
use serde_json::Value;

use crate::range::resolve;
use crate::request::{Metric, OrderKey, Query, TimeGrain};
use crate::QueryError;

/// Most hourly buckets one query may span (a year and a day).
pub const MAX_HOURLY_DAYS: i64 = 366;

/// One answer row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Dimension values in the order the query listed its dimensions.
    pub dimensions: Vec<String>,
    /// Metric values in the order the query listed its metrics.
    pub metrics: Vec<Value>,
}

/// Facts about an answer (DESIGN §4.7).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Meta {
    /// Every event accepted before this instant (RFC 3339, UTC) is reflected; `null` before
    /// the processor has caught up once.
    pub complete_through: Option<String>,
    /// Whether any figure is an estimate: a visitors sketch past its exact range, or values
    /// folded into `(other)` ([`Meta::folded`]).
    pub approximate: bool,
    /// Whether the dimension read (the breakdown's, else the filter's) had values folded into
    /// `(other)` in the range, past the processor's cap on distinct values per bucket; a
    /// named value's figures may then be understated, and an `(other)` row holds the rest.
    pub folded: bool,
    /// The rollup generation the answer was read from: 1 for live processing, or the
    /// newest reprocessed generation serving any day of the range.
    pub generation: u32,
    /// Every generation serving a day of the range, ascending (one unless a reprocess
    /// covered part of the range).
    pub generations: Vec<u32>,
    /// The site's time zone, in which dates and buckets are expressed.
    pub time_zone: String,
    /// The site's currency (ISO 4217), in which `total_revenue` is expressed.
    pub currency: String,
    /// The resolved inclusive date range.
    pub date_range: [String; 2],
    /// Rows before pagination.
    pub total_rows: usize,
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    /// Rows.
    pub results: Vec<Row>,
    /// Metadata.
    pub meta: Meta,
}

/// Errors of [`execute`].
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// The query cannot be answered as asked.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct TimeBuckets {
    labels: Vec<String>,
    index: HashMap<i64, usize>,
}

fn time_buckets(tz: Tz, grain: Option<TimeGrain>, from: NaiveDate, to: NaiveDate) -> TimeBuckets {
    let mut labels = Vec::new();
    let mut index = HashMap::new();
    let mut date = from;
    loop {
        match grain {
            Some(TimeGrain::Hour) => {
                for h in hours_of_day(tz, date) {
                    index.insert(h, labels.len());
                    labels.push(hour_label(tz, h));
                }
            }
            Some(g) => {
                let label = match g {
                    TimeGrain::Week => date
                        .checked_sub_days(chrono::Days::new(u64::from(
                            date.weekday().num_days_from_monday(),
                        )))
                        .unwrap_or(date)
                        .max(from),
                    TimeGrain::Month => date.with_day(1).unwrap_or(date).max(from),
                    _ => date,
                }
                .format("%Y-%m-%d")
                .to_string();
                if labels.last() != Some(&label) {
                    labels.push(label);
                }
                index.insert(date_to_day(date), labels.len() - 1);
            }
            None => {
                if labels.is_empty() {
                    labels.push(String::new());
                }
                index.insert(date_to_day(date), 0);
            }
        }
        match date.succ_opt() {
            Some(next) if next <= to => date = next,
            _ => break,
        }
    }
    TimeBuckets { labels, index }
}

fn metric_value(metric: Metric, c: &CellValue, currency_exponent: u32) -> Value {
    let visits = c.visits.max(0);
    let ratio = |num: i64, scale: f64, decimals: i32| -> f64 {
        if visits == 0 {
            return 0.0;
        }
        let p = 10f64.powi(decimals);
        (num.max(0) as f64 * scale / visits as f64 * p).round() / p
    };
    match metric {
        Metric::Visitors => Value::from(c.visitors.estimate()),
        Metric::Visits => Value::from(visits),
        Metric::Pageviews => Value::from(c.pageviews.max(0)),
        Metric::Events => Value::from(c.events.max(0)),
        Metric::TotalRevenue => {
            Value::from(c.revenue_minor as f64 / 10f64.powi(currency_exponent as i32))
        }
        Metric::ViewsPerVisit => Value::from(ratio(c.pageviews, 1.0, 2)),
        Metric::BounceRate => Value::from(ratio(c.bounces, 100.0, 1).clamp(0.0, 100.0)),
        Metric::VisitDuration => Value::from(ratio(c.visit_duration_s, 1.0, 0) as i64),
    }
}

/// Splits days `from..=to` into runs served by one generation each: (first, last, generation).
fn segments(spans: &[ServedSpan], from: i64, to: i64) -> Vec<(i64, i64, u32)> {
    let mut out: Vec<(i64, i64, u32)> = Vec::new();
    let mut day = from;
    while day <= to {
        let (g, end) = match spans
            .iter()
            .find(|s| (s.from_day..=s.to_day).contains(&day))
        {
            Some(s) => (s.generation, s.to_day.min(to)),
            None => {
                let next = spans
                    .iter()
                    .map(|s| s.from_day)
                    .filter(|f| *f > day)
                    .min()
                    .map_or(to, |f| (f - 1).min(to));
                (LIVE_GENERATION, next)
            }
        };
        out.push((day, end, g));
        day = end + 1;
    }
    out
}

/// Answers `query` for `site`, reading cells from `store`. `now_us` fixes "today";
/// `partitions` is the log's partition count (it locates the site's checkpoint).
///
/// # Errors
/// [`ExecuteError::Query`] for a range that is too long for its granularity;
/// [`ExecuteError::Store`] when the store fails.
pub async fn execute(
    store: &dyn Store,
    partitions: u32,
    site: &Site,
    query: &Query,
    now_us: i64,
) -> Result<Answer, ExecuteError> {
    let tz = site.tz();
    let today = local_date(tz, now_us.div_euclid(1_000_000)).unwrap_or_default();
    // Days are served from the generation the site's served spans name (live processing's
    // outside them); a reprocessed generation's cells add up with its mirror's.
    let spans = store.served(site.id).await?;
    let first_day = match query.date_range {
        crate::request::DateRange::Named(ref n) if n == "all" => {
            // The earliest day with data in any served generation (a reprocess may have moved
            // data to an earlier local day).
            let mut first = store.first_day(site.id, LIVE_GENERATION).await?;
            for s in &spans {
                let theirs = store.first_day(site.id, s.generation).await?;
                first = match (first, theirs) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            first.and_then(day_to_date)
        }
        _ => None,
    };
    let (from, to) = resolve(&query.date_range, today, first_day)?;
    let hourly = query.time == Some(TimeGrain::Hour);
    if hourly && (to - from).num_days() + 1 > MAX_HOURLY_DAYS {
        return Err(QueryError::new(
            "dimensions",
            format!(
                "time:hour spans at most {MAX_HOURLY_DAYS} days; use time:day for longer ranges"
            ),
        )
        .into());
    }
    let dimension = query
        .dimension
        .or(query.filters.first().map(|f| f.dimension))
        .unwrap_or(Dimension::Total);
    let mut cells = Vec::new();
    let mut generations: Vec<u32> = Vec::new();
    for (a, b, g) in segments(&spans, date_to_day(from), date_to_day(to)) {
        let (Some(a), Some(b)) = (day_to_date(a), day_to_date(b)) else {
            continue;
        };
        if !generations.contains(&g) {
            generations.push(g);
        }
        let reads: &[u32] = if g == LIVE_GENERATION {
            &[g]
        } else {
            &[g, g | MIRROR_BIT]
        };
        for &generation in reads {
            let range = if hourly {
                let end = b
                    .succ_opt()
                    .map_or(day_start_utc(tz, b) + 86_400, |d| day_start_utc(tz, d));
                CellRange {
                    site_id: site.id,
                    generation,
                    granularity: Granularity::Hour,
                    dimension,
                    from: day_start_utc(tz, a),
                    to: end - 1,
                }
            } else {
                CellRange {
                    site_id: site.id,
                    generation,
                    granularity: Granularity::Day,
                    dimension,
                    from: date_to_day(a),
                    to: date_to_day(b),
                }
            };
            cells.extend(store.scan_cells(&range).await?);
        }
    }
    generations.sort_unstable();
    let buckets = time_buckets(tz, query.time, from, to);

    // The cells of each answer row, merged at the end in one pass per row.
    let mut groups: HashMap<(usize, String), Vec<CellValue>> = HashMap::new();
    let mut folded = false;
    // Property cells hold `NAME␟value`; keep the asked property's, shown without the name.
    let prefix = query
        .prop
        .as_ref()
        .map(|p| format!("{p}{}", footfall_model::rollup::PROP_SEPARATOR));
    for (mut key, value) in cells {
        if let Some(prefix) = &prefix {
            match key.value.strip_prefix(prefix.as_str()) {
                Some(v) => key.value = v.to_string(),
                None => continue,
            }
        }
        let Some(&t) = buckets.index.get(&key.bucket) else {
            continue;
        };
        if key.value == OTHER {
            folded = true;
        }
        if !query.filters.iter().all(|f| f.matches(&key.value)) {
            continue;
        }
        let v = if query.dimension.is_some() {
            key.value
        } else {
            String::new()
        };
        groups.entry((t, v)).or_default().push(value);
    }
    let mut groups: HashMap<(usize, String), CellValue> = groups
        .into_iter()
        .map(|(k, values)| (k, CellValue::merge_all(&values)))
        .collect();
    if query.dimension.is_none() {
        for t in 0..buckets.labels.len() {
            groups.entry((t, String::new())).or_default();
        }
    }
    let approximate = folded || groups.values().any(|c| c.visitors.is_approximate());

    let mut rows: Vec<((usize, String), Vec<Value>)> = groups
        .into_iter()
        .map(|(k, c)| {
            (
                k,
                query
                    .metrics
                    .iter()
                    .map(|m| {
                        metric_value(
                            *m,
                            &c,
                            footfall_model::decode::currency_exponent(&site.currency),
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    let metric_pos = |m: Metric| query.metrics.iter().position(|x| *x == m).unwrap_or(0);
    rows.sort_by(|(ka, va), (kb, vb)| {
        for (key, desc) in &query.order_by {
            let ord = match key {
                OrderKey::Time => ka.0.cmp(&kb.0),
                OrderKey::Dimension => ka.1.cmp(&kb.1),
                OrderKey::Metric(m) => {
                    let i = metric_pos(*m);
                    va[i]
                        .as_f64()
                        .unwrap_or(0.0)
                        .total_cmp(&vb[i].as_f64().unwrap_or(0.0))
                }
            };
            let ord = if *desc { ord.reverse() } else { ord };
            if ord.is_ne() {
                return ord;
            }
        }
        ka.cmp(kb)
    });
    let total_rows = rows.len();
    let results = rows
        .into_iter()
        .skip(query.offset)
        .take(query.limit)
        .map(|((t, value), metrics)| {
            let mut dimensions = Vec::new();
            let time = query.time.map(|_| buckets.labels[t].clone());
            let dim = query.dimension.map(|_| value);
            if query.time_first {
                dimensions.extend(time);
                dimensions.extend(dim);
            } else {
                dimensions.extend(dim);
                dimensions.extend(time);
            }
            Row {
                dimensions,
                metrics,
            }
        })
        .collect();

    let partition = footfall_log::partition_for(site.id, partitions);
    let checkpoint = store.checkpoint("processor", partition).await?;
    let complete_through = checkpoint
        .filter(|c| c.complete_through_us > 0)
        .and_then(|c| DateTime::<Utc>::from_timestamp_micros(c.complete_through_us))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    Ok(Answer {
        results,
        meta: Meta {
            complete_through,
            approximate,
            folded,
            generation: generations.last().copied().unwrap_or(LIVE_GENERATION),
            generations,
            time_zone: site.timezone.clone(),
            currency: site.currency.clone(),
            date_range: [
                from.format("%Y-%m-%d").to_string(),
                to.format("%Y-%m-%d").to_string(),
            ],
            total_rows,
        },
    })
}

#[cfg(test)]
mod tests;
