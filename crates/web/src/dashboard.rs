//! The dashboard at `/`, the tracker script at `/js/script.js`, and the two small read
//! endpoints the dashboard needs besides the query API:
//!
//! - `GET /api/v2/sites` (`Authorization: Bearer KEY`): the sites the key may read,
//!   `{"sites": [{"domain", "time_zone", "currency"}]}`, by domain;
//! - `GET /api/v2/realtime?site_id=DOMAIN` (same key): current visitors,
//!   `{"visitors": 3, "approximate": false, "window_seconds": 300}` (see
//!   [`footfall_ingest::realtime`]).
//!
//! The assets are compiled into the binary (`include_str!`), so the dashboard works offline
//! and needs no CDN. They are plain HTML, CSS and JavaScript with a hand-drawn SVG chart, no
//! framework and no build step. Every page and asset of the dashboard is served with a strict
//! Content-Security-Policy: scripts and styles only from this origin, no inline script or
//! style, no framing, requests only to this origin. Everything a sender controls is put into
//! the page as text (`textContent`), never as HTML.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::query_api::{authenticate_within_limit, authorize_site};
use crate::AppState;

/// The dashboard page.
const INDEX_HTML: &str = include_str!("../assets/index.html");
/// The dashboard's script.
const APP_JS: &str = include_str!("../assets/app.js");
/// The dashboard's styles.
const APP_CSS: &str = include_str!("../assets/app.css");
/// The tracker that sites embed.
pub const TRACKER_JS: &str = include_str!("../assets/script.js");

/// The dashboard's Content-Security-Policy (CSP Level 3 directives).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The tracker script's route, `GET /js/script.js`: served by collectors (sites load it
/// from the host they send their hits to) and by query replicas (the dashboard's origin).
pub fn tracker_router() -> Router {
    Router::new().route("/js/script.js", get(tracker))
}

/// The dashboard's routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route("/api/v2/sites", get(sites))
        .route("/api/v2/realtime", get(realtime))
        .with_state(state)
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The tracker: any site may load it, so no CSP of ours applies, and it may be cached.
async fn tracker() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        TRACKER_JS,
    )
        .into_response()
}

async fn sites(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let run = async {
        let key = authenticate_within_limit(&state, &headers).await?;
        let mut sites = Vec::new();
        for id in &key.site_ids {
            if let Some(s) = state.store.site(*id).await? {
                sites.push(s);
            }
        }
        sites.sort_by(|a, b| a.domain.cmp(&b.domain));
        let list: Vec<_> = sites
            .iter()
            .map(|s| json!({"domain": s.domain, "time_zone": s.timezone, "currency": s.currency}))
            .collect();
        Ok::<_, ApiError>(Json(json!({ "sites": list })).into_response())
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// Query parameters of `/api/v2/realtime`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RealtimeParams {
    site_id: Option<String>,
}

async fn realtime(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<RealtimeParams>,
) -> Response {
    let run = async {
        let key = authenticate_within_limit(&state, &headers).await?;
        let domain = params.site_id.filter(|d| !d.is_empty()).ok_or_else(|| {
            ApiError::bad_request("site_id", "the site_id query parameter is required")
        })?;
        let site = authorize_site(&state, &key, &domain).await?;
        let now = state.clock.now_us();
        let current = state.collector.realtime().visitors(site.id, now);
        Ok::<_, ApiError>(
            Json(json!({
                "visitors": current.visitors,
                "approximate": current.approximate,
                "window_seconds": footfall_ingest::realtime::WINDOW_US / 1_000_000,
            }))
            .into_response(),
        )
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}
