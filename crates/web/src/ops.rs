//! Operational endpoints: `/healthz` (the process is alive), `/readyz` (ready to take
//! traffic: started, not shutting down, log writable, store reachable) and `/metrics` (Prometheus text;
//! closed unless `server.metrics_token` or `server.metrics_public` is configured).

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::error::ApiError;
use crate::{AppState, MetricsAccess};

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once) and returns its handle.
pub fn prometheus() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may be installed already (tests); the handle still renders ours.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The ops routes.
pub fn router(state: Arc<AppState>) -> Router {
    prometheus();
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if !state.ready.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: starting or shutting down",
        )
            .into_response();
    }
    if let Err(e) = state.log.check_writable().await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")).into_response();
    }
    match state.store.site(0).await {
        Ok(_) => "ready".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")).into_response(),
    }
}

async fn metrics_text(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let allowed = match &state.metrics_access {
        MetricsAccess::Public => true,
        MetricsAccess::Token(hash) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| {
                footfall_ingest::collector::constant_time_eq(
                    crate::secrets::hash_secret(t.trim()).as_bytes(),
                    hash.as_bytes(),
                )
            }),
        MetricsAccess::Closed => {
            return ApiError::forbidden("/metrics is disabled: set server.metrics_token (then send it as a Bearer token) or server.metrics_public = true").into_response();
        }
    };
    if !allowed {
        return ApiError::unauthorized(
            "/metrics needs Authorization: Bearer <server.metrics_token>",
        )
        .into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus().render(),
    )
        .into_response()
}
