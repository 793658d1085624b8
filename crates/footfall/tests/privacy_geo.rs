//! Client addresses: taken from X-Forwarded-For only through trusted proxies, resolved to
//! country, region and city with an MMDB file the test builds itself, and then dropped —
//! no file under the data directory and no line of the program's log output contains them,
//! in text or in binary form.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use common::{cli_json, http, query, wait_for, Server};
use serde::Serialize;
use serde_json::json;

const SITE: &str = "geo.example";

#[derive(Serialize)]
struct Iso {
    iso_code: String,
}
#[derive(Serialize)]
struct Named {
    names: BTreeMap<String, String>,
}
#[derive(Serialize)]
struct City {
    country: Iso,
    subdivisions: Vec<Iso>,
    city: Named,
}

fn mmdb(dir: &Path) -> std::path::PathBuf {
    let mut w = mmdb_writer::Writer::new("Footfall-Test-City");
    let city = |c: &str, s: &str, n: &str| City {
        country: Iso { iso_code: c.into() },
        subdivisions: vec![Iso { iso_code: s.into() }],
        city: Named {
            names: [("en".to_string(), n.to_string())].into(),
        },
    };
    w.insert(
        "192.0.2.0/24".parse::<ipnet::IpNet>().unwrap(),
        &city("DE", "BE", "Berlin"),
    )
    .unwrap();
    w.insert(
        "2001:db8::/32".parse::<ipnet::IpNet>().unwrap(),
        &city("FR", "IDF", "Paris"),
    )
    .unwrap();
    let path = dir.join("geo.mmdb");
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    path
}

fn send(addr: std::net::SocketAddr, forwarded_for: &str, ua: &str) {
    let body = json!({"name": "pageview", "url": format!("https://{SITE}/"), "domain": SITE});
    let r = http(
        addr,
        "POST",
        "/api/event",
        &[("X-Forwarded-For", forwarded_for), ("User-Agent", ua)],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 202);
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else if p.is_file() {
            out.push(p);
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn addresses_resolve_to_places_through_trusted_proxies_and_are_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = mmdb(dir.path());
    let env = [
        ("FOOTFALL_GEOIP__DATABASE", db.to_str().unwrap()),
        (
            "FOOTFALL_SERVER__TRUSTED_PROXIES",
            "[\"127.0.0.1/32\", \"10.0.0.0/8\"]",
        ),
        ("FOOTFALL_PROCESSOR__FLUSH_INTERVAL_MS", "100"),
        ("FOOTFALL_LOGGING__LEVEL", "debug"),
    ];
    let server = Server::start(&data, &env);
    cli_json(&data, &["sites", "create", "--domain", SITE]);
    let key = cli_json(&data, &["keys", "create", "--site", SITE])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
    // Through two trusted proxies (10.231.157.201, then us at 127.0.0.1): the client is 192.0.2.237.
    send(server.addr, "192.0.2.237, 10.231.157.201", ua);
    // One trusted hop, an IPv6 client with a port.
    send(server.addr, "[2001:db8::abcd]:4711", ua);
    let places = |dim: &str| {
        let a = query(
            server.addr,
            &key,
            &json!({"site_id": SITE, "metrics": ["visitors"], "date_range": "day", "dimensions": [dim], "order_by": [[dim, "asc"]]}),
        );
        a["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["dimensions"][0].as_str().unwrap().to_string(),
                    r["metrics"][0].as_u64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    wait_for(Duration::from_secs(30), "two visitors", || {
        (places("visit:country").len() == 2).then_some(())
    });
    assert_eq!(
        places("visit:country"),
        vec![("DE".to_string(), 1), ("FR".to_string(), 1)]
    );
    assert_eq!(
        places("visit:region"),
        vec![("DE-BE".to_string(), 1), ("FR-IDF".to_string(), 1)]
    );
    assert_eq!(
        places("visit:city"),
        vec![("Berlin".to_string(), 1), ("Paris".to_string(), 1)]
    );
    let output = server.output.lock().unwrap().clone();
    server.stop();

    // A server that trusts no proxy ignores the same header: the client is the socket peer
    // (127.0.0.1, not in the database), so the place is unknown.
    let untrusted = Server::start(
        &data,
        &[
            ("FOOTFALL_GEOIP__DATABASE", db.to_str().unwrap()),
            ("FOOTFALL_PROCESSOR__FLUSH_INTERVAL_MS", "100"),
        ],
    );
    send(
        untrusted.addr,
        "192.0.2.218",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    );
    wait_for(Duration::from_secs(30), "the forged hit", || {
        let a = query(
            untrusted.addr,
            &key,
            &json!({"site_id": SITE, "metrics": ["visitors"], "date_range": "day", "dimensions": ["visit:country"], "order_by": [["visit:country", "asc"]]}),
        );
        (a["results"].as_array().unwrap().len() == 3).then_some(a["results"].clone())
    });
    let a = query(
        untrusted.addr,
        &key,
        &json!({"site_id": SITE, "metrics": ["visitors"], "date_range": "day", "dimensions": ["visit:country"], "order_by": [["visit:country", "asc"]]}),
    );
    assert_eq!(
        a["results"][0],
        json!({"dimensions": ["(unknown)"], "metrics": [1]})
    );
    let output2 = untrusted.output.lock().unwrap().clone();
    untrusted.stop();

    // No trace of any address, in text or binary form, in any file or in the log output.
    let ips: Vec<IpAddr> = [
        "192.0.2.237",
        "2001:db8::abcd",
        "192.0.2.218",
        "10.231.157.201",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let mut files = Vec::new();
    files_under(&data, &mut files);
    assert!(
        files.len() >= 2,
        "the data directory holds the log and the store"
    );
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for ip in &ips {
            let binary = match ip {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            let texts = [ip.to_string(), format!("[{ip}]")];
            assert!(
                !contains(&bytes, &binary),
                "{} holds {ip} in binary",
                f.display()
            );
            for t in &texts {
                assert!(!contains(&bytes, t.as_bytes()), "{} holds {t}", f.display());
            }
        }
    }
    for ip in &ips {
        assert!(
            !output.contains(&ip.to_string()) && !output2.contains(&ip.to_string()),
            "the log output mentions {ip}"
        );
    }
    assert!(
        output.contains("DEBUG") || output.contains("INFO"),
        "the log output was captured"
    );
}
