//! `footfall import --follow FILE`: the log-shipper role (fluentd's `tail` input in the
//! original architecture). Tails an access log as the web server writes it and imports its
//! page requests within a second of each line.
//!
//! - **Identity and position** are those of `footfall import` (see [`crate::import`]): a file
//!   is its first valid line's hash, and the server records, atomically with each appended
//!   batch, the number of the file's last line sent. A restarted follower reopens the file,
//!   skips the lines the server already has and goes on: nothing is imported twice or lost.
//! - **Rotation by rename** (logrotate's default, nginx reopening on `USR1`): when the path
//!   names a different file (device and inode), the old file is read until it has had no new
//!   line for 5 s (writers reopen their logs a moment after the rename), then the new one
//!   from its first line.
//! - **Truncation** (`copytruncate`): when the file is shorter than what was read, it holds new
//!   lines; it is read again from the start (its first line, and so its identity, are new).
//! - Only complete lines (ending in `\n`) are imported; a line being written waits.
//! - Lines written to a file that was rotated away while no follower ran are not followed;
//!   `footfall import ROTATED-FILE` imports them (exactly once, by the same identity).
//!
//! The file is polled every 250 ms rather than watched with inotify: polling sees renames and
//! truncations the same way on every file system (network mounts included), and 250 ms is
//! well inside the product's freshness target.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use footfall_ingest::collector::ImportHit;
use tokio_util::sync::CancellationToken;

use crate::admin_client::{AdminClient, ServerUnreachable};
use crate::import::{
    identity_of, imported_through, producer_of, take_line, Batcher, FileSummary, ImportOptions,
};

/// How often the file is looked at when there is nothing new.
const POLL: Duration = Duration::from_millis(250);

/// How long a renamed file must stay without new lines before the follower leaves it for the
/// file that took its name (fluentd's `rotate_wait` is 5 s by default, for the same reason).
const ROTATE_WAIT: Duration = Duration::from_secs(5);

/// A followed file as opened: its reader, where it is, and which file it is.
struct Tail {
    reader: BufReader<File>,
    /// Bytes consumed, complete lines only.
    pos: u64,
    /// (device, inode) of the open file.
    id: (u64, u64),
    /// Lines read (complete).
    line_no: u64,
    /// A line whose end has not been written yet.
    partial: Vec<u8>,
}

impl Tail {
    fn open(path: &Path) -> std::io::Result<Tail> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        Ok(Tail {
            reader: BufReader::new(file),
            pos: 0,
            id: (meta.dev(), meta.ino()),
            line_no: 0,
            partial: Vec::new(),
        })
    }

    /// The complete lines available now (maybe none).
    fn read_lines(&mut self) -> std::io::Result<Vec<Vec<u8>>> {
        let mut lines = Vec::new();
        loop {
            let mut chunk = Vec::new();
            let n = self.reader.read_until(b'\n', &mut chunk)?;
            if n == 0 {
                break;
            }
            self.partial.extend_from_slice(&chunk);
            if self.partial.ends_with(b"\n") {
                self.pos += self.partial.len() as u64;
                self.line_no += 1;
                lines.push(std::mem::take(&mut self.partial));
            }
        }
        Ok(lines)
    }
}

/// What the path names now, compared with the open file.
enum Change {
    /// The same file, no shorter than what was read.
    Same,
    /// Another file (renamed away and replaced), or none yet.
    Rotated,
    /// The same file, truncated.
    Truncated,
}

fn change(path: &Path, tail: &Tail) -> Change {
    match std::fs::metadata(path) {
        Ok(m) if (m.dev(), m.ino()) != tail.id => Change::Rotated,
        Ok(m) if m.len() < tail.pos + tail.partial.len() as u64 => Change::Truncated,
        Ok(_) => Change::Same,
        Err(_) => Change::Rotated,
    }
}

/// Follows `path` until `stop` is cancelled, importing page requests into `opts.site`; each
/// batch is sent when the file has no more complete lines for now or when it reaches
/// `opts.batch_lines` lines. Returns what was done.
///
/// # Errors
/// When the file cannot be read (other than not existing yet, which is waited out), the site
/// does not exist, or the server refuses a batch for good.
pub async fn follow(
    admin: &AdminClient,
    path: &Path,
    opts: &ImportOptions,
    stop: CancellationToken,
) -> anyhow::Result<FileSummary> {
    let shown = path.display().to_string();
    let mut summary = FileSummary {
        path: shown.clone(),
        ..Default::default()
    };
    'files: while !stop.is_cancelled() {
        let mut tail = match Tail::open(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if sleep_or_stop(&stop).await {
                    break;
                }
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("opening {shown}")),
        };
        // Lines read before the file's identity is known (it may be empty for now).
        let mut ahead: Vec<Vec<u8>> = Vec::new();
        let identity = loop {
            ahead.extend(
                tail.read_lines()
                    .with_context(|| format!("reading {shown}"))?,
            );
            if let Some(id) = identity_of(&ahead) {
                break id;
            }
            if !matches!(change(path, &tail), Change::Same) {
                continue 'files;
            }
            if sleep_or_stop(&stop).await {
                break 'files;
            }
        };
        let producer = producer_of(&opts.site, &identity);
        let Some(done) = until_reachable(&stop, || imported_through(admin, &producer)).await?
        else {
            break;
        };
        tracing::info!(file = %shown, identity = %identity, skipped_lines = done, "following");
        let mut line_no = 0u64;
        let mut batch: Vec<ImportHit> = Vec::new();
        let mut pending = ahead;
        let mut rotated_at: Option<Instant> = None;
        loop {
            for line in pending.drain(..) {
                line_no += 1;
                summary.lines += 1;
                if line_no <= done {
                    summary.already_imported += 1;
                    continue;
                }
                take_line(&line, line_no, &mut summary, &mut batch);
                if batch.len() as u64 >= opts.batch_lines
                    && !send(
                        admin,
                        opts,
                        &producer,
                        line_no,
                        &mut batch,
                        &mut summary,
                        &stop,
                    )
                    .await?
                {
                    break 'files;
                }
            }
            if !batch.is_empty()
                && !send(
                    admin,
                    opts,
                    &producer,
                    line_no,
                    &mut batch,
                    &mut summary,
                    &stop,
                )
                .await?
            {
                break 'files;
            }
            pending = tail
                .read_lines()
                .with_context(|| format!("reading {shown}"))?;
            if !pending.is_empty() {
                if rotated_at.is_some() {
                    rotated_at = Some(Instant::now());
                }
                continue;
            }
            match change(path, &tail) {
                Change::Same => {}
                Change::Rotated => {
                    // The writer may go on appending to the old file for a moment after the
                    // rename (nginx's workers reopen their logs after its master does): read
                    // it until it has been quiet for ROTATE_WAIT, then follow the new one.
                    let quiet_since = *rotated_at.get_or_insert_with(Instant::now);
                    if quiet_since.elapsed() >= ROTATE_WAIT {
                        tracing::info!(file = %shown, "the file was rotated; following the new one");
                        continue 'files;
                    }
                }
                Change::Truncated => {
                    tracing::info!(file = %shown, "the file was truncated; reading it from the start");
                    continue 'files;
                }
            }
            if sleep_or_stop(&stop).await {
                break 'files;
            }
        }
    }
    Ok(summary)
}

/// Sends `batch` (the pageviews of the lines up to `last_line`) as one sequenced batch,
/// waiting for the server while it is unreachable. Returns false when `stop` came first (the
/// batch was not sent; a restarted follower sends it).
async fn send(
    admin: &AdminClient,
    opts: &ImportOptions,
    producer: &str,
    last_line: u64,
    batch: &mut Vec<ImportHit>,
    summary: &mut FileSummary,
    stop: &CancellationToken,
) -> anyhow::Result<bool> {
    // Visitors are hashed with a salt per UTC day and file, like the collector's daily salt;
    // the server deletes import salts two days old.
    let run = format!(
        "{}{}:{}:follow:{}",
        crate::import::IMPORT_RUN_PREFIX,
        chrono::Utc::now().format("%Y-%m-%d"),
        opts.site,
        producer.rsplit(':').next().unwrap_or(producer)
    );
    let batcher = Batcher {
        admin,
        opts,
        producer,
        run: &run,
    };
    // The server drops a batch whose sequence it already has, so sending one again after a
    // lost answer imports nothing twice.
    let Some(sent) = until_reachable(stop, || batcher.send(last_line, batch.clone())).await? else {
        return Ok(false);
    };
    sent.add_to(summary);
    batch.clear();
    Ok(true)
}

/// Runs `op` until it succeeds, fails for another reason than the server being unreachable
/// (a restart of `footfall serve`: the follower waits it out, as a log shipper must), or
/// `stop` is cancelled (`None`).
async fn until_reachable<T, F, Fut>(
    stop: &CancellationToken,
    mut op: F,
) -> anyhow::Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut warned = false;
    loop {
        match op().await {
            Ok(v) => return Ok(Some(v)),
            Err(e) if e.chain().any(|c| c.is::<ServerUnreachable>()) => {
                if !warned {
                    tracing::warn!(error = %format!("{e:#}"), "waiting for the server to come back");
                    warned = true;
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = stop.cancelled() => return Ok(None),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Sleeps one poll interval; true when `stop` came first.
async fn sleep_or_stop(stop: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(POLL) => false,
        () = stop.cancelled() => true,
    }
}
