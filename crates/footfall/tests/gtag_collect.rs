//! GA4 browser hits: the same hits sent to `/g/collect` by a registry client that writes
//! gtag.js's wire format (npm `@analytics-debugger/ga4mp`, run by `tests/browser/ga4mp.cjs`)
//! and sent as Measurement Protocol JSON to `/mp/collect` give the same answers, metric by
//! metric and row by row, for every dimension both protocols carry. (Browser, OS and device
//! are left out: a browser hit's User-Agent is the visitor's, a Measurement Protocol hit's is
//! the sender's server, so only the first has them.)

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{cli_json, http, node_deps, query, wait_caught_up, Server};
use serde_json::{json, Value};

const CLIENT_ID: &str = "1234567890.1700000000";
const SESSION_ID: &str = "1700000000";

/// The hits, for a site served at `host`.
fn hits(host: &str) -> Value {
    json!([
        {"name": "page_view", "params": {"page_location": format!("https://{host}/home?utm_source=newsletter&utm_medium=email"), "page_referrer": "https://www.google.com/", "page_title": "Home"}},
        {"name": "page_view", "params": {"page_location": format!("https://{host}/pricing"), "page_title": "Pricing"}},
        {"name": "purchase", "params": {"value": 19.99, "currency": "EUR", "promo_code": "SPRING"}},
        {"name": "sign_up", "params": {"method": "email"}},
    ])
}

#[test]
fn gtag_hits_from_a_registry_client_answer_like_the_measurement_protocol() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        data.path(),
        &[("FOOTFALL_PROCESSOR__FLUSH_INTERVAL_MS", "100")],
    );
    let site = |domain: &str| {
        cli_json(
            data.path(),
            &["sites", "create", "--domain", domain, "--currency", "EUR"],
        )
    };
    let gtag_site = site("gtag.test");
    let mp_site = site("mp.test");
    let key = cli_json(
        data.path(),
        &["keys", "create", "--site", "gtag.test", "--site", "mp.test"],
    )["key"]
        .as_str()
        .unwrap()
        .to_string();

    // The registry client, to /g/collect.
    let out = Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/ga4mp.cjs"
        ))
        .env("NODE_DEPS", node_deps())
        .env("ENDPOINT", format!("http://{}/g/collect", server.addr))
        .env(
            "MEASUREMENT_ID",
            gtag_site["measurement_id"].as_str().unwrap(),
        )
        .env("CLIENT_ID", CLIENT_ID)
        .env("SESSION_ID", SESSION_ID)
        .env("HITS", hits("gtag.test").to_string())
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "ga4mp.cjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The same hits over the Measurement Protocol, one request each, as far apart.
    let target = format!(
        "/mp/collect?measurement_id={}&api_secret={}",
        mp_site["measurement_id"].as_str().unwrap(),
        mp_site["api_secret"].as_str().unwrap()
    );
    for hit in hits("mp.test").as_array().unwrap() {
        let mut params = hit["params"].clone();
        params["session_id"] = json!(SESSION_ID);
        let body =
            json!({"client_id": CLIENT_ID, "events": [{"name": hit["name"], "params": params}]});
        let r = http(
            server.addr,
            "POST",
            &target,
            &[],
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 204);
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_caught_up(server.addr, &key, "gtag.test");
    wait_caught_up(server.addr, &key, "mp.test");

    let ask = |site: &str, metrics: &[&str], dimensions: &[&str]| {
        let a = query(
            server.addr,
            &key,
            &json!({"site_id": site, "metrics": metrics, "date_range": "day", "dimensions": dimensions}),
        );
        a["results"].clone()
    };
    // What the hits amount to, worked out by hand: one visitor, one visit of two pageviews
    // (not a bounce), four events, 19.99 EUR.
    let totals = [
        "visitors",
        "visits",
        "pageviews",
        "events",
        "bounce_rate",
        "views_per_visit",
        "total_revenue",
    ];
    assert_eq!(
        ask("gtag.test", &totals, &[]),
        json!([{"dimensions": [], "metrics": [1, 1, 2, 4, 0.0, 2.0, 19.99]}])
    );
    let cases: &[(&[&str], &str)] = &[
        (&totals, ""),
        (&["visitors", "pageviews"], "event:page"),
        (&["visitors", "events"], "event:goal"),
        (&["visitors", "events"], "event:props:promo_code"),
        (&["visitors", "events"], "event:props:method"),
        (&["visitors", "visits"], "visit:source"),
        (&["visitors"], "visit:utm_medium"),
        (&["visitors"], "visit:channel"),
        (&["visitors"], "visit:referrer"),
        (&["visits"], "visit:entry_page"),
        // (visit:exit_page is written when a visit ends, 30 minutes after its last event.)
        (&["visitors", "pageviews", "events"], "time:hour"),
    ];
    for (metrics, dimension) in cases {
        let dims: Vec<&str> = if dimension.is_empty() {
            vec![]
        } else {
            vec![*dimension]
        };
        let g = ask("gtag.test", metrics, &dims);
        let m = ask("mp.test", metrics, &dims);
        assert_eq!(g, m, "{dimension} {metrics:?}: /g/collect vs /mp/collect");
        assert!(!g.as_array().unwrap().is_empty(), "{dimension}: no rows");
    }
    // A few rows by hand, so that agreeing on nothing could not pass.
    assert_eq!(
        ask("gtag.test", &["visitors", "pageviews"], &["event:page"]),
        json!([{"dimensions": ["/home"], "metrics": [1, 1]}, {"dimensions": ["/pricing"], "metrics": [1, 1]}])
    );
    assert_eq!(
        ask("gtag.test", &["visits"], &["visit:utm_medium"]),
        json!([{"dimensions": ["email"], "metrics": [1]}])
    );
    assert_eq!(
        ask("gtag.test", &["events"], &["event:props:promo_code"]),
        json!([{"dimensions": ["SPRING"], "metrics": [1]}])
    );
    server.stop();
}
