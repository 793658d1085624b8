//! Configuration: defaults → TOML file → `FOOTFALL_*` environment → command-line flags.
//!
//! Loading is strict: an unknown key in the file, an unknown `FOOTFALL_*` variable or a value
//! of the wrong type is an error that names it. Environment variables map to keys by
//! lower-casing and reading `__` as a section separator: `FOOTFALL_DATA_DIR` is `data_dir`,
//! `FOOTFALL_SERVER__LISTEN` is `server.listen`, `FOOTFALL_LOG__PARTITIONS` is
//! `log.partitions`. Values are read as TOML (`8`, `true`, `["10.0.0.0/8"]`) where the key's
//! default is not a string, and taken verbatim where it is. `FOOTFALL_CONFIG` names the
//! file; variables starting `FOOTFALL_TEST_` belong to the test suite and are ignored.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};
use toml::{Table, Value};

/// The whole configuration. Every field has a default; see `docs/configuration.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the embedded log, store and admin socket live.
    pub data_dir: PathBuf,
    /// HTTP server.
    pub server: ServerConfig,
    /// The event log.
    pub log: LogConfig,
    /// The rollup store.
    pub store: StoreConfig,
    /// The processor.
    pub processor: ProcessorConfig,
    /// The collector.
    pub collector: CollectorSettings,
    /// Rate limits.
    pub limits: LimitsConfig,
    /// Geolocation at ingest.
    pub geoip: GeoipConfig,
    /// The program's own log output.
    pub logging: LoggingConfig,
    /// The raw event archive.
    pub archive: ArchiveConfig,
}

/// `[archive]`: the raw event archive (`docs/archive.md`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Run the archiver; without it, nothing can be reprocessed and the log is never trimmed.
    pub enabled: bool,
    /// `file:///absolute/dir`, `s3://bucket/prefix`, `gs://bucket/prefix` or
    /// `az://container/prefix`; empty for `DATA_DIR/archive`.
    pub url: String,
    /// Longest time an event waits in memory before it is written to the archive, seconds.
    pub flush_interval_s: u64,
    /// Most events per written batch.
    pub max_file_events: usize,
    /// Endpoint of an S3-compatible server (`http://127.0.0.1:9000`); empty for AWS.
    pub s3_endpoint: String,
    /// S3 region; empty for `AWS_REGION` or `us-east-1`.
    pub s3_region: String,
    /// S3 access key id; empty for `AWS_ACCESS_KEY_ID`.
    pub s3_access_key_id: String,
    /// S3 secret access key; empty for `AWS_SECRET_ACCESS_KEY`. Never logged.
    pub s3_secret_access_key: String,
    /// Allow an `http://` endpoint.
    pub s3_allow_http: bool,
    /// Virtual-hosted-style requests (`bucket.host`) instead of path style.
    pub s3_virtual_hosted_style: bool,
}

impl std::fmt::Debug for ArchiveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveConfig")
            .field("enabled", &self.enabled)
            .field("url", &self.url)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("s3_secret_access_key", &"(hidden)")
            .finish_non_exhaustive()
    }
}

impl ArchiveConfig {
    /// The archive's URL: `url`, or `file://DATA_DIR/archive`.
    ///
    /// # Errors
    /// When the data directory cannot be made absolute.
    pub fn location(&self, data_dir: &Path) -> anyhow::Result<String> {
        if !self.url.is_empty() {
            return Ok(self.url.clone());
        }
        let dir = std::path::absolute(data_dir.join("archive"))
            .with_context(|| format!("resolving {}", data_dir.display()))?;
        url::Url::from_directory_path(&dir)
            .map(|u| u.to_string())
            .map_err(|()| anyhow!("{} cannot be written as a file:// URL", dir.display()))
    }

    /// The S3 settings.
    pub fn s3(&self) -> footfall_archive::S3Settings {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        footfall_archive::S3Settings {
            endpoint: opt(&self.s3_endpoint),
            region: opt(&self.s3_region),
            access_key_id: opt(&self.s3_access_key_id),
            secret_access_key: opt(&self.s3_secret_access_key),
            allow_http: self.s3_allow_http,
            virtual_hosted_style: self.s3_virtual_hosted_style,
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the public HTTP server (collector, query API, ops endpoints).
    pub listen: String,
    /// CIDR blocks of proxies whose forwarding header is trusted.
    pub trusted_proxies: Vec<String>,
    /// The header those proxies name the client in: `x-forwarded-for` or `forwarded`.
    pub forwarding_header: footfall_ingest::client_ip::ForwardingHeader,
    /// Seconds a graceful shutdown may take before the process exits anyway.
    pub shutdown_timeout_s: u64,
    /// Bearer token that `/metrics` requires; empty for none.
    pub metrics_token: String,
    /// Serve `/metrics` to anyone who can reach the server.
    pub metrics_public: bool,
    /// The roles this process runs (DESIGN §3); all four by default.
    pub roles: Vec<Role>,
}

/// A role of `footfall serve` (DESIGN §3). Collector and query replicas are stateless; the
/// processor and the archiver each read the whole log (the embedded log) or the partitions
/// their consumer group gives them (Kafka).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The ingest endpoints (`/api/event`, `/mp/collect`, `/g/collect`, the tracker script),
    /// the daily salt rotation and the ingest accounting.
    Collector,
    /// Visits and rollups from the log into the store.
    Processor,
    /// Raw events from the log into the Parquet archive, and the log's retention.
    Archiver,
    /// The query API (`/api/v2/*`) and the dashboard at `/`.
    Query,
}

impl Role {
    /// Every role, in data-flow order: what `footfall serve` runs by default.
    pub const ALL: [Role; 4] = [
        Role::Collector,
        Role::Processor,
        Role::Archiver,
        Role::Query,
    ];
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Collector => "collector",
            Role::Processor => "processor",
            Role::Archiver => "archiver",
            Role::Query => "query",
        })
    }
}

/// `[geoip]`: where country, region and city come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoipConfig {
    /// An MMDB file (MaxMind GeoIP2/GeoLite2 City or Country, DB-IP); empty for none.
    pub database: String,
    /// A CDN's country header (`CF-IPCountry`), believed only from trusted proxies; empty
    /// for none.
    pub country_header: String,
}

/// `[limits]`: rate limits (0 = unlimited).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Events per second one site may send, sustained; past it the collector answers `429`.
    pub ingest_events_per_site_per_s: u32,
    /// Events one site may send in a burst.
    pub ingest_burst_per_site: u32,
    /// Queries per second one API key may make, sustained; past it `429`.
    pub queries_per_key_per_s: u32,
    /// Queries one API key may make in a burst.
    pub query_burst_per_key: u32,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Backend URL; empty means the embedded log under `data_dir`.
    pub url: String,
    /// Partition count (fixed once the log exists).
    pub partitions: u32,
    /// Group commit linger, µs: how long the log writer waits for more requests to share
    /// one fsync. Appends are always fsynced before they are acknowledged.
    pub commit_linger_us: u64,
    /// Page cache of the embedded log, MiB.
    pub cache_mib: usize,
    /// A record leaves the log once both the processor and the archiver have passed it and it
    /// was received more than this many hours ago; 0 keeps every record. Never trimmed while
    /// the archiver is disabled.
    pub retention_hours: u64,
    /// With a remote log (Kafka): most MiB of events the collector spools on local disk
    /// (`data_dir/spool.redb`) while the log is unreachable; past it, `503`.
    pub spool_max_mib: u64,
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Backend URL; empty means the embedded store under `data_dir`.
    pub url: String,
    /// Page cache of the embedded store, MiB.
    pub cache_mib: usize,
}

/// `[processor]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorConfig {
    /// How often cells and log positions are flushed, ms.
    pub flush_interval_ms: u64,
    /// Most events read from the log at once.
    pub batch_size: usize,
    /// Most open visits kept in memory (about 1 KiB each); past it the visits whose last event
    /// arrived earliest are ended early, at the next flush.
    pub max_open_visits: usize,
    /// Most distinct values per (site, bucket, dimension); a bucket's new values past it are
    /// folded into `(other)` and answers that include them say so in `meta`.
    pub max_values_per_bucket: u64,
}

/// `[collector]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorSettings {
    /// Largest request body, bytes (`413` beyond).
    pub max_body_bytes: usize,
    /// How far back a client timestamp may be, hours (GA4: 72).
    pub max_backdate_hours: u64,
    /// How far ahead of the server clock a client timestamp may be, seconds.
    pub max_future_skew_s: u64,
}

/// `[logging]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// `text` or `json`.
    pub format: String,
    /// A `tracing` filter such as `info` or `footfall=debug,info`.
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./footfall-data"),
            server: ServerConfig {
                listen: "127.0.0.1:8080".into(),
                trusted_proxies: Vec::new(),
                forwarding_header: footfall_ingest::client_ip::ForwardingHeader::default(),
                shutdown_timeout_s: 30,
                metrics_token: String::new(),
                metrics_public: false,
                roles: Role::ALL.to_vec(),
            },
            log: LogConfig {
                url: String::new(),
                partitions: 4,
                commit_linger_us: 0,
                cache_mib: 32,
                retention_hours: 168,
                spool_max_mib: 1024,
            },
            store: StoreConfig {
                url: String::new(),
                cache_mib: 128,
            },
            processor: ProcessorConfig {
                flush_interval_ms: 2000,
                batch_size: 5000,
                max_open_visits: 2_000_000,
                max_values_per_bucket: footfall_process::runner::DEFAULT_MAX_VALUES_PER_BUCKET,
            },
            collector: CollectorSettings {
                max_body_bytes: 64 * 1024,
                max_backdate_hours: 72,
                max_future_skew_s: 300,
            },
            geoip: GeoipConfig {
                database: String::new(),
                country_header: String::new(),
            },
            limits: LimitsConfig {
                ingest_events_per_site_per_s: 10_000,
                ingest_burst_per_site: 50_000,
                queries_per_key_per_s: 20,
                query_burst_per_key: 100,
            },
            logging: LoggingConfig {
                format: "text".into(),
                level: "info".into(),
            },
            archive: ArchiveConfig {
                enabled: true,
                url: String::new(),
                flush_interval_s: 60,
                max_file_events: 200_000,
                s3_endpoint: String::new(),
                s3_region: String::new(),
                s3_access_key_id: String::new(),
                s3_secret_access_key: String::new(),
                s3_allow_http: false,
                s3_virtual_hosted_style: false,
            },
        }
    }
}

fn set_path(root: &mut Table, path: &[&str], value: Value, origin: &str) -> anyhow::Result<()> {
    let (last, parents) = path
        .split_last()
        .ok_or_else(|| anyhow!("{origin}: empty key"))?;
    let mut table = root;
    for p in parents {
        table = table
            .entry((*p).to_string())
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .ok_or_else(|| anyhow!("{origin}: {p} is not a section"))?;
    }
    table.insert((*last).to_string(), value);
    Ok(())
}

fn lookup<'a>(root: &'a Table, path: &[&str]) -> Option<&'a Value> {
    let (last, parents) = path.split_last()?;
    let mut table = root;
    for p in parents {
        table = table.get(*p)?.as_table()?;
    }
    table.get(*last)
}

fn merge(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

impl Config {
    /// Loads the configuration.
    ///
    /// - `file`: a TOML file, or `None` (then `FOOTFALL_CONFIG` from `env`, if set);
    /// - `env`: the environment as (name, value) pairs; only `FOOTFALL_*` names are read;
    /// - `flags`: (dotted key, value) pairs from the command line, applied last.
    ///
    /// # Errors
    /// A message naming the file, variable or key that is unknown or has the wrong type.
    pub fn load(
        file: Option<&Path>,
        env: &[(String, String)],
        flags: &[(&str, Value)],
    ) -> anyhow::Result<Config> {
        let defaults = Table::try_from(Config::default()).context("serialising the defaults")?;
        let mut merged = defaults.clone();
        let env_file = env
            .iter()
            .find(|(k, _)| k == "FOOTFALL_CONFIG")
            .map(|(_, v)| PathBuf::from(v));
        if let Some(path) = file.map(Path::to_path_buf).or(env_file) {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading the configuration file {}", path.display()))?;
            let table: Table = toml::from_str(&text)
                .with_context(|| format!("parsing the configuration file {}", path.display()))?;
            merge(&mut merged, table);
            Self::check(&merged)
                .with_context(|| format!("in the configuration file {}", path.display()))?;
        }
        for (name, raw) in env {
            let Some(rest) = name.strip_prefix("FOOTFALL_") else {
                continue;
            };
            if rest == "CONFIG" || rest.starts_with("TEST_") {
                continue;
            }
            let key = rest.to_ascii_lowercase();
            let path: Vec<&str> = key.split("__").collect();
            let value = match lookup(&defaults, &path) {
                None => bail!("environment variable {name} names no configuration key (keys map as FOOTFALL_SECTION__KEY, e.g. FOOTFALL_SERVER__LISTEN)"),
                Some(Value::String(_)) => Value::String(raw.clone()),
                Some(_) => toml::from_str::<Table>(&format!("v = {raw}")).ok().and_then(|mut t| t.remove("v")).ok_or_else(|| anyhow!("environment variable {name}: {raw:?} is not a valid value"))?,
            };
            set_path(&mut merged, &path, value, name)?;
        }
        for (key, value) in flags {
            let path: Vec<&str> = key.split('.').collect();
            set_path(&mut merged, &path, value.clone(), key)?;
        }
        Self::check(&merged)
    }

    fn check(table: &Table) -> anyhow::Result<Config> {
        // serde_path_to_error names the key whose value does not fit.
        let config: Config = serde_path_to_error::deserialize(Value::Table(table.clone()))
            .map_err(|e| match e.path().to_string().as_str() {
                "." | "" => anyhow!("{}", e.inner().message()),
                key => anyhow!("{key}: {}", e.inner().message()),
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that types alone do not.
    ///
    /// # Errors
    /// A message naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.log.commit_linger_us > 100_000 {
            bail!("log.commit_linger_us must be at most 100000 (100 ms); every request waits that long");
        }
        if self.log.partitions == 0 || self.log.partitions > 1024 {
            bail!("log.partitions must be between 1 and 1024");
        }
        if !matches!(self.logging.format.as_str(), "text" | "json") {
            bail!(
                "logging.format must be \"text\" or \"json\", not {:?}",
                self.logging.format
            );
        }
        for (i, p) in self.server.trusted_proxies.iter().enumerate() {
            parse_net(p).with_context(|| format!("server.trusted_proxies[{i}]"))?;
        }
        if self.archive.flush_interval_s == 0 || self.archive.max_file_events == 0 {
            bail!("archive.flush_interval_s and archive.max_file_events must be at least 1");
        }
        if self.processor.max_values_per_bucket == 0 {
            bail!("processor.max_values_per_bucket must be at least 1");
        }
        if self.server.roles.is_empty() {
            bail!("server.roles must name at least one of collector, processor, archiver, query");
        }
        if self.processor.batch_size == 0 {
            bail!("processor.batch_size must be at least 1");
        }
        Ok(())
    }

    /// Whether this process runs `role` (`server.roles`).
    pub fn runs(&self, role: Role) -> bool {
        self.server.roles.contains(&role)
    }

    /// `server.trusted_proxies` parsed.
    ///
    /// # Errors
    /// When an entry is not an address or CIDR block.
    pub fn trusted_proxies(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        self.server
            .trusted_proxies
            .iter()
            .map(|p| parse_net(p))
            .collect()
    }

    /// Path of the admin socket.
    pub fn admin_socket(&self) -> PathBuf {
        self.data_dir.join("footfall.sock")
    }
}

fn parse_net(s: &str) -> anyhow::Result<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| anyhow!("{s:?} is not an IP address or CIDR block"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.toml");
        std::fs::write(
            &file,
            "data_dir = \"/from-file\"\n[log]\npartitions = 8\n[server]\nlisten = \"0.0.0.0:1\"\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&file),
            &env(&[
                ("FOOTFALL_LOG__PARTITIONS", "16"),
                ("FOOTFALL_SERVER__TRUSTED_PROXIES", "[\"10.0.0.0/8\"]"),
                ("HOME", "/x"),
            ]),
            &[("server.listen", Value::String("127.0.0.1:9".into()))],
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/from-file"));
        assert_eq!(c.log.partitions, 16);
        assert_eq!(c.server.trusted_proxies, vec!["10.0.0.0/8".to_string()]);
        assert_eq!(c.server.listen, "127.0.0.1:9");
        assert_eq!(
            c.processor.flush_interval_ms, 2000,
            "untouched keys keep defaults"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.toml");
        std::fs::write(&file, "[server]\nlisten = \"x\"\nlistne = 1\n").unwrap();
        let e = format!("{:#}", Config::load(Some(&file), &[], &[]).unwrap_err());
        assert!(e.contains("listne"), "{e}");
        let e = format!(
            "{:#}",
            Config::load(None, &env(&[("FOOTFALL_SERVER__LISTNE", "1")]), &[]).unwrap_err()
        );
        assert!(e.contains("FOOTFALL_SERVER__LISTNE"), "{e}");
        let e = format!(
            "{:#}",
            Config::load(None, &env(&[("FOOTFALL_LOG__PARTITIONS", "many")]), &[]).unwrap_err()
        );
        assert!(e.contains("FOOTFALL_LOG__PARTITIONS"), "{e}");
        let e = format!(
            "{:#}",
            Config::load(
                None,
                &env(&[("FOOTFALL_LOG__COMMIT_LINGER_US", "5000000")]),
                &[]
            )
            .unwrap_err()
        );
        assert!(e.contains("log.commit_linger_us"), "{e}");
        let e = format!(
            "{:#}",
            Config::load(
                None,
                &env(&[("FOOTFALL_SERVER__FORWARDING_HEADER", "x-real-ip")]),
                &[]
            )
            .unwrap_err()
        );
        assert!(
            e.contains("server.forwarding_header") && e.contains("x-real-ip"),
            "{e}"
        );
        let c = Config::load(
            None,
            &env(&[("FOOTFALL_SERVER__FORWARDING_HEADER", "forwarded")]),
            &[],
        )
        .unwrap();
        assert_eq!(
            c.server.forwarding_header,
            footfall_ingest::client_ip::ForwardingHeader::Forwarded
        );
        assert!(Config::load(None, &env(&[("FOOTFALL_TEST_CASSANDRA", "x")]), &[]).is_ok());
    }
}
