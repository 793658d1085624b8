//! `deploy/nginx/footfall.conf` with Debian's real nginx in front of two collector processes
//! and a processor + query process, over a Kafka-compatible broker (`tansu`) on loopback:
//! traffic keeps flowing while one collector is killed and restarted, no acknowledged event is
//! lost or doubled, the rate limits answer `429` with `Retry-After`, a client cannot choose its
//! address, and the access log keeps neither full addresses nor secrets.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use common::{cli_json, free_port, http, query, try_http, Broker, Server};
use serde_json::json;

const SITE: &str = "proxied.example";

/// nginx running the repository's configuration under a temporary prefix.
struct Nginx {
    child: Child,
    addr: std::net::SocketAddr,
    dir: PathBuf,
}

impl Nginx {
    fn start(dir: &Path, collectors: &[u16], queries: &[u16]) -> Nginx {
        let conf = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nginx/footfall.conf"),
        )
        .unwrap();
        let port = free_port();
        // The file as shipped, with its absolute paths and port moved into the test's dir.
        let conf = conf
            .replace("/etc/nginx/footfall/", &format!("{}/", dir.display()))
            .replace("/var/log/nginx/", &format!("{}/", dir.display()))
            .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
        assert!(conf.contains(&format!("listen 127.0.0.1:{port};")));
        std::fs::write(dir.join("footfall.conf"), conf).unwrap();
        let servers = |ports: &[u16]| -> String {
            ports
                .iter()
                .map(|p| format!("server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;\n"))
                .collect()
        };
        std::fs::write(dir.join("collectors.conf"), servers(collectors)).unwrap();
        std::fs::write(dir.join("queries.conf"), servers(queries)).unwrap();
        let main = format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{ worker_connections 256; }}\nhttp {{\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  include {d}/footfall.conf;\n}}\n",
            d = dir.display()
        );
        let child = common::start_nginx(dir, &main, port);
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        Nginx {
            child,
            addr,
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pageview(addr: std::net::SocketAddr, n: u32) -> u16 {
    let body = json!({"name": "pageview", "url": format!("https://{SITE}/p/{n}"), "domain": SITE});
    try_http(
        addr,
        "POST",
        "/api/event",
        &[("User-Agent", "Mozilla/5.0 (nginx test)")],
        body.to_string().as_bytes(),
    )
    .map_or(0, |r| r.status)
}

#[test]
fn nginx_balances_two_collectors_through_a_kill_and_limits_rates() {
    let broker = Broker::start();
    let url = format!("kafka://{}/events?partitions=2", broker.address);
    let collector_env = [
        ("FOOTFALL_LOG__URL", url.as_str()),
        ("FOOTFALL_SERVER__ROLES", "[\"collector\"]"),
        ("FOOTFALL_SERVER__TRUSTED_PROXIES", "[\"127.0.0.1\"]"),
        ("FOOTFALL_SERVER__METRICS_PUBLIC", "true"),
    ];
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports = [free_port(), free_port()];
    let listen = |p: u16| format!("127.0.0.1:{p}");
    let c1 = Server::start_listening(dirs[0].path(), &collector_env, &listen(ports[0]));
    let c2 = Server::start_listening(dirs[1].path(), &collector_env, &listen(ports[1]));
    let processor = Server::start(
        dirs[2].path(),
        &[
            ("FOOTFALL_LOG__URL", url.as_str()),
            ("FOOTFALL_SERVER__ROLES", "[\"processor\",\"query\"]"),
            ("FOOTFALL_PROCESSOR__FLUSH_INTERVAL_MS", "100"),
        ],
    );
    // Each process has its own embedded store: the site gets id 1 in each.
    for d in &dirs {
        let id = cli_json(d.path(), &["sites", "create", "--domain", SITE])["id"].clone();
        assert_eq!(id, json!(1));
    }
    let key = cli_json(dirs[2].path(), &["keys", "create", "--site", SITE])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let nginx_dir = tempfile::tempdir().unwrap();
    let nginx = Nginx::start(nginx_dir.path(), &ports, &[processor.addr.port()]);

    // 1. Paced traffic (10/s, under the 20/s limit) while collector 1 is killed and restarted.
    let mut acknowledged = Vec::new();
    let mut other = Vec::new();
    let mut c1 = Some(c1);
    for n in 0..120u32 {
        if n == 30 {
            drop(c1.take()); // SIGKILL
        }
        if n == 70 {
            c1 = Some(Server::start_listening(
                dirs[0].path(),
                &collector_env,
                &listen(ports[0]),
            ));
        }
        match pageview(nginx.addr, n) {
            202 => acknowledged.push(n),
            status => other.push((n, status)),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The collector was killed between requests: nginx found its connections closed and sent
    // every request to the other one, so none failed.
    assert!(other.is_empty(), "failed requests: {other:?}");
    let c1 = c1.unwrap();
    let accepted = |server: &Server| -> u64 {
        let r = http(server.addr, "GET", "/metrics", &[], b"");
        String::from_utf8_lossy(&r.body)
            .lines()
            .find(|l| {
                l.starts_with("footfall_ingest_events_total{")
                    && l.contains("protocol=\"plausible\"")
                    && l.contains("outcome=\"accepted\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    };
    // Both replicas took traffic: the one that kept running, and the killed one once back.
    let (by_c1, by_c2) = (accepted(&c1), accepted(&c2));
    assert!(
        by_c1 > 0 && by_c2 > 0,
        "after the restart: c1 {by_c1}, c2 {by_c2}"
    );

    // 2. The ingest limit per client address: 100 requests at once, well past the burst of 40
    //    (nginx refills 20/s), get 429 with Retry-After.
    let answers: Vec<(u32, common::Reply)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..10u32)
            .map(|t| {
                scope.spawn(move || {
                    (0..10u32)
                        .map(|i| {
                            let n = 1000 + t * 10 + i;
                            let body = json!({"name": "pageview", "url": format!("https://{SITE}/p/{n}"), "domain": SITE});
                            let r = http(
                                nginx.addr,
                                "POST",
                                "/api/event",
                                &[("User-Agent", "Mozilla/5.0 (nginx test)")],
                                body.to_string().as_bytes(),
                            );
                            (n, r)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    let mut limited = None;
    for (n, r) in answers {
        match r.status {
            202 => acknowledged.push(n),
            429 => limited = Some(r),
            s => panic!("status {s} in the burst"),
        }
    }
    let limited = limited.expect("the burst was limited");
    assert_eq!(limited.header("Retry-After"), Some("1"));
    assert_eq!(limited.json()["error_code"], "rate_limited");
    std::thread::sleep(Duration::from_secs(3)); // the bucket refills

    // A client's own forwarding headers are not believed: six hits that claim six other
    // addresses are one visitor per collector (nginx's address, here; each collector has its
    // own store, so its own daily salt, and each may have taken some of them).
    for i in 1..=6 {
        let xff = format!("6.6.6.{i}");
        let fwd = format!("for=7.7.7.{i}");
        let body =
            json!({"name": "pageview", "url": format!("https://{SITE}/spoof"), "domain": SITE});
        let r = http(
            nginx.addr,
            "POST",
            "/api/event",
            &[
                ("User-Agent", "Mozilla/5.0 (spoofing test)"),
                ("X-Forwarded-For", &xff),
                ("Forwarded", &fwd),
            ],
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 202);
    }
    // The tracker script comes from the collectors.
    let script = http(nginx.addr, "GET", "/js/script.js", &[], b"");
    assert_eq!(script.status, 200);
    assert!(script
        .header("Content-Type")
        .is_some_and(|t| t.starts_with("text/javascript")));
    // A Measurement Protocol hit: its secret travels in the query string.
    let mp = http(
        nginx.addr,
        "POST",
        "/mp/collect?measurement_id=G-NGINXTEST&api_secret=s3cr3t-in-the-query",
        &[],
        br#"{"client_id":"1.2","events":[{"name":"page_view"}]}"#,
    );
    assert_eq!(mp.status, 204);
    // Operations endpoints are not served to the internet.
    assert_eq!(http(nginx.addr, "GET", "/metrics", &[], b"").status, 404);

    // 3. The query limit per API key: 10/s with a burst of 20.
    let auth = format!("Bearer {key}");
    let q = json!({"site_id": SITE, "metrics": ["pageviews"], "date_range": "all"}).to_string();
    let statuses: Vec<u16> = (0..40)
        .map(|_| {
            http(
                nginx.addr,
                "POST",
                "/api/v2/query",
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                ],
                q.as_bytes(),
            )
            .status
        })
        .collect();
    assert!(
        statuses.contains(&200) && statuses.contains(&429),
        "{statuses:?}"
    );

    // 4. Every acknowledged pageview is counted once; nothing else is counted but requests
    //    that failed without an answer (the collector may have kept them before it died).
    std::thread::sleep(Duration::from_millis(1100)); // past the query rate limit
    let mut counted = Vec::new();
    let mut spoof = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let a = query(
            processor.addr,
            &key,
            &json!({"site_id": SITE, "metrics": ["pageviews", "visitors"], "date_range": "all", "dimensions": ["event:page"], "pagination": {"limit": 10000}}),
        );
        let rows = a["results"].as_array().unwrap();
        spoof = rows
            .iter()
            .find(|r| r["dimensions"][0] == "/spoof")
            .map(|r| r["metrics"].clone());
        counted = rows
            .iter()
            .filter_map(|r| {
                let page = r["dimensions"][0].as_str().unwrap();
                let n: u32 = page.strip_prefix("/p/")?.parse().unwrap();
                Some((n, r["metrics"][0].as_u64().unwrap()))
            })
            .collect::<Vec<_>>();
        if spoof.is_some()
            && acknowledged
                .iter()
                .all(|n| counted.iter().any(|c| c.0 == *n))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        counted.iter().all(|c| c.1 == 1),
        "a page counted twice: {counted:?}"
    );
    let spoof = spoof.unwrap();
    assert_eq!(spoof[0], 6, "{spoof}");
    assert!(
        spoof[1].as_u64().unwrap() <= 2,
        "six forged addresses made {} visitors",
        spoof[1]
    );
    let pages: std::collections::BTreeSet<u32> = counted.iter().map(|c| c.0).collect();
    for n in &acknowledged {
        assert!(
            pages.contains(n),
            "acknowledged pageview {n} was not counted"
        );
    }
    let unanswered: Vec<u32> = other
        .iter()
        .filter(|o| o.1 == 0 || o.1 == 502)
        .map(|o| o.0)
        .collect();
    for n in &pages {
        assert!(
            acknowledged.contains(n) || unanswered.contains(n),
            "pageview {n} was counted but refused"
        );
    }
    // nginx wrote its access log in the combined format, one line per request it served,
    // with the address masked and without query strings.
    let log = std::fs::read_to_string(nginx.dir.join("footfall.access.log")).unwrap();
    assert!(
        log.lines()
            .filter(
                |l| l.starts_with("127.0.0.0 - - [") && l.contains("\"POST /api/event HTTP/1.1\"")
            )
            .count()
            >= 222
    );
    assert!(log.contains("\"POST /mp/collect HTTP/1.1\" 204"));
    assert!(
        !log.contains("127.0.0.1"),
        "a full address in the access log"
    );
    assert!(!log.contains("s3cr3t"), "a secret in the access log");
    assert!(!log.contains(&key), "an API key in the access log");
    drop(c1);
    drop(c2);
}
