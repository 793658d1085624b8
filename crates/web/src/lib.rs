//! Footfall's HTTP APIs other than the collector's:
//!
//! - [`query_api`]: `POST /api/v2/query` with `Authorization: Bearer KEY`;
//! - [`admin`]: the admin API (sites, keys, imports) that the CLI talks to over the server's
//!   Unix socket, or in-process when no server is running;
//! - [`ops`]: `/healthz`, `/readyz` and `/metrics`;
//! - [`dashboard`]: the dashboard at `/`, the tracker at `/js/script.js`, and the sites and
//!   realtime endpoints the dashboard reads.

pub mod admin;
pub mod dashboard;
pub mod error;
pub mod generations;
pub mod ops;
pub mod query_api;
pub mod secrets;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use footfall_ingest::Collector;
use footfall_model::clock::Clock;
use footfall_store::Store;

/// What the handlers share.
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The log.
    pub log: Arc<dyn footfall_log::Log>,
    /// The collector (admin imports go through it).
    pub collector: Arc<Collector>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The log's partition count (locates a site's processor checkpoint).
    pub partitions: u32,
    /// Readiness: false while starting and once shutdown has begun.
    pub ready: AtomicBool,
    /// Query rate limit per API key (keyed by the key's hash).
    pub query_limiter: footfall_ingest::limits::KeyedLimiter<String>,
    /// Who may read `/metrics`.
    pub metrics_access: MetricsAccess,
    /// The raw event archive, when the archiver is enabled (reprocessing reads it).
    pub archive: Option<footfall_archive::Archive>,
    /// Live processing's settings, which reprocessing must share (the cap on values).
    pub processor_config: footfall_process::runner::RunnerConfig,
    /// Reprocess jobs.
    pub jobs: generations::Jobs,
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsAccess {
    /// Anyone who can reach the server (`server.metrics_public = true`).
    Public,
    /// Requests with `Authorization: Bearer <token>` (`server.metrics_token`); the BLAKE3 hash
    /// of the token is kept.
    Token(String),
    /// Nobody: neither is configured.
    Closed,
}

/// The public router: collector endpoints, the query API, the dashboard and the ops
/// endpoints.
pub fn public_router(state: Arc<AppState>) -> axum::Router {
    router_for(state, true, true)
}

/// The public router of a process that runs some roles: the collector's endpoints when
/// `collector`, the query API and the dashboard when `query`, the tracker script with
/// either, and the ops endpoints
/// (`/healthz`, `/readyz`, `/metrics`) always. A path of a role the process does not run
/// answers `404`.
pub fn router_for(state: Arc<AppState>, collector: bool, query: bool) -> axum::Router {
    let mut router = ops::router(state.clone());
    if collector {
        router = router.merge(state.collector.router());
    }
    if query {
        router = router
            .merge(query_api::router(state.clone()))
            .merge(dashboard::router(state));
    }
    if collector || query {
        router = router.merge(dashboard::tracker_router());
    }
    router
}
