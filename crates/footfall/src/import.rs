//! `footfall import`: access logs (NCSA combined / common) into pageviews.
//!
//! Every input is read once, as a stream (standard input is never copied to disk, since its
//! lines hold IP addresses). A file is identified by its first valid line — a request time to
//! the second, an address, a request and a user agent — so a live log that grew since the last
//! import keeps its identity, while a rotated file gets a new one. Files are imported oldest
//! first (by that first line's time), whatever their order on the command line, so that visits
//! spanning two rotated files are joined.
//!
//! Each file's identity names its *producer*; batches are appended with the number of their
//! last line as the producer's sequence, atomically with the sequence in the log
//! ([`footfall_log::Log::append_sequenced`]). Hence:
//!
//! - importing a file again appends nothing, and lines added to it since are imported;
//! - an import killed midway and run again resumes after the last appended batch, so every
//!   pageview ends up counted exactly once.
//!
//! Visitors are hashed from (address, user agent) with a salt shared by all files of one run
//! (named by the UTC date and the files' identities, so a re-run after a kill the same day
//! reuses it) and deleted when the run completes; salts of abandoned runs are deleted by the
//! server's daily salt rotation.
//!
//! Which lines are pageviews: see [`footfall_model::decode::combined`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
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

/// One input: a file, or standard input (`-`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A file, plain or gzip.
    File(PathBuf),
    /// Standard input, plain or gzip.
    Stdin,
}

impl Input {
    /// `-` is standard input, anything else a file.
    pub fn from_arg(arg: &Path) -> Input {
        if arg.as_os_str() == "-" {
            Input::Stdin
        } else {
            Input::File(arg.to_path_buf())
        }
    }

    fn display(&self) -> String {
        match self {
            Input::File(p) => p.display().to_string(),
            Input::Stdin => "-".to_string(),
        }
    }
}

/// Lines read to find a file's identity before giving up and hashing what was read.
pub(crate) const IDENTITY_SCAN_LINES: usize = 1000;

/// An opened input with the lines read ahead to identify it.
struct Source {
    display: String,
    identity: String,
    first_us: Option<i64>,
    ahead: Vec<Vec<u8>>,
    reader: Box<dyn BufRead>,
    size: u64,
}

/// Wraps `reader` in a gzip decoder when its first bytes are the gzip magic.
fn maybe_gunzip(mut reader: Box<dyn BufRead>) -> std::io::Result<Box<dyn BufRead>> {
    let magic = reader.fill_buf()?;
    Ok(if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::new(MultiGzDecoder::new(reader)))
    } else {
        reader
    })
}

fn open_source(input: &Input) -> anyhow::Result<Source> {
    let display = input.display();
    let (raw, size): (Box<dyn BufRead>, u64) = match input {
        Input::File(p) => {
            let f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
            let size = f.metadata().map(|m| m.len()).unwrap_or(0);
            (Box::new(BufReader::new(f)), size)
        }
        Input::Stdin => (Box::new(BufReader::new(std::io::stdin())), 0),
    };
    let mut reader = maybe_gunzip(raw).with_context(|| format!("reading {display}"))?;
    let mut ahead = Vec::new();
    let mut identity = None;
    let mut first_us = None;
    while ahead.len() < IDENTITY_SCAN_LINES {
        let mut line = Vec::new();
        if reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading {display}"))?
            == 0
        {
            break;
        }
        if let Ok(parsed) = parse_line(&String::from_utf8_lossy(&line)) {
            first_us = Some(parsed.timestamp_us);
            identity = Some(line_identity(&line));
        }
        ahead.push(line);
        if identity.is_some() {
            break;
        }
    }
    let identity = identity.unwrap_or_else(|| lines_identity(&ahead));
    Ok(Source {
        display,
        identity,
        first_us,
        ahead,
        reader,
        size,
    })
}

/// Imports `inputs` as one run, oldest file first.
///
/// # Errors
/// When an input cannot be read, the site does not exist, or the server fails. Files imported
/// before the failure stay imported; running the same command again resumes.
pub async fn import_files(
    admin: &AdminClient,
    inputs: &[Input],
    opts: &ImportOptions,
    today: &str,
) -> anyhow::Result<Vec<FileSummary>> {
    let mut sources = Vec::with_capacity(inputs.len());
    for input in inputs {
        sources.push(open_source(input)?);
    }
    sources.sort_by_key(|s| s.first_us.unwrap_or(i64::MAX));
    let mut run_hasher = blake3::Hasher::new();
    for s in &sources {
        run_hasher.update(s.identity.as_bytes());
    }
    let run = format!(
        "{IMPORT_RUN_PREFIX}{today}:{}:{}",
        opts.site,
        &run_hasher.finalize().to_hex()[..32]
    );
    let mut summaries = Vec::new();
    for source in sources {
        let display = source.display.clone();
        let summary = import_source(admin, source, &run, opts)
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

/// Prefix of import-run salt names; the server's salt rotation deletes them after two days.
pub use footfall_ingest::visitor::IMPORT_RUN_PREFIX;

async fn import_source(
    admin: &AdminClient,
    source: Source,
    run: &str,
    opts: &ImportOptions,
) -> anyhow::Result<FileSummary> {
    let Source {
        display,
        identity,
        ahead,
        mut reader,
        size,
        ..
    } = source;
    let producer = producer_of(&opts.site, &identity);
    let done = imported_through(admin, &producer).await?;
    let bar = if opts.progress && size > 0 {
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
    bar.set_message(display.clone());

    let batcher = Batcher {
        admin,
        opts,
        producer: &producer,
        run,
        attempts: 12,
    };
    let mut summary = FileSummary {
        path: display.clone(),
        ..Default::default()
    };
    let mut ahead = ahead.into_iter();
    let mut batch: Vec<ImportHit> = Vec::new();
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    loop {
        let line = match ahead.next() {
            Some(l) => l,
            None => {
                buf.clear();
                if reader
                    .read_until(b'\n', &mut buf)
                    .with_context(|| format!("reading {display}"))?
                    == 0
                {
                    break;
                }
                std::mem::take(&mut buf)
            }
        };
        bar.inc(line.len() as u64);
        line_no += 1;
        summary.lines += 1;
        if line_no <= done {
            summary.already_imported += 1;
            continue;
        }
        take_line(&line, line_no, &mut summary, &mut batch);
        // Batches end at multiples of batch_lines, so a resumed run cuts the same batches.
        if line_no.is_multiple_of(opts.batch_lines) && !batch.is_empty() {
            batcher
                .send(line_no, std::mem::take(&mut batch))
                .await?
                .add_to(&mut summary);
        }
    }
    if !batch.is_empty() {
        batcher.send(line_no, batch).await?.add_to(&mut summary);
    }
    bar.finish_and_clear();
    Ok(summary)
}

/// Parses line `line_no` and adds it to `batch` when it is a pageview; otherwise counts it in
/// `summary` as skipped (with the reason) or malformed.
pub(crate) fn take_line(
    line: &[u8],
    line_no: u64,
    summary: &mut FileSummary,
    batch: &mut Vec<ImportHit>,
) {
    let text = String::from_utf8_lossy(line);
    if text.trim().is_empty() {
        return;
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
}

/// Identity of a log file: the hash of its first line that parses (see the module docs),
/// 32 hex digits; `None` when none of `lines` parses.
pub(crate) fn identity_of(lines: &[Vec<u8>]) -> Option<String> {
    let scanned = &lines[..lines.len().min(IDENTITY_SCAN_LINES)];
    match scanned
        .iter()
        .find(|l| parse_line(&String::from_utf8_lossy(l)).is_ok())
    {
        Some(l) => Some(line_identity(l)),
        None => (scanned.len() >= IDENTITY_SCAN_LINES).then(|| lines_identity(scanned)),
    }
}

/// 32 hex digits of the BLAKE3 hash of a file's first lines: the identity of a file with no
/// valid line among its first [`IDENTITY_SCAN_LINES`].
fn lines_identity(lines: &[Vec<u8>]) -> String {
    let mut h = blake3::Hasher::new();
    for l in lines {
        h.update(l);
    }
    h.finalize().to_hex()[..32].to_string()
}

/// 32 hex digits of the BLAKE3 hash of an identifying line.
fn line_identity(line: &[u8]) -> String {
    blake3::hash(line).to_hex()[..32].to_string()
}

/// The producer name under which a file's batches are appended (its sequence is the number
/// of the last line sent).
pub(crate) fn producer_of(site: &str, identity: &str) -> String {
    format!("import:{site}:{identity}")
}

/// The last line of `producer`'s file that an earlier run appended (0 for none).
pub(crate) async fn imported_through(admin: &AdminClient, producer: &str) -> anyhow::Result<u64> {
    Ok(admin
        .call(Method::GET, &format!("/admin/import/{producer}"), None)
        .await?
        .get("sequence")
        .and_then(Value::as_u64)
        .unwrap_or(0))
}

/// Sends batches of one file's hits to the server's import endpoint.
pub(crate) struct Batcher<'a> {
    pub(crate) admin: &'a AdminClient,
    pub(crate) opts: &'a ImportOptions,
    pub(crate) producer: &'a str,
    pub(crate) run: &'a str,
    /// Times a batch is sent while the server answers `503` or `429` (waiting 0.2 s, then
    /// twice as long each time up to 5 s) before giving up with [`ServerBusy`].
    ///
    /// [`ServerBusy`]: crate::admin_client::ServerBusy
    pub(crate) attempts: u32,
}

impl Batcher<'_> {
    /// Appends the hits of the lines up to `last_line`.
    pub(crate) async fn send(&self, last_line: u64, hits: Vec<ImportHit>) -> anyhow::Result<Sent> {
        let batch = ImportBatch {
            site: self.opts.site.clone(),
            producer: self.producer.to_string(),
            run: self.run.to_string(),
            sequence: last_line,
            hostname: self.opts.hostname.clone(),
            hits,
        };
        let body = serde_json::to_value(&batch)?;
        // A busy log answers 503: wait and send the same batch again (it is idempotent).
        let mut wait = std::time::Duration::from_millis(200);
        let mut outcome = Value::Null;
        for attempt in 0..self.attempts {
            let (status, answer) = self
                .admin
                .request(Method::POST, "/admin/import", Some(&body))
                .await?;
            if status.is_success() {
                outcome = answer;
                break;
            }
            let retryable = status.as_u16() == 503 || status.as_u16() == 429;
            if !retryable || attempt + 1 >= self.attempts {
                return Err(crate::admin_client::status_error(status, &answer));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(std::time::Duration::from_secs(5));
        }
        Ok(Sent {
            imported: outcome.get("appended").and_then(Value::as_u64).unwrap_or(0),
            future: outcome.get("future").and_then(Value::as_u64).unwrap_or(0),
        })
    }
}

/// What the server did with one batch.
pub(crate) struct Sent {
    /// Pageviews appended (0 when the server already had the batch).
    imported: u64,
    /// Pageviews left out because their time is in the future.
    future: u64,
}

impl Sent {
    /// Counts this batch in a file's summary.
    pub(crate) fn add_to(&self, summary: &mut FileSummary) {
        summary.imported += self.imported;
        summary.future += self.future;
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
