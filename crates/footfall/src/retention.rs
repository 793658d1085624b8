//! Log retention: the log is the short-term buffer, the archive the long-term record
//! (DESIGN §4.6). A record of the log is deleted only when both the processor and the
//! archiver have passed it and it was received more than `log.retention_hours` ago.

use std::time::Duration;

use footfall_log::{Log, LogError, Offset};
use footfall_model::event::Event;

/// The consumer groups that must have passed a record before it may go.
pub const REQUIRED_GROUPS: [&str; 2] = [
    footfall_process::runner::CONSUMER,
    footfall_archive::archiver::CONSUMER,
];

/// Deletes, in every partition, the records that every group in [`REQUIRED_GROUPS`] has
/// passed and that were received before `cutoff_us` (UTC µs). Returns how many went.
///
/// Receipt times grow with offsets, up to the small skew between concurrent requests, so the
/// boundary is found by bisection; a record whose time does not decode counts as old.
///
/// # Errors
/// [`LogError`] when the log fails; what was deleted before stays deleted.
pub async fn trim(log: &dyn Log, cutoff_us: i64) -> Result<u64, LogError> {
    let mut deleted = 0;
    for p in 0..log.partitions() {
        let mut passed = Offset::MAX;
        for group in REQUIRED_GROUPS {
            passed = passed.min(log.committed(group, p).await?.unwrap_or(0));
        }
        let Some(first) = log
            .read(p, 0, 1, Duration::ZERO)
            .await?
            .first()
            .map(|e| e.offset)
        else {
            continue;
        };
        // The first offset in first..passed received at or after the cutoff.
        let (mut lo, mut hi) = (first, passed.max(first));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let entry = log.read(p, mid, 1, Duration::ZERO).await?;
            let Some(e) = entry.first() else {
                hi = mid;
                continue;
            };
            let old = Event::decode(&e.payload).map_or(true, |ev| ev.received_at_us < cutoff_us);
            if old && e.offset < hi {
                lo = e.offset + 1;
            } else {
                hi = mid;
            }
        }
        if lo > first {
            deleted += log.truncate(p, lo).await?;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use footfall_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
    use footfall_log::Record;

    use super::*;

    const T0: i64 = 1_700_000_000_000_000;
    const MIN: i64 = 60_000_000;

    async fn log_with_100(dir: &std::path::Path) -> Arc<EmbeddedLog> {
        let log = Arc::new(
            EmbeddedLog::open(&EmbeddedLogConfig {
                path: dir.join("log.redb"),
                partitions: 1,
                commit_linger: Duration::ZERO,
                cache_bytes: 1 << 20,
            })
            .unwrap(),
        );
        let records = (0..100)
            .map(|i| {
                let mut e = Event::pageview(1, 1, T0 + i * MIN, "/");
                e.received_at_us = T0 + i * MIN;
                Record {
                    key: 1,
                    payload: e.encode(),
                }
            })
            .collect();
        log.append(records).await.unwrap();
        log
    }

    async fn first(log: &EmbeddedLog) -> u64 {
        log.read(0, 0, 1, Duration::ZERO).await.unwrap()[0].offset
    }

    #[tokio::test]
    async fn records_go_only_when_old_and_passed_by_both_groups() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_with_100(dir.path()).await;
        // Only the processor has passed anything: the archiver has not started.
        log.commit("processor", 0, 80).await.unwrap();
        assert_eq!(trim(log.as_ref(), T0 + 1000 * MIN).await.unwrap(), 0);
        // Both have passed 60; records received before minute 70 are old: 0..60 go.
        log.commit("archiver", 0, 60).await.unwrap();
        assert_eq!(trim(log.as_ref(), T0 + 70 * MIN).await.unwrap(), 60);
        assert_eq!(first(&log).await, 60);
        // Both have passed 90; records before minute 75 are old: 60..75 go.
        log.commit("archiver", 0, 90).await.unwrap();
        log.commit("processor", 0, 95).await.unwrap();
        assert_eq!(trim(log.as_ref(), T0 + 75 * MIN).await.unwrap(), 15);
        assert_eq!(first(&log).await, 75);
        // Nothing more is old.
        assert_eq!(trim(log.as_ref(), T0 + 75 * MIN).await.unwrap(), 0);
    }
}
