//! Every metric that `docs/metrics.md` documents and that the Grafana dashboard
//! (`deploy/grafana/footfall.json`) queries is exported by a running `footfall serve`, and
//! every metric it exports is documented. The server runs over a real Kafka-compatible broker
//! (`tansu`), so that the spool and the consumer groups are there too.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{cli_json, http, Broker, Server};
use serde_json::json;

/// The `footfall_…` names in a text, without the suffixes Prometheus adds to summaries.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("footfall_") {
        // Skip crate names such as `footfall_enrich::…` and paths.
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        // (`footfall_<what>_<unit>` in prose is a pattern, not a name.)
        if text[i + name.len()..].starts_with("::") || name.ends_with('_') {
            continue;
        }
        out.insert(name);
    }
    out
}

/// Metric families in a `/metrics` page (from its `# TYPE` lines).
fn exported(addr: std::net::SocketAddr) -> BTreeSet<String> {
    let page = http(addr, "GET", "/metrics", &[], b"");
    assert_eq!(page.status, 200);
    String::from_utf8_lossy(&page.body)
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .filter(|n| n.starts_with("footfall_"))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_documented_and_charted_metric_is_exported_and_every_exported_one_is_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let documented = names_in(&std::fs::read_to_string(root.join("docs/metrics.md")).unwrap());
    let charted =
        names_in(&std::fs::read_to_string(root.join("deploy/grafana/footfall.json")).unwrap());
    assert!(documented.len() >= 20, "{documented:?}");
    assert!(charted.len() >= 10, "{charted:?}");
    let undocumented: Vec<_> = charted.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "charted but not documented: {undocumented:?}"
    );

    const SITE: &str = "metrics.example";
    let broker = Broker::start();
    let data = tempfile::tempdir().unwrap();
    let url = format!("kafka://{}/events?partitions=2", broker.address);
    let server = Server::start(
        data.path(),
        &[
            ("FOOTFALL_LOG__URL", url.as_str()),
            ("FOOTFALL_SERVER__METRICS_PUBLIC", "true"),
            ("FOOTFALL_PROCESSOR__FLUSH_INTERVAL_MS", "100"),
            ("FOOTFALL_ARCHIVE__FLUSH_INTERVAL_S", "1"),
        ],
    );
    cli_json(data.path(), &["sites", "create", "--domain", SITE]);
    let key = cli_json(data.path(), &["keys", "create", "--site", SITE])["key"]
        .as_str()
        .unwrap()
        .to_string();
    // Traffic that reaches every part: a pageview, a crawler's hit (bot metrics), a query and
    // a malformed one (query errors).
    for ua in [
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    ] {
        let body = json!({"name": "pageview", "url": format!("https://{SITE}/"), "domain": SITE});
        let r = http(
            server.addr,
            "POST",
            "/api/event",
            &[("User-Agent", ua)],
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 202);
    }
    let auth = format!("Bearer {key}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let good = json!({"site_id": SITE, "metrics": ["pageviews"], "date_range": "day"});
    let r = http(
        server.addr,
        "POST",
        "/api/v2/query",
        &headers,
        good.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200);
    let bad = json!({"site_id": SITE, "metrics": ["clicks"], "date_range": "day"});
    let r = http(
        server.addr,
        "POST",
        "/api/v2/query",
        &headers,
        bad.to_string().as_bytes(),
    );
    assert_eq!(r.status, 400);

    let wanted: BTreeSet<String> = documented.union(&charted).cloned().collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (have, missing) = loop {
        let have = exported(server.addr);
        let missing: Vec<String> = wanted.difference(&have).cloned().collect();
        if missing.is_empty() || std::time::Instant::now() > deadline {
            break (have, missing);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        missing.is_empty(),
        "documented or charted but not exported: {missing:?}"
    );
    let undocumented: Vec<_> = have.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "exported but not in docs/metrics.md: {undocumented:?}"
    );
    server.stop();
}

#[test]
fn the_dashboard_is_grafana_json_whose_panels_all_query_prometheus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/footfall.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(dash["uid"], "footfall-overview");
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            assert!(expr.contains("footfall_"), "{expr}");
            // Brackets and parentheses balance (a cheap check that catches most typos).
            for (open, close) in [('(', ')'), ('{', '}'), ('[', ']')] {
                assert_eq!(
                    expr.matches(open).count(),
                    expr.matches(close).count(),
                    "{expr}"
                );
            }
        }
    }
}
