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
//! - **Server restarts and a busy log**: while the server cannot be reached or answers `503`
//!   or `429`, the follower waits and sends the same batch again (the server drops what it
//!   already has), until it is stopped.
//! - **Visitors** are hashed under one salt per site and UTC day of the hits (so a rotation
//!   does not make returning visitors new); a batch never spans two days.
//! - Only complete lines (ending in `\n`) are imported; a line being written waits. A line
//!   longer than 64 KiB is not kept in memory: it counts as malformed.
//! - Memory is bounded: at most `--batch-lines` lines are read ahead, and a file without a
//!   valid line among its first 1,000 is identified by those lines, as `footfall import` does.
//! - One follower per file: two at once would send overlapping batches.
//! - Lines written to a file that was rotated away while no follower ran, or more than 5 s
//!   after a rename, or between the last read and a `copytruncate`, are not followed;
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

use crate::admin_client::{AdminClient, ServerBusy, ServerUnreachable};
use crate::import::{
    identity_of, imported_through, producer_of, take_line, Batcher, FileSummary, ImportOptions,
    IDENTITY_SCAN_LINES,
};

/// How often the file is looked at when there is nothing new.
const POLL: Duration = Duration::from_millis(250);

/// How long a renamed file must stay without new lines before the follower leaves it for the
/// file that took its name (fluentd's `rotate_wait` is 5 s by default, for the same reason).
const ROTATE_WAIT: Duration = Duration::from_secs(5);

/// The longest line kept, bytes. nginx refuses request lines and headers past 8 KiB by default
/// (`large_client_header_buffers`), so a longer access-log line is not one to import.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// What stands for a line longer than [`MAX_LINE_BYTES`] (it fails to parse: malformed).
const OVERLONG_LINE: &[u8] = b"(a line longer than 64 KiB)\n";

/// A followed file as opened: its reader, where it is, and which file it is.
struct Tail {
    reader: BufReader<File>,
    /// Bytes consumed through the last complete line.
    pos: u64,
    /// Bytes consumed of the line being written (kept or not).
    partial_bytes: u64,
    /// The kept bytes of the line being written.
    partial: Vec<u8>,
    /// Whether the line being written is past [`MAX_LINE_BYTES`].
    overlong: bool,
    /// (device, inode) of the open file.
    id: (u64, u64),
}

impl Tail {
    fn open(path: &Path) -> std::io::Result<Tail> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        Ok(Tail {
            reader: BufReader::new(file),
            pos: 0,
            partial_bytes: 0,
            partial: Vec::new(),
            overlong: false,
            id: (meta.dev(), meta.ino()),
        })
    }

    /// Up to `max` complete lines available now (maybe none).
    fn read_lines(&mut self, max: usize) -> std::io::Result<Vec<Vec<u8>>> {
        let mut lines = Vec::new();
        while lines.len() < max {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let newline = buf.iter().position(|&b| b == b'\n');
            let take = newline.map_or(buf.len(), |i| i + 1);
            if self.partial.len() + take > MAX_LINE_BYTES {
                self.overlong = true;
                self.partial = Vec::new();
            }
            if !self.overlong {
                self.partial.extend_from_slice(&buf[..take]);
            }
            self.reader.consume(take);
            self.partial_bytes += take as u64;
            if newline.is_some() {
                self.pos += std::mem::take(&mut self.partial_bytes);
                lines.push(if std::mem::take(&mut self.overlong) {
                    OVERLONG_LINE.to_vec()
                } else {
                    std::mem::take(&mut self.partial)
                });
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
        Ok(m) if m.len() < tail.pos + tail.partial_bytes => Change::Truncated,
        Ok(_) => Change::Same,
        Err(_) => Change::Rotated,
    }
}

/// The UTC day (days since 1970-01-01) of a time in µs.
fn utc_day(timestamp_us: i64) -> i64 {
    timestamp_us.div_euclid(86_400_000_000)
}

/// Follows `path` until `stop` is cancelled, importing page requests into `opts.site`; each
/// batch is sent when the file has no more complete lines for now, when it reaches
/// `opts.batch_lines` lines, or before a hit of another UTC day. Returns what was done.
///
/// # Errors
/// When the file cannot be read (other than not existing yet, which is waited out), the site
/// does not exist, or the server refuses a batch for another reason than being unreachable
/// or busy.
pub async fn follow(
    admin: &AdminClient,
    path: &Path,
    opts: &ImportOptions,
    stop: CancellationToken,
) -> anyhow::Result<FileSummary> {
    let shown = path.display().to_string();
    let read_ahead = usize::try_from(opts.batch_lines).unwrap_or(usize::MAX);
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
            let room = IDENTITY_SCAN_LINES.saturating_sub(ahead.len()).max(1);
            ahead.extend(
                tail.read_lines(room)
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
        let sender = Sender {
            admin,
            opts,
            producer: &producer,
            stop: &stop,
        };
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
                // A batch holds one UTC day's hits (they share that day's salt): a hit of
                // another day first sends the lines before it.
                let new_day = match batch.as_slice() {
                    [first, .., last] => utc_day(first.timestamp_us) != utc_day(last.timestamp_us),
                    _ => false,
                };
                if new_day {
                    let last = batch.pop();
                    if !sender.send(line_no - 1, &mut batch, &mut summary).await? {
                        break 'files;
                    }
                    batch.extend(last);
                }
                if batch.len() as u64 >= opts.batch_lines
                    && !sender.send(line_no, &mut batch, &mut summary).await?
                {
                    break 'files;
                }
            }
            if !sender.send(line_no, &mut batch, &mut summary).await? {
                break 'files;
            }
            pending = tail
                .read_lines(read_ahead)
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
                        tracing::info!(file = %shown, lines = line_no, "the file was rotated; following the new one");
                        continue 'files;
                    }
                }
                Change::Truncated => {
                    tracing::warn!(
                        file = %shown,
                        "the file was truncated; reading it from the start (lines written to \
                         it after the last read and before the truncation are only in its copy)"
                    );
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

/// Sends one file's batches.
struct Sender<'a> {
    admin: &'a AdminClient,
    opts: &'a ImportOptions,
    producer: &'a str,
    stop: &'a CancellationToken,
}

impl Sender<'_> {
    /// Sends `batch` (the pageviews of the lines up to `last_line`, of one UTC day; nothing
    /// when it is empty) as one sequenced batch, waiting for the server while it is
    /// unreachable or busy. Returns false when the stop came first (the batch was not sent;
    /// a restarted follower sends it).
    async fn send(
        &self,
        last_line: u64,
        batch: &mut Vec<ImportHit>,
        summary: &mut FileSummary,
    ) -> anyhow::Result<bool> {
        let Some(first) = batch.first() else {
            return Ok(true);
        };
        // One salt per site and UTC day of the hits, like the collector's daily salt, shared
        // by every file followed for the site; the server deletes import salts two days old.
        let day = chrono::DateTime::from_timestamp_micros(first.timestamp_us).map_or_else(
            || "0000-00-00".to_string(),
            |t| t.format("%Y-%m-%d").to_string(),
        );
        let run = format!(
            "{}{day}:{}:follow",
            crate::import::IMPORT_RUN_PREFIX,
            self.opts.site
        );
        let batcher = Batcher {
            admin: self.admin,
            opts: self.opts,
            producer: self.producer,
            run: &run,
            // The waiting is done here, where a stop can cut it short.
            attempts: 1,
        };
        // The server drops a batch whose sequence it already has, so sending one again after
        // a lost answer imports nothing twice.
        let sent = until_reachable(self.stop, || batcher.send(last_line, batch.clone())).await?;
        let Some(sent) = sent else {
            return Ok(false);
        };
        sent.add_to(summary);
        batch.clear();
        Ok(true)
    }
}

/// Runs `op` until it succeeds, fails for another reason than the server being unreachable (a
/// restart of `footfall serve`) or busy (`503`, `429`: its log is unavailable) — the follower
/// waits those out, as a log shipper must — or `stop` is cancelled (`None`).
async fn until_reachable<T, F, Fut>(
    stop: &CancellationToken,
    mut op: F,
) -> anyhow::Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut wait = Duration::from_millis(200);
    let mut warned = false;
    loop {
        match op().await {
            Ok(v) => return Ok(Some(v)),
            // (The markers are the context of the error, which `downcast_ref` finds and
            // `chain` does not.)
            Err(e)
                if e.downcast_ref::<ServerUnreachable>().is_some()
                    || e.downcast_ref::<ServerBusy>().is_some() =>
            {
                if !warned {
                    tracing::warn!(error = %format!("{e:#}"), "waiting for the server");
                    warned = true;
                }
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = stop.cancelled() => return Ok(None),
                }
                wait = (wait * 2).min(Duration::from_secs(5));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, bytes: &[u8]) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    #[test]
    fn a_line_is_taken_once_its_newline_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        append(&path, b"one\ntw");
        let mut tail = Tail::open(&path).unwrap();
        assert_eq!(tail.read_lines(10).unwrap(), vec![b"one\n".to_vec()]);
        assert!(tail.read_lines(10).unwrap().is_empty());
        append(&path, b"o\nthree\nfour\n");
        assert_eq!(
            tail.read_lines(2).unwrap(),
            vec![b"two\n".to_vec(), b"three\n".to_vec()],
            "at most `max` lines"
        );
        assert_eq!(tail.read_lines(10).unwrap(), vec![b"four\n".to_vec()]);
        assert_eq!(tail.pos, 19);
        assert!(matches!(change(&path, &tail), Change::Same));
    }

    #[test]
    fn an_overlong_line_is_not_kept_and_the_next_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        append(&path, &long);
        let mut tail = Tail::open(&path).unwrap();
        assert!(tail.read_lines(10).unwrap().is_empty());
        assert!(tail.partial.is_empty(), "nothing of it is held");
        append(&path, b"\nok\n");
        assert_eq!(
            tail.read_lines(10).unwrap(),
            vec![OVERLONG_LINE.to_vec(), b"ok\n".to_vec()]
        );
        assert_eq!(tail.pos, (MAX_LINE_BYTES + 10 + 1 + 3) as u64);
    }

    #[test]
    fn truncation_and_rotation_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        append(&path, b"one\ntwo\n");
        let mut tail = Tail::open(&path).unwrap();
        tail.read_lines(10).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        assert!(matches!(change(&path, &tail), Change::Truncated));
        let tail = Tail::open(&path).unwrap();
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        assert!(
            matches!(change(&path, &tail), Change::Rotated),
            "no file yet"
        );
        append(&path, b"new\n");
        assert!(
            matches!(change(&path, &tail), Change::Rotated),
            "another file"
        );
    }

    #[test]
    fn utc_days_split_at_midnight() {
        const DAY_US: i64 = 86_400_000_000;
        assert_eq!(utc_day(0), 0);
        assert_eq!(utc_day(DAY_US - 1), 0);
        assert_eq!(utc_day(DAY_US), 1);
        assert_eq!(utc_day(-1), -1);
    }
}
