//! Acknowledged means kept (DESIGN R4): `footfall serve` is killed with SIGKILL at varying
//! moments, 20 times, while a client sends events and records which were acknowledged. After
//! the last restart, every acknowledged event is counted exactly once; events that were not
//! acknowledged may or may not be, and the test reports how many were.
//!
//! Each event is a pageview of its own path (`/e/<n>`), so its count is readable from the
//! `event:page` breakdown.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{cli_json, query, try_http, wait_caught_up, Server};
use serde_json::json;

const SITE: &str = "kill.example";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sent {
    Acked,
    /// The request failed or was cut off: the event may or may not have been kept.
    Unknown,
}

/// Sends events from 4 threads until `stop`; records each event's fate.
fn client(
    addr: std::net::SocketAddr,
    next: Arc<Mutex<u64>>,
    fates: Arc<Mutex<BTreeMap<u64, Sent>>>,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..4)
        .map(|t| {
            let (next, fates, stop) = (next.clone(), fates.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let n = {
                        let mut g = next.lock().unwrap();
                        *g += 1;
                        *g
                    };
                    let body = json!({"name": "pageview", "url": format!("https://{SITE}/e/{n}"), "domain": SITE});
                    let ua = format!("kill-test/{t}");
                    let ok = try_http(addr, "POST", "/api/event", &[("User-Agent", &ua)], body.to_string().as_bytes()).is_ok_and(|r| r.status == 202);
                    fates.lock().unwrap().insert(n, if ok { Sent::Acked } else { Sent::Unknown });
                    if !ok {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        })
        .collect()
}

#[test]
fn acknowledged_events_survive_twenty_sigkills_exactly_once() {
    let data = tempfile::tempdir().unwrap();
    // Every event is a page of its own, and a fast machine sends more than the default
    // 10,000 distinct pages per bucket before the last kill; past that cap new pages fold
    // into `(other)`, so the cap is raised for this test, which reads every page apart.
    let env = [
        ("FOOTFALL_PROCESSOR__FLUSH_INTERVAL_MS", "50"),
        ("FOOTFALL_PROCESSOR__MAX_VALUES_PER_BUCKET", "10000000"),
    ];
    let server = Server::start(data.path(), &env);
    cli_json(data.path(), &["sites", "create", "--domain", SITE]);
    let key = cli_json(data.path(), &["keys", "create", "--site", SITE])["key"]
        .as_str()
        .unwrap()
        .to_string();
    drop(server);

    let next = Arc::new(Mutex::new(0u64));
    let fates = Arc::new(Mutex::new(BTreeMap::new()));
    for round in 0..20u64 {
        let server = Server::start(data.path(), &env);
        let stop = Arc::new(AtomicBool::new(false));
        let threads = client(server.addr, next.clone(), fates.clone(), stop.clone());
        // Kill at a different moment each round: 150 to 640 ms into the load.
        std::thread::sleep(Duration::from_millis(150 + (round * 149) % 491));
        drop(server); // SIGKILL
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().unwrap();
        }
    }

    let server = Server::start(data.path(), &env);
    let fates = fates.lock().unwrap().clone();
    let acked = fates.values().filter(|f| **f == Sent::Acked).count();
    assert!(acked > 200, "only {acked} events were acknowledged");
    // All pages, 10,000 rows at a time.
    let pages = |addr| {
        let mut out = BTreeMap::new();
        loop {
            let q = json!({"site_id": SITE, "metrics": ["pageviews"], "date_range": "day", "dimensions": ["event:page"], "pagination": {"limit": 10000, "offset": out.len()}});
            let a = query(addr, &key, &q);
            let rows = a["results"].as_array().unwrap();
            for r in rows {
                out.insert(
                    r["dimensions"][0].as_str().unwrap().to_string(),
                    r["metrics"][0].as_u64().unwrap(),
                );
            }
            if rows.is_empty() || out.len() as u64 >= a["meta"]["total_rows"].as_u64().unwrap() {
                return out;
            }
        }
    };
    // Every event appended before the restart is processed once the processor has caught up
    // with a read that started after the restart.
    wait_caught_up(server.addr, &key, SITE);
    let counted = pages(server.addr);
    let mut unknown_counted = 0;
    for (n, fate) in &fates {
        let c = counted.get(&format!("/e/{n}")).copied().unwrap_or(0);
        match fate {
            Sent::Acked => assert_eq!(c, 1, "acknowledged event {n} counted {c} times"),
            Sent::Unknown => {
                assert!(c <= 1, "unacknowledged event {n} counted {c} times");
                unknown_counted += c;
            }
        }
    }
    assert!(
        counted.values().all(|c| *c == 1),
        "no page is counted twice"
    );
    let unknown = fates.len() - acked;
    eprintln!("20 SIGKILLs: {acked} events acknowledged, all counted once; {unknown} not acknowledged, of which {unknown_counted} were kept");
    server.stop();
}

/// SIGTERM under load: the server stops taking requests, finishes the ones in flight, flushes
/// the processor and exits 0 within its deadline; after a restart every acknowledged event is
/// counted exactly once, without any replay being needed for correctness.
#[test]
fn sigterm_under_load_drains_and_exits_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let env = [("FOOTFALL_PROCESSOR__FLUSH_INTERVAL_MS", "200")];
    let mut server = Server::start(data.path(), &env);
    cli_json(data.path(), &["sites", "create", "--domain", SITE]);
    let key = cli_json(data.path(), &["keys", "create", "--site", SITE])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let next = Arc::new(Mutex::new(0u64));
    let fates = Arc::new(Mutex::new(BTreeMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let threads = client(server.addr, next, fates.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(400));
    let started = std::time::Instant::now();
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(server.child.id().to_string())
        .status();
    let status = server.child.wait().unwrap();
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    assert!(status.success(), "exit status {status:?}");
    assert!(
        took < Duration::from_secs(30),
        "shutdown took {took:?}, past server.shutdown_timeout_s"
    );
    drop(server);

    let server = Server::start(data.path(), &env);
    let fates = fates.lock().unwrap().clone();
    let acked: Vec<u64> = fates
        .iter()
        .filter(|(_, f)| **f == Sent::Acked)
        .map(|(n, _)| *n)
        .collect();
    assert!(!acked.is_empty());
    // The clean shutdown flushed everything, so the first answer after the restart already
    // has every acknowledged event.
    let a = query(
        server.addr,
        &key,
        &json!({"site_id": SITE, "metrics": ["pageviews"], "date_range": "day"}),
    );
    let total = a["results"][0]["metrics"][0].as_u64().unwrap();
    let unknown = (fates.len() - acked.len()) as u64;
    assert!(
        total >= acked.len() as u64 && total <= acked.len() as u64 + unknown,
        "{total} pageviews for {} acknowledged and {unknown} unknown",
        acked.len()
    );
    eprintln!(
        "SIGTERM after {took:?}: {} acknowledged, {total} counted",
        acked.len()
    );
    server.stop();
}
