//! Consumer groups: which partitions of the log a process consumes (DESIGN §4.2, "scaled out
//! by Kafka consumer groups (partition ownership), not by a home-made scheduler").
//!
//! A consumer joins its group with [`crate::Log::join`] and receives [`Ownership`] changes:
//! partitions assigned to it, which it starts consuming from its checkpoints in the store, and
//! partitions revoked from it, which it stops consuming, flushes, and then releases with
//! [`Revocation::done`]. The group gives a revoked partition to another member only after
//! that (or after the revocation deadline), so a partition's cells and checkpoint are always
//! written by one member at a time. A member that dies without releasing its partitions (a
//! `kill -9`) loses them when the group's session timeout passes; the next owner restores the
//! dead member's last flushed checkpoint and re-reads from there.
//!
//! The embedded log has one member, which owns every partition for good ([`SoleMember`]);
//! the Kafka log uses Kafka's group protocol (`kafka::KafkaMembership`).
//!
//! [`consume_owned`] runs one task per owned partition and follows the changes; the
//! processor and the archiver both use it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::{Log, LogError};

/// How long a revoked partition's task may take to flush and stop before it is aborted (and
/// the partition released anyway): the processor's flush retries a failing store for longer,
/// but the group cannot wait forever.
pub const REVOCATION_DEADLINE: Duration = Duration::from_secs(25);

/// A change in the partitions a group member owns.
#[derive(Debug)]
pub enum Ownership {
    /// These partitions are now this member's.
    Assigned(Vec<u32>),
    /// These partitions are being taken from this member: stop consuming them, flush, then
    /// call [`Revocation::done`].
    Revoked(Vec<u32>, Revocation),
}

/// The acknowledgement a revocation waits for; dropping it also releases the partitions.
#[derive(Debug)]
pub struct Revocation(Option<std::sync::mpsc::SyncSender<()>>);

impl Revocation {
    /// A revocation whose acknowledgement arrives on the returned receiver.
    pub fn new() -> (Revocation, std::sync::mpsc::Receiver<()>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        (Revocation(Some(tx)), rx)
    }

    /// Releases the revoked partitions: their tasks have flushed and stopped.
    pub fn done(mut self) {
        if let Some(tx) = self.0.take() {
            // The group may have given up waiting; then nobody listens, which is fine.
            let _ = tx.try_send(());
        }
    }
}

/// Membership in a consumer group; dropping it leaves the group.
#[async_trait]
pub trait Membership: Send {
    /// The next ownership change.
    ///
    /// # Errors
    /// [`LogError::Storage`] when the membership is lost for good (the client failed); the
    /// caller stops every partition and joins again.
    async fn next(&mut self) -> Result<Ownership, LogError>;
}

/// The only member of a group: owns every partition from the start and forever (the
/// embedded log, whose data directory one process opens).
pub struct SoleMember {
    partitions: Option<Vec<u32>>,
}

impl SoleMember {
    /// A member that owns partitions `0..partitions`.
    pub fn new(partitions: u32) -> SoleMember {
        SoleMember {
            partitions: Some((0..partitions).collect()),
        }
    }
}

#[async_trait]
impl Membership for SoleMember {
    async fn next(&mut self) -> Result<Ownership, LogError> {
        match self.partitions.take() {
            Some(all) => Ok(Ownership::Assigned(all)),
            None => std::future::pending().await,
        }
    }
}

/// Consumes the partitions that `group` assigns to this process until `shutdown`: for each
/// assigned partition, runs `start(partition, stop)`, a task that must return soon after
/// `stop` is cancelled, having flushed what it read. On a revocation the revoked partitions'
/// tasks are stopped and awaited (at most [`REVOCATION_DEADLINE`], then aborted) before the
/// group is told. A lost membership stops every task and joins again after a backoff. The
/// gauge `footfall_log_owned_partitions{group}` counts the partitions being consumed.
pub async fn consume_owned<F, Fut>(
    log: Arc<dyn Log>,
    group: &str,
    shutdown: CancellationToken,
    start: F,
) where
    F: Fn(u32, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut running: HashMap<u32, Running> = HashMap::new();
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        let member = match log.join(group).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(group, error = %e, "cannot join the consumer group; retrying");
                if sleep_or_shutdown(&mut backoff, &shutdown).await {
                    break;
                }
                continue;
            }
        };
        match follow(member, group, &shutdown, &start, &mut running).await {
            Ended::Shutdown => break,
            Ended::Lost(e) => {
                tracing::warn!(group, error = %e, "consumer group membership lost; rejoining");
                if sleep_or_shutdown(&mut backoff, &shutdown).await {
                    break;
                }
            }
        }
    }
    stop(&mut running, None).await;
    metrics::gauge!("footfall_log_owned_partitions", "group" => group.to_string()).set(0.0);
}

/// Why [`follow`] returned.
enum Ended {
    Shutdown,
    Lost(LogError),
}

/// Follows one membership's changes until shutdown or until it is lost; every task is
/// stopped (flushed) before it returns, and before the membership is dropped (which leaves
/// the group).
async fn follow<F, Fut>(
    mut member: Box<dyn Membership>,
    group: &str,
    shutdown: &CancellationToken,
    start: &F,
    running: &mut HashMap<u32, Running>,
) -> Ended
where
    F: Fn(u32, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let gauge = metrics::gauge!("footfall_log_owned_partitions", "group" => group.to_string());
    loop {
        let change = tokio::select! {
            change = member.next() => change,
            () = shutdown.cancelled() => {
                stop(running, None).await;
                return Ended::Shutdown;
            }
        };
        match change {
            Ok(Ownership::Assigned(partitions)) => {
                tracing::info!(group, ?partitions, "partitions assigned");
                for p in partitions {
                    running.entry(p).or_insert_with(|| {
                        let token = shutdown.child_token();
                        Running {
                            handle: tokio::spawn(start(p, token.clone())),
                            token,
                        }
                    });
                }
            }
            Ok(Ownership::Revoked(partitions, revocation)) => {
                tracing::info!(group, ?partitions, "partitions revoked; flushing them");
                stop(running, Some(&partitions)).await;
                revocation.done();
            }
            Err(e) => {
                stop(running, None).await;
                return Ended::Lost(e);
            }
        }
        gauge.set(running.len() as f64);
    }
}

struct Running {
    token: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

/// Stops the tasks of `partitions` (all when `None`) and waits for them.
async fn stop(running: &mut HashMap<u32, Running>, partitions: Option<&[u32]>) {
    let chosen: Vec<u32> = match partitions {
        Some(ps) => ps
            .iter()
            .copied()
            .filter(|p| running.contains_key(p))
            .collect(),
        None => running.keys().copied().collect(),
    };
    let mut stopping = Vec::with_capacity(chosen.len());
    for p in chosen {
        if let Some(r) = running.remove(&p) {
            r.token.cancel();
            stopping.push((p, r.handle));
        }
    }
    let deadline = tokio::time::Instant::now() + REVOCATION_DEADLINE;
    for (p, mut handle) in stopping {
        if tokio::time::timeout_at(deadline, &mut handle)
            .await
            .is_err()
        {
            tracing::error!(
                partition = p,
                "a partition task did not stop within the revocation deadline; aborting it"
            );
            handle.abort();
        }
    }
}

/// Sleeps for the backoff (doubling it, up to 30 s); true when shutdown came first.
async fn sleep_or_shutdown(backoff: &mut Duration, shutdown: &CancellationToken) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(Duration::from_secs(30));
    tokio::select! {
        () = tokio::time::sleep(wait) => false,
        () = shutdown.cancelled() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::{EmbeddedLog, EmbeddedLogConfig};
    use std::sync::Mutex;

    #[tokio::test]
    async fn the_sole_member_consumes_every_partition_until_shutdown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EmbeddedLog::open(&EmbeddedLogConfig {
            path: dir.path().join("log.redb"),
            partitions: 3,
            commit_linger: Duration::ZERO,
            cache_bytes: 1 << 20,
        })
        .expect("open");
        let log: Arc<dyn Log> = Arc::new(log);
        let events = Arc::new(Mutex::new(Vec::new()));
        let shutdown = CancellationToken::new();
        let run = {
            let (events, shutdown) = (events.clone(), shutdown.clone());
            tokio::spawn(async move {
                consume_owned(log, "g", shutdown, move |p, stop| {
                    let events = events.clone();
                    async move {
                        events.lock().expect("lock").push(format!("start {p}"));
                        stop.cancelled().await;
                        events.lock().expect("lock").push(format!("stop {p}"));
                    }
                })
                .await;
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut started = events.lock().expect("lock").clone();
        started.sort();
        assert_eq!(started, ["start 0", "start 1", "start 2"]);
        shutdown.cancel();
        run.await.expect("run");
        let stopped = events.lock().expect("lock").len();
        assert_eq!(
            stopped, 6,
            "every task stopped before consume_owned returned"
        );
    }

    /// A member driven by the test through a channel.
    struct Scripted(tokio::sync::mpsc::UnboundedReceiver<Ownership>);

    #[async_trait]
    impl Membership for Scripted {
        async fn next(&mut self) -> Result<Ownership, LogError> {
            match self.0.recv().await {
                Some(o) => Ok(o),
                None => std::future::pending().await,
            }
        }
    }

    #[tokio::test]
    async fn a_revocation_is_released_only_after_its_tasks_flushed() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tx.send(Ownership::Assigned(vec![4, 7])).expect("send");
        let (revocation, released) = Revocation::new();
        tx.send(Ownership::Revoked(vec![7], revocation))
            .expect("send");
        // A partition assigned again after its revocation starts again.
        tx.send(Ownership::Assigned(vec![7])).expect("send");

        let events = Arc::new(Mutex::new(Vec::new()));
        let shutdown = CancellationToken::new();
        let start = {
            let events = events.clone();
            move |p: u32, stop: CancellationToken| {
                let events = events.clone();
                async move {
                    events.lock().expect("lock").push(format!("start {p}"));
                    stop.cancelled().await;
                    // A slow flush: the release must wait for it.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    events.lock().expect("lock").push(format!("flushed {p}"));
                }
            }
        };
        let mut running = HashMap::new();
        let follower = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let ended =
                    follow(Box::new(Scripted(rx)), "g", &shutdown, &start, &mut running).await;
                (matches!(ended, Ended::Shutdown), running.len())
            })
        };
        // The revocation is acknowledged only once partition 7 has flushed.
        let released = tokio::task::spawn_blocking(move || {
            released.recv_timeout(Duration::from_secs(5)).is_ok()
        });
        assert!(
            released.await.expect("join"),
            "the revocation was acknowledged"
        );
        assert!(events
            .lock()
            .expect("lock")
            .contains(&"flushed 7".to_string()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        shutdown.cancel();
        let (by_shutdown, left_running) = follower.await.expect("follow");
        assert!(by_shutdown);
        assert_eq!(left_running, 0, "shutdown stops every task");
        let seen = events.lock().expect("lock").clone();
        // Order between the two partitions' tasks is not fixed; per partition it is.
        let of =
            |p: &str| -> Vec<String> { seen.iter().filter(|e| e.ends_with(p)).cloned().collect() };
        assert_eq!(of(" 4"), ["start 4", "flushed 4"]);
        assert_eq!(of(" 7"), ["start 7", "flushed 7", "start 7", "flushed 7"]);
    }
}
