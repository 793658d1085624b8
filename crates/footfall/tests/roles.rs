//! `footfall serve --roles` (DESIGN §3): a process serves only the paths of its roles, and a
//! collector-only process keeps acknowledged events in the log for a later processor.

#![allow(clippy::unwrap_used)]

mod common;

use common::{cli_json, http, query, wait_caught_up, Server};
use serde_json::json;

const SITE: &str = "roles.example";

fn pageview(addr: std::net::SocketAddr, path: &str) -> u16 {
    let body = json!({"name": "pageview", "url": format!("https://{SITE}{path}"), "domain": SITE});
    http(
        addr,
        "POST",
        "/api/event",
        &[("User-Agent", "Mozilla/5.0 (roles test)")],
        body.to_string().as_bytes(),
    )
    .status
}

#[test]
fn a_collector_only_process_keeps_events_for_a_later_processor() {
    let data = tempfile::tempdir().unwrap();
    let collector = Server::start(
        data.path(),
        &[("FOOTFALL_SERVER__ROLES", "[\"collector\"]")],
    );
    cli_json(data.path(), &["sites", "create", "--domain", SITE]);
    let key = cli_json(data.path(), &["keys", "create", "--site", SITE])["key"]
        .as_str()
        .unwrap()
        .to_string();
    for path in ["/", "/pricing", "/"] {
        assert_eq!(pageview(collector.addr, path), 202);
    }
    // No query role: the query API and the dashboard are not served; the ops endpoints are.
    let auth = format!("Bearer {key}");
    let body = json!({"site_id": SITE, "metrics": ["pageviews"], "date_range": "day"});
    let q = http(
        collector.addr,
        "POST",
        "/api/v2/query",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(q.status, 404);
    assert_eq!(http(collector.addr, "GET", "/", &[], b"").status, 404);
    assert_eq!(http(collector.addr, "GET", "/readyz", &[], b"").status, 200);
    collector.stop();

    // A query-only process: no ingest endpoints, and nothing processed yet.
    let query_only = Server::start(data.path(), &[("FOOTFALL_SERVER__ROLES", "[\"query\"]")]);
    assert_eq!(pageview(query_only.addr, "/late"), 404);
    let a = query(query_only.addr, &key, &body);
    assert_eq!(a["results"][0]["metrics"], json!([0]), "{a}");
    query_only.stop();

    // Every role: the processor reads what the collector-only process acknowledged.
    let all = Server::start(data.path(), &[]);
    wait_caught_up(all.addr, &key, SITE);
    let a = query(
        all.addr,
        &key,
        &json!({"site_id": SITE, "metrics": ["pageviews"], "date_range": "day", "dimensions": ["event:page"], "order_by": [["event:page", "asc"]]}),
    );
    assert_eq!(
        a["results"],
        json!([{"dimensions": ["/"], "metrics": [2]}, {"dimensions": ["/pricing"], "metrics": [1]}]),
        "{a}"
    );
}

#[test]
fn an_unknown_role_is_refused_at_start_with_its_name() {
    let data = tempfile::tempdir().unwrap();
    let out = common::footfall()
        .arg("--data-dir")
        .arg(data.path())
        .args(["serve", "--roles", "collector,ingester"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ingester"), "{err}");
    assert!(
        err.contains("collector, processor, archiver, query"),
        "{err}"
    );
}

#[test]
fn a_cassandra_store_that_does_not_answer_fails_the_start_with_what_to_check() {
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = tempfile::tempdir().unwrap();
    let serve = |url: &str| {
        common::footfall()
            .arg("--data-dir")
            .arg(data.path())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("FOOTFALL_STORE__URL", url)
            .output()
            .unwrap()
    };
    let out = serve(&format!("cassandra://127.0.0.1:{port}/footfall"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cassandra://127.0.0.1:{port}/footfall")) && err.contains("check"),
        "{err}"
    );
    // A misspelt setting is named before anything is contacted.
    let out = serve("cassandra://127.0.0.1:9042/footfall?consistancy=one");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown setting \"consistancy\""), "{err}");
}
