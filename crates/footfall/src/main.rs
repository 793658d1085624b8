//! The `footfall` binary: `serve` runs every role; `sites`, `keys`, `import`, `reprocess`
//! and `generations` administer a data directory (through the running server when there is
//! one).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use axum::http::Method;
use clap::{Parser, Subcommand, ValueEnum};
use footfall::admin_client::AdminClient;
use footfall::config::Config;
use footfall::import::{import_files, ImportOptions, Input};
use serde_json::{json, Value};

/// Footfall web analytics: collect hits, build visits and rollups, answer time-series queries.
#[derive(Parser)]
#[command(name = "footfall", version, about)]
struct Cli {
    /// TOML configuration file (also FOOTFALL_CONFIG). See docs/configuration.md.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory for the embedded log, store and admin socket [default: ./footfall-data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector, processor, archiver and query API (embedded backends by default).
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<String>,
        /// Roles to run, comma-separated (server.roles) [default: all four]. Separate
        /// processes per role need the Kafka log (log.url); see docs/scaling.md.
        #[arg(long, value_delimiter = ',', value_enum)]
        roles: Option<Vec<footfall::config::Role>>,
        /// MMDB file for country, region and city (MaxMind GeoIP2/GeoLite2 or DB-IP format).
        #[arg(long)]
        geoip_db: Option<PathBuf>,
    },
    /// Create, list and update sites.
    Sites {
        #[command(subcommand)]
        command: SitesCommand,
    },
    /// Create API keys for the query API.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Recompute a range of days from the raw event archive into a new generation and serve
    /// it (after a fix to processing rules, a bot list or a site's time zone).
    Reprocess {
        /// First day, YYYY-MM-DD, in each site's time zone.
        #[arg(long)]
        from: String,
        /// Last day, inclusive.
        #[arg(long)]
        to: String,
        /// Only this site (its domain) [default: every site].
        #[arg(long)]
        site: Option<String>,
        /// Compute and print old versus new daily figures; write and switch nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the outcome as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// List served generations, or roll a site back to the answers it served before its
    /// last reprocess.
    Generations {
        #[command(subcommand)]
        command: GenerationsCommand,
    },
    /// Create or upgrade the Cassandra/ScyllaDB keyspace named by store.url (versioned
    /// migrations; safe to run again). The embedded store needs none.
    Migrate,
    /// Import access logs as pageviews (exactly once per file, resumable).
    Import {
        /// The site's domain.
        #[arg(long)]
        site: String,
        /// Log format.
        #[arg(long, value_enum, default_value_t = Format::Combined)]
        format: Format,
        /// Hostname of the pages [default: the site's domain].
        #[arg(long)]
        hostname: Option<String>,
        /// Lines per batch sent to the log.
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
        batch_lines: u64,
        /// Print the summary as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Keep reading the one FILE as it grows (through rotation by rename and truncation)
        /// until interrupted; a restart resumes where the server's records say. With the
        /// embedded backends it sends to the `footfall serve` of --data-dir, waiting for it.
        #[arg(long)]
        follow: bool,
        /// Log files, plain or gzip; `-` reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// NCSA combined (nginx and Apache default); common log format lines are accepted too.
    Combined,
}

#[derive(Subcommand)]
enum SitesCommand {
    /// Create a site; prints its measurement id and Measurement Protocol secret (shown once).
    Create {
        /// Domain, such as shop.example.
        #[arg(long)]
        domain: String,
        /// IANA time zone of its reports.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// ISO 4217 currency of its revenue.
        #[arg(long, default_value = "USD")]
        currency: String,
    },
    /// List sites.
    List,
    /// Change a site's time zone, currency or page path rules (applies to new data).
    Update {
        /// The site's domain.
        #[arg(long)]
        domain: String,
        /// New IANA time zone.
        #[arg(long)]
        timezone: Option<String>,
        /// New ISO 4217 currency.
        #[arg(long)]
        currency: Option<String>,
        /// Query parameters kept in page paths, comma-separated (`q,page`); every other
        /// parameter is dropped. An empty value keeps none.
        #[arg(long, value_name = "NAMES")]
        keep_query_params: Option<String>,
        /// Whether page paths include the URL fragment (`/#/cart`), for single-page apps
        /// that route by hash.
        #[arg(long, value_name = "BOOL")]
        hash_routing: Option<bool>,
    },
}

#[derive(Subcommand)]
enum GenerationsCommand {
    /// Show each site's served spans and its reprocessed generations.
    List {
        /// Only this site.
        #[arg(long)]
        site: Option<String>,
    },
    /// Serve what the site served before its last switch (repeat to go further back).
    Rollback {
        /// The site's domain.
        #[arg(long)]
        site: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create an API key that may read the given sites; prints it once (only a hash is kept).
    Create {
        /// A site's domain; repeat for several.
        #[arg(long = "site", required = true)]
        sites: Vec<String>,
    },
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.logging.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if config.logging.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let mut flags: Vec<(&str, toml::Value)> = Vec::new();
    if let Some(d) = &cli.data_dir {
        flags.push(("data_dir", toml::Value::String(d.display().to_string())));
    }
    if let Command::Serve {
        listen,
        geoip_db,
        roles,
    } = &cli.command
    {
        if let Some(l) = listen {
            flags.push(("server.listen", toml::Value::String(l.clone())));
        }
        if let Some(roles) = roles {
            let names = roles.iter().map(|r| toml::Value::String(r.to_string()));
            flags.push(("server.roles", toml::Value::Array(names.collect())));
        }
        if let Some(db) = geoip_db {
            flags.push((
                "geoip.database",
                toml::Value::String(db.display().to_string()),
            ));
        }
    }
    let config = Config::load(cli.config.as_deref(), &env, &flags)?;
    init_tracing(&config);
    match cli.command {
        Command::Serve { .. } => {
            let running =
                footfall::serve::start(config, Arc::new(footfall_model::clock::SystemClock))
                    .await?;
            eprintln!("footfall is listening on http://{}", running.addr);
            tokio::select! {
                () = wait_for_signal() => running.shutdown.cancel(),
                () = running.shutdown.cancelled() => {}
            }
            running.done.await.context("shutdown task failed")?
        }
        Command::Migrate => print_json(&footfall::serve::migrate(&config).await?),
        Command::Sites { command } => {
            let admin = AdminClient::connect(&config).await?;
            let result = match command {
                SitesCommand::Create {
                    domain,
                    timezone,
                    currency,
                } => admin
                    .call(
                        Method::POST,
                        "/admin/sites",
                        Some(
                            &json!({"domain": domain, "timezone": timezone, "currency": currency}),
                        ),
                    )
                    .await,
                SitesCommand::List => admin.call(Method::GET, "/admin/sites", None).await,
                SitesCommand::Update {
                    domain,
                    timezone,
                    currency,
                    keep_query_params,
                    hash_routing,
                } => {
                    let mut body = json!({});
                    if let Some(t) = timezone {
                        body["timezone"] = json!(t);
                    }
                    if let Some(c) = currency {
                        body["currency"] = json!(c);
                    }
                    if let Some(p) = keep_query_params {
                        let names: Vec<&str> = p
                            .split(',')
                            .map(str::trim)
                            .filter(|n| !n.is_empty())
                            .collect();
                        body["keep_query_params"] = json!(names);
                    }
                    if let Some(h) = hash_routing {
                        body["hash_routing"] = json!(h);
                    }
                    admin
                        .call(
                            Method::PATCH,
                            &format!("/admin/sites/{domain}"),
                            Some(&body),
                        )
                        .await
                }
            };
            admin.close();
            print_json(&result?)
        }
        Command::Keys {
            command: KeysCommand::Create { sites },
        } => {
            let admin = AdminClient::connect(&config).await?;
            let result = admin
                .call(Method::POST, "/admin/keys", Some(&json!({"sites": sites})))
                .await;
            admin.close();
            print_json(&result?)
        }
        Command::Reprocess {
            from,
            to,
            site,
            dry_run,
            json: as_json,
        } => {
            let admin = AdminClient::connect(&config).await?;
            let args = footfall::reprocess_cli::ReprocessArgs {
                from,
                to,
                site,
                dry_run,
                progress: !as_json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            let result = footfall::reprocess_cli::reprocess(&admin, &args).await;
            admin.close();
            let outcome = result?;
            if as_json {
                print_json(&outcome)
            } else {
                print!("{}", footfall::reprocess_cli::render(&outcome, dry_run));
                Ok(())
            }
        }
        Command::Generations { command } => {
            let admin = AdminClient::connect(&config).await?;
            let result = match command {
                GenerationsCommand::List { site } => {
                    let path = match site {
                        Some(s) => format!("/admin/generations?site={}", urlencode(&s)),
                        None => "/admin/generations".to_string(),
                    };
                    admin.call(Method::GET, &path, None).await
                }
                GenerationsCommand::Rollback { site } => {
                    admin
                        .call(
                            Method::POST,
                            "/admin/generations/rollback",
                            Some(&json!({"site": site})),
                        )
                        .await
                }
            };
            admin.close();
            print_json(&result?)
        }
        Command::Import {
            site,
            format: Format::Combined,
            hostname,
            batch_lines,
            json: as_json,
            follow,
            files,
        } => {
            if follow {
                let [file] = files.as_slice() else {
                    anyhow::bail!("--follow takes exactly one file");
                };
                if file.as_os_str() == "-" {
                    anyhow::bail!("--follow needs a file; standard input cannot be followed");
                }
                // With an embedded log or store, the follower talks to the server on this
                // data directory only, waiting for it if need be: opening the files itself
                // would keep the server from starting. With Kafka and Cassandra it may open
                // them itself (and keeps its spool in its own data directory).
                let admin = if config.log.url.is_empty() || config.store.url.is_empty() {
                    tracing::info!(
                        socket = %config.admin_socket().display(),
                        "following beside the footfall server of this data directory"
                    );
                    AdminClient::Socket(config.admin_socket())
                } else {
                    AdminClient::connect(&config).await?
                };
                let opts = ImportOptions {
                    site: site.to_ascii_lowercase(),
                    hostname,
                    batch_lines,
                    progress: false,
                    print: false,
                };
                let stop = tokio_util::sync::CancellationToken::new();
                // Installed before anything is read, so that a signal at any moment stops
                // the follower cleanly.
                use tokio::signal::unix::{signal, SignalKind};
                let mut term =
                    signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
                let mut interrupt =
                    signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
                let signal = {
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = term.recv() => {}
                            _ = interrupt.recv() => {}
                        }
                        stop.cancel();
                    })
                };
                let result = footfall::follow::follow(&admin, file, &opts, stop).await;
                signal.abort();
                admin.close();
                let summary = result?;
                if as_json {
                    print_json(&json!({"files": [summary]}))?;
                } else {
                    footfall::import::print_summary(&summary);
                }
                return Ok(());
            }
            let admin = AdminClient::connect(&config).await?;
            let inputs: Vec<Input> = files.iter().map(|f| Input::from_arg(f)).collect();
            if inputs.iter().filter(|i| **i == Input::Stdin).count() > 1 {
                anyhow::bail!("standard input (-) can be imported only once per run");
            }
            let opts = ImportOptions {
                site: site.to_ascii_lowercase(),
                hostname,
                batch_lines,
                progress: !as_json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
                print: !as_json,
            };
            let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
            let result = import_files(&admin, &inputs, &opts, &today).await;
            if !admin.is_remote() && result.is_ok() {
                eprintln!("note: no footfall server is running; the pageviews are in the log and will be processed when `footfall serve` starts");
            }
            admin.close();
            let summaries = result?;
            if as_json {
                print_json(&json!({"files": summaries}))?;
            }
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
