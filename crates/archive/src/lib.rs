//! The raw event archive (DESIGN §4.6): every event of the log, kept as immutable Parquet files
//! (zstd) on object storage through the `object_store` crate, so that history can be
//! recomputed when processing logic had a bug.
//!
//! # Layout
//!
//! ```text
//! ROOT/events/v1/date=2024-03-01/hour=13/p0003-o00000000000000001234-00000000000000005678-t1709298000-1709301601.parquet
//! ```
//!
//! - `date`/`hour`: the UTC hour in which the collector received the events (Hive-style
//!   partition directories, which DuckDB, Spark and Athena understand);
//! - `p0003`: the log partition; `o…-…`: the first and last log offset of the rows inside;
//! - `t…-…`: the first and last event timestamp in the file, in whole UTC seconds (rounded
//!   outwards), so that readers can skip files by listing alone.
//!
//! A file's name follows from its contents, and the rows of one partition and offset range
//! are always the same events, so writing a file again (after a crash before the archiver's
//! position was saved) replaces it with identical bytes. Files written around such a crash
//! may overlap in offsets; readers keep one row per (partition, offset). The column layout is
//! in [`schema`] and `docs/archive.md`.

pub mod archiver;
pub mod schema;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Timelike, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

pub use schema::{ArchivedEvent, SCHEMA_VERSION};

/// µs in an hour.
const HOUR_US: i64 = 3_600_000_000;

/// Errors of the archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive location is not usable as configured.
    #[error("archive location {url:?}: {reason}")]
    Location {
        /// The configured location.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The object store failed.
    #[error("archive object store failed: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// A Parquet file could not be written or read.
    #[error("archive file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Settings for `s3://` locations; unset values come from the standard `AWS_*` variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// Endpoint URL of an S3-compatible server (`http://127.0.0.1:9000`); AWS when unset.
    pub endpoint: Option<String>,
    /// Region (`us-east-1`).
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Allow plain `http://` endpoints.
    pub allow_http: bool,
    /// Address buckets as `bucket.host` instead of `host/bucket` (path style, the default,
    /// which every S3-compatible server accepts).
    pub virtual_hosted_style: bool,
}

/// One archive file, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Its path in the object store.
    pub path: Path,
    /// Start of the UTC hour of receipt, µs.
    pub hour_us: i64,
    /// Log partition.
    pub partition: u32,
    /// First and last offset of its rows.
    pub offsets: (u64, u64),
    /// First and last event timestamp, whole UTC seconds rounded outwards.
    pub timestamps_s: (i64, i64),
    /// Size in bytes.
    pub size: u64,
}

/// Which archived events to read.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these sites; all when `None`.
    pub sites: Option<HashSet<u64>>,
    /// Events whose timestamp is in `[from, to)`, µs…
    pub timestamps_us: (i64, i64),
    /// …or whose receipt time is in `[from, to)`, µs.
    pub received_us: (i64, i64),
    /// Only offsets below these, per partition (exclusive); all when absent.
    pub offsets_below: HashMap<u32, u64>,
}

impl Selection {
    /// Whether file `f` may hold selected events (by its name alone).
    pub fn wants_file(&self, f: &FileInfo) -> bool {
        let (from_s, to_s) = (
            self.timestamps_us.0.div_euclid(1_000_000),
            self.timestamps_us.1.div_euclid(1_000_000),
        );
        let by_time = f.timestamps_s.0 <= to_s && f.timestamps_s.1 >= from_s;
        let by_receipt = f.hour_us < self.received_us.1 && f.hour_us + HOUR_US > self.received_us.0;
        let by_offset = self
            .offsets_below
            .get(&f.partition)
            .is_none_or(|below| f.offsets.0 < *below);
        (by_time || by_receipt) && by_offset
    }

    /// Whether `r` is selected.
    pub fn wants(&self, r: &ArchivedEvent) -> bool {
        let e = &r.event;
        self.sites.as_ref().is_none_or(|s| s.contains(&e.site_id))
            && ((self.timestamps_us.0..self.timestamps_us.1).contains(&e.timestamp_us)
                || (self.received_us.0..self.received_us.1).contains(&e.received_at_us))
            && self
                .offsets_below
                .get(&r.partition)
                .is_none_or(|below| r.offset < *below)
    }
}

/// An archive at one location.
#[derive(Clone)]
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    url: String,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive").field("url", &self.url).finish()
    }
}

const EVENTS_PREFIX: &str = "events/v1";

impl Archive {
    /// Opens the archive at `url`: `file:///absolute/dir` (created if missing),
    /// `s3://bucket/prefix` with `s3` settings, `gs://bucket/prefix` or
    /// `az://container/prefix` (credentials from the providers' standard variables).
    ///
    /// # Errors
    /// [`ArchiveError::Location`] for an unsupported scheme, a relative path, a directory
    /// that cannot be created, or S3 settings the client refuses.
    pub fn open(url: &str, s3: &S3Settings) -> Result<Archive, ArchiveError> {
        let bad = |reason: String| ArchiveError::Location {
            url: url.to_string(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(format!("not a URL ({e})")))?;
        let store: Arc<dyn ObjectStore> = match parsed.scheme() {
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| bad("a file:// URL needs an absolute path".into()))?;
                std::fs::create_dir_all(&dir)
                    .map_err(|e| bad(format!("cannot create {}: {e}", dir.display())))?;
                Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(&dir)
                        .map_err(|e| bad(e.to_string()))?,
                )
            }
            "s3" | "s3a" => {
                let bucket = parsed
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| bad("an s3:// URL names a bucket: s3://bucket/prefix".into()))?;
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_allow_http(s3.allow_http)
                    .with_virtual_hosted_style_request(s3.virtual_hosted_style);
                if let Some(v) = &s3.endpoint {
                    b = b.with_endpoint(v);
                }
                if let Some(v) = &s3.region {
                    b = b.with_region(v);
                }
                if let Some(v) = &s3.access_key_id {
                    b = b.with_access_key_id(v);
                }
                if let Some(v) = &s3.secret_access_key {
                    b = b.with_secret_access_key(v);
                }
                let store = b.build().map_err(|e| bad(e.to_string()))?;
                prefixed(store, parsed.path())
            }
            // Google Cloud Storage and Azure Blob Storage, configured by their standard
            // variables (GOOGLE_SERVICE_ACCOUNT / GOOGLE_APPLICATION_CREDENTIALS;
            // AZURE_STORAGE_ACCOUNT_NAME, AZURE_STORAGE_ACCOUNT_KEY, ...).
            "gs" => {
                let store = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
                prefixed(store, parsed.path())
            }
            "az" | "azure" | "abfs" | "abfss" => {
                let store = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
                prefixed(store, parsed.path())
            }
            other => {
                return Err(bad(format!(
                    "scheme {other:?} is not supported; use file://, s3://, gs:// or az://"
                )))
            }
        };
        Ok(Archive {
            store,
            url: url.to_string(),
        })
    }

    /// The location it was opened at.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Writes `rows` of one partition (in offset order) as one file per hour of receipt;
    /// returns the files written.
    ///
    /// # Errors
    /// [`ArchiveError`] when encoding or the object store fails; files already written stay
    /// (they are complete, and writing them again is harmless).
    pub async fn write(&self, rows: &[ArchivedEvent]) -> Result<Vec<FileInfo>, ArchiveError> {
        let mut by_file: std::collections::BTreeMap<(i64, u32), Vec<ArchivedEvent>> =
            std::collections::BTreeMap::new();
        for r in rows {
            by_file
                .entry((
                    r.event.received_at_us.div_euclid(HOUR_US) * HOUR_US,
                    r.partition,
                ))
                .or_default()
                .push(r.clone());
        }
        let mut written = Vec::with_capacity(by_file.len());
        for ((hour_us, partition), mut group) in by_file {
            group.sort_by_key(|r| r.offset);
            let info = file_info(hour_us, partition, &group);
            let size = self.put_file(&info, &group).await?;
            metrics::counter!("footfall_archive_bytes_written_total").increment(size);
            metrics::counter!("footfall_archive_events_written_total")
                .increment(group.len() as u64);
            written.push(FileInfo { size, ..info });
        }
        Ok(written)
    }

    /// Encodes `rows` and stores them at `info.path`; returns the size in bytes.
    async fn put_file(&self, info: &FileInfo, rows: &[ArchivedEvent]) -> Result<u64, ArchiveError> {
        let bytes = encode_file(rows).map_err(|reason| ArchiveError::File {
            path: info.path.to_string(),
            reason,
        })?;
        let size = bytes.len() as u64;
        self.store.put(&info.path, PutPayload::from(bytes)).await?;
        Ok(size)
    }

    /// Lists every archive file; names that do not follow the layout are skipped.
    ///
    /// # Errors
    /// [`ArchiveError::ObjectStore`].
    pub async fn list(&self) -> Result<Vec<FileInfo>, ArchiveError> {
        let prefix = Path::from(EVENTS_PREFIX);
        let metas: Vec<object_store::ObjectMeta> =
            self.store.list(Some(&prefix)).try_collect().await?;
        let mut files: Vec<FileInfo> = metas
            .into_iter()
            .filter_map(|m| {
                let mut f = parse_path(&m.location)?;
                f.size = m.size;
                Some(f)
            })
            .collect();
        files.sort_by_key(|f| (f.partition, f.offsets, f.hour_us));
        Ok(files)
    }

    /// Reads one file's rows.
    ///
    /// # Errors
    /// [`ArchiveError::ObjectStore`], or [`ArchiveError::File`] for a file that does not
    /// decode.
    pub async fn read(&self, file: &FileInfo) -> Result<Vec<ArchivedEvent>, ArchiveError> {
        let bytes = self.store.get(&file.path).await?.bytes().await?;
        decode_file(bytes).map_err(|reason| ArchiveError::File {
            path: file.path.to_string(),
            reason,
        })
    }

    /// Merges, for `partition`, the files of each hour of receipt that ends before
    /// `closed_before_us` into one file per hour (rows deduplicated by offset), then deletes
    /// the merged files. Returns how many files were removed. A crash in between leaves both
    /// the merged file and some of its sources; readers deduplicate, and the next compaction
    /// finishes the job.
    ///
    /// # Errors
    /// [`ArchiveError`] when reading, writing or deleting fails.
    pub async fn compact(
        &self,
        partition: u32,
        closed_before_us: i64,
    ) -> Result<usize, ArchiveError> {
        let mut by_hour: std::collections::BTreeMap<i64, Vec<FileInfo>> = Default::default();
        for f in self.list().await? {
            if f.partition == partition && f.hour_us + HOUR_US <= closed_before_us {
                by_hour.entry(f.hour_us).or_default().push(f);
            }
        }
        let mut removed = 0;
        for (hour_us, files) in by_hour {
            if files.len() < 2 {
                continue;
            }
            let mut rows = Vec::new();
            for f in &files {
                rows.extend(self.read(f).await?);
            }
            rows.sort_by_key(|r| r.offset);
            rows.dedup_by_key(|r| r.offset);
            let merged = file_info(hour_us, partition, &rows);
            self.put_file(&merged, &rows).await?;
            for f in files.iter().filter(|f| f.path != merged.path) {
                self.store.delete(&f.path).await?;
                removed += 1;
            }
            tracing::debug!(
                hour_us,
                partition,
                merged = files.len(),
                "compacted an archive hour"
            );
        }
        Ok(removed)
    }

    /// The selected events, one per (partition, offset), ordered by partition, then offset:
    /// the order the processor saw them in.
    ///
    /// # Errors
    /// As [`Archive::list`] and [`Archive::read`].
    pub async fn scan(&self, selection: &Selection) -> Result<Vec<ArchivedEvent>, ArchiveError> {
        let mut out = Vec::new();
        for f in self.list().await? {
            if !selection.wants_file(&f) {
                continue;
            }
            out.extend(
                self.read(&f)
                    .await?
                    .into_iter()
                    .filter(|r| selection.wants(r)),
            );
        }
        out.sort_by_key(|r| (r.partition, r.offset));
        out.dedup_by_key(|r| (r.partition, r.offset));
        Ok(out)
    }
}

/// `store` under `path` (a URL's path), or `store` itself for an empty path.
fn prefixed<S: ObjectStore>(store: S, path: &str) -> Arc<dyn ObjectStore> {
    let prefix = path.trim_matches('/');
    if prefix.is_empty() {
        Arc::new(store)
    } else {
        Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
    }
}

fn file_info(hour_us: i64, partition: u32, rows: &[ArchivedEvent]) -> FileInfo {
    let first = rows.first().map_or(0, |r| r.offset);
    let last = rows.last().map_or(0, |r| r.offset);
    let min_ts = rows.iter().map(|r| r.event.timestamp_us).min().unwrap_or(0);
    let max_ts = rows.iter().map(|r| r.event.timestamp_us).max().unwrap_or(0);
    let (min_s, max_s) = (
        min_ts.div_euclid(1_000_000),
        max_ts.div_euclid(1_000_000) + 1,
    );
    let hour = DateTime::<Utc>::from_timestamp_micros(hour_us).unwrap_or_default();
    let path = Path::from(format!(
        "{EVENTS_PREFIX}/date={}/hour={:02}/p{partition:04}-o{first:020}-{last:020}-t{min_s}-{max_s}.parquet",
        hour.format("%Y-%m-%d"),
        hour.hour(),
    ));
    FileInfo {
        path,
        hour_us,
        partition,
        offsets: (first, last),
        timestamps_s: (min_s, max_s),
        size: 0,
    }
}

fn parse_path(path: &Path) -> Option<FileInfo> {
    let parts: Vec<&str> = path.as_ref().split('/').collect();
    let [.., date, hour, name] = parts.as_slice() else {
        return None;
    };
    let date = chrono::NaiveDate::parse_from_str(date.strip_prefix("date=")?, "%Y-%m-%d").ok()?;
    let hour: u32 = hour.strip_prefix("hour=")?.parse().ok()?;
    let hour_us = date.and_hms_opt(hour, 0, 0)?.and_utc().timestamp_micros();
    let stem = name.strip_suffix(".parquet")?.strip_prefix('p')?;
    let (partition, rest) = stem.split_once("-o")?;
    let (offsets, times) = rest.split_once("-t")?;
    let (first, last) = offsets.split_once('-')?;
    // Timestamps may be negative (before 1970): split at the '-' that follows a digit.
    let cut = times
        .char_indices()
        .skip(1)
        .find(|(i, c)| *c == '-' && times.as_bytes()[i - 1].is_ascii_digit())
        .map(|(i, _)| i)?;
    Some(FileInfo {
        path: path.clone(),
        hour_us,
        partition: partition.parse().ok()?,
        offsets: (first.parse().ok()?, last.parse().ok()?),
        timestamps_s: (times[..cut].parse().ok()?, times[cut + 1..].parse().ok()?),
        size: 0,
    })
}

/// Encodes rows as a Parquet file (zstd level 3, schema version in the key-value metadata).
fn encode_file(rows: &[ArchivedEvent]) -> Result<Vec<u8>, String> {
    let batch = schema::to_record_batch(rows).map_err(|e| e.to_string())?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).map_err(|e| e.to_string())?,
        ))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            schema::SCHEMA_VERSION_KEY.to_string(),
            SCHEMA_VERSION.to_string(),
        )]))
        .build();
    let mut buf = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    Ok(buf)
}

fn decode_file(bytes: Bytes) -> Result<Vec<ArchivedEvent>, String> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| e.to_string())?;
    let version = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == schema::SCHEMA_VERSION_KEY))
        .and_then(|k| k.value.clone());
    if version.as_deref() != Some("1") {
        return Err(format!(
            "schema version {version:?}; this build reads version {SCHEMA_VERSION}"
        ));
    }
    let mut out = Vec::new();
    for batch in builder.build().map_err(|e| e.to_string())? {
        let batch = batch.map_err(|e| e.to_string())?;
        out.extend(schema::from_record_batch(&batch).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
