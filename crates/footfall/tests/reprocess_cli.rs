//! `footfall reprocess` and `footfall generations` against a running server, as an operator
//! uses them (DESIGN §4.6):
//!
//! - bug fix: a site was set up with the wrong time zone; after the fix, a dry run shows the
//!   daily figures that will move, the reprocess moves them, the answer names the new
//!   generation, and a rollback restores the previous answers exactly;
//! - concurrency: history is imported, then reprocessed while more events for the same days
//!   keep arriving (during and after the run); the answers equal those of a second server
//!   that ingested the same files and was never reprocessed.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{cli_json, footfall, query, wait_caught_up, Server};
use footfall_model::clock::{Clock, ManualClock};
use serde_json::{json, Value};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const SAFARI: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15";

/// A combined-format access log line: `at` is `10/Mar/2024:03:00:00 +0000`.
fn line(ip: &str, at: &str, path: &str, ua: &str) -> String {
    format!("{ip} - - [{at}] \"GET {path} HTTP/1.1\" 200 512 \"-\" \"{ua}\"\n")
}

fn write(dir: &Path, name: &str, lines: &[String]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, lines.concat()).unwrap();
    p.to_str().unwrap().to_string()
}

fn import(data: &Path, file: &str) {
    cli_json(data, &["import", "--site", "shop.example", "--json", file]);
}

fn daily(addr: std::net::SocketAddr, key: &str, from: &str, to: &str) -> Value {
    query(
        addr,
        key,
        &json!({"site_id": "shop.example", "metrics": ["visitors", "visits", "pageviews"], "date_range": [from, to], "dimensions": ["time:day"]}),
    )
}

fn setup(data: &Path, timezone: &str) -> String {
    cli_json(
        data,
        &[
            "sites",
            "create",
            "--domain",
            "shop.example",
            "--timezone",
            timezone,
        ],
    );
    cli_json(data, &["keys", "create", "--site", "shop.example"])["key"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_time_zone_fix_is_reprocessed_into_history_and_rolled_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = setup(&data, "UTC");
    let server = Server::start(&data, &[("FOOTFALL_ARCHIVE__FLUSH_INTERVAL_S", "1")]);
    // 2024-03-10 is New York's spring-forward day. In UTC all three pageviews fall on
    // March 10; in New York the 03:00Z one is 22:00 on March 9 (EST), the others are
    // 08:00 and 19:30 on March 10 (EDT).
    let file = write(
        dir.path(),
        "march.log",
        &[
            line("198.51.100.7", "10/Mar/2024:03:00:00 +0000", "/a", FIREFOX),
            line("198.51.100.7", "10/Mar/2024:12:00:00 +0000", "/b", FIREFOX),
            line("198.51.100.8", "10/Mar/2024:23:30:00 +0000", "/a", SAFARI),
        ],
    );
    import(&data, &file);
    wait_caught_up(server.addr, &key, "shop.example");
    let before = daily(server.addr, &key, "2024-03-09", "2024-03-10");
    assert_eq!(
        before["results"],
        json!([{"dimensions": ["2024-03-09"], "metrics": [0, 0, 0]}, {"dimensions": ["2024-03-10"], "metrics": [2, 3, 3]}])
    );
    assert_eq!(before["meta"]["generation"], json!(1));

    // The fix: New York. Nothing moves until history is reprocessed.
    cli_json(
        &data,
        &[
            "sites",
            "update",
            "--domain",
            "shop.example",
            "--timezone",
            "America/New_York",
        ],
    );
    let dry = cli_json(
        &data,
        &[
            "reprocess",
            "--from",
            "2024-03-09",
            "--to",
            "2024-03-10",
            "--site",
            "shop.example",
            "--dry-run",
            "--json",
        ],
    );
    assert_eq!(dry["generation"], Value::Null);
    assert_eq!(
        dry["days"],
        json!([
            {"site": "shop.example", "date": "2024-03-09", "old": [0, 0, 0, 0], "new": [1, 1, 1, 1]},
            {"site": "shop.example", "date": "2024-03-10", "old": [2, 3, 3, 3], "new": [2, 2, 2, 2]},
        ])
    );
    assert_eq!(
        daily(server.addr, &key, "2024-03-09", "2024-03-10")["results"],
        before["results"],
        "a dry run changes nothing"
    );

    // The table a person reads.
    let out = footfall()
        .arg("--data-dir")
        .arg(&data)
        .args(["reprocess", "--from", "2024-03-09", "--to", "2024-03-10"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("2024-03-09") && table.contains("0 → 1"),
        "{table}"
    );
    assert!(table.contains("is now served"), "{table}");
    assert!(
        table.contains("footfall generations rollback --site shop.example"),
        "{table}"
    );
    let after = daily(server.addr, &key, "2024-03-09", "2024-03-10");
    assert_eq!(
        after["results"],
        json!([{"dimensions": ["2024-03-09"], "metrics": [1, 1, 1]}, {"dimensions": ["2024-03-10"], "metrics": [2, 2, 2]}])
    );
    let generation = after["meta"]["generation"].as_u64().unwrap();
    assert!(generation >= 2);
    // Outside the range, live processing still serves (and nothing is there).
    let outside = daily(server.addr, &key, "2024-03-11", "2024-03-11");
    assert_eq!(outside["meta"]["generation"], json!(1));

    let listed = cli_json(&data, &["generations", "list", "--site", "shop.example"]);
    assert_eq!(
        listed[0]["served"],
        json!([{"from": "2024-03-09", "to": "2024-03-10", "generation": generation}])
    );
    assert_eq!(listed[0]["generations"][0]["state"], json!("ready"));

    let rolled = cli_json(
        &data,
        &["generations", "rollback", "--site", "shop.example"],
    );
    assert_eq!(rolled["served"], json!([]));
    let restored = daily(server.addr, &key, "2024-03-09", "2024-03-10");
    assert_eq!(restored["results"], before["results"]);
    assert_eq!(restored["meta"]["generation"], json!(1));
    let nothing_left = footfall()
        .arg("--data-dir")
        .arg(&data)
        .args(["generations", "rollback", "--site", "shop.example"])
        .output()
        .unwrap();
    assert!(!nothing_left.status.success());
    assert!(String::from_utf8_lossy(&nothing_left.stderr).contains("no earlier served generations"));
    server.stop();
}

/// Three visitors' pageviews on 2024-05-01 and 02 (Berlin), `tag` varying the paths and
/// addresses so that each file brings its own visitors.
fn history(tag: u8) -> Vec<String> {
    let mut lines = Vec::new();
    for (i, (at, path)) in [
        ("01/May/2024:21:50:00 +0000", "/"),
        ("01/May/2024:22:05:00 +0000", "/pricing"),
        ("01/May/2024:22:20:00 +0000", "/signup"),
        ("02/May/2024:09:00:00 +0000", "/"),
        ("02/May/2024:09:40:00 +0000", "/docs"),
    ]
    .iter()
    .enumerate()
    {
        let ip = format!("203.0.113.{}", tag * 10 + (i as u8 % 3));
        let ua = if i % 2 == 0 { FIREFOX } else { SAFARI };
        lines.push(line(&ip, at, &format!("{path}{tag}"), ua));
    }
    lines
}

fn answers(addr: std::net::SocketAddr, key: &str) -> Vec<Value> {
    let visit = json!([
        "visitors",
        "visits",
        "pageviews",
        "bounce_rate",
        "visit_duration"
    ]);
    let q = |dims: Value, metrics: &Value| {
        let mut a = query(
            addr,
            key,
            &json!({"site_id": "shop.example", "metrics": metrics, "date_range": ["2024-05-01", "2024-05-02"], "dimensions": dims}),
        );
        a["results"].take()
    };
    vec![
        q(json!(["time:day"]), &visit),
        q(json!(["visit:entry_page"]), &visit),
        q(json!(["visit:exit_page"]), &visit),
        q(
            json!(["event:page"]),
            &json!(["visitors", "visits", "pageviews"]),
        ),
    ]
}

async fn in_process(data: &Path, clock: &ManualClock) -> footfall::serve::Running {
    let mut config = footfall::config::Config {
        data_dir: data.to_path_buf(),
        ..footfall::config::Config::default()
    };
    config.server.listen = "127.0.0.1:0".into();
    config.processor.flush_interval_ms = 100;
    config.archive.flush_interval_s = 1;
    footfall::serve::start(config, Arc::new(clock.clone()))
        .await
        .unwrap()
}

/// Waits until the processor reflects everything accepted before `clock`'s present.
fn wait_processed(addr: std::net::SocketAddr, key: &str, clock: &ManualClock) {
    clock.advance(1_000_000);
    let target = clock.now_us() / 1_000_000 * 1_000_000;
    common::wait_for(Duration::from_secs(30), "the processor to catch up", || {
        let a = query(
            addr,
            key,
            &json!({"site_id": "shop.example", "metrics": ["visits"], "date_range": "day"}),
        );
        a["meta"]["complete_through"]
            .as_str()
            .map(|s| {
                chrono::DateTime::parse_from_rfc3339(s)
                    .unwrap()
                    .timestamp_micros()
            })
            .filter(|t| *t >= target)
            .map(|_| ())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arriving_while_a_range_is_reprocessed_reach_the_served_generation() {
    let dir = tempfile::tempdir().unwrap();
    let (main, reference) = (dir.path().join("main"), dir.path().join("reference"));
    let files: Vec<String> = (1..=4)
        .map(|t| write(dir.path(), &format!("h{t}.log"), &history(t)))
        .collect();
    let start = chrono::Utc::now().timestamp_micros();

    // Main: two files, then a reprocess while a third arrives, then a fourth.
    let clock = ManualClock::new(start);
    let running = in_process(&main, &clock).await;
    let addr = running.addr;
    let (c, m, f) = (clock.clone(), main.clone(), files.clone());
    let (got, generation) = tokio::task::spawn_blocking(move || {
        let key = setup(&m, "Europe/Berlin");
        import(&m, &f[0]);
        import(&m, &f[1]);
        wait_processed(addr, &key, &c);
        let late = {
            let (m, f) = (m.clone(), f[2].clone());
            std::thread::spawn(move || import(&m, &f))
        };
        let outcome = cli_json(
            &m,
            &["reprocess", "--from", "2024-05-01", "--to", "2024-05-02", "--json"],
        );
        late.join().unwrap();
        import(&m, &f[3]);
        wait_processed(addr, &key, &c);
        // An hour later every visit has ended: exit pages, including those of visits that
        // were open at the cut, come through live processing.
        c.advance(3_600_000_000);
        wait_processed(addr, &key, &c);
        let served = query(
            addr,
            &key,
            &json!({"site_id": "shop.example", "metrics": ["pageviews"], "date_range": ["2024-05-01", "2024-05-02"]}),
        );
        assert_eq!(served["meta"]["generation"], outcome["generation"]);
        // 4 files × 5 pageviews.
        assert_eq!(served["results"][0]["metrics"], json!([20]));
        (answers(addr, &key), outcome["generation"].clone())
    })
    .await
    .unwrap();
    assert!(generation.as_u64().is_some_and(|g| g >= 2));
    running.shutdown.cancel();
    running.done.await.unwrap().unwrap();

    // Reference: the same files, the same clock moves, no reprocess.
    let clock = ManualClock::new(start);
    let running = in_process(&reference, &clock).await;
    let addr = running.addr;
    let (c, r, f) = (clock.clone(), reference.clone(), files.clone());
    let expected = tokio::task::spawn_blocking(move || {
        let key = setup(&r, "Europe/Berlin");
        for file in &f {
            import(&r, file);
        }
        wait_processed(addr, &key, &c);
        c.advance(3_600_000_000);
        wait_processed(addr, &key, &c);
        answers(addr, &key)
    })
    .await
    .unwrap();
    running.shutdown.cancel();
    running.done.await.unwrap().unwrap();
    assert!(
        expected[2].as_array().is_some_and(|rows| !rows.is_empty()),
        "exit pages were written: {expected:?}"
    );
    assert_eq!(got, expected);
}
