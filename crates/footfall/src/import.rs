//! `footfall import`: access logs (NCSA combined / common) into pageviews.
//!
//! Each file is read twice: once to fingerprint its (decompressed) content with BLAKE3 and
//! find its first timestamp, once to parse it. Files are imported oldest first (by their first
//! timestamp, whatever the order on the command line), so that visits spanning two rotated
//! files are joined. The fingerprint names the file's *producer*; batches are appended with
//! the number of their last line as the producer's sequence, atomically with the sequence in
//! the log ([`footfall_log::Log::append_sequenced`]). Hence:
//!
//! - importing the same file again appends nothing (every batch is a duplicate, and lines up
//!   to the recorded sequence are not even sent);
//! - an import killed midway and run again resumes after the last appended batch, so every
//!   pageview ends up counted exactly once.
//!
//! Visitors are hashed from (address, user agent) with a salt shared by all files of one run
//! (named by the files' fingerprints, so a re-run after a kill reuses it) and deleted when
//! the run completes.
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
    /// Print each file's summary to stderr.
    pub print: bool,
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

/// A file's content fingerprint and first request time.
struct Scan {
    fingerprint: String,
    first_us: Option<i64>,
}

fn scan(path: &Path) -> anyhow::Result<Scan> {
    let mut hasher = blake3::Hasher::new();
    let mut reader = BufReader::new(open(path)?);
    let mut buf = Vec::new();
    let mut first_us = None;
    loop {
        buf.clear();
        if reader
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("reading {}", path.display()))?
            == 0
        {
            break;
        }
        hasher.update(&buf);
        if first_us.is_none() {
            first_us = parse_line(&String::from_utf8_lossy(&buf))
                .ok()
                .map(|l| l.timestamp_us);
        }
    }
    Ok(Scan {
        fingerprint: hasher.finalize().to_hex()[..32].to_string(),
        first_us,
    })
}

/// Imports `files` (path, name to show) as one run, oldest file first.
///
/// # Errors
/// When a file cannot be read, the site does not exist, or the server fails. Files imported
/// before the failure stay imported; running the same command again resumes.
pub async fn import_files(
    admin: &AdminClient,
    files: &[(PathBuf, String)],
    opts: &ImportOptions,
) -> anyhow::Result<Vec<FileSummary>> {
    let mut scanned = Vec::with_capacity(files.len());
    for (path, display) in files {
        scanned.push((scan(path)?, path, display));
    }
    scanned.sort_by_key(|(s, _, _)| s.first_us.unwrap_or(i64::MAX));
    let mut run_hasher = blake3::Hasher::new();
    for (s, _, _) in &scanned {
        run_hasher.update(s.fingerprint.as_bytes());
    }
    let run = format!(
        "import-run:{}:{}",
        opts.site,
        &run_hasher.finalize().to_hex()[..32]
    );
    let mut summaries = Vec::new();
    for (s, path, display) in &scanned {
        let summary = import_file(admin, path, display, &s.fingerprint, &run, opts)
            .await
            .with_context(|| format!("importing {display}"))?;
        if opts.print {
            print_summary(&summary);
        }
        summaries.push(summary);
    }
    admin
        .call(Method::DELETE, &format!("/admin/import/{run}"), None)
        .await?;
    Ok(summaries)
}

async fn import_file(
    admin: &AdminClient,
    path: &Path,
    display: &str,
    fingerprint: &str,
    run: &str,
    opts: &ImportOptions,
) -> anyhow::Result<FileSummary> {
    let producer = format!("import:{}:{fingerprint}", opts.site);
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

    let batcher = Batcher {
        admin,
        opts,
        producer: &producer,
        run,
    };
    let mut summary = FileSummary {
        path: display.to_string(),
        ..Default::default()
    };
    let mut reader = BufReader::new(open(path)?);
    let mut buf = Vec::new();
    let mut batch: Vec<ImportHit> = Vec::new();
    let mut line_no = 0u64;
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
        if !text.trim().is_empty() {
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
        }
        // Batches end at multiples of batch_lines, so a resumed run cuts the same batches.
        if line_no.is_multiple_of(opts.batch_lines) && !batch.is_empty() {
            batcher
                .send(line_no, std::mem::take(&mut batch), &mut summary)
                .await?;
        }
    }
    if !batch.is_empty() {
        batcher.send(line_no, batch, &mut summary).await?;
    }
    bar.finish_and_clear();
    Ok(summary)
}

struct Batcher<'a> {
    admin: &'a AdminClient,
    opts: &'a ImportOptions,
    producer: &'a str,
    run: &'a str,
}

impl Batcher<'_> {
    /// Appends the hits of the lines up to `last_line`.
    async fn send(
        &self,
        last_line: u64,
        hits: Vec<ImportHit>,
        summary: &mut FileSummary,
    ) -> anyhow::Result<()> {
        let batch = ImportBatch {
            site: self.opts.site.clone(),
            producer: self.producer.to_string(),
            run: self.run.to_string(),
            sequence: last_line,
            hostname: self.opts.hostname.clone(),
            hits,
        };
        let outcome = self
            .admin
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

/// The files to import as (path, name to show), and the temporary copies of standard input
/// that must live as long as the import.
pub type Inputs = (Vec<(PathBuf, String)>, Vec<tempfile::NamedTempFile>);

/// Resolves the FILE arguments: `-` is standard input, copied to a temporary file under
/// `spool_dir` so that it can be read twice. The temporary files are deleted when the
/// returned guards drop.
///
/// # Errors
/// When stdin cannot be copied.
pub fn inputs(files: &[PathBuf], spool_dir: &Path) -> anyhow::Result<Inputs> {
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
