//! `footfall import`: access logs (NCSA combined / common) into pageviews.
//!
//! Each file is read twice: once to fingerprint its (decompressed) content with BLAKE3, once
//! to parse it. The fingerprint names the import's *producer*; batches are appended with the
//! number of their last line as the producer's sequence, atomically with the sequence in the
//! log ([`footfall_log::Log::append_sequenced`]). Hence:
//!
//! - importing the same file again appends nothing (every batch is a duplicate, and lines up
//!   to the recorded sequence are not even sent);
//! - an import killed midway and run again resumes after the last appended batch, so every
//!   pageview ends up counted exactly once.
//!
//! Which lines are pageviews: see [`footfall_model::decode::combined`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;
use axum::http::Method;
use flate2::read::MultiGzDecoder;
use footfall_ingest::collector::{ImportBatch, ImportHit};
use footfall_model::decode::combined::{classify, parse_line};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::Value;

use crate::admin_client::AdminClient;

/// Malformed line numbers listed in a summary.
const MAX_LISTED_MALFORMED: usize = 100;

/// What `footfall import` did with one file.
#[derive(Debug, Default, Serialize)]
pub struct FileSummary {
    /// The file.
    pub path: String,
    /// Lines read.
    pub lines: u64,
    /// Pageviews appended by this run.
    pub imported: u64,
    /// Lines that an earlier run of the same file already covered.
    pub already_imported: u64,
    /// Requests that are not pageviews, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Lines that did not parse.
    pub malformed: u64,
    /// The first malformed line numbers with what was wrong.
    pub malformed_lines: Vec<(u64, String)>,
    /// Pageviews left out because their time is in the future.
    pub future: u64,
}

/// Options of an import.
pub struct ImportOptions {
    /// Site domain.
    pub site: String,
    /// Hostname for the pages (default: the site's domain).
    pub hostname: Option<String>,
    /// Lines per batch.
    pub batch_lines: u64,
    /// Show a progress bar.
    pub progress: bool,
}

fn open(path: &Path) -> anyhow::Result<Box<dyn Read>> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic)?;
    let file = File::open(path)?;
    Ok(if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    })
}

fn fingerprint(path: &Path) -> anyhow::Result<String> {
    let mut hasher = blake3::Hasher::new();
    std::io::copy(&mut open(path)?, &mut hasher)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(hasher.finalize().to_hex()[..32].to_string())
}

/// Imports one file through `admin`.
///
/// # Errors
/// When the file cannot be read, the site does not exist, or the server fails.
pub async fn import_file(
    admin: &AdminClient,
    path: &Path,
    display: &str,
    opts: &ImportOptions,
) -> anyhow::Result<FileSummary> {
    let fp = fingerprint(path)?;
    let producer = format!("import:{}:{fp}", opts.site);
    let done = admin
        .call(Method::GET, &format!("/admin/import/{producer}"), None)
        .await?
        .get("sequence")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let bar = if opts.progress {
        ProgressBar::new(size)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(display.to_string());

    let mut summary = FileSummary {
        path: display.to_string(),
        ..Default::default()
    };
    let mut reader = BufReader::new(open(path)?);
    let mut buf = Vec::new();
    let mut batch: Vec<ImportHit> = Vec::new();
    let mut line_no = 0u64;
    let mut batch_end = 0u64;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("reading {display}"))?;
        if n == 0 {
            break;
        }
        bar.inc(n as u64);
        line_no += 1;
        summary.lines += 1;
        if line_no <= done {
            summary.already_imported += 1;
            continue;
        }
        let text = String::from_utf8_lossy(&buf);
        if text.trim().is_empty() {
            continue;
        }
        match parse_line(&text) {
            Err(e) => {
                summary.malformed += 1;
                if summary.malformed_lines.len() < MAX_LISTED_MALFORMED {
                    summary.malformed_lines.push((line_no, e.to_string()));
                }
            }
            Ok(line) => match classify(&line) {
                Err(reason) => {
                    *summary
                        .skipped
                        .entry(reason.as_str().to_string())
                        .or_default() += 1
                }
                Ok(()) => batch.push(ImportHit {
                    line: line_no,
                    timestamp_us: line.timestamp_us,
                    remote_addr: line.remote_addr.to_string(),
                    user_agent: line.user_agent.to_string(),
                    target: line.target.to_string(),
                    referrer: line.referrer.map(str::to_string),
                }),
            },
        }
        batch_end = line_no;
        if line_no % opts.batch_lines == 0 && !batch.is_empty() {
            send(
                admin,
                opts,
                &producer,
                batch_end,
                std::mem::take(&mut batch),
                &mut summary,
            )
            .await?;
        }
    }
    if !batch.is_empty() {
        send(admin, opts, &producer, batch_end, batch, &mut summary).await?;
    }
    bar.finish_and_clear();
    admin
        .call(Method::DELETE, &format!("/admin/import/{producer}"), None)
        .await?;
    Ok(summary)
}

async fn send(
    admin: &AdminClient,
    opts: &ImportOptions,
    producer: &str,
    sequence: u64,
    hits: Vec<ImportHit>,
    summary: &mut FileSummary,
) -> anyhow::Result<()> {
    let batch = ImportBatch {
        site: opts.site.clone(),
        producer: producer.to_string(),
        sequence,
        hostname: opts.hostname.clone(),
        hits,
    };
    let outcome = admin
        .call(
            Method::POST,
            "/admin/import",
            Some(&serde_json::to_value(&batch)?),
        )
        .await?;
    summary.imported += outcome.get("appended").and_then(Value::as_u64).unwrap_or(0);
    summary.future += outcome.get("future").and_then(Value::as_u64).unwrap_or(0);
    Ok(())
}

/// Prints a human summary of one file to stderr.
pub fn print_summary(s: &FileSummary) {
    eprintln!(
        "{}: {} lines read, {} pageviews imported",
        s.path, s.lines, s.imported
    );
    if s.already_imported > 0 {
        eprintln!(
            "  {} lines were already imported by an earlier run",
            s.already_imported
        );
    }
    for (reason, n) in &s.skipped {
        eprintln!("  skipped {n} ({reason})");
    }
    if s.future > 0 {
        eprintln!("  left out {} with a time in the future", s.future);
    }
    if s.malformed > 0 {
        let listed: Vec<String> = s
            .malformed_lines
            .iter()
            .take(20)
            .map(|(n, why)| format!("{n} ({why})"))
            .collect();
        let more = s.malformed.saturating_sub(listed.len() as u64);
        eprintln!(
            "  {} malformed lines: {}{}",
            s.malformed,
            listed.join(", "),
            if more > 0 {
                format!(", and {more} more")
            } else {
                String::new()
            }
        );
    }
}

/// Resolves the FILE arguments: `-` is standard input, copied to a temporary file under
/// `spool_dir` so that it can be read twice. The temporary files are deleted when the
/// returned guards drop.
///
/// # Errors
/// When stdin cannot be copied.
pub fn inputs(
    files: &[PathBuf],
    spool_dir: &Path,
) -> anyhow::Result<(Vec<(PathBuf, String)>, Vec<tempfile::NamedTempFile>)> {
    let mut out = Vec::new();
    let mut temps = Vec::new();
    for f in files {
        if f.as_os_str() == "-" {
            std::fs::create_dir_all(spool_dir)?;
            let mut t = tempfile::NamedTempFile::new_in(spool_dir)
                .context("creating a temporary file for standard input")?;
            std::io::copy(&mut std::io::stdin().lock(), &mut t)
                .context("reading standard input")?;
            out.push((t.path().to_path_buf(), "-".to_string()));
            temps.push(t);
        } else {
            out.push((f.clone(), f.display().to_string()));
        }
    }
    Ok((out, temps))
}
