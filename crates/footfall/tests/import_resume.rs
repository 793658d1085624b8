//! `footfall import` killed with SIGKILL midway and run again counts every pageview exactly
//! once; importing the same file again adds nothing.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{cli_json, footfall, query, wait_caught_up, Server};
use serde_json::json;

const SITE: &str = "logs.example";

/// Writes `n` log lines, one minute apart from 2024-03-01 00:00 UTC, cycling through 50
/// visitors and 100 pages; every 10th line is a static asset and every 7th a 404, which are
/// not pageviews. Returns the number of pageviews, worked out from those rules.
fn write_log(path: &std::path::Path, n: u64) -> u64 {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut pageviews = 0;
    for i in 0..n {
        let t = chrono::DateTime::from_timestamp(1_709_251_200 + i as i64 * 60, 0).unwrap();
        let (target, status) = if i % 10 == 0 {
            ("/static/app.css".to_string(), 200)
        } else if i % 7 == 0 {
            (format!("/missing/{i}"), 404)
        } else {
            pageviews += 1;
            (format!("/page/{}", i % 100), 200)
        };
        writeln!(f, "10.0.{}.{} - - [{}] \"GET {target} HTTP/1.1\" {status} 512 \"-\" \"Mozilla/5.0 (X11; Linux x86_64) Test/{}\"", i % 50 / 10, i % 10, t.format("%d/%b/%Y:%H:%M:%S +0000"), i % 50).unwrap();
    }
    pageviews
}

fn pageviews(addr: std::net::SocketAddr, key: &str) -> u64 {
    let a = query(
        addr,
        key,
        &json!({"site_id": SITE, "metrics": ["pageviews"], "date_range": "all"}),
    );
    a["results"][0]["metrics"][0].as_u64().unwrap()
}

#[test]
fn killed_import_resumes_and_counts_every_pageview_once() {
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("access.log");
    let expected = write_log(&log, 120_000);
    let server = Server::start(
        data.path(),
        &[("FOOTFALL_PROCESSOR__FLUSH_INTERVAL_MS", "100")],
    );
    cli_json(data.path(), &["sites", "create", "--domain", SITE]);
    let key = cli_json(data.path(), &["keys", "create", "--site", SITE])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let addr = server.addr;

    let mut first = footfall()
        .arg("--data-dir")
        .arg(data.path())
        .args(["import", "--site", SITE, "--batch-lines", "200", "--json"])
        .arg(&log)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it as soon as some of its pageviews are visible.
    let deadline = Instant::now() + Duration::from_secs(60);
    while pageviews(addr, &key) == 0 {
        assert!(
            Instant::now() < deadline,
            "the first import made no progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap();
    let status = first.wait().unwrap();
    assert!(
        !status.success(),
        "the first import finished before it could be killed; make the log longer"
    );

    let second = cli_json(
        data.path(),
        &[
            "import",
            "--site",
            SITE,
            "--batch-lines",
            "200",
            "--json",
            log.to_str().unwrap(),
        ],
    );
    let f = &second["files"][0];
    let already = f["already_imported"].as_u64().unwrap();
    assert!(
        already > 0 && already < 120_000,
        "the second run resumed midway (already imported: {already})"
    );
    assert_eq!(f["lines"].as_u64().unwrap(), 120_000);

    let third = cli_json(
        data.path(),
        &["import", "--site", SITE, "--json", log.to_str().unwrap()],
    );
    assert_eq!(
        third["files"][0]["imported"].as_u64().unwrap(),
        0,
        "a re-import adds nothing"
    );
    assert_eq!(
        third["files"][0]["already_imported"].as_u64().unwrap(),
        120_000
    );

    // Wait until the processor reflects everything appended so far, then compare exactly.
    wait_caught_up(addr, &key, SITE);
    assert_eq!(pageviews(addr, &key), expected);

    // The log grows (a live access log): only the new lines are imported, here from stdin.
    let grown = data.path().join("grown.log");
    let extra = write_log(&grown, 120_030) - expected;
    let mut child = footfall()
        .arg("--data-dir")
        .arg(data.path())
        .args(["import", "--site", SITE, "--json", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::copy(
        &mut std::fs::File::open(&grown).unwrap(),
        child.stdin.as_mut().unwrap(),
    )
    .unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let fourth: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        fourth["files"][0]["already_imported"].as_u64().unwrap(),
        120_000
    );
    assert_eq!(
        fourth["files"][0]["imported"].as_u64().unwrap(),
        extra,
        "only the appended lines' pageviews"
    );
    assert!(
        !std::fs::read_dir(data.path())
            .unwrap()
            .any(|e| e.unwrap().file_name() == "tmp"),
        "stdin is never copied to disk"
    );
    wait_caught_up(addr, &key, SITE);
    assert_eq!(pageviews(addr, &key), expected + extra);
    eprintln!("resumed after {already} of 120000 lines; {expected} pageviews counted once");
    server.stop();
}
