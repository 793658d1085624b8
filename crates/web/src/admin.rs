//! The admin API. It is served only on the server's Unix socket (`<data_dir>/footfall.sock`,
//! mode 0600, so filesystem permissions are its access control) and, when no server runs,
//! in-process by the CLI over the data directory. The CLI's `sites`, `keys` and `import`
//! commands are its clients.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /admin/sites` | `{domain, timezone, currency?}` | `201` site with `api_secret` (shown once) |
//! | `GET /admin/sites` | | sites |
//! | `PATCH /admin/sites/{domain}` | `{timezone?, currency?, keep_query_params?, hash_routing?}` | site |
//! | `POST /admin/keys` | `{sites: [domain, ...]}` | `201` `{key, prefix, sites}` (key shown once) |
//! | `POST /admin/import` | an [`ImportBatch`] | [`footfall_ingest::collector::ImportOutcome`] |
//! | `GET /admin/import/{producer}` | | `{sequence}`: the last line a file's import appended |
//! | `DELETE /admin/import/{run}` | | `204`: the run is over; its salt is deleted |
//!
//! Reprocessing and generations: see [`crate::generations`].

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use footfall_ingest::collector::{ImportBatch, ImportError};
use footfall_model::decode::is_currency_code;
use footfall_model::site::Site;
use footfall_store::{ApiKey, NewSite};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::ApiError;
use crate::secrets::{hash_secret, new_api_key, new_api_secret, new_measurement_id};
use crate::AppState;

/// Largest admin body (import batches), bytes.
const MAX_ADMIN_BYTES: usize = 32 * 1024 * 1024;

/// The admin routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/admin/sites", post(create_site).get(list_sites))
        .route("/admin/sites/{domain}", patch(update_site))
        .route("/admin/keys", post(create_key))
        .route("/admin/import", post(import))
        .route(
            "/admin/import/{producer}",
            get(import_position).delete(finish_import),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_ADMIN_BYTES))
        .with_state(state.clone())
        .merge(crate::generations::router(state))
}

/// A site as the admin API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct SiteView {
    /// Internal id.
    pub id: u64,
    /// Domain (the `site_id` of the query API).
    pub domain: String,
    /// Time zone.
    pub timezone: String,
    /// Currency.
    pub currency: String,
    /// GA4 measurement id.
    pub measurement_id: String,
    /// Query parameters kept in page paths.
    pub keep_query_params: Vec<String>,
    /// Whether page paths include the URL fragment.
    pub hash_routing: bool,
    /// The Measurement Protocol secret; only in the answer that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_secret: Option<String>,
}

impl From<Site> for SiteView {
    fn from(s: Site) -> Self {
        SiteView {
            id: s.id,
            domain: s.domain,
            timezone: s.timezone,
            currency: s.currency,
            measurement_id: s.measurement_id,
            keep_query_params: s.keep_query_params,
            hash_routing: s.hash_routing,
            api_secret: None,
        }
    }
}

/// Body of `POST /admin/sites`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSite {
    /// Domain.
    pub domain: String,
    /// IANA time zone; default UTC.
    pub timezone: Option<String>,
    /// ISO 4217 currency; default USD.
    pub currency: Option<String>,
}

/// Body of `PATCH /admin/sites/{domain}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSite {
    /// New time zone (applies to new data; history changes by reprocessing).
    pub timezone: Option<String>,
    /// New currency.
    pub currency: Option<String>,
    /// Query parameters to keep in page paths (replaces the list; `[]` keeps none).
    pub keep_query_params: Option<Vec<String>>,
    /// Whether page paths include the URL fragment.
    pub hash_routing: Option<bool>,
}

/// Most query parameters a site may keep in its page paths.
pub const MAX_KEPT_QUERY_PARAMS: usize = 20;

/// Validates a list of query parameter names: at most [`MAX_KEPT_QUERY_PARAMS`], each 1–64
/// bytes of printable ASCII other than `&`, `=`, `#`, `?` and `%`; returns them lower-cased,
/// without duplicates, in the order given.
///
/// # Errors
/// `400` naming `keep_query_params[i]`, or the list when it is too long.
pub fn validate_query_params(raw: &[String]) -> Result<Vec<String>, ApiError> {
    if raw.len() > MAX_KEPT_QUERY_PARAMS {
        return Err(ApiError::bad_request(
            "keep_query_params",
            format!(
                "names {} parameters; at most {MAX_KEPT_QUERY_PARAMS} may be kept",
                raw.len()
            ),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for (i, p) in raw.iter().enumerate() {
        let name = p.trim().to_ascii_lowercase();
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"&=#?%".contains(&b));
        if !ok {
            return Err(ApiError::bad_request(
                format!("keep_query_params[{i}]"),
                format!("{p:?} is not a query parameter name such as q (1-64 printable characters, none of & = # ? %)"),
            ));
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

/// Body of `POST /admin/keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Domains the key may read.
    pub sites: Vec<String>,
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request("body", e.to_string()))
}

/// Validates a domain: 1–253 characters of letters, digits, `-` and `.`, no scheme or path.
///
/// # Errors
/// `400` naming `domain`.
pub fn validate_domain(raw: &str) -> Result<String, ApiError> {
    let d = raw.trim().to_ascii_lowercase();
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !d.starts_with('.')
        && !d.ends_with('.')
        && !d.contains("..");
    if ok {
        Ok(d)
    } else {
        Err(ApiError::bad_request(
            "domain",
            format!("{raw:?} is not a domain name such as shop.example (no scheme, port or path)"),
        ))
    }
}

fn validate_timezone(raw: &str) -> Result<String, ApiError> {
    raw.parse::<chrono_tz::Tz>()
        .map(|tz| tz.name().to_string())
        .map_err(|_| {
            ApiError::bad_request(
                "timezone",
                format!("{raw:?} is not an IANA time zone such as Europe/Berlin"),
            )
        })
}

fn validate_currency(raw: &str) -> Result<String, ApiError> {
    let c = raw.trim().to_ascii_uppercase();
    if is_currency_code(&c) {
        Ok(c)
    } else {
        Err(ApiError::bad_request(
            "currency",
            format!("{raw:?} is not an ISO 4217 code such as EUR"),
        ))
    }
}

fn randomness(e: String) -> ApiError {
    ApiError::unavailable(e)
}

async fn create_site(
    State(state): State<Arc<AppState>>,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let req: CreateSite = json_body(&body)?;
    let domain = validate_domain(&req.domain)?;
    let timezone = validate_timezone(req.timezone.as_deref().unwrap_or("UTC"))?;
    let currency = validate_currency(req.currency.as_deref().unwrap_or("USD"))?;
    let secret = new_api_secret().map_err(randomness)?;
    let mut attempt = 0;
    let site = loop {
        let new = NewSite {
            domain: domain.clone(),
            timezone: timezone.clone(),
            currency: currency.clone(),
            measurement_id: new_measurement_id().map_err(randomness)?,
            api_secret_hash: hash_secret(&secret),
            created_at_us: state.clock.now_us(),
        };
        match state.store.create_site(new).await {
            Ok(s) => break s,
            // A measurement id collision (1 in 36^10) gets a new id; a domain conflict is final.
            Err(footfall_store::StoreError::Conflict(what))
                if what.contains("measurement id") && attempt < 3 =>
            {
                attempt += 1
            }
            Err(e) => return Err(e.into()),
        }
    };
    state.collector.sites().invalidate();
    let mut view = SiteView::from(site);
    view.api_secret = Some(secret);
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn list_sites(State(state): State<Arc<AppState>>) -> Result<Json<Vec<SiteView>>, ApiError> {
    Ok(Json(
        state
            .store
            .list_sites()
            .await?
            .into_iter()
            .map(SiteView::from)
            .collect(),
    ))
}

async fn update_site(
    State(state): State<Arc<AppState>>,
    Path(domain): Path<String>,
    body: bytes::Bytes,
) -> Result<Json<SiteView>, ApiError> {
    let req: UpdateSite = json_body(&body)?;
    let mut site = state
        .store
        .site_by_domain(&domain.to_ascii_lowercase())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no site has the domain {domain:?}")))?;
    if let Some(tz) = &req.timezone {
        site.timezone = validate_timezone(tz)?;
    }
    if let Some(c) = &req.currency {
        site.currency = validate_currency(c)?;
    }
    if let Some(params) = &req.keep_query_params {
        site.keep_query_params = validate_query_params(params)?;
    }
    if let Some(h) = req.hash_routing {
        site.hash_routing = h;
    }
    state.store.update_site(&site).await?;
    state.collector.sites().invalidate();
    Ok(Json(SiteView::from(site)))
}

async fn create_key(
    State(state): State<Arc<AppState>>,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let req: CreateKey = json_body(&body)?;
    if req.sites.is_empty() {
        return Err(ApiError::bad_request("sites", "name at least one site"));
    }
    let mut site_ids = Vec::new();
    for (i, d) in req.sites.iter().enumerate() {
        let site = state
            .store
            .site_by_domain(&d.to_ascii_lowercase())
            .await?
            .ok_or_else(|| {
                ApiError::bad_request(
                    format!("sites[{i}]"),
                    format!("no site has the domain {d:?}"),
                )
            })?;
        site_ids.push(site.id);
    }
    let key = new_api_key().map_err(randomness)?;
    let prefix: String = key.chars().take(7).collect();
    state
        .store
        .put_key(&ApiKey {
            hash: hash_secret(&key),
            prefix: prefix.clone(),
            site_ids,
            created_at_us: state.clock.now_us(),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"key": key, "prefix": prefix, "sites": req.sites})),
    )
        .into_response())
}

async fn import(
    State(state): State<Arc<AppState>>,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let batch: ImportBatch = json_body(&body)?;
    match state.collector.import(batch).await {
        Ok(outcome) => Ok(Json(outcome).into_response()),
        Err(ImportError::UnknownSite(d)) => Err(ApiError::bad_request(
            "site",
            format!("no site has the domain {d:?}"),
        )),
        Err(ImportError::Store(e)) => Err(e.into()),
        Err(ImportError::Log(e)) => {
            tracing::error!(error = %e, "import append failed");
            Err(ApiError::unavailable(format!("the event log failed: {e}")))
        }
    }
}

async fn import_position(
    State(state): State<Arc<AppState>>,
    Path(producer): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let sequence = state
        .collector
        .import_position(&producer)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(json!({"sequence": sequence})))
}

async fn finish_import(
    State(state): State<Arc<AppState>>,
    Path(run): Path<String>,
) -> Result<StatusCode, ApiError> {
    let prefix = footfall_ingest::visitor::IMPORT_RUN_PREFIX;
    if !run.starts_with(prefix) {
        return Err(ApiError::bad_request(
            "run",
            format!("only import runs ({prefix}...) can be finished"),
        ));
    }
    state.collector.finish_import(&run).await?;
    Ok(StatusCode::NO_CONTENT)
}
