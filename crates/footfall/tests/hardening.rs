//! Reliability and bad-input behaviour through the real HTTP server (in process): a store or
//! log that fails on purpose, rate limits, CORS, `/metrics` access, and hostile bodies.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{cli_json, http, query, wait_for};
use footfall::config::Config;
use footfall::serve::{open_backends, start_with, Backends, Running};
use footfall_log::{AppendOutcome, Entry, Log, LogError, Offset, Record};
use footfall_model::clock::SystemClock;
use footfall_model::rollup::{CellKey, CellValue};
use footfall_model::site::Site;
use footfall_store::{ApiKey, CellRange, Checkpoint, NewSite, Store, StoreError, WriteBatch};
use serde_json::json;

/// A store that fails every call while `down` is set.
struct FlakyStore {
    inner: Arc<dyn Store>,
    down: Arc<AtomicBool>,
}

impl FlakyStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Storage(
                "injected failure: the store is down".into(),
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Store for FlakyStore {
    async fn write_batch(&self, batch: Arc<WriteBatch>) -> Result<(), StoreError> {
        self.check()?;
        self.inner.write_batch(batch).await
    }
    async fn get_cells(&self, keys: &[CellKey]) -> Result<Vec<Option<CellValue>>, StoreError> {
        self.check()?;
        self.inner.get_cells(keys).await
    }
    async fn scan_cells(&self, range: &CellRange) -> Result<Vec<(CellKey, CellValue)>, StoreError> {
        self.check()?;
        self.inner.scan_cells(range).await
    }
    async fn mirrors(&self, partition: u32) -> Result<Vec<footfall_store::Mirror>, StoreError> {
        self.check()?;
        self.inner.mirrors(partition).await
    }
    async fn allocate_generation(&self) -> Result<u32, StoreError> {
        self.check()?;
        self.inner.allocate_generation().await
    }
    async fn put_generation(&self, g: &footfall_store::Generation) -> Result<(), StoreError> {
        self.check()?;
        self.inner.put_generation(g).await
    }
    async fn generations(
        &self,
        site_id: Option<u64>,
    ) -> Result<Vec<footfall_store::Generation>, StoreError> {
        self.check()?;
        self.inner.generations(site_id).await
    }
    async fn served(&self, site_id: u64) -> Result<Vec<footfall_store::ServedSpan>, StoreError> {
        self.check()?;
        self.inner.served(site_id).await
    }
    async fn serve_span(
        &self,
        site_id: u64,
        from_day: i64,
        to_day: i64,
        generation: u32,
    ) -> Result<Vec<footfall_store::ServedSpan>, StoreError> {
        self.check()?;
        self.inner
            .serve_span(site_id, from_day, to_day, generation)
            .await
    }
    async fn pop_served(
        &self,
        site_id: u64,
    ) -> Result<Vec<footfall_store::ServedSpan>, StoreError> {
        self.check()?;
        self.inner.pop_served(site_id).await
    }
    async fn count_cells(&self, ranges: &[CellRange], limit: u64) -> Result<Vec<u64>, StoreError> {
        self.check()?;
        self.inner.count_cells(ranges, limit).await
    }
    async fn first_day(&self, site_id: u64, generation: u32) -> Result<Option<i64>, StoreError> {
        self.check()?;
        self.inner.first_day(site_id, generation).await
    }
    async fn checkpoint(
        &self,
        consumer: &str,
        partition: u32,
    ) -> Result<Option<Checkpoint>, StoreError> {
        self.check()?;
        self.inner.checkpoint(consumer, partition).await
    }
    async fn load_visits(&self, partition: u32) -> Result<Vec<Vec<u8>>, StoreError> {
        self.check()?;
        self.inner.load_visits(partition).await
    }
    async fn create_site(&self, site: NewSite) -> Result<Site, StoreError> {
        self.check()?;
        self.inner.create_site(site).await
    }
    async fn update_site(&self, site: &Site) -> Result<(), StoreError> {
        self.check()?;
        self.inner.update_site(site).await
    }
    async fn site(&self, id: u64) -> Result<Option<Site>, StoreError> {
        self.check()?;
        self.inner.site(id).await
    }
    async fn site_by_domain(&self, domain: &str) -> Result<Option<Site>, StoreError> {
        self.check()?;
        self.inner.site_by_domain(domain).await
    }
    async fn site_by_measurement_id(
        &self,
        measurement_id: &str,
    ) -> Result<Option<Site>, StoreError> {
        self.check()?;
        self.inner.site_by_measurement_id(measurement_id).await
    }
    async fn list_sites(&self) -> Result<Vec<Site>, StoreError> {
        self.check()?;
        self.inner.list_sites().await
    }
    async fn put_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.check()?;
        self.inner.put_key(key).await
    }
    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        self.check()?;
        self.inner.key_by_hash(hash).await
    }
    async fn salt(&self, name: &str, candidate: [u8; 32]) -> Result<[u8; 32], StoreError> {
        self.check()?;
        self.inner.salt(name, candidate).await
    }
    async fn salt_names(&self) -> Result<Vec<String>, StoreError> {
        self.check()?;
        self.inner.salt_names().await
    }
    async fn delete_salt(&self, name: &str) -> Result<(), StoreError> {
        self.check()?;
        self.inner.delete_salt(name).await
    }
}

/// A log whose appends fail while `full` is set, as on a full disk.
struct FlakyLog {
    inner: Arc<dyn Log>,
    full: Arc<AtomicBool>,
}

#[async_trait]
impl Log for FlakyLog {
    fn partitions(&self) -> u32 {
        self.inner.partitions()
    }
    async fn append(&self, records: Vec<Record>) -> Result<(), LogError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(LogError::Storage(
                "injected failure: No space left on device".into(),
            ));
        }
        self.inner.append(records).await
    }
    async fn append_sequenced(
        &self,
        producer: &str,
        sequence: u64,
        records: Vec<Record>,
    ) -> Result<AppendOutcome, LogError> {
        self.inner
            .append_sequenced(producer, sequence, records)
            .await
    }
    async fn producer_sequence(&self, producer: &str) -> Result<Option<u64>, LogError> {
        self.inner.producer_sequence(producer).await
    }
    async fn read(
        &self,
        partition: u32,
        from: Offset,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Entry>, LogError> {
        self.inner.read(partition, from, max, wait).await
    }
    async fn end_offset(&self, partition: u32) -> Result<Offset, LogError> {
        self.inner.end_offset(partition).await
    }
    async fn commit(&self, group: &str, partition: u32, offset: Offset) -> Result<(), LogError> {
        self.inner.commit(group, partition, offset).await
    }
    async fn committed(&self, group: &str, partition: u32) -> Result<Option<Offset>, LogError> {
        self.inner.committed(group, partition).await
    }
    async fn truncate(&self, partition: u32, before: Offset) -> Result<u64, LogError> {
        self.inner.truncate(partition, before).await
    }
    async fn check_writable(&self) -> Result<(), LogError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(LogError::Storage(
                "injected failure: No space left on device".into(),
            ));
        }
        self.inner.check_writable().await
    }
}

struct Harness {
    running: Running,
    store_down: Arc<AtomicBool>,
    log_full: Arc<AtomicBool>,
    dir: tempfile::TempDir,
}

async fn harness(tune: impl FnOnce(&mut Config)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.server.listen = "127.0.0.1:0".into();
    config.processor.flush_interval_ms = 100;
    tune(&mut config);
    let opened = open_backends(&config).await.unwrap();
    let (store_down, log_full) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let backends = Backends {
        log: Arc::new(FlakyLog {
            inner: opened.log.clone(),
            full: log_full.clone(),
        }),
        embedded_log: opened.embedded_log.clone(),
        store: Arc::new(FlakyStore {
            inner: opened.store.clone(),
            down: store_down.clone(),
        }),
    };
    let running = start_with(config, Arc::new(SystemClock), backends)
        .await
        .unwrap();
    Harness {
        running,
        store_down,
        log_full,
        dir,
    }
}

fn pageview(addr: std::net::SocketAddr, path: &str) -> common::Reply {
    let body = json!({"name": "pageview", "url": format!("https://shop.example{path}"), "domain": "shop.example"});
    http(
        addr,
        "POST",
        "/api/event",
        &[("User-Agent", "hardening-test")],
        body.to_string().as_bytes(),
    )
}

fn pageviews(addr: std::net::SocketAddr, key: &str) -> u64 {
    query(
        addr,
        key,
        &json!({"site_id": "shop.example", "metrics": ["pageviews"], "date_range": "day"}),
    )["results"][0]["metrics"][0]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_pauses_processing_and_a_full_log_answers_503_and_nothing_is_lost() {
    let h = harness(|_| {}).await;
    let (addr, dir) = (h.running.addr, h.dir.path().to_path_buf());
    let (store_down, log_full) = (h.store_down.clone(), h.log_full.clone());
    tokio::task::spawn_blocking(move || {
        cli_json(&dir, &["sites", "create", "--domain", "shop.example"]);
        let key = cli_json(&dir, &["keys", "create", "--site", "shop.example"])["key"]
            .as_str()
            .unwrap()
            .to_string();
        for i in 0..5 {
            assert_eq!(pageview(addr, &format!("/before/{i}")).status, 202);
        }
        wait_for(Duration::from_secs(30), "5 pageviews", || {
            (pageviews(addr, &key) == 5).then_some(())
        });

        // The store goes down: the collector keeps accepting known sites into the log (its
        // site cache serves stale entries), the query API says 503, the processor retries.
        store_down.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(5500)); // past the site cache's 5 s freshness
        for i in 0..20 {
            assert_eq!(
                pageview(addr, &format!("/during/{i}")).status,
                202,
                "accepted while the store is down"
            );
        }
        let auth = format!("Bearer {key}");
        let q = json!({"site_id": "shop.example", "metrics": ["pageviews"], "date_range": "day"});
        let r = http(
            addr,
            "POST",
            "/api/v2/query",
            &[("Authorization", &auth)],
            q.to_string().as_bytes(),
        );
        assert_eq!(r.status, 503);
        assert!(r.header("retry-after").is_some());
        assert_eq!(
            http(addr, "GET", "/readyz", &[], b"").status,
            503,
            "not ready while the store is down"
        );
        std::thread::sleep(Duration::from_millis(500));
        store_down.store(false, Ordering::SeqCst);
        wait_for(
            Duration::from_secs(60),
            "recovery after the store returns",
            || (pageviews(addr, &key) == 25).then_some(()),
        );

        // The log cannot write (disk full): 503 with Retry-After, never 2xx; then recovery.
        log_full.store(true, Ordering::SeqCst);
        let r = pageview(addr, "/refused");
        assert_eq!(r.status, 503);
        assert!(r.header("retry-after").is_some());
        assert_eq!(
            http(addr, "GET", "/readyz", &[], b"").status,
            503,
            "not ready while the log cannot write"
        );
        log_full.store(false, Ordering::SeqCst);
        assert_eq!(pageview(addr, "/after").status, 202);
        wait_for(Duration::from_secs(30), "26 pageviews", || {
            (pageviews(addr, &key) == 26).then_some(())
        });
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(pageviews(addr, &key), 26, "nothing counted twice");
    })
    .await
    .unwrap();
    h.running.shutdown.cancel();
    h.running.done.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_cors_and_metrics_access() {
    let h = harness(|c| {
        c.limits.ingest_events_per_site_per_s = 1;
        c.limits.ingest_burst_per_site = 3;
        c.limits.queries_per_key_per_s = 1;
        c.limits.query_burst_per_key = 2;
        c.server.metrics_token = "s3cret-metrics".into();
    })
    .await;
    let (addr, dir) = (h.running.addr, h.dir.path().to_path_buf());
    tokio::task::spawn_blocking(move || {
        cli_json(&dir, &["sites", "create", "--domain", "shop.example"]);
        let key = cli_json(&dir, &["keys", "create", "--site", "shop.example"])["key"].as_str().unwrap().to_string();
        // The burst (raised to 25, one full GA4 batch) passes; with 1 event/s sustained, some
        // of the next 5 sent right after are refused with Retry-After.
        let statuses: Vec<u16> = (0..30).map(|i| pageview(addr, &format!("/r/{i}")).status).collect();
        assert!(statuses[..25].iter().all(|s| *s == 202), "{statuses:?}");
        let refused = statuses[25..].iter().filter(|s| **s == 429).count();
        assert!(refused >= 3, "{statuses:?}");
        let r = pageview(addr, "/r/again");
        assert_eq!(r.status, 429);
        assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
        // Queries: a burst of 2, then 429 for this key.
        let auth = format!("Bearer {key}");
        let q = json!({"site_id": "shop.example", "metrics": ["pageviews"], "date_range": "day"});
        let codes: Vec<u16> = (0..4).map(|_| http(addr, "POST", "/api/v2/query", &[("Authorization", &auth)], q.to_string().as_bytes()).status).collect();
        assert_eq!(&codes[..2], &[200, 200]);
        assert!(codes[2..].contains(&429), "{codes:?}");

        // CORS: a preflight from another origin is answered; responses allow any origin.
        let pre = http(addr, "OPTIONS", "/api/event", &[("Origin", "https://shop.example"), ("Access-Control-Request-Method", "POST"), ("Access-Control-Request-Headers", "content-type")], b"");
        assert!(pre.status < 300, "preflight status {}", pre.status);
        assert_eq!(pre.header("access-control-allow-origin"), Some("*"));
        std::thread::sleep(Duration::from_millis(1100));
        let body = json!({"name": "pageview", "url": "https://shop.example/cors", "domain": "shop.example"});
        let simple = http(addr, "POST", "/api/event", &[("Origin", "https://shop.example"), ("Content-Type", "text/plain")], body.to_string().as_bytes());
        assert_eq!(simple.status, 202);
        assert_eq!(simple.header("access-control-allow-origin"), Some("*"));

        // /metrics needs the token.
        assert_eq!(http(addr, "GET", "/metrics", &[], b"").status, 401);
        assert_eq!(http(addr, "GET", "/metrics", &[("Authorization", "Bearer wrong")], b"").status, 401);
        let m = http(addr, "GET", "/metrics", &[("Authorization", "Bearer s3cret-metrics")], b"");
        assert_eq!(m.status, 200);
        assert!(String::from_utf8(m.body).unwrap().contains("outcome=\"rate_limited\""));
    })
    .await
    .unwrap();
    h.running.shutdown.cancel();
    h.running.done.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_get_clear_errors_and_nothing_panics() {
    let h = harness(|c| c.server.metrics_public = false).await;
    let (addr, dir) = (h.running.addr, h.dir.path().to_path_buf());
    tokio::task::spawn_blocking(move || {
        let site = cli_json(&dir, &["sites", "create", "--domain", "shop.example"]);
        let key = cli_json(&dir, &["keys", "create", "--site", "shop.example"])["key"].as_str().unwrap().to_string();
        assert_eq!(http(addr, "GET", "/metrics", &[], b"").status, 403, "closed unless configured");
        let deep = format!("{{\"name\":\"x\",\"url\":\"https://shop.example/\",\"domain\":\"shop.example\",\"props\":{}{}}}", "[".repeat(500), "]".repeat(500));
        let long_name = format!("{{\"name\":\"{}\",\"url\":\"https://shop.example/\",\"domain\":\"shop.example\"}}", "n".repeat(500));
        let many_props = format!("{{\"name\":\"x\",\"url\":\"https://shop.example/\",\"domain\":\"shop.example\",\"props\":{{{}}}}}", (0..31).map(|i| format!("\"k{i}\":\"v\"")).collect::<Vec<_>>().join(","));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "body"),
            (b"{not json".to_vec(), "body"),
            (vec![b'{', 0xff, 0xfe, b'}'], "body"),
            (deep.into_bytes(), "body"),
            (br#"{"name":5,"url":"https://shop.example/","domain":"shop.example"}"#.to_vec(), "name"),
            (long_name.into_bytes(), "name"),
            (many_props.into_bytes(), "props"),
            (br#"{"name":"Buy","url":"https://shop.example/","domain":"shop.example","revenue":{"currency":"EUR","amount":1e400}}"#.to_vec(), "body"),
            (br#"{"name":"Buy","url":"https://shop.example/","domain":"shop.example","revenue":{"currency":"EUR","amount":"123456789012345678"}}"#.to_vec(), "revenue.amount"),
            (br#"{"name":"pageview","url":"data:text/html,hi","domain":"shop.example"}"#.to_vec(), "url"),
        ];
        for (body, field) in &cases {
            let r = http(addr, "POST", "/api/event", &[], body);
            assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(body));
            assert_eq!(r.json()["field"], json!(field), "{}", String::from_utf8_lossy(&r.body));
        }
        // Unknown fields are ignored, as by Plausible.
        assert_eq!(http(addr, "POST", "/api/event", &[], br#"{"name":"pageview","url":"https://shop.example/","domain":"shop.example","extra":{"a":1}}"#).status, 202);

        // GA4: always 204; the debug endpoint explains.
        let mid = site["measurement_id"].as_str().unwrap();
        let secret = site["api_secret"].as_str().unwrap();
        let debug = |body: String| {
            let r = http(addr, "POST", &format!("/debug/mp/collect?measurement_id={mid}&api_secret={secret}"), &[], body.as_bytes());
            r.json()["validationMessages"].as_array().unwrap().iter().map(|m| (m["fieldPath"].as_str().unwrap().to_string(), m["validationCode"].as_str().unwrap().to_string())).collect::<Vec<_>>()
        };
        let now = chrono::Utc::now().timestamp_micros();
        assert_eq!(debug(json!({"client_id": "1", "events": []}).to_string()), vec![("events".into(), "VALUE_REQUIRED".into())]);
        assert_eq!(debug(json!({"client_id": "1", "timestamp_micros": now - 100 * 3_600_000_000i64, "events": [{"name": "a"}]}).to_string())[0].1, "VALUE_OUT_OF_BOUNDS");
        assert_eq!(debug(json!({"client_id": "1", "timestamp_micros": now + 3_600_000_000i64, "events": [{"name": "a"}]}).to_string())[0].1, "VALUE_OUT_OF_BOUNDS");
        assert_eq!(debug(json!({"client_id": "1", "events": [{"name": "a", "params": {"value": 1e300, "currency": "EUR"}}]}).to_string())[0].0, "events[0].params.value");
        assert_eq!(debug(json!({"client_id": "1", "events": [{"name": "a", "params": {"p": [1, 2]}}]}).to_string())[0].1, "VALUE_INVALID");
        assert_eq!(debug("[[[[[[[[[[".repeat(50)), vec![("".into(), "VALUE_INVALID".into())]);
        let mp = format!("/mp/collect?measurement_id={mid}&api_secret={secret}");
        for body in [&b"\xff\xfe"[..], b"{}", b"[]", br#"{"client_id":"1","events":[{"name":"bad-name"}]}"#] {
            assert_eq!(http(addr, "POST", &mp, &[], body).status, 204);
        }

        // Query API: invalid UTF-8, nesting, unknown fields, huge numbers.
        let auth = format!("Bearer {key}");
        for (body, field) in [
            (&b"\xff"[..], "body"),
            (br#"{"site_id":"shop.example","metrics":["visitors"],"date_range":"day","colour":"red"}"#, "colour"),
            (br#"{"site_id":"shop.example","metrics":["visitors"],"date_range":"day","pagination":{"limit":1e40}}"#, "pagination.limit"),
            (br#"{"site_id":"shop.example","metrics":[["visitors"]],"date_range":"day"}"#, "metrics[0]"),
        ] {
            let r = http(addr, "POST", "/api/v2/query", &[("Authorization", &auth)], body);
            assert_eq!((r.status, r.json()["field"].clone()), (400, json!(field)), "{}", String::from_utf8_lossy(body));
        }
        assert_eq!(http(addr, "GET", "/healthz", &[], b"").status, 200, "still alive");
    })
    .await
    .unwrap();
    h.running.shutdown.cancel();
    h.running.done.await.unwrap().unwrap();
}
