//! End-to-end browser tests: Debian's Chromium, driven by npm's playwright-core
//! (`tests/browser/scenario.mjs`), visits two test sites on their own origins, one with
//! Footfall's `/js/script.js` and one with the official `@plausible-analytics/tracker`
//! package, then reads the dashboard. The expected figures below were worked out by hand from
//! what the scenario does; screenshots are kept under the test target directory
//! (`browser-artifacts/`).
//!
//! Needs Node.js with npm (the packages are installed from the committed lock file) and
//! Chromium at `/usr/bin/chromium` (or `CHROMIUM`).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{chromium, cli_json, http, node_deps, wait_caught_up, Server};
use serde_json::{json, Value};

fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-artifacts")
}

/// Runs the scenario in `mode`; returns what it printed.
fn scenario(mode: &str, addr: SocketAddr, key: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/scenario.mjs");
    let out = Command::new("node")
        .arg(script)
        .env("MODE", mode)
        .env("FOOTFALL_PORT", addr.port().to_string())
        .env("KEY", key)
        .env("NODE_DEPS", node_deps())
        .env("CHROMIUM", chromium())
        .env("ARTIFACTS", artifacts())
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "the {mode} scenario failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("scenario output is not JSON ({e}): {text}"))
}

/// Rows of a panel as `value → [metric texts]`.
fn rows(view: &Value, panel: &str) -> BTreeMap<String, Vec<String>> {
    view["panels"][panel]
        .as_array()
        .unwrap_or_else(|| panic!("no panel {panel} in {view}"))
        .iter()
        .map(|r| {
            let r = r.as_array().unwrap();
            (
                r[0].as_str().unwrap().to_string(),
                r[1..]
                    .iter()
                    .map(|c| c.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

fn card(view: &Value, metric: &str) -> String {
    view["cards"][metric]
        .as_str()
        .unwrap_or_else(|| panic!("no card {metric} in {view}"))
        .to_string()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_string()).collect()
}

fn start(sites: &[&str]) -> (tempfile::TempDir, Server, String) {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        data.path(),
        &[("FOOTFALL_PROCESSOR__FLUSH_INTERVAL_MS", "100")],
    );
    let mut args = vec!["keys", "create"];
    for s in sites {
        cli_json(data.path(), &["sites", "create", "--domain", s]);
        args.extend(["--site", s]);
    }
    let key = cli_json(data.path(), &args)["key"]
        .as_str()
        .unwrap()
        .to_string();
    (data, server, key)
}

#[test]
fn tracked_sites_show_up_in_the_dashboard_and_filters_change_every_figure() {
    let (_data, server, key) = start(&["shop.test", "news.test"]);
    let browsed = scenario("browse", server.addr, &key);
    // Visitor A's page sent 5 requests (2 pageviews, Signup, File Download, Outbound Link:
    // Click), B's 1, C's 3 (2 pageviews and Subscribe).
    assert_eq!(browsed["shopRequestsA"], 5, "{browsed}");
    assert_eq!(browsed["shopRequestsB"], 1, "{browsed}");
    assert!(browsed["newsRequests"].as_u64().unwrap() >= 3, "{browsed}");
    wait_caught_up(server.addr, &key, "shop.test");
    wait_caught_up(server.addr, &key, "news.test");

    let seen = scenario("dashboard", server.addr, &key);
    assert_eq!(seen["dialogs"], json!([]));
    assert!(
        seen["pageErrors"].is_null(),
        "page errors: {}",
        seen["pageErrors"]
    );
    let shop = &seen["shop"];
    assert_eq!(shop["cspViolations"], json!([]));

    // shop.test: A (desktop, newsletter) viewed / and /pricing, signed up, downloaded the
    // report and left by the partner link; B (iPhone, from Google) viewed / and left.
    let v = &shop["initial"];
    assert_eq!(v["error"], "", "{v}");
    assert_eq!(card(v, "visitors"), "2");
    assert_eq!(card(v, "visits"), "2");
    assert_eq!(card(v, "pageviews"), "3");
    assert_eq!(card(v, "views_per_visit"), "1.50");
    assert_eq!(
        card(v, "bounce_rate"),
        "50%",
        "B's one-pageview visit bounced, A's did not"
    );
    assert_eq!(
        rows(v, "pages"),
        BTreeMap::from([
            ("/".into(), strs(&["2", "2"])),
            ("/pricing".into(), strs(&["1", "1"]))
        ])
    );
    // Each goal: 1 visitor, 1 event, 1 of 2 visitors converted.
    let goal = strs(&["1", "1", "50%"]);
    assert_eq!(
        rows(v, "goals"),
        BTreeMap::from([
            ("File Download".into(), goal.clone()),
            ("Outbound Link: Click".into(), goal.clone()),
            ("Signup".into(), goal),
        ])
    );
    assert_eq!(
        rows(v, "devices"),
        BTreeMap::from([
            ("Desktop".into(), strs(&["1"])),
            ("Mobile".into(), strs(&["1"]))
        ])
    );
    assert_eq!(
        rows(v, "sources").get("Organic Search"),
        Some(&strs(&["1"]))
    );
    assert_eq!(
        v["realtime"], "2",
        "both shop visitors were active within 5 minutes"
    );
    assert!(
        v["freshness"]
            .as_str()
            .unwrap()
            .starts_with("complete through "),
        "{v}"
    );
    let pageviews_in_series: u64 = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[2].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        pageviews_in_series, 3,
        "the chart's hours add up to the pageviews"
    );

    // Filtered by the page /pricing: only A's pageview of it; visit metrics do not apply to
    // an event dimension.
    let f = &shop["pageFilter"];
    assert_eq!(card(f, "visitors"), "1");
    assert_eq!(card(f, "visits"), "1");
    assert_eq!(card(f, "pageviews"), "1");
    assert_eq!(card(f, "bounce_rate"), "—");
    assert_eq!(f["filters"], json!(["page is /pricing ✕"]));
    assert_eq!(
        rows(f, "pages"),
        BTreeMap::from([("/pricing".into(), strs(&["1", "1"]))])
    );
    assert!(
        f["url"]
            .as_str()
            .unwrap()
            .contains("f=event%3Apage%7C%2Fpricing"),
        "{f}"
    );
    // The URL is the view: loading it again shows the same figures.
    assert_eq!(shop["reloaded"]["cards"], f["cards"]);
    assert_eq!(shop["reloaded"]["filters"], f["filters"]);

    // Filtered by device Mobile: B's visit alone, one pageview, a bounce.
    let d = &shop["deviceFilter"];
    assert_eq!(card(d, "visitors"), "1");
    assert_eq!(card(d, "pageviews"), "1");
    assert_eq!(card(d, "bounce_rate"), "100%");
    assert_eq!(d["filters"], json!(["device is Mobile ✕"]));
    // Removed with the keyboard: back to the whole site.
    assert_eq!(shop["afterKeyboard"]["filters"], json!([]));
    assert_eq!(card(&shop["afterKeyboard"], "visitors"), "2");
    // Yesterday had no visitors.
    assert!(
        shop["compared"]["visitors"]
            .as_str()
            .unwrap()
            .starts_with("new"),
        "{}",
        shop["compared"]
    );

    // news.test through the official Plausible tracker: one visitor, two pageviews (the
    // second by pushState), one Subscribe; its engagement events count in no metric.
    let n = &seen["news"]["initial"];
    assert_eq!(card(n, "visitors"), "1");
    assert_eq!(card(n, "pageviews"), "2");
    assert_eq!(
        rows(n, "pages").keys().cloned().collect::<Vec<_>>(),
        strs(&["/", "/article"])
    );
    assert_eq!(
        rows(n, "goals"),
        BTreeMap::from([("Subscribe".into(), strs(&["1", "1", "100%"]))])
    );
    // On a 390 px wide screen nothing is wider than the screen.
    assert!(
        seen["phone"]["width"].as_u64().unwrap() <= 390,
        "{}",
        seen["phone"]["width"]
    );
    assert_eq!(card(&seen["phone"]["view"], "pageviews"), "3");
    eprintln!(
        "dashboard: slowest sign-in to fully rendered view {} ms (not a timed test)",
        seen["loadMs"]
    );
    for shot in [
        "dashboard-shop.png",
        "dashboard-shop-filtered.png",
        "dashboard-phone.png",
    ] {
        assert!(artifacts().join(shot).is_file(), "screenshot {shot}");
    }
    server.stop();
}

#[test]
fn what_senders_control_is_rendered_as_text_and_exported_neutralised() {
    let (_data, server, key) = start(&["xss.test"]);
    let send = |body: Value| {
        let r = http(
            server.addr,
            "POST",
            "/api/event",
            &[("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36")],
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    };
    send(json!({"name": "pageview", "domain": "xss.test",
        "url": "https://xss.test/<img src=x onerror=alert(1)>?utm_source==HYPERLINK(\"http://x\")",
        "referrer": "https://evil.example/<svg onload=alert(2)>"}));
    send(
        json!({"name": "<img src=x onerror=alert(3)>", "domain": "xss.test", "url": "https://xss.test/a",
        "props": {"note": "<script>alert(4)</script>"}}),
    );
    send(
        json!({"name": "@SUM(1+1)*cmd|' /C calc'!A0", "domain": "xss.test", "url": "https://xss.test/a"}),
    );
    for name in ["+SUM(1)", "-2+3"] {
        send(json!({"name": name, "domain": "xss.test", "url": "https://xss.test/a"}));
    }
    wait_caught_up(server.addr, &key, "xss.test");
    // The page that shows them forbids inline script and foreign origins.
    let page = http(server.addr, "GET", "/", &[], b"");
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("script-src 'self'")
            && !csp.contains("unsafe-inline"),
        "{csp}"
    );

    let seen = scenario("xss", server.addr, &key);
    let x = &seen["xss"];
    assert_eq!(seen["dialogs"], json!([]), "no script ran");
    assert!(seen["pageErrors"].is_null(), "{}", seen["pageErrors"]);
    assert_eq!(
        x["injected"],
        json!({"img": 0, "script": 0, "svgOnload": 0, "bold": 0}),
        "no element was injected"
    );
    assert_eq!(x["cspViolations"], json!([]));
    // The markup is shown as the text it is.
    let page = "/<img src=x onerror=alert(1)>";
    assert!(
        rows(&x["view"], "pages").contains_key(page),
        "{}",
        x["view"]
    );
    let goals = rows(&x["view"], "goals");
    assert!(
        goals.contains_key("<img src=x onerror=alert(3)>"),
        "{goals:?}"
    );
    assert!(
        goals.contains_key("@SUM(1+1)*cmd|' /C calc'!A0"),
        "{goals:?}"
    );
    assert!(
        rows(&x["props"], "props").contains_key("<script>alert(4)</script>"),
        "{}",
        x["props"]
    );
    assert!(
        rows(&x["sources"], "sources").contains_key("=HYPERLINK(\"http://x\")"),
        "{}",
        x["sources"]
    );
    // CSV cells that a spreadsheet would run as formulas start with a quote.
    let csv = |k: &str| x[k].as_str().unwrap().to_string();
    assert!(
        csv("csvSources").contains("\"'=HYPERLINK(\"\"http://x\"\")\",\"1\""),
        "{}",
        csv("csvSources")
    );
    assert!(
        csv("csvGoals").contains("\"'@SUM(1+1)*cmd|' /C calc'!A0\",\"1\",\"1\""),
        "{}",
        csv("csvGoals")
    );
    for name in ["+SUM(1)", "-2+3"] {
        let line = format!("\"'{name}\",\"1\",\"1\"");
        assert!(
            csv("csvGoals").contains(&line),
            "{line} in {}",
            csv("csvGoals")
        );
    }
    assert!(
        csv("csvGoals").contains("\"<img src=x onerror=alert(3)>\",\"1\",\"1\""),
        "{}",
        csv("csvGoals")
    );
    assert!(
        csv("csvPages").contains(&format!("\"{page}\",\"1\",\"1\"")),
        "{}",
        csv("csvPages")
    );
    assert!(
        csv("csvProps").contains("\"<script>alert(4)</script>\",\"1\",\"1\""),
        "{}",
        csv("csvProps")
    );
    assert!(artifacts().join("dashboard-xss.png").is_file());
    server.stop();
}
