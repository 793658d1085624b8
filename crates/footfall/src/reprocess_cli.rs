//! `footfall reprocess`: starts a reprocess job through the admin API and follows it with a
//! progress bar (events/s and ETA), then prints old versus new daily figures.

use std::time::Duration;

use anyhow::{anyhow, bail};
use axum::http::Method;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::admin_client::AdminClient;

/// What to reprocess.
#[derive(Debug, Clone)]
pub struct ReprocessArgs {
    /// First day, `YYYY-MM-DD`.
    pub from: String,
    /// Last day, inclusive.
    pub to: String,
    /// One site's domain, or every site.
    pub site: Option<String>,
    /// Compare only.
    pub dry_run: bool,
    /// Show a progress bar.
    pub progress: bool,
}

/// Runs the job to its end; returns its outcome (the job's JSON `outcome`).
///
/// # Errors
/// When the admin API refuses the request or the job fails; the message says why.
pub async fn reprocess(admin: &AdminClient, args: &ReprocessArgs) -> anyhow::Result<Value> {
    let mut body = json!({"from": args.from, "to": args.to, "dry_run": args.dry_run});
    if let Some(s) = &args.site {
        body["site"] = json!(s);
    }
    let started = admin
        .call(Method::POST, "/admin/reprocess", Some(&body))
        .await?;
    let job = started["job"]
        .as_u64()
        .ok_or_else(|| anyhow!("the admin API answered without a job id"))?;
    let bar = if args.progress {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:24} [{bar:30}] {human_pos}/{human_len} {per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut phase = String::new();
    loop {
        let status = admin
            .call(Method::GET, &format!("/admin/jobs/{job}"), None)
            .await?;
        let p = &status["progress"];
        let now_phase = p["phase"].as_str().unwrap_or_default().to_string();
        if now_phase != phase {
            bar.reset();
            bar.set_message(now_phase.clone());
            phase = now_phase;
        }
        bar.set_length(p["total"].as_u64().unwrap_or(0));
        bar.set_position(p["done"].as_u64().unwrap_or(0));
        match status["state"].as_str() {
            Some("running") => tokio::time::sleep(Duration::from_millis(200)).await,
            Some("succeeded") => {
                bar.finish_and_clear();
                return Ok(status["outcome"].clone());
            }
            _ => {
                bar.finish_and_clear();
                bail!(
                    "reprocess failed: {}",
                    status["error"].as_str().unwrap_or("unknown error")
                );
            }
        }
    }
}

/// The outcome as a table: one line per site and day, `old → new` where they differ.
pub fn render(outcome: &Value, dry_run: bool) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<24} {:<10} {:>21} {:>21} {:>21} {:>21}\n",
        "site", "date", "visitors", "visits", "pageviews", "events"
    ));
    let mut changed = 0;
    let days = outcome["days"].as_array().cloned().unwrap_or_default();
    for d in &days {
        let old: Vec<i64> = (0..4).map(|i| d["old"][i].as_i64().unwrap_or(0)).collect();
        let new: Vec<i64> = (0..4).map(|i| d["new"][i].as_i64().unwrap_or(0)).collect();
        if old != new {
            changed += 1;
        }
        let cell = |i: usize| {
            if old[i] == new[i] {
                new[i].to_string()
            } else {
                format!("{} → {}", old[i], new[i])
            }
        };
        out.push_str(&format!(
            "{:<24} {:<10} {:>21} {:>21} {:>21} {:>21}\n",
            d["site"].as_str().unwrap_or_default(),
            d["date"].as_str().unwrap_or_default(),
            cell(0),
            cell(1),
            cell(2),
            cell(3)
        ));
    }
    let events = outcome["events"].as_u64().unwrap_or(0);
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    out.push_str(&format!(
        "{} with data, {changed} changed; {events} records read (events and accounting records)\n",
        plural(days.len(), "day", "days")
    ));
    let sites: Vec<&str> = outcome["sites"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match outcome["generation"].as_u64() {
        Some(g) if !dry_run => {
            out.push_str(&format!(
                "generation {g} is now served for these days; to serve the previous answers again:\n"
            ));
            for site in sites {
                out.push_str(&format!("  footfall generations rollback --site {site}\n"));
            }
        }
        _ => out.push_str("dry run: nothing was written\n"),
    }
    out
}
