//! The conformance suite every [`Log`] implementation runs (ENGINEERING: "Contracts before
//! code"). Each scenario states the contract it checks; the expected values follow from the
//! contract alone.

use std::time::Duration;

use crate::{AppendOutcome, Log, Record};

fn rec(key: u64, payload: &str) -> Record {
    Record {
        key,
        payload: payload.as_bytes().to_vec(),
    }
}

/// Runs every scenario against a fresh, empty log with at least 2 partitions.
pub async fn run_all<L: Log>(log: &L) {
    order_within_partition(log).await;
    sequenced_appends_are_idempotent(log).await;
    commit_and_truncate(log).await;
    read_waits_for_append(log).await;
}

/// Runs every scenario but truncation, for logs whose records are deleted by their own
/// retention rather than by [`Log::truncate`] (Kafka): against a fresh log with at least 2
/// partitions and consumer groups that have never committed.
pub async fn run_all_but_truncation<L: Log>(log: &L) {
    order_within_partition(log).await;
    sequenced_appends_are_idempotent(log).await;
    commits_are_kept_per_group(log).await;
    read_waits_for_append(log).await;
}

/// Each group's committed position is its own; returns the partition and the offset the
/// scenario started at.
pub async fn commits_are_kept_per_group<L: Log>(log: &L) -> (u32, u64) {
    let p = log.partition_for(30);
    let start = log.end_offset(p).await.expect("end offset");
    log.append((0..4).map(|i| rec(30, &i.to_string())).collect())
        .await
        .expect("append");
    assert_eq!(
        log.committed("processor", p).await.expect("committed"),
        None
    );
    log.commit("processor", p, start + 3).await.expect("commit");
    log.commit("archiver", p, start + 1).await.expect("commit");
    assert_eq!(
        log.committed("processor", p).await.expect("committed"),
        Some(start + 3)
    );
    assert_eq!(
        log.committed("archiver", p).await.expect("committed"),
        Some(start + 1)
    );
    (p, start)
}

/// Records of one key come back in append order with consecutive offsets.
pub async fn order_within_partition<L: Log>(log: &L) {
    let p = log.partition_for(10);
    let start = log.end_offset(p).await.expect("end offset");
    log.append(vec![rec(10, "a"), rec(10, "b")])
        .await
        .expect("append");
    log.append(vec![rec(10, "c")]).await.expect("append");
    assert_eq!(log.end_offset(p).await.expect("end offset"), start + 3);
    let got = log.read(p, start, 100, Duration::ZERO).await.expect("read");
    let offsets: Vec<u64> = got.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, vec![start, start + 1, start + 2]);
    assert_eq!(
        got.iter().map(|e| e.payload.as_slice()).collect::<Vec<_>>(),
        vec![&b"a"[..], b"b", b"c"]
    );
    let limited = log
        .read(p, start + 1, 1, Duration::ZERO)
        .await
        .expect("read");
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0].payload, b"b");
    assert!(
        log.read(log.partitions(), 0, 1, Duration::ZERO)
            .await
            .is_err(),
        "a partition past the count is an error"
    );
}

/// A producer's batch number is written once; the recorded sequence only moves forward.
pub async fn sequenced_appends_are_idempotent<L: Log>(log: &L) {
    let p = log.partition_for(20);
    let start = log.end_offset(p).await.expect("end offset");
    assert_eq!(log.producer_sequence("import:x").await.expect("seq"), None);
    assert_eq!(
        log.append_sequenced("import:x", 5, vec![rec(20, "a")])
            .await
            .expect("append"),
        AppendOutcome::Appended
    );
    assert_eq!(
        log.append_sequenced("import:x", 5, vec![rec(20, "a")])
            .await
            .expect("append"),
        AppendOutcome::Duplicate
    );
    assert_eq!(
        log.append_sequenced("import:x", 3, vec![rec(20, "z")])
            .await
            .expect("append"),
        AppendOutcome::Duplicate
    );
    assert_eq!(
        log.append_sequenced("import:x", 6, vec![rec(20, "b")])
            .await
            .expect("append"),
        AppendOutcome::Appended
    );
    assert_eq!(
        log.producer_sequence("import:x").await.expect("seq"),
        Some(6)
    );
    assert_eq!(log.end_offset(p).await.expect("end"), start + 2);
}

/// Truncation deletes only what every group has passed.
pub async fn commit_and_truncate<L: Log>(log: &L) {
    let (p, start) = commits_are_kept_per_group(log).await;
    log.truncate(p, start + 4).await.expect("truncate");
    let left = log.read(p, 0, 100, Duration::ZERO).await.expect("read");
    assert_eq!(
        left.first().map(|e| e.offset),
        Some(start + 1),
        "the archiver has not passed start+1"
    );
    assert_eq!(
        log.end_offset(p).await.expect("end"),
        start + 4,
        "truncation does not move the end"
    );
}

/// A read that waits returns a record appended while it waits.
pub async fn read_waits_for_append<L: Log>(log: &L) {
    let p = log.partition_for(40);
    let start = log.end_offset(p).await.expect("end offset");
    let (got, ()) = tokio::join!(log.read(p, start, 10, Duration::from_secs(10)), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        log.append(vec![rec(40, "late")]).await.expect("append");
    });
    assert_eq!(got.expect("read").len(), 1);
}
