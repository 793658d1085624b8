//! The query body: Plausible Stats API v2 field names (`site_id`, `metrics`, `date_range`,
//! `dimensions`, `filters`, `order_by`, `pagination`).

use chrono::NaiveDate;
use footfall_model::rollup::{Dimension, Scope};
use serde_json::Value;

use crate::QueryError;

/// A metric a query may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Distinct visitors (merged sketches).
    Visitors,
    /// Visits.
    Visits,
    /// Pageviews.
    Pageviews,
    /// Pageviews per visit, 2 decimals.
    ViewsPerVisit,
    /// Bounces per visit, percent, 1 decimal.
    BounceRate,
    /// Mean visit duration, whole seconds.
    VisitDuration,
    /// Events of any name.
    Events,
    /// Revenue in the site's currency, in major units (19.99), summed from minor units.
    TotalRevenue,
}

impl Metric {
    /// Parses a Stats API metric name.
    pub fn parse(name: &str) -> Option<Metric> {
        Some(match name {
            "visitors" => Metric::Visitors,
            "visits" => Metric::Visits,
            "pageviews" => Metric::Pageviews,
            "views_per_visit" => Metric::ViewsPerVisit,
            "bounce_rate" => Metric::BounceRate,
            "visit_duration" => Metric::VisitDuration,
            "events" => Metric::Events,
            "total_revenue" => Metric::TotalRevenue,
            _ => return None,
        })
    }

    /// The Stats API name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Visitors => "visitors",
            Metric::Visits => "visits",
            Metric::Pageviews => "pageviews",
            Metric::ViewsPerVisit => "views_per_visit",
            Metric::BounceRate => "bounce_rate",
            Metric::VisitDuration => "visit_duration",
            Metric::Events => "events",
            Metric::TotalRevenue => "total_revenue",
        }
    }

    /// Whether the metric needs visit-level sums that event-scoped rollups do not hold.
    fn needs_visit_rollup(self) -> bool {
        matches!(self, Metric::BounceRate | Metric::VisitDuration)
    }
}

/// Width of time buckets in a time dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeGrain {
    /// Local hours.
    Hour,
    /// Local days.
    Day,
    /// Weeks starting on Monday.
    Week,
    /// Calendar months.
    Month,
}

/// `date_range` as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateRange {
    /// A named period (`day`, `7d`, `28d`, `30d`, `91d`, `month`, `6mo`, `12mo`, `year`, `all`).
    Named(String),
    /// Inclusive local dates.
    Custom(NaiveDate, NaiveDate),
}

/// Filter operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    /// The value is one of the listed ones.
    Is,
    /// The value is none of the listed ones.
    IsNot,
    /// The value contains one of the listed substrings.
    Contains,
}

/// One filter on a dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Operator.
    pub op: FilterOp,
    /// Dimension.
    pub dimension: Dimension,
    /// Values.
    pub values: Vec<String>,
}

impl Filter {
    /// Whether `value` passes.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            FilterOp::Is => self.values.iter().any(|v| v == value),
            FilterOp::IsNot => !self.values.iter().any(|v| v == value),
            FilterOp::Contains => self.values.iter().any(|v| value.contains(v.as_str())),
        }
    }
}

/// What to sort by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderKey {
    /// A metric.
    Metric(Metric),
    /// The time dimension.
    Time,
    /// The breakdown dimension's value.
    Dimension,
}

/// A validated query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The site's domain.
    pub site_id: String,
    /// Metrics, in answer order.
    pub metrics: Vec<Metric>,
    /// Date range.
    pub date_range: DateRange,
    /// Time dimension, if any.
    pub time: Option<TimeGrain>,
    /// Breakdown dimension, if any.
    pub dimension: Option<Dimension>,
    /// The property name when the dimension read is `event:props:NAME`.
    pub prop: Option<String>,
    /// Order of dimensions in answer rows: `true` when the time dimension comes first.
    pub time_first: bool,
    /// Filters (all on one dimension).
    pub filters: Vec<Filter>,
    /// Sort keys with `true` for descending.
    pub order_by: Vec<(OrderKey, bool)>,
    /// Rows to return.
    pub limit: usize,
    /// Rows to skip.
    pub offset: usize,
}

/// Most rows one answer returns.
pub const MAX_LIMIT: usize = 10_000;

fn strings(v: &Value, field: &str) -> Result<Vec<String>, QueryError> {
    match v {
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, x)| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| QueryError::new(format!("{field}[{i}]"), "must be a string"))
            })
            .collect(),
        _ => Err(QueryError::new(field, "must be an array of strings")),
    }
}

fn parse_date(v: &Value, field: &str) -> Result<NaiveDate, QueryError> {
    v.as_str()
        .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .ok_or_else(|| QueryError::new(field, "must be a date written YYYY-MM-DD"))
}

/// Parses and validates a query body.
///
/// # Errors
/// [`QueryError`] naming the first offending field.
pub fn parse(body: &[u8]) -> Result<Query, QueryError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| QueryError::new("body", format!("is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(QueryError::new("body", "must be a JSON object"));
    };
    const KNOWN: &[&str] = &[
        "site_id",
        "metrics",
        "date_range",
        "dimensions",
        "filters",
        "order_by",
        "pagination",
        "include",
    ];
    if let Some(unknown) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(QueryError::new(
            unknown.clone(),
            format!("is not a query field; the fields are {}", KNOWN.join(", ")),
        ));
    }
    let site_id = obj
        .get("site_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| QueryError::new("site_id", "is required and must be the site's domain"))?
        .to_ascii_lowercase();

    let metric_names = strings(
        obj.get("metrics")
            .ok_or_else(|| QueryError::new("metrics", "is required"))?,
        "metrics",
    )?;
    if metric_names.is_empty() {
        return Err(QueryError::new("metrics", "must name at least one metric"));
    }
    let mut metrics = Vec::with_capacity(metric_names.len());
    for (i, m) in metric_names.iter().enumerate() {
        let metric = Metric::parse(m).ok_or_else(|| QueryError::new(format!("metrics[{i}]"), format!("{m:?} is not a metric; use visitors, visits, pageviews, views_per_visit, bounce_rate, visit_duration, events or total_revenue")))?;
        if metrics.contains(&metric) {
            return Err(QueryError::new(
                format!("metrics[{i}]"),
                format!("{m:?} is listed twice"),
            ));
        }
        metrics.push(metric);
    }

    let date_range = match obj.get("date_range") {
        None => return Err(QueryError::new("date_range", "is required")),
        Some(Value::String(s)) => {
            const NAMED: &[&str] = &[
                "day", "7d", "28d", "30d", "91d", "month", "6mo", "12mo", "year", "all",
            ];
            if !NAMED.contains(&s.as_str()) {
                return Err(QueryError::new(
                    "date_range",
                    format!(
                        "{s:?} is not a period; use one of {} or [\"YYYY-MM-DD\", \"YYYY-MM-DD\"]",
                        NAMED.join(", ")
                    ),
                ));
            }
            DateRange::Named(s.clone())
        }
        Some(Value::Array(a)) if a.len() == 2 => {
            let from = parse_date(&a[0], "date_range[0]")?;
            let to = parse_date(&a[1], "date_range[1]")?;
            if from > to {
                return Err(QueryError::new(
                    "date_range",
                    "the first date must not be after the second",
                ));
            }
            DateRange::Custom(from, to)
        }
        Some(_) => {
            return Err(QueryError::new(
                "date_range",
                "must be a period name or a pair of dates",
            ))
        }
    };

    let mut time = None;
    let mut dimension = None;
    let mut prop: Option<String> = None;
    let mut time_first = true;
    if let Some(v) = obj.get("dimensions") {
        for (i, d) in strings(v, "dimensions")?.iter().enumerate() {
            let field = format!("dimensions[{i}]");
            let grain = match d.as_str() {
                "time" | "time:day" => Some(TimeGrain::Day),
                "time:hour" => Some(TimeGrain::Hour),
                "time:week" => Some(TimeGrain::Week),
                "time:month" => Some(TimeGrain::Month),
                _ => None,
            };
            if let Some(g) = grain {
                if time.is_some() {
                    return Err(QueryError::new(field, "only one time dimension is allowed"));
                }
                time = Some(g);
                continue;
            }
            let (dim, prop_name) = parse_dimension(d).ok_or_else(|| QueryError::new(&field, format!("{d:?} is not a dimension; use time:hour, time:day, time:week, time:month, {}", dimension_names())))?;
            prop = prop_name;
            if dimension.is_some() {
                return Err(QueryError::new(
                    field,
                    "at most one dimension besides time is supported",
                ));
            }
            if time.is_none() {
                time_first = false;
            }
            dimension = Some(dim);
        }
    }

    let mut filters = Vec::new();
    if let Some(v) = obj.get("filters") {
        let Value::Array(list) = v else {
            return Err(QueryError::new(
                "filters",
                "must be an array of [operator, dimension, [values]]",
            ));
        };
        for (i, f) in list.iter().enumerate() {
            let field = format!("filters[{i}]");
            let Some([op, dim, values]) = f
                .as_array()
                .and_then(|a| <&[Value; 3]>::try_from(a.as_slice()).ok())
            else {
                return Err(QueryError::new(
                    field,
                    "must be [operator, dimension, [values]]",
                ));
            };
            let op = match op.as_str() {
                Some("is") => FilterOp::Is,
                Some("is_not") => FilterOp::IsNot,
                Some("contains") => FilterOp::Contains,
                _ => {
                    return Err(QueryError::new(
                        format!("{field}[0]"),
                        "the operator must be is, is_not or contains",
                    ))
                }
            };
            let name = dim.as_str().unwrap_or_default();
            let (dim, filter_prop) = parse_dimension(name).ok_or_else(|| {
                QueryError::new(
                    format!("{field}[1]"),
                    format!(
                        "{name:?} is not a filterable dimension; use {}",
                        dimension_names()
                    ),
                )
            })?;
            let values = strings(values, &format!("{field}[2]"))?;
            if values.is_empty() {
                return Err(QueryError::new(
                    format!("{field}[2]"),
                    "must list at least one value",
                ));
            }
            if filter_prop.is_some() {
                if prop.is_some() && prop != filter_prop {
                    return Err(QueryError::new(
                        format!("{field}[1]"),
                        "filters and the breakdown must name the same property",
                    ));
                }
                prop = filter_prop;
            }
            filters.push(Filter {
                op,
                dimension: dim,
                values,
            });
        }
    }
    if let Some(first) = filters.first() {
        if let Some(other) = filters.iter().position(|f| f.dimension != first.dimension) {
            return Err(QueryError::new(
                format!("filters[{other}]"),
                "all filters must be on the same dimension: each rollup is keyed by one dimension",
            ));
        }
        if let Some(d) = dimension {
            if d != first.dimension {
                return Err(QueryError::new("filters[0][1]", format!("filtering on {} while breaking down by {} is not supported: each rollup is keyed by one dimension", first.dimension.api_name().unwrap_or_default(), d.api_name().unwrap_or_default())));
            }
        }
    }
    let keyed = dimension.or(filters.first().map(|f| f.dimension));
    if let Some(d) = keyed.filter(|d| d.scope() == Scope::Event) {
        if let Some((i, m)) = metrics
            .iter()
            .enumerate()
            .find(|(_, m)| m.needs_visit_rollup())
        {
            return Err(QueryError::new(format!("metrics[{i}]"), format!("{} is a visit metric and is not available with the event dimension {}; use visit:entry_page or visit:exit_page for page-level bounce rate and duration", m.name(), d.api_name().unwrap_or_default())));
        }
    }

    let mut order_by = Vec::new();
    if let Some(v) = obj.get("order_by") {
        let Value::Array(list) = v else {
            return Err(QueryError::new(
                "order_by",
                "must be an array of [metric or dimension, \"asc\" | \"desc\"]",
            ));
        };
        for (i, o) in list.iter().enumerate() {
            let field = format!("order_by[{i}]");
            let Some([key, dir]) = o
                .as_array()
                .and_then(|a| <&[Value; 2]>::try_from(a.as_slice()).ok())
            else {
                return Err(QueryError::new(
                    field,
                    "must be [metric or dimension, \"asc\" | \"desc\"]",
                ));
            };
            let desc = match dir.as_str() {
                Some("desc") => true,
                Some("asc") => false,
                _ => {
                    return Err(QueryError::new(
                        format!("{field}[1]"),
                        "must be \"asc\" or \"desc\"",
                    ))
                }
            };
            let name = key.as_str().unwrap_or_default();
            let key = if let Some(m) = Metric::parse(name) {
                if !metrics.contains(&m) {
                    return Err(QueryError::new(
                        format!("{field}[0]"),
                        format!("{name:?} must also be listed in metrics"),
                    ));
                }
                OrderKey::Metric(m)
            } else if name.starts_with("time") && time.is_some() {
                OrderKey::Time
            } else if dimension.is_some() && parse_dimension(name).map(|(d, _)| d) == dimension {
                OrderKey::Dimension
            } else {
                return Err(QueryError::new(
                    format!("{field}[0]"),
                    format!("{name:?} is neither a metric of the query nor one of its dimensions"),
                ));
            };
            order_by.push((key, desc));
        }
    }
    if order_by.is_empty() {
        if time.is_some() {
            order_by.push((OrderKey::Time, false));
        }
        if dimension.is_some() {
            order_by.push((OrderKey::Metric(metrics[0]), true));
            order_by.push((OrderKey::Dimension, false));
        }
    }

    let (mut limit, mut offset) = (MAX_LIMIT, 0);
    if let Some(p) = obj.get("pagination") {
        let Value::Object(p) = p else {
            return Err(QueryError::new(
                "pagination",
                "must be an object {limit, offset}",
            ));
        };
        if let Some(l) = p.get("limit") {
            limit = l
                .as_u64()
                .filter(|l| (1..=MAX_LIMIT as u64).contains(l))
                .ok_or_else(|| {
                    QueryError::new(
                        "pagination.limit",
                        format!("must be an integer from 1 to {MAX_LIMIT}"),
                    )
                })? as usize;
        }
        if let Some(o) = p.get("offset") {
            offset = usize::try_from(o.as_u64().ok_or_else(|| {
                QueryError::new("pagination.offset", "must be a non-negative integer")
            })?)
            .unwrap_or(usize::MAX);
        }
    }
    Ok(Query {
        site_id,
        metrics,
        date_range,
        time,
        dimension,
        prop,
        time_first,
        filters,
        order_by,
        limit,
        offset,
    })
}

/// A dimension by its API name; `event:props:NAME` gives the property dimension and `NAME`.
fn parse_dimension(name: &str) -> Option<(Dimension, Option<String>)> {
    if let Some(prop) = name.strip_prefix("event:props:") {
        return (!prop.is_empty()).then(|| (Dimension::Prop, Some(prop.to_string())));
    }
    Dimension::from_api_name(name)
        .filter(|d| *d != Dimension::Prop)
        .map(|d| (d, None))
}

fn dimension_names() -> String {
    Dimension::ALL
        .iter()
        .filter_map(|d| d.api_name())
        .map(|n| {
            if n == "event:props" {
                "event:props:NAME"
            } else {
                n
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        parse(body.as_bytes()).unwrap_err().field
    }

    #[test]
    fn full_query_parses() {
        let q = parse(br#"{"site_id":"Shop.Example","metrics":["visitors","bounce_rate"],"date_range":["2024-01-01","2024-01-31"],"dimensions":["time:week","visit:source"],"filters":[["is_not","visit:source",["Direct / None"]]],"order_by":[["visitors","desc"]],"pagination":{"limit":5,"offset":10}}"#).unwrap();
        assert_eq!(q.site_id, "shop.example");
        assert_eq!(q.metrics, vec![Metric::Visitors, Metric::BounceRate]);
        assert_eq!(q.time, Some(TimeGrain::Week));
        assert_eq!(q.dimension, Some(Dimension::Source));
        assert_eq!((q.limit, q.offset), (5, 10));
        assert!(q.filters[0].matches("google.com") && !q.filters[0].matches("Direct / None"));
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(err("{"), "body");
        assert_eq!(
            err(r#"{"metrics":["visitors"],"date_range":"7d"}"#),
            "site_id"
        );
        assert_eq!(
            err(r#"{"site_id":"a","metrics":["visitors","clicks"],"date_range":"7d"}"#),
            "metrics[1]"
        );
        assert_eq!(
            err(r#"{"site_id":"a","metrics":["visitors"],"date_range":"8d"}"#),
            "date_range"
        );
        assert_eq!(
            err(
                r#"{"site_id":"a","metrics":["visitors"],"date_range":["2024-02-01","2024-01-01"]}"#
            ),
            "date_range"
        );
        assert_eq!(
            err(
                r#"{"site_id":"a","metrics":["visitors"],"date_range":["2024-13-01","2024-01-01"]}"#
            ),
            "date_range[0]"
        );
        assert_eq!(
            err(
                r#"{"site_id":"a","metrics":["visitors"],"date_range":"7d","dimensions":["event:nope"]}"#
            ),
            "dimensions[0]"
        );
        assert_eq!(
            err(
                r#"{"site_id":"a","metrics":["bounce_rate"],"date_range":"7d","dimensions":["event:page"]}"#
            ),
            "metrics[0]"
        );
        assert_eq!(
            err(
                r#"{"site_id":"a","metrics":["visitors"],"date_range":"7d","dimensions":["event:page"],"filters":[["is","visit:source",["x"]]]}"#
            ),
            "filters[0][1]"
        );
        assert_eq!(
            err(
                r#"{"site_id":"a","metrics":["visitors"],"date_range":"7d","filters":[["like","event:page",["x"]]]}"#
            ),
            "filters[0][0]"
        );
        assert_eq!(
            err(
                r#"{"site_id":"a","metrics":["visitors"],"date_range":"7d","order_by":[["pageviews","desc"]]}"#
            ),
            "order_by[0][0]"
        );
        assert_eq!(
            err(
                r#"{"site_id":"a","metrics":["visitors"],"date_range":"7d","pagination":{"limit":0}}"#
            ),
            "pagination.limit"
        );
        assert_eq!(
            err(r#"{"site_id":"a","metrics":["visitors"],"date_range":"7d","bogus":1}"#),
            "bogus"
        );
    }
}
