//! Sending load: max-rate (closed loop, each worker sends its next request when the last is
//! answered) or fixed-rate (open loop, without coordinated omission), with freshness
//! canaries.
//!
//! Fixed rate: request `i` is due at `start + i × interval`, whatever happened to the
//! requests before it; a worker takes the next due slot, waits for its time, sends it, and
//! records the latency from the slot's *due* time, not from when it was sent. When the server
//! stalls, the requests that should have been sent meanwhile are recorded with the stall in
//! their latency, which is what a real client population would have seen (Tene, "How NOT to
//! measure latency", 2015; wrk2's correction does the same).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;

use crate::http::{self, HttpClient, Prepared, SiteInfo};
use crate::model::{Hit, Traffic};

/// The ingest protocol of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Plausible Events API, one event per request.
    Plausible,
    /// GA4 Measurement Protocol, `--batch` events per request (1–25).
    Ga4,
}

/// What to send and how.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// `http://host:port` of the collector.
    pub target: String,
    /// The sites, in order of their power-law rank.
    pub sites: Vec<SiteInfo>,
    /// The protocol.
    pub protocol: Protocol,
    /// Events per request (Measurement Protocol only).
    pub batch: usize,
    /// Events per second for fixed rate; `None` for max rate.
    pub rate: Option<f64>,
    /// Concurrent requests (workers).
    pub concurrency: usize,
    /// How long to send.
    pub duration: Duration,
    /// Seed of the traffic model.
    pub seed: u64,
    /// Canaries for freshness, if wanted.
    pub canary: Option<CanaryConfig>,
}

/// Freshness canaries: a pageview of a unique path, then the query API polled until it
/// counts it.
#[derive(Clone, Debug)]
pub struct CanaryConfig {
    /// The site canaries are sent to (its domain).
    pub site: String,
    /// An API key that may read it.
    pub api_key: String,
    /// `http://host:port` of the query API.
    pub query: String,
    /// Time between canaries.
    pub interval: Duration,
}

/// Latency percentiles in µs.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Largest, µs.
    pub max_us: u64,
}

impl Percentiles {
    /// The percentiles of a histogram of µs values.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// What a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    /// `max` or `fixed`.
    pub mode: &'static str,
    /// The protocol.
    pub protocol: Protocol,
    /// Events per request.
    pub batch: usize,
    /// Requested events/s (fixed rate).
    pub target_events_per_s: Option<f64>,
    /// Wall time of the run, s.
    pub duration_s: f64,
    /// Requests answered 2xx.
    pub requests_ok: u64,
    /// Events in requests answered 2xx (acknowledged).
    pub events_acked: u64,
    /// Acknowledged events per second of wall time.
    pub events_per_s: f64,
    /// Latency of every request (2xx or not), from its due time in fixed-rate mode.
    pub latency: Percentiles,
    /// Requests not answered 2xx, by status (or `connect` when no answer came).
    pub errors: BTreeMap<String, u64>,
    /// Canary freshness, when canaries were sent.
    pub freshness: Option<Freshness>,
}

/// Canary freshness: from a canary's acknowledgement to the first query answer counting it.
#[derive(Clone, Debug, Serialize)]
pub struct Freshness {
    /// Canaries acknowledged.
    pub sent: u64,
    /// Canaries seen in a query answer within 60 s.
    pub visible: u64,
    /// Acknowledged → visible, in µs (resolution: the 50 ms polling interval).
    pub latency: Percentiles,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 10 min at 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

fn prepare(config: &LoadConfig, traffic: &mut Traffic) -> Prepared {
    let hit = traffic.next_hit();
    let site = &config.sites[hit.site.min(config.sites.len() - 1)];
    match config.protocol {
        Protocol::Plausible => http::plausible(site, &hit),
        Protocol::Ga4 => {
            let mut hits: Vec<Hit> = vec![hit];
            while hits.len() < config.batch.clamp(1, 25) {
                let mut next = traffic.next_hit();
                // One request carries one client's events: keep the first hit's site and
                // visitor for the whole batch (a visitor browsing on).
                next.site = hits[0].site;
                next.visitor = hits[0].visitor;
                hits.push(next);
            }
            http::measurement_protocol(site, &hits)
        }
    }
}

struct WorkerResult {
    histogram: Histogram<u64>,
    requests_ok: u64,
    events_acked: u64,
    errors: BTreeMap<String, u64>,
}

/// Runs the load and returns what it measured.
///
/// # Errors
/// When the configuration has no sites.
pub async fn run(config: LoadConfig) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(!config.sites.is_empty(), "the sites file lists no sites");
    let config = Arc::new(config);
    let client = http::client(config.concurrency);
    let start = Instant::now();
    let end = start + config.duration;
    let slot = Arc::new(AtomicU64::new(0));
    let interval_ns = config.rate.map(|r| {
        // Plausible requests carry one event whatever `--batch` says.
        let per_request = match config.protocol {
            Protocol::Ga4 => config.batch.clamp(1, 25) as f64,
            Protocol::Plausible => 1.0,
        };
        ((1e9 * per_request) / r.max(0.001)) as u64
    });
    let canary = config
        .canary
        .clone()
        .map(|c| tokio::spawn(canaries(client.clone(), config.target.clone(), c, end)));
    let mut workers = Vec::new();
    for w in 0..config.concurrency.max(1) {
        let (config, client, slot) = (config.clone(), client.clone(), slot.clone());
        workers.push(tokio::spawn(async move {
            let mut traffic = Traffic::new(config.sites.len(), config.seed.wrapping_add(w as u64));
            let mut result = WorkerResult {
                histogram: histogram(),
                requests_ok: 0,
                events_acked: 0,
                errors: BTreeMap::new(),
            };
            loop {
                let due = match interval_ns {
                    Some(ns) => {
                        let i = slot.fetch_add(1, Ordering::Relaxed);
                        let due = start + Duration::from_nanos(i.saturating_mul(ns));
                        if due >= end {
                            break;
                        }
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => {
                        let now = Instant::now();
                        if now >= end {
                            break;
                        }
                        now
                    }
                };
                let req = prepare(&config, &mut traffic);
                let outcome = http::send(&client, &config.target, &req).await;
                let us = due.elapsed().as_micros().max(1) as u64;
                let _ = result.histogram.record(us.min(600_000_000));
                match outcome {
                    Ok(status) if (200..300).contains(&status) => {
                        result.requests_ok += 1;
                        result.events_acked += req.events;
                    }
                    Ok(status) => *result.errors.entry(status.to_string()).or_default() += 1,
                    Err(_) => {
                        *result.errors.entry("connect".into()).or_default() += 1;
                        // Do not spin while the server is down.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            result
        }));
    }
    let mut all = WorkerResult {
        histogram: histogram(),
        requests_ok: 0,
        events_acked: 0,
        errors: BTreeMap::new(),
    };
    for w in workers {
        let r = w.await?;
        all.histogram.add(&r.histogram).ok();
        all.requests_ok += r.requests_ok;
        all.events_acked += r.events_acked;
        for (k, v) in r.errors {
            *all.errors.entry(k).or_default() += v;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let freshness = match canary {
        Some(task) => Some(task.await?),
        None => None,
    };
    Ok(LoadReport {
        mode: if config.rate.is_some() {
            "fixed"
        } else {
            "max"
        },
        protocol: config.protocol,
        batch: if config.protocol == Protocol::Ga4 {
            config.batch.clamp(1, 25)
        } else {
            1
        },
        target_events_per_s: config.rate,
        duration_s: elapsed,
        requests_ok: all.requests_ok,
        events_acked: all.events_acked,
        events_per_s: all.events_acked as f64 / elapsed.max(1e-9),
        latency: Percentiles::of(&all.histogram),
        errors: all.errors,
        freshness,
    })
}

/// Sends a canary every `interval` until `end`, and polls for each until it is visible.
async fn canaries(client: HttpClient, target: String, c: CanaryConfig, end: Instant) -> Freshness {
    let nonce = std::process::id();
    let mut polls = Vec::new();
    let mut sent = 0u64;
    let mut n = 0u64;
    while Instant::now() < end {
        n += 1;
        let path = format!("/canary/{nonce}/{n}");
        let site = SiteInfo {
            domain: c.site.clone(),
            measurement_id: String::new(),
            api_secret: String::new(),
        };
        let hit = Hit {
            site: 0,
            visitor: 0xC0FFEE ^ n,
            name: "pageview",
            path: path.clone(),
            referrer: None,
            revenue_cents: None,
        };
        if let Ok(s) = http::send(&client, &target, &http::plausible(&site, &hit)).await {
            if (200..300).contains(&s) {
                sent += 1;
                let acked = Instant::now();
                let (client, c) = (client.clone(), c.clone());
                polls.push(tokio::spawn(async move {
                    poll_visible(&client, &c, &path, acked).await
                }));
            }
        }
        tokio::time::sleep(c.interval).await;
    }
    let mut h = histogram();
    let mut visible = 0;
    for p in polls {
        if let Ok(Some(us)) = p.await {
            visible += 1;
            let _ = h.record(us.max(1));
        }
    }
    Freshness {
        sent,
        visible,
        latency: Percentiles::of(&h),
    }
}

async fn poll_visible(
    client: &HttpClient,
    c: &CanaryConfig,
    path: &str,
    acked: Instant,
) -> Option<u64> {
    let body = json!({
        "site_id": c.site,
        "metrics": ["pageviews"],
        "date_range": "7d",
        "filters": [["is", "event:page", [path]]],
    });
    let url = format!("{}/api/v2/query", c.query);
    while acked.elapsed() < Duration::from_secs(60) {
        if let Ok((200, answer)) = http::post_json(client, &url, &c.api_key, &body).await {
            if answer["results"][0]["metrics"][0].as_u64().unwrap_or(0) >= 1 {
                return Some(acked.elapsed().as_micros() as u64);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}
