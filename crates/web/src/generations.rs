//! Admin routes for reprocessing and generations (DESIGN §4.6); the CLI's `reprocess` and
//! `generations` commands are their clients.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /admin/reprocess` | `{from, to, site?, dry_run?}` (dates `YYYY-MM-DD`, local to each site) | `202 {job}`; `409` while another job runs |
//! | `GET /admin/jobs/{job}` | | `{job, state: running\|succeeded\|failed, progress, outcome?, error?}` |
//! | `GET /admin/generations?site=D` | | `[{site, served: [{from, to, generation}], generations: [...]}]` |
//! | `POST /admin/generations/rollback` | `{site}` | `{site, served}`: the spans served before the last switch |

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::NaiveDate;
use footfall_model::bucket::day_to_date;
use footfall_process::reprocess::{self, Outcome, Progress, Request};
use footfall_store::ServedSpan;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::AppState;

/// A reprocess job.
#[derive(Default)]
pub struct Job {
    progress: Arc<Mutex<Progress>>,
    result: Mutex<Option<Result<Outcome, String>>>,
}

/// The jobs of this process (kept until it exits; one runs at a time).
#[derive(Default)]
pub struct Jobs {
    next: AtomicU64,
    jobs: Mutex<HashMap<u64, Arc<Job>>>,
}

impl Jobs {
    /// Registers a new job unless one is running (checked and registered under one lock).
    fn start(&self) -> Option<(u64, Arc<Job>)> {
        let mut jobs = self.jobs.lock().ok()?;
        if jobs
            .values()
            .any(|j| j.result.lock().map_or(true, |r| r.is_none()))
        {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let job = Arc::new(Job::default());
        jobs.insert(id, job.clone());
        Some((id, job))
    }
}

/// The routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/admin/reprocess", post(start_reprocess))
        .route("/admin/jobs/{job}", get(job_status))
        .route("/admin/generations", get(list_generations))
        .route("/admin/generations/rollback", post(rollback))
        .with_state(state)
}

/// Body of `POST /admin/reprocess`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReprocessBody {
    /// First day, `YYYY-MM-DD`.
    pub from: String,
    /// Last day, inclusive.
    pub to: String,
    /// One site's domain; every site when absent.
    pub site: Option<String>,
    /// Compare only.
    #[serde(default)]
    pub dry_run: bool,
}

fn date(field: &str, raw: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d").map_err(|_| {
        ApiError::bad_request(field, format!("{raw:?} is not a date such as 2024-03-01"))
    })
}

async fn start_reprocess(
    State(state): State<Arc<AppState>>,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let req: ReprocessBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("body", e.to_string()))?;
    let from = date("from", &req.from)?;
    let to = date("to", &req.to)?;
    if to < from {
        return Err(ApiError::bad_request(
            "to",
            format!("{to} is before from ({from})"),
        ));
    }
    let sites = match &req.site {
        Some(d) => vec![state
            .store
            .site_by_domain(&d.trim().to_ascii_lowercase())
            .await?
            .ok_or_else(|| {
                ApiError::bad_request("site", format!("no site has the domain {d:?}"))
            })?],
        None => state.store.list_sites().await?,
    };
    if sites.is_empty() {
        return Err(ApiError::bad_request(
            "site",
            "there are no sites to reprocess",
        ));
    }
    let Some(archive) = state.archive.clone() else {
        return Err(ApiError::conflict(
            "the archive is disabled (archive.enabled = false); there is nothing to reprocess from",
        ));
    };
    let ctx = reprocess::Context {
        store: state.store.clone(),
        log: state.log.clone(),
        archive,
        clock: state.clock.clone(),
        config: state.processor_config.clone(),
    };
    let Some((id, job)) = state.jobs.start() else {
        return Err(ApiError::conflict(
            "a reprocess is already running; wait for it to finish",
        ));
    };
    let request = Request {
        sites,
        from,
        to,
        dry_run: req.dry_run,
    };
    tokio::spawn(async move {
        let result = reprocess::reprocess(&ctx, request, job.progress.clone())
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "reprocess failed");
                e.to_string()
            });
        if let Ok(mut r) = job.result.lock() {
            *r = Some(result);
        }
    });
    Ok((StatusCode::ACCEPTED, Json(json!({"job": id}))).into_response())
}

async fn job_status(
    State(state): State<Arc<AppState>>,
    Path(id): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    let job = state
        .jobs
        .jobs
        .lock()
        .ok()
        .and_then(|jobs| jobs.get(&id).cloned())
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    let progress = job.progress.lock().map(|p| p.clone()).unwrap_or_default();
    let result = job.result.lock().ok().and_then(|r| r.clone());
    Ok(Json(match result {
        None => json!({"job": id, "state": "running", "progress": progress}),
        Some(Ok(outcome)) => {
            json!({"job": id, "state": "succeeded", "progress": progress, "outcome": outcome})
        }
        Some(Err(e)) => json!({"job": id, "state": "failed", "progress": progress, "error": e}),
    }))
}

fn spans_view(spans: &[ServedSpan]) -> Vec<Value> {
    let d = |day: i64| day_to_date(day).map_or_else(|| day.to_string(), |d| d.to_string());
    spans
        .iter()
        .map(|s| json!({"from": d(s.from_day), "to": d(s.to_day), "generation": s.generation}))
        .collect()
}

/// Query of `GET /admin/generations`.
#[derive(Debug, Deserialize)]
pub struct GenerationsQuery {
    /// One site's domain.
    pub site: Option<String>,
}

async fn list_generations(
    State(state): State<Arc<AppState>>,
    Query(q): Query<GenerationsQuery>,
) -> Result<Json<Value>, ApiError> {
    let sites = match &q.site {
        Some(d) => vec![state
            .store
            .site_by_domain(&d.to_ascii_lowercase())
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no site has the domain {d:?}")))?],
        None => state.store.list_sites().await?,
    };
    let mut out = Vec::new();
    for site in sites {
        let served = state.store.served(site.id).await?;
        let d = |day: i64| day_to_date(day).map_or_else(|| day.to_string(), |d| d.to_string());
        let generations: Vec<Value> = state
            .store
            .generations(Some(site.id))
            .await?
            .into_iter()
            .map(|g| {
                json!({
                    "generation": g.id,
                    "from": d(g.from_day),
                    "to": d(g.to_day),
                    "state": g.state,
                    "events": g.events,
                    "created_at": chrono::DateTime::<chrono::Utc>::from_timestamp_micros(g.created_at_us)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                })
            })
            .collect();
        out.push(
            json!({"site": site.domain, "served": spans_view(&served), "generations": generations}),
        );
    }
    Ok(Json(Value::Array(out)))
}

/// Body of `POST /admin/generations/rollback`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// The site's domain.
    pub site: String,
}

async fn rollback(
    State(state): State<Arc<AppState>>,
    body: bytes::Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: RollbackBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("body", e.to_string()))?;
    let site = state
        .store
        .site_by_domain(&req.site.to_ascii_lowercase())
        .await?
        .ok_or_else(|| {
            ApiError::bad_request("site", format!("no site has the domain {:?}", req.site))
        })?;
    let served = state.store.pop_served(site.id).await.map_err(|e| match e {
        footfall_store::StoreError::NotFound(_) => ApiError::conflict(format!(
            "{} has no earlier served generations to roll back to",
            site.domain
        )),
        other => other.into(),
    })?;
    tracing::info!(site = %site.domain, "served generations rolled back");
    Ok(Json(
        json!({"site": site.domain, "served": spans_view(&served)}),
    ))
}
