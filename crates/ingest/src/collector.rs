//! The collector's HTTP endpoints and its import path.
//!
//! | endpoint | protocol | answers |
//! |---|---|---|
//! | `POST /api/event` | Plausible Events API (JSON, any content type) | `202` once durable; `400` naming the field; `413` past the body limit; `429` + `Retry-After` past the site's rate limit; `503` + `Retry-After` when the log cannot take it |
//! | `POST /mp/collect?measurement_id=&api_secret=` | GA4 Measurement Protocol | `204` whatever the body holds (as GA4 does), except `429` / `503` + `Retry-After` when valid events cannot be kept (rate limit, log unavailable) |
//! | `POST /debug/mp/collect` | same | `200` with `{"validationMessages": [...]}`; nothing is kept |
//!
//! Every hit is counted in `footfall_ingest_events_total{protocol, outcome}` with outcome
//! `accepted`, `invalid`, `late`, `unknown_site`, `bad_secret`, `rate_limited` or `unavailable`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use footfall_log::{AppendOutcome, Log, LogError, Record};
use footfall_model::clock::Clock;
use footfall_model::decode::{ga4, gtag, plausible, Hit};
use footfall_model::event::{Event, Protocol};
use footfall_model::site::Site;
use footfall_model::url_parts::parse_request_target;
use footfall_store::{Store, StoreError};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::client_ip::{client_ip, is_trusted, ForwardingHeader};
use crate::geo::{Geo, Location};
use crate::limits::{retry_after_secs, KeyedLimiter};
use crate::realtime::Realtime;
use crate::sites::SiteCache;
use crate::visitor::{cookieless_hash, random_key, VisitorHasher};

/// Collector settings.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Proxies whose forwarding header is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// The header those proxies name the client in.
    pub forwarding_header: ForwardingHeader,
    /// Largest accepted request body, bytes; larger gets `413`.
    pub max_body_bytes: usize,
    /// How far back a client timestamp may be, µs (GA4 allows 72 hours).
    pub max_backdate_us: i64,
    /// How far ahead of the server clock a timestamp may be, µs.
    pub max_future_us: i64,
    /// Seconds a client is told to wait in `Retry-After` when the log is unavailable.
    pub retry_after_s: u32,
    /// Events per second one site may send, sustained (0: unlimited); past it `429`.
    pub site_events_per_s: u32,
    /// Events one site may send in a burst (at least 25, one full GA4 batch).
    pub site_burst: u32,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            trusted_proxies: Vec::new(),
            forwarding_header: ForwardingHeader::default(),
            max_body_bytes: 64 * 1024,
            max_backdate_us: 72 * 3_600_000_000,
            max_future_us: 5 * 60_000_000,
            retry_after_s: 1,
            site_events_per_s: 0,
            site_burst: 0,
        }
    }
}

/// The collector; see the module docs.
pub struct Collector {
    log: Arc<dyn Log>,
    store: Arc<dyn Store>,
    sites: SiteCache,
    hasher: VisitorHasher,
    clock: Arc<dyn Clock>,
    config: CollectorConfig,
    id_prefix: u64,
    id_counter: AtomicU64,
    realtime: Realtime,
    site_limiter: KeyedLimiter<u64>,
    geo: Geo,
    /// Hits of known sites that were not accepted, by (site, outcome), until the next
    /// [`Collector::flush_accounting`].
    drops: std::sync::Mutex<HashMap<(u64, &'static str), u64>>,
}

fn count(protocol: &'static str, outcome: &'static str, n: u64) {
    metrics::counter!("footfall_ingest_events_total", "protocol" => protocol, "outcome" => outcome)
        .increment(n);
}

/// One access-log request sent by `footfall import`, already parsed and classified as a
/// pageview by the client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportHit {
    /// 1-based line number in the file (makes the event id).
    pub line: u64,
    /// Request time, UTC µs.
    pub timestamp_us: i64,
    /// Client address as logged; hashed, never kept.
    pub remote_addr: String,
    /// User agent.
    pub user_agent: String,
    /// Request target (`/path?query`).
    pub target: String,
    /// Referrer.
    pub referrer: Option<String>,
}

/// A batch of an import: the hits of lines up to `sequence`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportBatch {
    /// Site domain.
    pub site: String,
    /// Producer id, one per file: `import:<site>:<file fingerprint>`.
    pub producer: String,
    /// Import run id, one per `footfall import` invocation: names the visitor-hash salt
    /// shared by all files of the run, so that a visitor seen in two files of one run is
    /// one visitor.
    pub run: String,
    /// The last line number this batch covers; batches of one producer must increase.
    pub sequence: u64,
    /// Hostname for the pages (default: the site's domain).
    pub hostname: Option<String>,
    /// The pageviews.
    pub hits: Vec<ImportHit>,
}

/// What an import batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportOutcome {
    /// Events appended.
    pub appended: u64,
    /// Whether the batch had been appended before (nothing was written).
    pub duplicate: bool,
    /// Hits left out because their time is in the future.
    pub future: u64,
}

/// Errors of the import path.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// No site has this domain.
    #[error("no site has the domain {0:?}")]
    UnknownSite(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The log failed.
    #[error(transparent)]
    Log(#[from] LogError),
}

impl Collector {
    /// A collector over `log` and `store`.
    ///
    /// # Errors
    /// [`StoreError`] when the visitor-hash keys cannot be loaded.
    pub async fn new(
        log: Arc<dyn Log>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: CollectorConfig,
        geo: Geo,
    ) -> Result<Arc<Self>, StoreError> {
        let hasher = VisitorHasher::new(store.clone()).await?;
        let prefix = random_key()?;
        let id_prefix = u64::from_le_bytes([
            prefix[0], prefix[1], prefix[2], prefix[3], prefix[4], prefix[5], prefix[6], prefix[7],
        ]);
        Ok(Arc::new(Collector {
            log,
            sites: SiteCache::new(store.clone(), clock.clone(), 5_000_000),
            store,
            hasher,
            clock,
            // A burst below one full GA4 batch would refuse such batches forever.
            site_limiter: KeyedLimiter::new(
                config.site_events_per_s,
                config.site_burst.max(ga4::MAX_EVENTS as u32),
            ),
            config,
            geo,
            drops: std::sync::Mutex::default(),
            id_prefix,
            id_counter: AtomicU64::new(0),
            realtime: Realtime::default(),
        }))
    }

    /// The site cache (the admin API invalidates it after changes).
    pub fn sites(&self) -> &SiteCache {
        &self.sites
    }

    /// Current visitors per site, from the events this collector accepted.
    pub fn realtime(&self) -> &Realtime {
        &self.realtime
    }

    /// The visitor hasher (the server rotates its salts daily).
    pub fn hasher(&self) -> &VisitorHasher {
        &self.hasher
    }

    /// The collector's routes.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/api/event", post(plausible_event))
            .route("/mp/collect", post(mp_collect))
            .route("/debug/mp/collect", post(mp_debug))
            .route("/g/collect", post(gtag_collect).get(gtag_collect))
            .layer(DefaultBodyLimit::max(self.config.max_body_bytes))
            .layer(cors())
            .with_state(self.clone())
    }

    /// `Some(429 answer)` when `site` is over its ingest rate.
    fn rate_limit(&self, site: &Site, events: usize, protocol: &'static str) -> Option<Response> {
        let wait = self
            .site_limiter
            .check(&site.id, u32::try_from(events).unwrap_or(u32::MAX))
            .err()?;
        count(protocol, "rate_limited", events as u64);
        self.note_drop(site.id, "rate_limited", events as u64);
        let mut r = (StatusCode::TOO_MANY_REQUESTS, Json(json!({"error": "this site is sending more events than its rate limit allows; retry later"}))).into_response();
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_secs(wait)),
        );
        Some(r)
    }

    fn next_event_id(&self) -> u128 {
        (u128::from(self.id_prefix) << 64)
            | u128::from(self.id_counter.fetch_add(1, Ordering::Relaxed))
    }

    fn unavailable(&self, e: &LogError) -> Response {
        tracing::warn!(error = %e, "log append failed; answering 503");
        let mut r = (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "the event log is unavailable; retry later"})),
        )
            .into_response();
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(self.config.retry_after_s),
        );
        r
    }

    fn event(
        &self,
        site: &Site,
        hit: Hit,
        visitor: (u64, Option<u64>),
        user_agent: &str,
        protocol: Protocol,
        now: i64,
    ) -> Event {
        let (visitor_id, prev_visitor_id) = visitor;
        // The bot flag kept with the raw event; processing re-applies the rules.
        let bot = match protocol {
            Protocol::Ga4MeasurementProtocol => {
                footfall_enrich::bots::classify("Measurement Protocol", hit.referrer.as_deref())
            }
            _ => footfall_enrich::bots::classify(user_agent, hit.referrer.as_deref()),
        }
        .map(|r| r.as_str().to_string());
        let session_id = hit
            .session_id
            .as_deref()
            .map(|s| self.hasher.session_id(site.id, s));
        Event {
            event_id: self.next_event_id(),
            site_id: site.id,
            received_at_us: now,
            timestamp_us: hit.timestamp_us.unwrap_or(now),
            name: hit.name,
            path: footfall_model::url_parts::page_path(&hit.page, site.path_rules()),
            hostname: hit.page.hostname,
            title: hit.title,
            referrer: hit.referrer,
            utm: hit.page.utm,
            props: hit.props,
            revenue: hit.revenue,
            engagement_ms: hit.engagement_ms,
            interactive: hit.interactive,
            visitor_id,
            prev_visitor_id,
            session_id,
            user_agent: user_agent.to_string(),
            screen: None,
            language: None,
            country: None,
            region: None,
            city: None,
            protocol,
            bot,
        }
    }

    async fn append(&self, events: &[Event]) -> Result<(), LogError> {
        let records = events
            .iter()
            .map(|e| Record {
                key: e.site_id,
                payload: e.encode(),
            })
            .collect();
        let started = std::time::Instant::now();
        let r = self.log.append(records).await;
        metrics::histogram!("footfall_log_append_seconds").record(started.elapsed().as_secs_f64());
        if r.is_ok() {
            let now = self.clock.now_us();
            for e in events
                .iter()
                .filter(|e| e.bot.is_none() && e.protocol != Protocol::Accounting)
            {
                self.realtime.record(e.site_id, e.visitor_id, now);
            }
        }
        r
    }

    /// Appends an import batch as the producer's batch `sequence` (idempotent).
    ///
    /// # Errors
    /// [`ImportError`] for an unknown site or a failing store or log.
    pub async fn import(&self, batch: ImportBatch) -> Result<ImportOutcome, ImportError> {
        let site = self
            .store
            .site_by_domain(&batch.site)
            .await?
            .ok_or_else(|| ImportError::UnknownSite(batch.site.clone()))?;
        let salt = self.store.salt(&batch.run, random_key()?).await?;
        let now = self.clock.now_us();
        let hostname = batch
            .hostname
            .clone()
            .unwrap_or_else(|| site.domain.clone());
        // Lines the producer already appended are left out, so that two writers of one file
        // (a follower and a `footfall import` of the same file) whose batches overlap do not
        // count a line twice; a batch wholly at or below it is a duplicate below.
        let recorded = self
            .log
            .producer_sequence(&batch.producer)
            .await?
            .unwrap_or(0);
        let mut future = 0;
        let mut records = Vec::with_capacity(batch.hits.len());
        for hit in batch.hits.iter().filter(|h| h.line > recorded) {
            if hit.timestamp_us > now + self.config.max_future_us {
                future += 1;
                continue;
            }
            let Some(page) = parse_request_target(&hit.target, &hostname) else {
                continue;
            };
            let address = hit.remote_addr.parse::<IpAddr>().ok();
            let location = address
                .map(|ip| self.geo.locate(ip, &HeaderMap::new(), false))
                .unwrap_or_default();
            let visitor_id = match address {
                Some(ip) => cookieless_hash(&salt, site.id, ip, &hit.user_agent),
                None => cookieless_hash(
                    &salt,
                    site.id,
                    IpAddr::from([0, 0, 0, 0]),
                    &format!("{}\u{0}{}", hit.remote_addr, hit.user_agent),
                ),
            };
            let id = blake3::hash(format!("{}:{}", batch.producer, hit.line).as_bytes());
            let event_id = u128::from_le_bytes(id.as_bytes()[..16].try_into().unwrap_or([0; 16]));
            let h = Hit {
                name: footfall_model::event::PAGEVIEW.into(),
                page,
                referrer: hit.referrer.clone(),
                interactive: true,
                timestamp_us: Some(hit.timestamp_us),
                ..Default::default()
            };
            let mut event = self.event(
                &site,
                h,
                (visitor_id, None),
                &hit.user_agent,
                Protocol::AccessLog,
                now,
            );
            event.event_id = event_id;
            event.set_location(&location);
            records.push(Record {
                key: site.id,
                payload: event.encode(),
            });
        }
        let appended = records.len() as u64;
        match self
            .log
            .append_sequenced(&batch.producer, batch.sequence, records)
            .await?
        {
            AppendOutcome::Appended => {
                count("access_log", "accepted", appended);
                Ok(ImportOutcome {
                    appended,
                    duplicate: false,
                    future,
                })
            }
            AppendOutcome::Duplicate => Ok(ImportOutcome {
                appended: 0,
                duplicate: true,
                future,
            }),
        }
    }

    /// The last line number appended by an import producer.
    ///
    /// # Errors
    /// [`LogError`] when the log fails.
    pub async fn import_position(&self, producer: &str) -> Result<Option<u64>, LogError> {
        self.log.producer_sequence(producer).await
    }

    /// Ends an import run: deletes its visitor-hash salt, after which nobody can link its
    /// visitor ids to addresses.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    pub async fn finish_import(&self, run: &str) -> Result<(), StoreError> {
        self.store.delete_salt(run).await
    }

    fn note_drop(&self, site_id: u64, outcome: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        if let Ok(mut d) = self.drops.lock() {
            *d.entry((site_id, outcome)).or_default() += n;
        }
    }

    /// Appends the per-site counts of hits that were not accepted (`invalid`, `late`,
    /// `rate_limited`) to the log as accounting records, so the processor adds them to the
    /// site's `ingest:outcome` cells. On a log failure the counts are kept for the next call.
    ///
    /// # Errors
    /// [`LogError`] when the log cannot take the records.
    pub async fn flush_accounting(&self) -> Result<(), LogError> {
        let drained: Vec<((u64, &'static str), u64)> = match self.drops.lock() {
            Ok(mut d) => d.drain().collect(),
            Err(_) => return Ok(()),
        };
        if drained.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_us();
        let records = drained
            .iter()
            .map(|((site_id, outcome), n)| {
                let mut e = Event::pageview(*site_id, 0, now, "");
                e.event_id = self.next_event_id();
                e.name = footfall_model::event::INGEST_ACCOUNTING.to_string();
                e.protocol = Protocol::Accounting;
                e.user_agent = String::new();
                e.props = vec![
                    ("count".into(), n.to_string()),
                    ("outcome".into(), (*outcome).to_string()),
                ];
                Record {
                    key: *site_id,
                    payload: e.encode(),
                }
            })
            .collect();
        if let Err(e) = self.log.append(records).await {
            if let Ok(mut d) = self.drops.lock() {
                for (k, n) in drained {
                    *d.entry(k).or_default() += n;
                }
            }
            return Err(e);
        }
        Ok(())
    }
}

/// CORS for the collector endpoints: simple requests from any origin (trackers run on the
/// merchants' sites, a different origin), and preflights answered for the headers trackers
/// send. No credentials are involved, so `*` is safe.
fn cors() -> tower_http::cors::CorsLayer {
    use axum::http::Method;
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(86_400))
}

/// Fills an event's geo fields from a resolved location.
trait SetLocation {
    fn set_location(&mut self, location: &Location);
}

impl SetLocation for Event {
    fn set_location(&mut self, location: &Location) {
        self.country.clone_from(&location.country);
        self.region.clone_from(&location.region);
        self.city.clone_from(&location.city);
    }
}

fn user_agent(headers: &HeaderMap) -> String {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .chars()
        .take(1024)
        .collect()
}

fn bad_request(field: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": format!("{field}: {message}"), "field": field})),
    )
        .into_response()
}

fn internal(e: &StoreError) -> Response {
    tracing::error!(error = %e, "store lookup failed in the collector");
    let mut r = (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"error": "site metadata is unavailable; retry later"})),
    )
        .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(1));
    r
}

async fn plausible_event(
    State(c): State<Arc<Collector>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let decoded = match plausible::decode(&body) {
        Ok(d) => d,
        Err(e) => {
            count("plausible", "invalid", 1);
            return bad_request(&e.field, &e.message);
        }
    };
    let ip = client_ip(
        peer.ip(),
        &headers,
        &c.config.trusted_proxies,
        c.config.forwarding_header,
    );
    let location = c.geo.locate(
        ip,
        &headers,
        is_trusted(peer.ip(), &c.config.trusted_proxies),
    );
    let ua = user_agent(&headers);
    let now = c.clock.now_us();
    let mut events = Vec::with_capacity(decoded.domains.len());
    for domain in &decoded.domains {
        let site = match c.sites.by_domain(domain).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                count("plausible", "unknown_site", 1);
                continue;
            }
            Err(e) => return internal(&e),
        };
        if let Some(limited) = c.rate_limit(&site, 1, "plausible") {
            return limited;
        }
        let (visitor, prev) = match c.hasher.cookieless(site.id, ip, &ua, now).await {
            Ok(v) => v,
            Err(e) => return internal(&e),
        };
        let mut event = c.event(
            &site,
            decoded.hit.clone(),
            (visitor, prev),
            &ua,
            Protocol::Plausible,
            now,
        );
        event.set_location(&location);
        events.push(event);
    }
    if events.is_empty() {
        return (
            StatusCode::ACCEPTED,
            [("x-footfall-dropped", "unknown_site")],
            "ok",
        )
            .into_response();
    }
    match c.append(&events).await {
        Ok(()) => {
            count("plausible", "accepted", events.len() as u64);
            (StatusCode::ACCEPTED, "ok").into_response()
        }
        Err(e) => {
            count("plausible", "unavailable", events.len() as u64);
            c.unavailable(&e)
        }
    }
}

/// Query parameters of the Measurement Protocol endpoints.
#[derive(Debug, Deserialize)]
struct MpParams {
    measurement_id: Option<String>,
    api_secret: Option<String>,
}

enum MpSite {
    Ok(Site),
    Rejected(&'static str, ga4::ValidationMessage),
}

async fn mp_site(c: &Collector, params: &MpParams) -> Result<MpSite, StoreError> {
    let Some(mid) = params.measurement_id.as_deref().filter(|m| !m.is_empty()) else {
        return Ok(MpSite::Rejected(
            "unknown_site",
            ga4::ValidationMessage {
                field_path: "measurement_id".into(),
                description: "the measurement_id query parameter is required".into(),
                validation_code: "VALUE_REQUIRED",
            },
        ));
    };
    let Some(site) = c.sites.by_measurement_id(mid).await? else {
        return Ok(MpSite::Rejected(
            "unknown_site",
            ga4::ValidationMessage {
                field_path: "measurement_id".into(),
                description: "no site has this measurement_id".into(),
                validation_code: "VALUE_INVALID",
            },
        ));
    };
    let secret = params.api_secret.as_deref().unwrap_or_default();
    let matches = !secret.is_empty()
        && constant_time_eq(
            blake3::hash(secret.as_bytes()).to_hex().as_bytes(),
            site.api_secret_hash.as_bytes(),
        );
    if !matches {
        return Ok(MpSite::Rejected(
            "bad_secret",
            ga4::ValidationMessage {
                field_path: "api_secret".into(),
                description: "the api_secret query parameter does not match this measurement_id"
                    .into(),
                validation_code: "VALUE_INVALID",
            },
        ));
    }
    Ok(MpSite::Ok(site))
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn window(c: &Collector, now: i64) -> ga4::TimeWindow {
    ga4::TimeWindow {
        now_us: now,
        max_backdate_us: c.config.max_backdate_us,
        max_future_us: c.config.max_future_us,
    }
}

async fn mp_collect(
    State(c): State<Arc<Collector>>,
    Query(params): Query<MpParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = c.clock.now_us();
    let decoded = ga4::decode(&body, window(&c, now));
    let site = match mp_site(&c, &params).await {
        Ok(MpSite::Ok(s)) => s,
        Ok(MpSite::Rejected(reason, _)) => {
            count("ga4_mp", reason, decoded.events.len().max(1) as u64);
            return StatusCode::NO_CONTENT.into_response();
        }
        Err(e) => return internal(&e),
    };
    if !decoded.messages.is_empty() {
        count(
            "ga4_mp",
            "invalid",
            (decoded.dropped_events - decoded.late_events) as u64,
        );
        count("ga4_mp", "late", decoded.late_events as u64);
        c.note_drop(
            site.id,
            "invalid",
            (decoded.dropped_events - decoded.late_events) as u64,
        );
        c.note_drop(site.id, "late", decoded.late_events as u64);
    }
    let Some(client_id) = decoded.client_id.as_deref() else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let visitor = c.hasher.client_id(site.id, client_id);
    let ua = user_agent(&headers);
    let events: Vec<Event> = decoded
        .events
        .into_iter()
        .map(|hit| {
            c.event(
                &site,
                hit,
                (visitor, None),
                &ua,
                Protocol::Ga4MeasurementProtocol,
                now,
            )
        })
        .collect();
    append_ga4(&c, &site, &events, "ga4_mp").await
}

/// The end of both GA4 endpoints: `204` once `events` are kept (also when there are none),
/// `429` over the site's rate limit and `503` when the log cannot keep them. Refused events
/// are not kept, so these endpoints, which otherwise answer `204` whatever they get, answer
/// an error rather than `2xx`.
async fn append_ga4(
    c: &Collector,
    site: &Site,
    events: &[Event],
    protocol: &'static str,
) -> Response {
    if events.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    if let Some(limited) = c.rate_limit(site, events.len(), protocol) {
        return limited;
    }
    match c.append(events).await {
        Ok(()) => {
            count(protocol, "accepted", events.len() as u64);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => {
            count(protocol, "unavailable", events.len() as u64);
            c.unavailable(&e)
        }
    }
}

/// `GET` or `POST /g/collect`: GA4 browser hits in gtag.js's wire format (see
/// [`footfall_model::decode::gtag`]). The site is the one whose measurement id is `tid`; no
/// API secret is asked, as browsers cannot keep one. The User-Agent and address are the
/// visitor's, so bot, device and geo rules apply as for Plausible hits. Answers `204` like
/// Google's endpoint, also for hits it leaves out (counted as invalid or unknown site), and
/// `429`/`503` when it could not keep them.
async fn gtag_collect(
    State(c): State<Arc<Collector>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = c.clock.now_us();
    let decoded = gtag::decode(query.as_deref().unwrap_or_default(), &body, window(&c, now));
    let site = match decoded.measurement_id.as_deref() {
        Some(mid) => match c.sites.by_measurement_id(mid).await {
            Ok(s) => s,
            Err(e) => return internal(&e),
        },
        None => None,
    };
    let Some(site) = site else {
        // Every hit of the request, kept or not, counts as for an unknown site.
        let hits = decoded.request.events.len() + decoded.request.dropped_events;
        count("ga4_gtag", "unknown_site", hits.max(1) as u64);
        return StatusCode::NO_CONTENT.into_response();
    };
    let request = decoded.request;
    if request.dropped_events > 0 {
        let invalid = (request.dropped_events - request.late_events) as u64;
        count("ga4_gtag", "invalid", invalid);
        count("ga4_gtag", "late", request.late_events as u64);
        c.note_drop(site.id, "invalid", invalid);
        c.note_drop(site.id, "late", request.late_events as u64);
    }
    let Some(client_id) = request.client_id.as_deref() else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let ip = client_ip(
        peer.ip(),
        &headers,
        &c.config.trusted_proxies,
        c.config.forwarding_header,
    );
    let location = c.geo.locate(
        ip,
        &headers,
        is_trusted(peer.ip(), &c.config.trusted_proxies),
    );
    let visitor = c.hasher.client_id(site.id, client_id);
    let ua = user_agent(&headers);
    let events: Vec<Event> = request
        .events
        .into_iter()
        .map(|hit| {
            let mut e = c.event(&site, hit, (visitor, None), &ua, Protocol::Ga4Gtag, now);
            e.set_location(&location);
            e
        })
        .collect();
    append_ga4(&c, &site, &events, "ga4_gtag").await
}

async fn mp_debug(
    State(c): State<Arc<Collector>>,
    Query(params): Query<MpParams>,
    body: Bytes,
) -> Response {
    let now = c.clock.now_us();
    let mut decoded = ga4::decode(&body, window(&c, now));
    match mp_site(&c, &params).await {
        Ok(MpSite::Ok(_)) => {}
        Ok(MpSite::Rejected(_, message)) => decoded.messages.insert(0, message),
        Err(e) => return internal(&e),
    }
    Json(json!({"validationMessages": decoded.messages})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use footfall_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
    use footfall_model::clock::SystemClock;
    use footfall_store::embedded::EmbeddedStore;
    use footfall_store::NewSite;

    /// A collector over embedded backends in `dir` with the site `a.example`.
    async fn collector(dir: &std::path::Path) -> (Arc<Collector>, Site, Arc<dyn Log>) {
        let log: Arc<dyn Log> = Arc::new(
            EmbeddedLog::open(&EmbeddedLogConfig {
                path: dir.join("log.redb"),
                partitions: 1,
                commit_linger: std::time::Duration::ZERO,
                cache_bytes: 1 << 20,
            })
            .unwrap(),
        );
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.join("store.redb")).unwrap());
        let site = store
            .create_site(NewSite {
                domain: "a.example".into(),
                timezone: "UTC".into(),
                currency: "EUR".into(),
                measurement_id: "G-A".into(),
                api_secret_hash: String::new(),
                created_at_us: 0,
            })
            .await
            .unwrap();
        let c = Collector::new(
            log.clone(),
            store,
            Arc::new(SystemClock),
            CollectorConfig::default(),
            Geo::default(),
        )
        .await
        .unwrap();
        (c, site, log)
    }

    #[tokio::test]
    async fn raw_events_carry_the_bot_flag_set_at_ingest() {
        let dir = tempfile::tempdir().unwrap();
        let (c, site, _) = collector(dir.path()).await;
        let hit = || Hit {
            name: "pageview".into(),
            interactive: true,
            ..Default::default()
        };
        let curl = c.event(
            &site,
            hit(),
            (1, None),
            "curl/8.4.0",
            Protocol::Plausible,
            0,
        );
        assert_eq!(curl.bot.as_deref(), Some("automation"));
        let person = c.event(
            &site,
            hit(),
            (1, None),
            "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
            Protocol::Plausible,
            0,
        );
        assert_eq!(person.bot, None);
        let server = c.event(
            &site,
            hit(),
            (1, None),
            "",
            Protocol::Ga4MeasurementProtocol,
            0,
        );
        assert_eq!(
            server.bot, None,
            "a Measurement Protocol hit's User-Agent is the sender's server"
        );
    }

    #[tokio::test]
    async fn overlapping_import_batches_count_each_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _, log) = collector(dir.path()).await;
        let now = SystemClock.now_us();
        let batch = |run: &str, lines: std::ops::RangeInclusive<u64>| ImportBatch {
            site: "a.example".into(),
            producer: "import:a.example:f".into(),
            run: format!(
                "{}2026-01-01:a.example:{run}",
                crate::visitor::IMPORT_RUN_PREFIX
            ),
            sequence: *lines.end(),
            hostname: None,
            hits: lines
                .map(|line| ImportHit {
                    line,
                    timestamp_us: now,
                    remote_addr: "203.0.113.7".into(),
                    user_agent: "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Firefox/120.0".into(),
                    target: format!("/p/{line}"),
                    referrer: None,
                })
                .collect(),
        };
        // One writer sends lines 1..=10, another (started meanwhile) 6..=15, then the first
        // 11..=12 (below the second's 15: a duplicate) and 11..=20.
        assert_eq!(c.import(batch("a", 1..=10)).await.unwrap().appended, 10);
        assert_eq!(c.import(batch("b", 6..=15)).await.unwrap().appended, 5);
        let again = c.import(batch("a", 11..=12)).await.unwrap();
        assert!(again.duplicate && again.appended == 0);
        assert_eq!(c.import(batch("a", 11..=20)).await.unwrap().appended, 5);
        let entries = log
            .read(0, 0, 100, std::time::Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(entries.len(), 20, "lines 1..=20, each once");
    }
}
