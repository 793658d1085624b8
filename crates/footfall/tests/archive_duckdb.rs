//! The archive as an outside reader sees it: `docs/archive.md`'s DuckDB example, run with the
//! real `duckdb` package from PyPI against files the server wrote, prints the figures worked
//! out by hand.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{cli_json, http, python_with, wait_for, Server};
use serde_json::json;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const SAFARI: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15";

/// The example of docs/archive.md, with the archive path filled in.
fn example(archive: &std::path::Path) -> String {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/archive.md"
    ))
    .unwrap();
    let start = doc.find("```python\n").unwrap() + "```python\n".len();
    let end = start + doc[start..].find("```").unwrap();
    doc[start..end].replace("footfall-data/archive", archive.to_str().unwrap())
}

#[test]
fn the_documented_duckdb_example_reads_what_the_server_archived() {
    let python = || python_with(&["duckdb==1.5.6"]);
    let dir = tempfile::tempdir().unwrap();
    cli_json(dir.path(), &["sites", "create", "--domain", "shop.example"]);
    let server = Server::start(dir.path(), &[("FOOTFALL_ARCHIVE__FLUSH_INTERVAL_S", "1")]);
    // Two visitors (told apart by their User-Agent): `/` three times, `/pricing` once.
    for (ua, path) in [
        (FIREFOX, "/"),
        (FIREFOX, "/pricing"),
        (SAFARI, "/"),
        (FIREFOX, "/"),
    ] {
        let body = json!({"name": "pageview", "url": format!("https://shop.example{path}"), "domain": "shop.example"});
        let r = http(
            server.addr,
            "POST",
            "/api/event",
            &[("User-Agent", ua)],
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 202);
    }
    let script = example(&dir.path().join("archive"));
    let out = wait_for(
        Duration::from_secs(30),
        "the archive to hold four pageviews",
        || {
            let out = python().args(["-c", &script]).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (out.status.success() && text.contains("3, 2")).then_some(text)
        },
    );
    assert_eq!(out, "[('/', 3, 2), ('/pricing', 1, 1)]");
    // The documented map access to properties, and no IP address column.
    let columns = python()
        .args(["-c", &format!("import duckdb; print([r[0] for r in duckdb.sql(\"DESCRIBE SELECT * FROM read_parquet('{}/events/v1/*/*/*.parquet')\").fetchall()])", dir.path().join("archive").display())])
        .output()
        .unwrap();
    let columns = String::from_utf8_lossy(&columns.stdout);
    assert!(
        columns.contains("'props'") && columns.contains("'visitor_id'"),
        "{columns}"
    );
    assert!(!columns.contains("ip"), "{columns}");
    server.stop();
}
