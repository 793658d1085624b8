//! The whole pipeline in one process: HTTP collector → embedded log → processor → embedded
//! store → query API, with a controlled clock. Expected figures are worked out by hand in the
//! comments.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use common::{cli_json, http, query, wait_for};
use footfall::config::Config;
use footfall::serve::{start, Running};
use footfall_model::clock::{Clock, ManualClock};
use serde_json::{json, Value};

fn us(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros()
}

async fn server(dir: &std::path::Path, clock: &ManualClock) -> Running {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    config.server.listen = "127.0.0.1:0".into();
    config.processor.flush_interval_ms = 100;
    config.server.metrics_public = true;
    start(config, Arc::new(clock.clone())).await.unwrap()
}

fn pageview(addr: std::net::SocketAddr, ua: &str, url: &str, referrer: Option<&str>) {
    let body =
        json!({"name": "pageview", "url": url, "domain": "shop.example", "referrer": referrer});
    let r = http(
        addr,
        "POST",
        "/api/event",
        &[("User-Agent", ua)],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
}

/// Waits until the processor has reflected everything accepted before `clock`'s time.
fn wait_processed(addr: std::net::SocketAddr, key: &str, clock: &ManualClock) {
    clock.advance(1_000_000);
    let target = clock.now_us();
    wait_for(Duration::from_secs(30), "the processor to catch up", || {
        let a = query(
            addr,
            key,
            &json!({"site_id": "shop.example", "metrics": ["visits"], "date_range": "day"}),
        );
        let through = a["meta"]["complete_through"]
            .as_str()
            .map(|s| DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros());
        through
            .filter(|t| *t >= target / 1_000_000 * 1_000_000)
            .map(|_| ())
    });
}

fn metrics(answer: &Value) -> Vec<Value> {
    answer["results"][0]["metrics"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visit_across_an_hour_and_a_bounce_through_http() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(us("2024-05-01T08:00:00Z"));
    let running = server(dir.path(), &clock).await;
    let addr = running.addr;
    let data = dir.path().to_path_buf();
    let key = tokio::task::spawn_blocking(move || {
        cli_json(
            &data,
            &[
                "sites",
                "create",
                "--domain",
                "shop.example",
                "--timezone",
                "Europe/Berlin",
                "--currency",
                "EUR",
            ],
        );
        cli_json(&data, &["keys", "create", "--site", "shop.example"])["key"]
            .as_str()
            .unwrap()
            .to_string()
    })
    .await
    .unwrap();

    let c = clock.clone();
    let k = key.clone();
    tokio::task::spawn_blocking(move || {
        // Berlin is UTC+2 in May. Visitor A: /a at 10:50 local (from Google), /b at 11:10.
        // Visitor B: /a at 11:20. Both come from 127.0.0.1, told apart by their User-Agent.
        c.set(us("2024-05-01T08:50:00Z"));
        pageview(addr, "UA-A", "https://shop.example/a", Some("https://www.google.com/"));
        c.set(us("2024-05-01T09:10:00Z"));
        pageview(addr, "UA-A", "https://shop.example/b", None);
        c.set(us("2024-05-01T09:20:00Z"));
        pageview(addr, "UA-B", "https://shop.example/a", None);
        wait_processed(addr, &k, &c);

        let day = json!({"site_id": "shop.example", "metrics": ["visitors", "visits", "pageviews", "bounce_rate", "visit_duration", "views_per_visit"], "date_range": ["2024-05-01", "2024-05-01"]});
        // 2 visitors, 2 visits, 3 pageviews; B bounced: 50 %; durations 1,200 s and 0 s: 600 s
        // on average; 3 pageviews / 2 visits = 1.5.
        assert_eq!(metrics(&query(addr, &k, &day)), vec![json!(2), json!(2), json!(3), json!(50.0), json!(600), json!(1.5)]);

        let hourly = json!({"site_id": "shop.example", "metrics": ["visits", "pageviews", "visitors"], "date_range": ["2024-05-01", "2024-05-01"], "dimensions": ["time:hour"]});
        let a = query(addr, &k, &hourly);
        let rows = a["results"].as_array().unwrap();
        assert_eq!(rows.len(), 24);
        // A's visit counts in the 10:00 hour, where it started; the 11:00 hour has B's visit and
        // two pageviews (A's /b and B's /a) by two visitors.
        assert_eq!(rows[10], json!({"dimensions": ["2024-05-01T10:00:00+02:00"], "metrics": [1, 1, 1]}));
        assert_eq!(rows[11], json!({"dimensions": ["2024-05-01T11:00:00+02:00"], "metrics": [1, 2, 2]}));

        let sources = json!({"site_id": "shop.example", "metrics": ["visits"], "date_range": ["2024-05-01", "2024-05-01"], "dimensions": ["visit:source"]});
        let a = query(addr, &k, &sources);
        assert_eq!(a["results"], json!([{"dimensions": ["Direct / None"], "metrics": [1]}, {"dimensions": ["Google"], "metrics": [1]}]));
        // Enrichment: Google is Organic Search, no referrer is Direct; the test's two User-Agents
        // are unknown to the parser.
        let channels = json!({"site_id": "shop.example", "metrics": ["visits"], "date_range": ["2024-05-01", "2024-05-01"], "dimensions": ["visit:channel"], "order_by": [["visit:channel", "asc"]]});
        assert_eq!(query(addr, &k, &channels)["results"], json!([{"dimensions": ["Direct"], "metrics": [1]}, {"dimensions": ["Organic Search"], "metrics": [1]}]));

        // 40 minutes later both visits have ended: exit pages /b (A) and /a (B).
        c.set(us("2024-05-01T10:01:00Z"));
        wait_for(Duration::from_secs(30), "exit pages", || {
            let q = json!({"site_id": "shop.example", "metrics": ["visits"], "date_range": ["2024-05-01", "2024-05-01"], "dimensions": ["visit:exit_page"], "order_by": [["visit:exit_page", "asc"]]});
            let a = query(addr, &k, &q);
            (a["results"].as_array().unwrap().len() == 2).then_some(a)
        });
        let q = json!({"site_id": "shop.example", "metrics": ["visits", "bounce_rate"], "date_range": ["2024-05-01", "2024-05-01"], "dimensions": ["visit:exit_page"], "order_by": [["visit:exit_page", "asc"]]});
        assert_eq!(query(addr, &k, &q)["results"], json!([{"dimensions": ["/a"], "metrics": [1, 100.0]}, {"dimensions": ["/b"], "metrics": [1, 0.0]}]));
    })
    .await
    .unwrap();
    running.shutdown.cancel();
    running.done.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measurement_protocol_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(us("2024-05-01T12:00:00Z"));
    let running = server(dir.path(), &clock).await;
    let addr = running.addr;
    let data = dir.path().to_path_buf();
    let c = clock.clone();
    tokio::task::spawn_blocking(move || {
        let site = cli_json(&data, &["sites", "create", "--domain", "shop.example", "--currency", "EUR"]);
        let mid = site["measurement_id"].as_str().unwrap().to_string();
        let secret = site["api_secret"].as_str().unwrap().to_string();
        assert!(mid.starts_with("G-") && mid.len() == 12, "{mid}");
        let key = cli_json(&data, &["keys", "create", "--site", "shop.example"])["key"].as_str().unwrap().to_string();
        cli_json(&data, &["sites", "create", "--domain", "other.example"]);
        let other_key = cli_json(&data, &["keys", "create", "--site", "other.example"])["key"].as_str().unwrap().to_string();

        // Two page views 10 minutes apart (back-dated by the client) and a purchase: one visit
        // of 600 s, not a bounce.
        let body = json!({"client_id": "555.1", "events": [
            {"name": "page_view", "params": {"page_location": "https://shop.example/p1", "session_id": "9"}},
        ], "timestamp_micros": us("2024-05-01T11:40:00Z")});
        let path = format!("/mp/collect?measurement_id={mid}&api_secret={secret}");
        assert_eq!(http(addr, "POST", &path, &[], body.to_string().as_bytes()).status, 204);
        let body = json!({"client_id": "555.1", "events": [
            {"name": "page_view", "params": {"page_location": "https://shop.example/p2", "session_id": "9"}},
            {"name": "purchase", "params": {"value": 19.99, "currency": "EUR", "session_id": "9"}},
        ], "timestamp_micros": us("2024-05-01T11:50:00Z")});
        assert_eq!(http(addr, "POST", &path, &[], body.to_string().as_bytes()).status, 204);
        // A wrong secret is answered 204 like GA4, and nothing is counted.
        let bad = format!("/mp/collect?measurement_id={mid}&api_secret=nope");
        assert_eq!(http(addr, "POST", &bad, &[], body.to_string().as_bytes()).status, 204);
        // The debug endpoint explains.
        let r = http(addr, "POST", &bad, &[], b"{}");
        assert_eq!(r.status, 204);
        let r = http(addr, "POST", &format!("/debug/mp/collect?measurement_id={mid}&api_secret=nope"), &[], br#"{"client_id":"1","events":[{"name":"bad-name"}]}"#);
        let fields: Vec<String> = r.json()["validationMessages"].as_array().unwrap().iter().map(|m| m["fieldPath"].as_str().unwrap().to_string()).collect();
        assert_eq!(fields, vec!["api_secret", "events[0].name"]);
        wait_processed(addr, &key, &c);

        let q = json!({"site_id": "shop.example", "metrics": ["visitors", "visits", "pageviews", "events", "bounce_rate", "visit_duration"], "date_range": "day"});
        assert_eq!(metrics(&query(addr, &key, &q)), vec![json!(1), json!(1), json!(2), json!(3), json!(0.0), json!(600)]);
        let goals = json!({"site_id": "shop.example", "metrics": ["visitors", "events"], "date_range": "day", "dimensions": ["event:goal"]});
        assert_eq!(query(addr, &key, &goals)["results"], json!([{"dimensions": ["purchase"], "metrics": [1, 1]}]));

        // Ingest accounting per site: 3 events accepted; then one request with an invalid
        // event name and an event back-dated past 72 hours: 1 invalid, 1 late (the collector
        // appends its counts every 5 s).
        let body = json!({"client_id": "555.1", "events": [{"name": "bad-name"}, {"name": "late_one", "timestamp_micros": us("2024-04-27T00:00:00Z")}]});
        assert_eq!(http(addr, "POST", &path, &[], body.to_string().as_bytes()).status, 204);
        let ingest = json!({"site_id": "shop.example", "metrics": ["events"], "date_range": "day", "dimensions": ["ingest:outcome"], "order_by": [["ingest:outcome", "asc"]]});
        let rows = wait_for(Duration::from_secs(30), "ingest accounting", || {
            let a = query(addr, &key, &ingest);
            (a["results"].as_array().unwrap().len() == 3).then(|| a["results"].clone())
        });
        assert_eq!(rows, json!([{"dimensions": ["accepted"], "metrics": [3]}, {"dimensions": ["invalid"], "metrics": [1]}, {"dimensions": ["late"], "metrics": [1]}]));

        // Tenant isolation: another merchant's key gets the same 404 for an existing and a
        // missing site; no key is 401; a bad field is 400 naming it.
        let auth = format!("Bearer {other_key}");
        let exists = http(addr, "POST", "/api/v2/query", &[("Authorization", &auth)], q.to_string().as_bytes());
        let missing = json!({"site_id": "nowhere.example", "metrics": ["visitors"], "date_range": "day"});
        let absent = http(addr, "POST", "/api/v2/query", &[("Authorization", &auth)], missing.to_string().as_bytes());
        assert_eq!((exists.status, absent.status), (404, 404));
        assert_eq!(exists.json()["error_code"], absent.json()["error_code"]);
        assert_eq!(http(addr, "POST", "/api/v2/query", &[], q.to_string().as_bytes()).status, 401);
        let bad_metric = json!({"site_id": "shop.example", "metrics": ["clicks"], "date_range": "day"});
        let r = http(addr, "POST", "/api/v2/query", &[("Authorization", &format!("Bearer {key}"))], bad_metric.to_string().as_bytes());
        assert_eq!((r.status, r.json()["field"].clone()), (400, json!("metrics[0]")));
        // Plausible endpoint: a non-http URL is a 400 naming the field; an oversize body is 413.
        let r = http(addr, "POST", "/api/event", &[], br#"{"name":"pageview","url":"javascript:alert(1)","domain":"shop.example"}"#);
        assert_eq!((r.status, r.json()["field"].clone()), (400, json!("url")));
        let huge = vec![b'x'; 70 * 1024];
        assert_eq!(http(addr, "POST", "/api/event", &[], &huge).status, 413);
        let metrics_text = String::from_utf8(http(addr, "GET", "/metrics", &[], b"").body).unwrap();
        assert!(metrics_text.contains("footfall_ingest_events_total{protocol=\"ga4_mp\",outcome=\"bad_secret\"}"), "{metrics_text}");
        assert_eq!(http(addr, "GET", "/readyz", &[], b"").status, 200);
    })
    .await
    .unwrap();
    running.shutdown.cancel();
    running.done.await.unwrap().unwrap();
}

/// A site's path rules (kept query parameters, hash routing) shape the page paths of new hits;
/// a Google Ads click id makes the visit Paid Search; a bad parameter name is refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_path_rules_and_ad_click_ids_through_http() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(us("2024-05-01T08:00:00Z"));
    let running = server(dir.path(), &clock).await;
    let addr = running.addr;
    let data = dir.path().to_path_buf();
    let c = clock.clone();
    tokio::task::spawn_blocking(move || {
        cli_json(&data, &["sites", "create", "--domain", "shop.example"]);
        let key = cli_json(&data, &["keys", "create", "--site", "shop.example"])["key"]
            .as_str()
            .unwrap()
            .to_string();
        // Before the rules: the query and the fragment are dropped.
        pageview(addr, "UA-A", "https://shop.example/search/?q=boots&sid=1#/list", None);
        let updated = cli_json(
            &data,
            &["sites", "update", "--domain", "shop.example", "--keep-query-params", "Q, page", "--hash-routing", "true"],
        );
        assert_eq!(updated["keep_query_params"], json!(["q", "page"]));
        assert_eq!(updated["hash_routing"], json!(true));
        let refused = common::footfall()
            .args(["--data-dir", data.to_str().unwrap(), "sites", "update", "--domain", "shop.example", "--keep-query-params", "a=b"])
            .output()
            .unwrap();
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("keep_query_params[0]"), "{stderr}");

        // An update clears the collector's site cache, so the next hit follows the rules.
        c.set(us("2024-05-01T08:10:00Z"));
        pageview(addr, "UA-B", "https://shop.example/search/?sid=2&q=red%20shoes&page=2#/list?x=1", None);
        pageview(addr, "UA-C", "https://shop.example/landing?gclid=Cj0KCQ", Some("https://www.google.com/"));
        wait_processed(addr, &key, &c);
        let q = |dim: &str| json!({"site_id": "shop.example", "metrics": ["visits"], "date_range": ["2024-05-01", "2024-05-01"], "dimensions": [dim], "order_by": [[dim, "asc"]]});
        assert_eq!(
            query(addr, &key, &q("event:page"))["results"],
            json!([
                {"dimensions": ["/landing"], "metrics": [1]},
                {"dimensions": ["/search"], "metrics": [1]},
                {"dimensions": ["/search?q=red+shoes&page=2#/list"], "metrics": [1]},
            ])
        );
        // gclid stands for google / cpc: Paid Search, source Google.
        assert_eq!(
            query(addr, &key, &q("visit:channel"))["results"],
            json!([{"dimensions": ["Direct"], "metrics": [2]}, {"dimensions": ["Paid Search"], "metrics": [1]}])
        );
        assert_eq!(
            query(addr, &key, &q("visit:utm_medium"))["results"],
            json!([{"dimensions": ["cpc"], "metrics": [1]}])
        );
    })
    .await
    .unwrap();
    running.shutdown.cancel();
    running.done.await.unwrap().unwrap();
}
