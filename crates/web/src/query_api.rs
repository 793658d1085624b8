//! `POST /api/v2/query`: Plausible Stats API v2 shaped queries, authenticated by API key.
//!
//! - no or unknown key: `401`;
//! - a site the key may not read, whether or not it exists: the same `404`;
//! - a malformed query: `400` naming the field;
//! - a key over its query rate (`limits.queries_per_key_per_s`): `429` with `Retry-After`;
//! - otherwise `200` with `results`, `meta` and the `query` as sent.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use footfall_model::site::Site;
use footfall_query::execute::{execute, ExecuteError};
use footfall_store::ApiKey;
use serde_json::json;

use crate::error::ApiError;
use crate::secrets::hash_secret;
use crate::AppState;

/// Largest query body, bytes.
const MAX_QUERY_BYTES: usize = 64 * 1024;

/// The query API's routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/v2/query", post(query))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_QUERY_BYTES))
        .with_state(state)
}

/// The API key of a request, from `Authorization: Bearer KEY`.
///
/// # Errors
/// `401` when the header is missing or malformed or the key is unknown.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<ApiKey, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <api key> header"))?;
    let token = value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be \"Bearer <api key>\"")
        })?;
    // The lookup is by hash, so its timing depends on the hash, not on how much of a guessed
    // key is right.
    state
        .store
        .key_by_hash(&hash_secret(token))
        .await?
        .ok_or_else(|| ApiError::unauthorized("the API key is not valid"))
}

/// The site `domain` if `key` may read it; the same `404` otherwise, whether the site exists.
///
/// # Errors
/// `404` as described; `503` when the store fails.
pub async fn authorize_site(
    state: &AppState,
    key: &ApiKey,
    domain: &str,
) -> Result<Site, ApiError> {
    let site = state.store.site_by_domain(domain).await?;
    match site {
        Some(s) if key.site_ids.contains(&s.id) => Ok(s),
        _ => Err(ApiError::not_found(format!(
            "site {domain:?} was not found or this API key may not read it"
        ))),
    }
}

async fn query(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let result = answer(&state, &headers, &body).await;
    metrics::histogram!("footfall_query_seconds").record(started.elapsed().as_secs_f64());
    match result {
        Ok(r) => r,
        Err(e) => {
            metrics::counter!("footfall_query_errors_total", "code" => e.code).increment(1);
            e.into_response()
        }
    }
}

/// The API key of a request ([`authenticate`]) within its query rate limit
/// (`limits.queries_per_key_per_s`), which the dashboard's reads share.
///
/// # Errors
/// `401` as [`authenticate`]; `429` with `Retry-After` over the limit.
pub async fn authenticate_within_limit(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<ApiKey, ApiError> {
    let key = authenticate(state, headers).await?;
    state.query_limiter.check(&key.hash, 1).map_err(|wait| {
        ApiError::rate_limited(
            "this API key is over its query rate limit; retry later",
            footfall_ingest::limits::retry_after_secs(wait),
        )
    })?;
    Ok(key)
}

async fn answer(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
    let key = authenticate_within_limit(state, headers).await?;
    let query = footfall_query::request::parse(body)
        .map_err(|e| ApiError::bad_request(e.field, e.message))?;
    let site = authorize_site(state, &key, &query.site_id).await?;
    let answer = execute(
        state.store.as_ref(),
        state.partitions,
        &site,
        &query,
        state.clock.now_us(),
    )
    .await
    .map_err(|e| match e {
        ExecuteError::Query(q) => ApiError::bad_request(q.field, q.message),
        ExecuteError::Store(s) => ApiError::from(s),
    })?;
    let echo: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    Ok(
        Json(json!({"results": answer.results, "meta": answer.meta, "query": echo}))
            .into_response(),
    )
}
