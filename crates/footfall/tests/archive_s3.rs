//! The archive on a real S3-compatible server: `moto` (from PyPI, installed with pip into the
//! test target directory) serves S3 on loopback. `footfall serve` archives to
//! `s3://footfall/archive` through `object_store`'s S3 client; the test reads the files back
//! with the same client, then reprocesses from them.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{cli_json, python_with, query, try_http, wait_caught_up, wait_for, Server};
use footfall_archive::{Archive, S3Settings, Selection};
use serde_json::json;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_moto() -> (Moto, SocketAddr) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = python_with(&["moto[s3]==5.2.5", "flask==3.1.3", "flask-cors==6.0.5"])
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let moto = Moto(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for(Duration::from_secs(60), "the S3 server to answer", || {
        try_http(addr, "GET", "/", &[], b"").ok().map(|_| ())
    });
    (moto, addr)
}

#[test]
fn the_archive_lives_on_s3_and_reprocessing_reads_it_back() {
    let (_moto, s3) = start_moto();
    // CreateBucket is a PUT on the bucket.
    let created = try_http(s3, "PUT", "/footfall", &[], b"").unwrap();
    assert_eq!(created.status, 200);
    let endpoint = format!("http://{s3}");
    let env = [
        ("FOOTFALL_ARCHIVE__URL", "s3://footfall/archive"),
        ("FOOTFALL_ARCHIVE__S3_ENDPOINT", endpoint.as_str()),
        ("FOOTFALL_ARCHIVE__S3_ALLOW_HTTP", "true"),
        ("FOOTFALL_ARCHIVE__S3_REGION", "us-east-1"),
        ("FOOTFALL_ARCHIVE__S3_ACCESS_KEY_ID", "footfall-test"),
        (
            "FOOTFALL_ARCHIVE__S3_SECRET_ACCESS_KEY",
            "footfall-test-secret",
        ),
        ("FOOTFALL_ARCHIVE__FLUSH_INTERVAL_S", "1"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    cli_json(&data, &["sites", "create", "--domain", "shop.example"]);
    let key = cli_json(&data, &["keys", "create", "--site", "shop.example"])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let server = Server::start(&data, &env);
    let lines: String = (0..6)
        .map(|i| {
            format!(
                "192.0.2.{} - - [0{}/Apr/2024:10:00:00 +0000] \"GET /p{i} HTTP/1.1\" 200 1 \"-\" \"{FIREFOX}\"\n",
                i % 3,
                1 + i % 2
            )
        })
        .collect();
    let file = dir.path().join("april.log");
    std::fs::write(&file, lines).unwrap();
    cli_json(
        &data,
        &[
            "import",
            "--site",
            "shop.example",
            "--json",
            file.to_str().unwrap(),
        ],
    );
    wait_caught_up(server.addr, &key, "shop.example");

    // Read the files back through the S3 API.
    let archive = Archive::open(
        "s3://footfall/archive",
        &S3Settings {
            endpoint: Some(endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some("footfall-test".into()),
            secret_access_key: Some("footfall-test-secret".into()),
            allow_http: true,
            virtual_hosted_style: false,
        },
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let everything = Selection {
        timestamps_us: (i64::MIN, i64::MAX),
        ..Selection::default()
    };
    let paths = wait_for(Duration::from_secs(30), "six events on S3", || {
        let events = runtime.block_on(archive.scan(&everything)).ok()?;
        let mut paths: Vec<String> = events
            .iter()
            .filter(|e| e.event.name == "pageview")
            .map(|e| e.event.path.clone())
            .collect();
        paths.sort();
        (paths.len() == 6).then_some(paths)
    });
    assert_eq!(paths, ["/p0", "/p1", "/p2", "/p3", "/p4", "/p5"]);
    let files = runtime.block_on(archive.list()).unwrap();
    assert!(files
        .iter()
        .all(|f| f.path.as_ref().starts_with("events/v1/date=")));

    // Reprocessing reads them back: nothing changed, so the figures stay, served from the
    // new generation.
    let outcome = cli_json(
        &data,
        &[
            "reprocess",
            "--from",
            "2024-04-01",
            "--to",
            "2024-04-02",
            "--json",
        ],
    );
    assert_eq!(outcome["events"], json!(6));
    for d in outcome["days"].as_array().unwrap() {
        assert_eq!(d["old"], d["new"], "{d}");
    }
    let a = query(
        server.addr,
        &key,
        &json!({"site_id": "shop.example", "metrics": ["pageviews"], "date_range": ["2024-04-01", "2024-04-02"], "dimensions": ["time:day"]}),
    );
    assert_eq!(
        a["results"],
        json!([{"dimensions": ["2024-04-01"], "metrics": [3]}, {"dimensions": ["2024-04-02"], "metrics": [3]}])
    );
    assert_eq!(a["meta"]["generation"], outcome["generation"]);
    server.stop();
}
