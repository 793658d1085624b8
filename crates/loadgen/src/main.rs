//! `footfall-loadgen`: load, baseline and query timing for Footfall's benchmark (`bench/run`).
//! Every subcommand prints one JSON object on standard output.

mod access_log;
mod baseline;
mod http;
mod load;
mod model;
mod query;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Load generator and benchmark baseline for Footfall (DESIGN §5).
#[derive(Parser)]
#[command(name = "footfall-loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send modelled traffic (power-law sites, returning visitors, multi-page visits, real
    /// User-Agents, referrers, UTM tags) and report events/s, latency and errors.
    Send {
        /// The collector, `http://host:port`.
        #[arg(long)]
        target: String,
        /// JSON array of sites as `footfall sites create` prints them (domain, measurement_id,
        /// api_secret), biggest first.
        #[arg(long)]
        sites: PathBuf,
        /// Ingest protocol.
        #[arg(long, value_enum, default_value = "plausible")]
        protocol: load::Protocol,
        /// Events per request, 1–25 (GA4 only; Plausible requests carry one).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Fixed rate in events/s (open loop, latency from each request's due time); without
        /// it, max rate (closed loop).
        #[arg(long)]
        rate: Option<f64>,
        /// Concurrent requests.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Seconds to send.
        #[arg(long, default_value_t = 10.0)]
        duration_s: f64,
        /// Seed of the traffic model.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Send freshness canaries to this site (domain); needs --api-key.
        #[arg(long)]
        canary_site: Option<String>,
        /// API key that may read the canary site.
        #[arg(long, env = "FOOTFALL_LOADGEN_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        /// The query API, `http://host:port` [default: --target].
        #[arg(long)]
        query: Option<String>,
        /// Milliseconds between canaries.
        #[arg(long, default_value_t = 500)]
        canary_interval_ms: u64,
    },
    /// Run the baseline: a bare hyper server answering the collector's success statuses.
    Baseline {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Time 30-day dashboard views (five queries each) of a site.
    Query {
        /// The query API, `http://host:port`.
        #[arg(long)]
        target: String,
        /// API key that may read the site.
        #[arg(long, env = "FOOTFALL_LOADGEN_API_KEY", hide_env_values = true)]
        api_key: String,
        /// The site's domain.
        #[arg(long)]
        site: String,
        /// Dashboard views to time.
        #[arg(long, default_value_t = 100)]
        dashboards: u64,
    },
    /// Write an access log (nginx combined format) of one site's modelled pageviews.
    AccessLog {
        /// Lines to write.
        #[arg(long)]
        events: u64,
        /// Days the lines spread over, ending at --end-unix-s.
        #[arg(long, default_value_t = 30)]
        days: u64,
        /// End of the period, Unix seconds.
        #[arg(long)]
        end_unix_s: i64,
        /// Seed of the traffic model.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
}

fn print(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Send {
            target,
            sites,
            protocol,
            batch,
            rate,
            concurrency,
            duration_s,
            seed,
            canary_site,
            api_key,
            query,
            canary_interval_ms,
        } => {
            let text = std::fs::read_to_string(&sites)
                .with_context(|| format!("reading the sites file {}", sites.display()))?;
            let sites: Vec<http::SiteInfo> = serde_json::from_str(&text)
                .with_context(|| format!("{}: expected a JSON array of sites", sites.display()))?;
            anyhow::ensure!(
                (1..=25).contains(&batch),
                "--batch must be between 1 and 25 (GA4's limit per request)"
            );
            anyhow::ensure!(duration_s > 0.0, "--duration-s must be positive");
            let canary = match (canary_site, api_key) {
                (Some(site), Some(api_key)) => Some(load::CanaryConfig {
                    site,
                    api_key,
                    query: query.unwrap_or_else(|| target.clone()),
                    interval: Duration::from_millis(canary_interval_ms.max(10)),
                }),
                (Some(_), None) => {
                    anyhow::bail!("--canary-site needs --api-key (or FOOTFALL_LOADGEN_API_KEY)")
                }
                _ => None,
            };
            let report = load::run(load::LoadConfig {
                target,
                sites,
                protocol,
                batch,
                rate,
                concurrency,
                duration: Duration::from_secs_f64(duration_s),
                seed,
                canary,
            })
            .await?;
            print(&report)
        }
        Command::Baseline { listen } => baseline::serve(&listen).await,
        Command::Query {
            target,
            api_key,
            site,
            dashboards,
        } => print(&query::run(&target, &api_key, &site, dashboards).await?),
        Command::AccessLog {
            events,
            days,
            end_unix_s,
            seed,
            out,
        } => {
            let file = std::fs::File::create(&out)
                .with_context(|| format!("creating {}", out.display()))?;
            let mut w = std::io::BufWriter::new(file);
            access_log::write(&mut w, events, days, end_unix_s, seed)?;
            std::io::Write::flush(&mut w)?;
            print(&serde_json::json!({"out": out, "events": events, "days": days}))
        }
    }
}
