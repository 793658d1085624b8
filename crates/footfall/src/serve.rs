//! `footfall serve`: wiring of every role with its backends, and the ordered shutdown.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use footfall_archive::archiver::ArchiverConfig;
use footfall_archive::Archive;
use footfall_ingest::limits::KeyedLimiter;
use footfall_ingest::{Collector, CollectorConfig};
use footfall_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use footfall_log::Log;
use footfall_model::clock::Clock;
use footfall_process::runner::{self, RunnerConfig};
use footfall_store::embedded::EmbeddedStore;
use footfall_store::Store;
use footfall_web::{AppState, MetricsAccess};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Role};

/// The opened backends.
pub struct Backends {
    /// The log.
    pub log: Arc<dyn Log>,
    /// The embedded log, kept to close it (flush and stop its writer) at shutdown.
    pub embedded_log: Option<Arc<EmbeddedLog>>,
    /// The store.
    pub store: Arc<dyn Store>,
}

/// Opens the log and the store named by the configuration.
///
/// # Errors
/// A message naming the backend when its URL names a backend this build does not have, or
/// when it cannot be opened (in use by a running server, unreadable, wrong partition count,
/// brokers that do not answer, a topic that does not exist).
pub async fn open_backends(config: &Config) -> anyhow::Result<Backends> {
    let (log, embedded_log): (Arc<dyn Log>, _) = match config.log.url.as_str() {
        "" => {
            let commit_linger = Duration::from_micros(config.log.commit_linger_us);
            let log = Arc::new(
                EmbeddedLog::open(&EmbeddedLogConfig {
                    path: footfall_log::embedded::default_path(&config.data_dir),
                    partitions: config.log.partitions,
                    commit_linger,
                    cache_bytes: config.log.cache_mib << 20,
                })
                .context("opening the embedded log")?,
            );
            (log.clone(), Some(log))
        }
        url if url.starts_with("kafka://") => (open_kafka(url, config).await?, None),
        url => bail!("log.url = {url:?}: unknown backend; leave it empty for the embedded log"),
    };
    let store: Arc<dyn Store> = match config.store.url.as_str() {
        "" => Arc::new(EmbeddedStore::open_with_cache(&footfall_store::embedded::default_path(&config.data_dir), config.store.cache_mib << 20).context("opening the embedded store")?),
        url if url.starts_with("cassandra://") || url.starts_with("scylla://") => open_cassandra(url).await?,
        url => bail!("store.url = {url:?}: unknown backend; use cassandra://… or leave it empty for the embedded store"),
    };
    Ok(Backends {
        log,
        embedded_log,
        store,
    })
}

/// Opens the Kafka log at `url` (see `footfall_log::kafka`), behind the collector's spool
/// (`data_dir/spool.redb`, at most `log.spool_max_mib`; see `footfall_log::spool`).
#[cfg(feature = "kafka")]
async fn open_kafka(url: &str, config: &Config) -> anyhow::Result<Arc<dyn Log>> {
    let address = footfall_log::kafka::KafkaAddress::parse(url)
        .map_err(|e| anyhow::anyhow!("log.url: {e}"))?;
    let log = footfall_log::kafka::KafkaLog::open(address)
        .await
        .context("opening the Kafka log (log.url)")?;
    let spool = footfall_log::spool::SpoolConfig {
        path: config.data_dir.join("spool.redb"),
        max_bytes: config.log.spool_max_mib << 20,
        retry_interval: Duration::from_secs(1),
    };
    let spooled = footfall_log::spool::SpooledLog::open(Arc::new(log), &spool)
        .context("opening the collector's spool")?;
    Ok(Arc::new(spooled))
}

/// Without the `kafka` feature, a `kafka://` log is refused at start.
#[cfg(not(feature = "kafka"))]
async fn open_kafka(url: &str, _config: &Config) -> anyhow::Result<Arc<dyn Log>> {
    bail!("log.url = {url:?}: this build has no Kafka log backend (it was built without the `kafka` feature); rebuild with default features, or leave log.url empty for the embedded log")
}

/// Opens the Cassandra/ScyllaDB store at `url` (see `footfall_cassandra`).
#[cfg(feature = "cassandra")]
async fn open_cassandra(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    let address = footfall_cassandra::CassandraAddress::parse(url)
        .map_err(|e| anyhow::anyhow!("store.url: {e}"))?;
    let store = footfall_cassandra::CassandraStore::open(&address)
        .await
        .context("opening the Cassandra store (store.url)")?;
    Ok(Arc::new(store))
}

/// Without the `cassandra` feature, a `cassandra://` store is refused at start.
#[cfg(not(feature = "cassandra"))]
async fn open_cassandra(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    bail!("store.url = {url:?}: this build has no Cassandra store backend (it was built without the `cassandra` feature); rebuild with default features, or leave store.url empty for the embedded store")
}

/// `footfall migrate`: creates or upgrades the keyspace of a Cassandra store; returns a
/// summary (`{"store", "applied", "latest"}`).
///
/// # Errors
/// A message naming `store.url` when it is not a Cassandra address this build can use, or
/// the cluster's error.
pub async fn migrate(config: &Config) -> anyhow::Result<serde_json::Value> {
    let url = config.store.url.as_str();
    if url.is_empty() {
        return Ok(serde_json::json!({
            "store": "embedded",
            "applied": [],
            "note": "the embedded store creates its tables itself; migrate is for store.url = cassandra://…",
        }));
    }
    migrate_cassandra(url).await
}

#[cfg(feature = "cassandra")]
async fn migrate_cassandra(url: &str) -> anyhow::Result<serde_json::Value> {
    let address = footfall_cassandra::CassandraAddress::parse(url)
        .map_err(|e| anyhow::anyhow!("store.url: {e}"))?;
    let applied = footfall_cassandra::migrate(&address)
        .await
        .with_context(|| format!("migrating keyspace {}", address.keyspace))?;
    Ok(serde_json::json!({
        "store": "cassandra",
        "keyspace": address.keyspace,
        "applied": applied,
        "latest": footfall_cassandra::schema::LATEST,
    }))
}

#[cfg(not(feature = "cassandra"))]
async fn migrate_cassandra(url: &str) -> anyhow::Result<serde_json::Value> {
    bail!("store.url = {url:?}: this build has no Cassandra store backend (built without the `cassandra` feature)")
}

/// The processor's settings from `[processor]`.
pub fn runner_config(config: &Config) -> RunnerConfig {
    RunnerConfig {
        flush_interval: Duration::from_millis(config.processor.flush_interval_ms),
        batch_size: config.processor.batch_size,
        max_open_visits: config.processor.max_open_visits,
        max_values_per_bucket: config.processor.max_values_per_bucket,
        ..RunnerConfig::default()
    }
}

/// Opens the archive named by `[archive]`, or `None` when the archiver is disabled.
///
/// # Errors
/// A message naming `archive.url` when the location cannot be used.
pub fn open_archive(config: &Config) -> anyhow::Result<Option<Archive>> {
    if !config.archive.enabled {
        return Ok(None);
    }
    let url = config.archive.location(&config.data_dir)?;
    let archive = Archive::open(&url, &config.archive.s3()).with_context(|| {
        format!(
            "opening the archive (archive.url = {:?})",
            config.archive.url
        )
    })?;
    Ok(Some(archive))
}

/// The app state and collector over opened backends (shared by `serve` and the CLI's
/// in-process admin path).
///
/// # Errors
/// When the configuration is invalid or the store fails.
pub async fn app_state(
    config: &Config,
    backends: &Backends,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Arc<AppState>> {
    let collector_config = CollectorConfig {
        trusted_proxies: config.trusted_proxies()?,
        forwarding_header: config.server.forwarding_header,
        max_body_bytes: config.collector.max_body_bytes,
        max_backdate_us: i64::try_from(config.collector.max_backdate_hours)
            .unwrap_or(72)
            .saturating_mul(3_600_000_000),
        max_future_us: i64::try_from(config.collector.max_future_skew_s)
            .unwrap_or(300)
            .saturating_mul(1_000_000),
        retry_after_s: 1,
        site_events_per_s: config.limits.ingest_events_per_site_per_s,
        site_burst: config.limits.ingest_burst_per_site,
    };
    let nonempty = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let geo = footfall_ingest::geo::Geo::open(
        nonempty(&config.geoip.database)
            .as_deref()
            .map(std::path::Path::new),
        nonempty(&config.geoip.country_header).as_deref(),
    )
    .context("opening the geolocation sources")?;
    let collector = Collector::new(
        backends.log.clone(),
        backends.store.clone(),
        clock.clone(),
        collector_config,
        geo,
    )
    .await
    .context("starting the collector")?;
    // A generation still building belongs to a reprocess this process no longer runs (only
    // the process holding the data directory runs them): it was interrupted.
    for mut g in backends.store.generations(None).await? {
        if g.state == footfall_store::GenerationState::Building {
            tracing::warn!(
                generation = g.id,
                site_id = g.site_id,
                "a reprocess was interrupted; its generation is marked failed (run it again)"
            );
            g.state = footfall_store::GenerationState::Failed;
            backends.store.put_generation(&g).await?;
        }
    }
    Ok(Arc::new(AppState {
        store: backends.store.clone(),
        log: backends.log.clone(),
        collector,
        clock,
        partitions: backends.log.partitions(),
        ready: false.into(),
        query_limiter: KeyedLimiter::new(
            config.limits.queries_per_key_per_s,
            config.limits.query_burst_per_key,
        ),
        archive: open_archive(config)?,
        processor_config: runner_config(config),
        jobs: Default::default(),
        metrics_access: match (
            config.server.metrics_public,
            config.server.metrics_token.as_str(),
        ) {
            (true, _) => MetricsAccess::Public,
            (false, "") => MetricsAccess::Closed,
            (false, token) => MetricsAccess::Token(footfall_web::secrets::hash_secret(token)),
        },
    }))
}

/// A running server.
pub struct Running {
    /// The bound HTTP address.
    pub addr: SocketAddr,
    /// Cancel to shut down.
    pub shutdown: CancellationToken,
    /// Completes when shutdown is done.
    pub done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn bind_admin_socket(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another footfall server is using {}", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("binding the admin socket {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .context("restricting the admin socket to its owner")?;
    Ok(listener)
}

/// Starts the roles named by `server.roles` (all by default); returns once the server
/// listens.
///
/// # Errors
/// When a backend cannot be opened or an address cannot be bound.
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    // The metrics recorder first, so that what the backends record while opening is kept.
    footfall_web::ops::prometheus();
    let backends = open_backends(&config).await?;
    start_with(config, clock, backends).await
}

/// Starts the configured roles over backends opened by the caller (tests wrap them to inject failures).
///
/// # Errors
/// When an address cannot be bound or the store fails at start.
pub async fn start_with(
    config: Config,
    clock: Arc<dyn Clock>,
    backends: Backends,
) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let state = app_state(&config, &backends, clock.clone()).await?;
    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .with_context(|| format!("binding server.listen = {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    let socket_path = config.admin_socket();
    let admin_listener = bind_admin_socket(&socket_path)?;

    let shutdown = CancellationToken::new();
    let http_stop = CancellationToken::new();
    let processor_stop = CancellationToken::new();

    let public = footfall_web::router_for(
        state.clone(),
        config.runs(Role::Collector),
        config.runs(Role::Query),
    )
    .into_make_service_with_connect_info::<SocketAddr>();
    let http = tokio::spawn(
        axum::serve(listener, public)
            .with_graceful_shutdown(http_stop.clone().cancelled_owned())
            .into_future(),
    );
    let admin = tokio::spawn(
        axum::serve(admin_listener, footfall_web::admin::router(state.clone()))
            .with_graceful_shutdown(http_stop.clone().cancelled_owned())
            .into_future(),
    );
    let processor = if config.runs(Role::Processor) {
        tokio::spawn(runner::run(
            backends.log.clone(),
            backends.store.clone(),
            clock.clone(),
            state.processor_config.clone(),
            processor_stop.clone(),
        ))
    } else {
        tokio::spawn(async {})
    };
    let archiver = match state
        .archive
        .as_ref()
        .filter(|_| config.runs(Role::Archiver))
    {
        Some(archive) => tokio::spawn(footfall_archive::archiver::run(
            backends.log.clone(),
            backends.store.clone(),
            archive.clone(),
            ArchiverConfig {
                flush_interval: Duration::from_secs(config.archive.flush_interval_s),
                max_file_events: config.archive.max_file_events,
                ..ArchiverConfig::default()
            },
            processor_stop.clone(),
        )),
        None => tokio::spawn(async {}),
    };
    let rotation = {
        let (state, stop, clock) = (state.clone(), shutdown.clone(), clock.clone());
        let enabled = config.runs(Role::Collector);
        tokio::spawn(async move {
            if !enabled {
                return;
            }
            loop {
                if let Err(e) = state.collector.hasher().rotate(clock.now_us()).await {
                    tracing::warn!(error = %e, "salt rotation failed; retrying in an hour");
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(3600)) => {}
                    () = stop.cancelled() => break,
                }
            }
        })
    };
    let retention = {
        let (log, stop, clock) = (backends.log.clone(), shutdown.clone(), clock.clone());
        let hours = config.log.retention_hours;
        let enabled = hours > 0 && state.archive.is_some() && config.runs(Role::Archiver);
        tokio::spawn(async move {
            if !enabled {
                return;
            }
            loop {
                let keep_us = i64::try_from(hours)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(3_600_000_000);
                let cutoff = clock.now_us().saturating_sub(keep_us);
                match crate::retention::trim(log.as_ref(), cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(records = n, "log retention deleted archived records"),
                    Err(e) => tracing::warn!(error = %e, "log retention failed; retrying later"),
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(600)) => {}
                    () = stop.cancelled() => break,
                }
            }
        })
    };
    let accounting = {
        let (state, stop) = (state.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    () = stop.cancelled() => break,
                }
                if let Err(e) = state.collector.flush_accounting().await {
                    tracing::warn!(error = %e, "ingest accounting could not be appended; keeping the counts");
                }
                // Drain the Prometheus histograms' sample buffers even when nobody scrapes.
                footfall_web::ops::prometheus().run_upkeep();
            }
        })
    };
    state.ready.store(true, Ordering::SeqCst);
    let roles: Vec<String> = config.server.roles.iter().map(Role::to_string).collect();
    tracing::info!(%addr, data_dir = %config.data_dir.display(), roles = %roles.join(","), "footfall serving");

    let deadline = Duration::from_secs(config.server.shutdown_timeout_s);
    let token = shutdown.clone();
    let done = tokio::spawn(async move {
        token.cancelled().await;
        tracing::info!("shutting down: readiness off, draining requests");
        state.ready.store(false, Ordering::SeqCst);
        let stage = std::sync::Mutex::new("draining in-flight requests");
        let enter = |name: &'static str| {
            if let Ok(mut s) = stage.lock() {
                *s = name;
            }
        };
        let stages = async {
            http_stop.cancel();
            let _ = http.await;
            let _ = admin.await;
            // The loop ends on the shutdown signal; awaiting it never cuts a flush in half.
            let _ = accounting.await;
            if let Err(e) = state.collector.flush_accounting().await {
                tracing::warn!(error = %e, "the last ingest accounting could not be appended");
            }
            tracing::info!("requests drained; flushing the processor");
            enter("flushing the processor's cells and log positions");
            processor_stop.cancel();
            if let Err(e) = processor.await {
                tracing::error!(error = %e, "processor task failed");
            }
            enter("writing the archiver's last files");
            if let Err(e) = archiver.await {
                tracing::error!(error = %e, "archiver task failed");
            }
            rotation.abort();
            retention.abort();
            enter("closing the log");
            if let Some(log) = &backends.embedded_log {
                let log = log.clone();
                let _ = tokio::task::spawn_blocking(move || log.close()).await;
            }
        };
        let result = tokio::time::timeout(deadline, stages).await;
        let _ = std::fs::remove_file(&socket_path);
        match result {
            Ok(()) => {
                tracing::info!("shutdown complete");
                Ok(())
            }
            Err(_) => {
                let at = stage.lock().map(|s| *s).unwrap_or("unknown");
                bail!(
                    "shutdown overran server.shutdown_timeout_s = {}s while {at}",
                    deadline.as_secs()
                )
            }
        }
    });
    Ok(Running {
        addr,
        shutdown,
        done,
    })
}
