//! The log on Apache Kafka (or any broker that speaks its protocol), through `rdkafka`, the
//! maintained binding of librdkafka (DESIGN §4.2, scaled-out mode).
//!
//! - **Address**: `kafka://host1:9092,host2:9092/topic`, optionally followed by `?` and
//!   settings: `partitions=N` (create the topic with N partitions when it does not exist),
//!   `replication=R` (its replication factor when created; default 1), and any librdkafka
//!   client setting by its own name (`security.protocol=SASL_SSL`, `sasl.mechanisms=PLAIN`,
//!   `sasl.username=…`, `ssl.ca.location=…`; see librdkafka's CONFIGURATION.md).
//! - **Producer**: idempotent (`enable.idempotence=true`, so `acks=all` and ordered retries),
//!   lz4-compressed, lingering at most 5 ms; [`Log::append`] returns once every record is
//!   acknowledged by all in-sync replicas. The message key is the site id (8 bytes, big
//!   endian) and the partition is chosen with [`crate::partition_for`], so every event of a
//!   site is in one partition, in order, as with the embedded log.
//! - **Reading**: one consumer per partition, assigned by hand (no group), positioned where
//!   the caller asks; a read returns fewer than `max` records only after reaching the end of
//!   the partition (librdkafka's partition-EOF event), which the processor's freshness relies
//!   on.
//! - **Consumer groups**: [`Log::join`] makes the process a member of a Kafka consumer group
//!   (`processor`, `archiver`) subscribed to the topic; Kafka's group protocol assigns each
//!   partition to one member, and the rebalance callbacks become [`Ownership`] changes. A
//!   revocation blocks the rebalance until the member's tasks for those partitions have
//!   flushed (see [`crate::group`]). The member's consumer only holds the membership: its
//!   partitions are paused, and records are read by position through the readers below. A
//!   member that stops heartbeating (killed) loses its partitions after `session.timeout.ms`
//!   (10 s unless the address sets it).
//! - **Positions**: [`Log::commit`] commits the consumer group's offset in Kafka, so lag is
//!   visible to Kafka's own tools (`kafka-consumer-groups.sh`); the processor's position of
//!   record stays in the store's checkpoint (DESIGN §4.4).
//! - **Retention** is Kafka's (`retention.ms` on the topic): [`Log::truncate`] deletes nothing.
//! - **Sequenced appends** (imports): the last sequence number of each producer is kept in a
//!   compacted side topic `<topic>.producers`, written after the batch is acknowledged. A crash
//!   between the two can append that one batch again on the re-run (at least once), unlike the
//!   embedded log, where the check and the append are one transaction.
//!
//! Records of one append that go to different partitions are not appended atomically: when
//! some are acknowledged and others fail, the append fails, the client retries, and the
//! acknowledged ones are there twice. The collector appends one request's events, which
//! almost always belong to one site and so to one partition.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};

use crate::group::{Membership, Ownership, Revocation, REVOCATION_DEADLINE};
use crate::{AppendOutcome, Entry, Log, LogError, Offset, Record};

/// How long metadata, watermark and commit calls may take before they fail.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an append may wait for its acknowledgements (librdkafka's
/// `message.timeout.ms`); past it the append fails and the collector answers `503`.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a read that has records but has not yet reached the end of the partition keeps
/// fetching to fill its batch or reach the end.
const FILL_TIMEOUT: Duration = Duration::from_secs(5);

/// A parsed `kafka://` address.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaAddress {
    /// `host:port,host:port`.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// Partitions to create the topic with when it does not exist; `None`: never create it.
    pub create_partitions: Option<u32>,
    /// Replication factor for a created topic.
    pub replication: i32,
    /// Other librdkafka settings, by their own names.
    pub client: Vec<(String, String)>,
}

impl std::fmt::Debug for KafkaAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Client settings may hold passwords: only their names are shown.
        let names: Vec<&str> = self.client.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("KafkaAddress")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("create_partitions", &self.create_partitions)
            .field("replication", &self.replication)
            .field("client_settings", &names)
            .finish()
    }
}

impl KafkaAddress {
    /// Parses `kafka://host:port[,host:port…]/topic[?setting=value&…]`.
    ///
    /// # Errors
    /// A message naming what is wrong: another scheme, no broker, no topic, a topic name
    /// Kafka refuses (only `[A-Za-z0-9._-]`, at most 249 characters), a setting without `=`,
    /// or a `partitions`/`replication` that is not a positive number.
    pub fn parse(url: &str) -> Result<KafkaAddress, String> {
        let rest = url
            .strip_prefix("kafka://")
            .ok_or_else(|| format!("{url:?} does not start with kafka://"))?;
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (brokers, topic) = location
            .split_once('/')
            .ok_or("the address names no topic: write kafka://host:9092/topic")?;
        if brokers.split(',').any(|b| b.trim().is_empty()) {
            return Err("the address names no broker: write kafka://host:9092/topic".into());
        }
        if topic.is_empty()
            || topic.len() > 249
            || !topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(format!(
                "{topic:?} is not a Kafka topic name (letters, digits, '.', '_', '-'; at most 249)"
            ));
        }
        let mut address = KafkaAddress {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            create_partitions: None,
            replication: 1,
            client: Vec::new(),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            // Values may be passwords: a malformed pair is not echoed.
            let (k, v) = pair.split_once('=').ok_or(
                "a setting in the address has no '=' (write name=value pairs separated by '&', with '&', '=' and '%' in values percent-encoded)",
            )?;
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .map_err(|_| format!("the value of {k} is not UTF-8 once percent-decoded"))?
                .into_owned();
            let v = v.as_str();
            let positive = |what: &str| {
                v.parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{what} must be a positive number, not {v:?}"))
            };
            match k {
                "partitions" => address.create_partitions = Some(positive("partitions")?),
                "replication" => address.replication = positive("replication")? as i32,
                _ => address.client.push((k.to_string(), v.to_string())),
            }
        }
        Ok(address)
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        self.apply(&mut c);
        c
    }

    /// Sets the brokers and the address's client settings on `c`.
    fn apply(&self, c: &mut ClientConfig) {
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.client {
            c.set(k, v);
        }
    }

    fn producers_topic(&self) -> String {
        format!("{}.producers", self.topic)
    }
}

/// The clients' context. librdkafka reports reaching the end of a partition as an error
/// event, which reads expect (and see through `poll`), and reports unreachable brokers twice
/// a second per client while they stay down, which the spool's own warnings already say
/// once per retry: those go to the debug level, other errors are warnings.
struct Quiet;

impl ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(error, reason);
    }
}

/// Logs a client error: routine ones (end of partition, brokers unreachable) at debug level.
fn log_client_error(error: KafkaError, reason: &str) {
    let routine = matches!(error, KafkaError::PartitionEOF(_))
        || matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::PartitionEOF
                    | RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::AllBrokersDown
            )
        );
    if routine {
        tracing::debug!(error = %error, reason, "Kafka client");
    } else {
        tracing::warn!(error = %error, reason, "Kafka client error");
    }
}

impl ConsumerContext for Quiet {}

/// The context of a consumer-group client: for a plain one (commits and committed offsets
/// only) nothing more than [`Quiet`]; for a member ([`Log::join`]) it turns the rebalance
/// callbacks into [`Ownership`] changes.
struct GroupContext {
    member: Option<MemberState>,
}

struct MemberState {
    topic: String,
    changes: tokio::sync::mpsc::UnboundedSender<Result<Ownership, LogError>>,
    /// Set when the membership is dropped: the consumer is closing, nobody waits for changes.
    leaving: Arc<AtomicBool>,
}

/// The partitions of `topic` in a rebalance's list.
fn partitions_of(tpl: &TopicPartitionList, topic: &str) -> Vec<u32> {
    let mut ps: Vec<u32> = tpl
        .elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .filter_map(|e| u32::try_from(e.partition()).ok())
        .collect();
    ps.sort_unstable();
    ps
}

impl ClientContext for GroupContext {
    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(error, reason);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Some(m) = &self.member else { return };
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let partitions = partitions_of(tpl, &m.topic);
                if partitions.is_empty() || m.leaving.load(Ordering::SeqCst) {
                    return;
                }
                let (revocation, released) = Revocation::new();
                if m.changes
                    .send(Ok(Ownership::Revoked(partitions, revocation)))
                    .is_err()
                {
                    return;
                }
                // The rebalance (and so the next owner) waits until these partitions' tasks
                // have flushed; the follower gives up on a task after REVOCATION_DEADLINE.
                if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    released.recv_timeout(REVOCATION_DEADLINE + Duration::from_secs(5))
                {
                    tracing::error!("revoked partitions were not released in time; giving them up");
                }
            }
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "Kafka consumer group rebalance failed")
            }
            Rebalance::Assign(_) => {}
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Some(m) = &self.member else { return };
        if let Rebalance::Assign(tpl) = rebalance {
            // This consumer holds the membership only; paused, it fetches nothing.
            if let Err(e) = consumer.pause(tpl) {
                tracing::warn!(error = %e, "cannot pause the group member's partitions");
            }
            let partitions = partitions_of(tpl, &m.topic);
            if !partitions.is_empty() {
                let _ = m.changes.send(Ok(Ownership::Assigned(partitions)));
            }
        }
    }
}

/// Membership in a Kafka consumer group; see the module docs. A thread polls the member's
/// consumer (heartbeats and rebalances happen inside its polls); dropping the membership
/// stops the thread, which closes the consumer and so leaves the group.
pub struct KafkaMembership {
    changes: tokio::sync::mpsc::UnboundedReceiver<Result<Ownership, LogError>>,
    leaving: Arc<AtomicBool>,
}

impl Drop for KafkaMembership {
    fn drop(&mut self) {
        self.leaving.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl Membership for KafkaMembership {
    async fn next(&mut self) -> Result<Ownership, LogError> {
        match self.changes.recv().await {
            Some(change) => change,
            None => Err(LogError::Storage(
                "the Kafka consumer group member stopped".into(),
            )),
        }
    }
}

type GroupClients = Arc<Mutex<HashMap<String, Arc<BaseConsumer<GroupContext>>>>>;

struct Reader {
    consumer: BaseConsumer<Quiet>,
    /// The offset the next polled message will have, if the consumer is positioned.
    next: Option<i64>,
}

/// The Kafka log; see the module docs.
pub struct KafkaLog {
    address: KafkaAddress,
    /// The producer and its generation. An idempotent producer whose messages timed out may be
    /// fenced for good (a fatal error: librdkafka then refuses every message); it is replaced
    /// by a new one, with a new producer id, so that appends work again once the brokers do.
    producer: Mutex<(u64, FutureProducer<Quiet>)>,
    producer_config: ClientConfig,
    partitions: u32,
    /// Idle readers per partition. A read takes one (preferably positioned where it starts),
    /// so that the processor and the archiver reading one partition each keep their own
    /// position, and nobody waits for another's poll.
    readers: Vec<Mutex<Vec<Reader>>>,
    /// Per consumer group, the client that commits its positions: the group's member
    /// consumer while this process is a member (Kafka refuses commits from outside an active
    /// group), else a plain one.
    groups: GroupClients,
    /// Per partition, the offset past the last record this process appended (from delivery
    /// reports; at open, the partition's end): see [`Log::appended_through`].
    delivered: Vec<std::sync::atomic::AtomicU64>,
    /// Each producer's last sequence number; loaded from the side topic on first use.
    sequences: tokio::sync::Mutex<Option<HashMap<String, u64>>>,
}

fn storage(what: &str, e: impl std::fmt::Display) -> LogError {
    LogError::Storage(format!("Kafka {what}: {e}"))
}

/// A client-creation error without the value of the setting it names (librdkafka's messages
/// repeat the value, which may be a password).
fn config_error(what: &str, e: &KafkaError) -> String {
    match e {
        KafkaError::ClientConfig(_, _, key, _) => {
            format!("the Kafka {what} refused the setting {key:?}; check its value")
        }
        other => format!("the Kafka {what} could not be created: {other}"),
    }
}

impl KafkaLog {
    /// Connects, creates the topics when asked to and they do not exist, and reads the
    /// partition count.
    ///
    /// # Errors
    /// [`LogError::Open`] naming what to check: a setting librdkafka refuses, brokers that
    /// cannot be reached within 10 s, a topic that does not exist (and no `partitions=` to
    /// create it), or a topic that could not be created.
    pub async fn open(address: KafkaAddress) -> Result<KafkaLog, LogError> {
        let open_error = |reason: String| LogError::Open {
            path: format!("kafka://{}/{}", address.brokers, address.topic),
            reason,
        };
        let mut producer_config = ClientConfig::new();
        producer_config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            // A missing topic is an error to report, not one for the broker to create with
            // its own defaults.
            .set("allow.auto.create.topics", "false")
            .set(
                "message.timeout.ms",
                DELIVERY_TIMEOUT.as_millis().to_string(),
            );
        // The address's own settings come last, so they can tune these defaults.
        address.apply(&mut producer_config);
        let producer: FutureProducer<Quiet> = producer_config
            .create_with_context(Quiet)
            .map_err(|e| open_error(config_error("producer", &e)))?;
        if let Some(partitions) = address.create_partitions {
            let admin: AdminClient<DefaultClientContext> = address
                .client_config()
                .create()
                .map_err(|e| open_error(config_error("admin client", &e)))?;
            let producers = address.producers_topic();
            // With replicas, an acks=all acknowledgement must rest on at least two of them.
            let min_insync = address.replication.min(2).to_string();
            let topics = [
                NewTopic::new(
                    &address.topic,
                    partitions as i32,
                    TopicReplication::Fixed(address.replication),
                )
                .set("min.insync.replicas", &min_insync),
                NewTopic::new(&producers, 1, TopicReplication::Fixed(address.replication))
                    .set("cleanup.policy", "compact")
                    .set("min.insync.replicas", &min_insync),
            ];
            let options = AdminOptions::new().operation_timeout(Some(CALL_TIMEOUT));
            let results = tokio::time::timeout(CALL_TIMEOUT, admin.create_topics(&topics, &options))
                .await
                .map_err(|_| open_error(format!("no Kafka broker at {} answered within {CALL_TIMEOUT:?}; check the address and that the brokers run", address.brokers)))?
                .map_err(|e| open_error(format!("creating the topics failed: {e}; check the brokers at {}", address.brokers)))?;
            for r in results {
                match r {
                    Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((topic, code)) => {
                        return Err(open_error(format!("creating topic {topic} failed: {code}")))
                    }
                }
            }
        }
        let client_producer = producer.clone();
        let topic = address.topic.clone();
        let metadata = tokio::task::spawn_blocking(move || {
            client_producer
                .client()
                .fetch_metadata(Some(&topic), CALL_TIMEOUT)
        })
        .await
        .map_err(|e| open_error(e.to_string()))?
        .map_err(|e| {
            open_error(format!(
                "no Kafka broker at {} answered ({e}); check the address and that the brokers run",
                address.brokers
            ))
        })?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == address.topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len() as u32);
        if partitions == 0 {
            return Err(open_error(format!(
                "topic {} does not exist; create it, or add ?partitions=N to the address to have it created",
                address.topic
            )));
        }
        // Where each partition ends now: the lower bound for where this process's appends land.
        let mut delivered = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            let (client, topic) = (producer.clone(), address.topic.clone());
            let high = tokio::task::spawn_blocking(move || {
                client
                    .client()
                    .fetch_watermarks(&topic, p as i32, CALL_TIMEOUT)
            })
            .await
            .ok()
            .and_then(Result::ok)
            .map_or(0, |(_, high)| high.max(0) as u64);
            delivered.push(std::sync::atomic::AtomicU64::new(high));
        }
        Ok(KafkaLog {
            delivered,
            readers: (0..partitions).map(|_| Mutex::new(Vec::new())).collect(),
            address,
            producer: Mutex::new((0, producer)),
            producer_config,
            partitions,
            groups: Arc::new(Mutex::new(HashMap::new())),
            sequences: tokio::sync::Mutex::new(None),
        })
    }

    fn check_partition(&self, partition: u32) -> Result<(), LogError> {
        if partition < self.partitions {
            Ok(())
        } else {
            Err(LogError::NoSuchPartition(partition))
        }
    }

    /// A consumer that reads by hand-assigned positions (no group, no commits).
    fn reader_consumer(&self) -> Result<BaseConsumer<Quiet>, LogError> {
        let mut c = ClientConfig::new();
        // Each reader is a librdkafka client that keeps fetching while idle: bound what it may
        // hold (librdkafka's default is 64 MiB per client).
        c.set("fetch.wait.max.ms", "100")
            .set("queued.max.messages.kbytes", "1024");
        self.address.apply(&mut c);
        // What reading by position needs is not left to the address.
        c.set("group.id", "footfall-reader")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        c.create_with_context(Quiet)
            .map_err(|e| LogError::Storage(config_error("consumer", &e)))
    }

    fn group_consumer(&self, group: &str) -> Result<Arc<BaseConsumer<GroupContext>>, LogError> {
        let mut groups = self
            .groups
            .lock()
            .map_err(|_| LogError::Storage("a Kafka group consumer panicked".into()))?;
        if let Some(c) = groups.get(group) {
            return Ok(c.clone());
        }
        let mut c = self.address.client_config();
        c.set("group.id", group).set("enable.auto.commit", "false");
        let consumer: Arc<BaseConsumer<GroupContext>> = Arc::new(
            c.create_with_context(GroupContext { member: None })
                .map_err(|e| LogError::Storage(config_error("group consumer", &e)))?,
        );
        groups.insert(group.to_string(), consumer.clone());
        Ok(consumer)
    }

    async fn produce(
        &self,
        topic: &str,
        records: &[(Option<u32>, Vec<u8>, &[u8])],
    ) -> Result<(), LogError> {
        let (generation, producer) = self.current_producer()?;
        let mut fenced = false;
        let result = self.send_all(&producer, topic, records, &mut fenced).await;
        if result.is_err() {
            let fatal = producer.client().fatal_error();
            if fenced || fatal.is_some() {
                tracing::warn!(
                    ?fatal,
                    "the Kafka producer was fenced or failed for good; starting a new one"
                );
                self.replace_producer(generation)?;
            }
        }
        // This clone may be the last handle of a replaced producer: drop it off this thread.
        tokio::task::spawn_blocking(move || drop(producer));
        result
    }

    fn current_producer(&self) -> Result<(u64, FutureProducer<Quiet>), LogError> {
        self.producer
            .lock()
            .map(|p| (p.0, p.1.clone()))
            .map_err(|_| LogError::Storage("the Kafka producer lock was poisoned".into()))
    }

    /// Replaces producer `generation` with a new one, unless another append already did. The
    /// old one is dropped on a blocking thread: dropping a producer flushes and joins its
    /// threads.
    fn replace_producer(&self, generation: u64) -> Result<(), LogError> {
        let fresh: FutureProducer<Quiet> = self
            .producer_config
            .create_with_context(Quiet)
            .map_err(|e| LogError::Storage(config_error("producer", &e)))?;
        let retired = {
            let mut current = self
                .producer
                .lock()
                .map_err(|_| LogError::Storage("the Kafka producer lock was poisoned".into()))?;
            if current.0 == generation {
                Some(std::mem::replace(&mut *current, (generation + 1, fresh)).1)
            } else {
                None
            }
        };
        if let Some(old) = retired {
            tokio::task::spawn_blocking(move || drop(old));
        }
        Ok(())
    }

    async fn send_all(
        &self,
        producer: &FutureProducer<Quiet>,
        topic: &str,
        records: &[(Option<u32>, Vec<u8>, &[u8])],
        fenced: &mut bool,
    ) -> Result<(), LogError> {
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        let mut pending = Vec::with_capacity(records.len());
        for (partition, key, payload) in records {
            let mut record = FutureRecord::to(topic).key(key).payload(*payload);
            if let Some(p) = partition {
                record = record.partition(*p as i32);
            }
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                        if Instant::now() < deadline =>
                    {
                        record = r;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        return Err(LogError::Overloaded)
                    }
                    Err((e, _)) => return Err(storage("append", e)),
                }
            }
        }
        let main_topic = topic == self.address.topic;
        for delivery in pending {
            match delivery.await {
                Ok(Ok(rdkafka::producer::future_producer::Delivery {
                    partition, offset, ..
                })) => {
                    if let Some(d) = usize::try_from(partition)
                        .ok()
                        .filter(|_| main_topic)
                        .and_then(|p| self.delivered.get(p))
                    {
                        d.fetch_max(
                            offset.max(0) as u64 + 1,
                            std::sync::atomic::Ordering::Relaxed,
                        );
                    }
                }
                Ok(Err((e, _))) => {
                    *fenced = matches!(
                        e.rdkafka_error_code(),
                        Some(
                            RDKafkaErrorCode::ProducerFenced
                                | RDKafkaErrorCode::InvalidProducerEpoch
                                | RDKafkaErrorCode::UnknownProducerId
                                | RDKafkaErrorCode::OutOfOrderSequenceNumber
                        )
                    );
                    return Err(storage("append", e));
                }
                Err(_) => return Err(LogError::Closed),
            }
        }
        Ok(())
    }

    async fn load_sequences(&self) -> Result<HashMap<String, u64>, LogError> {
        let consumer = self.reader_consumer()?;
        let topic = self.address.producers_topic();
        tokio::task::spawn_blocking(move || {
            let (low, high) = consumer
                .fetch_watermarks(&topic, 0, CALL_TIMEOUT)
                .map_err(|e| {
                    storage(
                        "reading producer sequences",
                        format!("{e} (imports need the compacted topic {topic}: create it, or add ?partitions=N to the address to have both topics created)"),
                    )
                })?;
            let mut out = HashMap::new();
            if high <= low {
                return Ok(out);
            }
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topic, 0, KafkaOffset::Offset(low))
                .map_err(|e| storage("reading producer sequences", e))?;
            consumer
                .assign(&tpl)
                .map_err(|e| storage("reading producer sequences", e))?;
            let deadline = Instant::now() + CALL_TIMEOUT;
            let mut next = low;
            while next < high {
                if Instant::now() > deadline {
                    return Err(storage(
                        "reading producer sequences",
                        "the side topic could not be read to its end in time",
                    ));
                }
                match consumer.poll(Duration::from_millis(200)) {
                    Some(Ok(m)) => {
                        next = m.offset() + 1;
                        let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
                        let seq = m
                            .payload()
                            .and_then(|p| std::str::from_utf8(p).ok())
                            .and_then(|s| s.parse::<u64>().ok());
                        if let (Some(k), Some(s)) = (key, seq) {
                            let e = out.entry(k).or_insert(s);
                            *e = (*e).max(s);
                        }
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) => break,
                    Some(Err(e)) => return Err(storage("reading producer sequences", e)),
                    None => {}
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| storage("reading producer sequences", e))?
    }
}

#[async_trait]
impl Log for KafkaLog {
    fn partitions(&self) -> u32 {
        self.partitions
    }

    async fn append(&self, records: Vec<Record>) -> Result<(), LogError> {
        let keyed: Vec<(Option<u32>, Vec<u8>, &[u8])> = records
            .iter()
            .map(|r| {
                (
                    Some(self.partition_for(r.key)),
                    r.key.to_be_bytes().to_vec(),
                    r.payload.as_slice(),
                )
            })
            .collect();
        self.produce(&self.address.topic, &keyed).await
    }

    async fn append_sequenced(
        &self,
        producer: &str,
        sequence: u64,
        records: Vec<Record>,
    ) -> Result<AppendOutcome, LogError> {
        let mut guard = self.sequences.lock().await;
        if guard.is_none() {
            *guard = Some(self.load_sequences().await?);
        }
        let sequences = guard.as_mut().ok_or(LogError::Closed)?;
        if sequences.get(producer).is_some_and(|s| *s >= sequence) {
            return Ok(AppendOutcome::Duplicate);
        }
        self.append(records).await?;
        let seq = sequence.to_string();
        self.produce(
            &self.address.producers_topic(),
            &[(Some(0), producer.as_bytes().to_vec(), seq.as_bytes())],
        )
        .await?;
        sequences.insert(producer.to_string(), sequence);
        Ok(AppendOutcome::Appended)
    }

    async fn producer_sequence(&self, producer: &str) -> Result<Option<u64>, LogError> {
        let mut guard = self.sequences.lock().await;
        if guard.is_none() {
            *guard = Some(self.load_sequences().await?);
        }
        Ok(guard.as_ref().and_then(|s| s.get(producer).copied()))
    }

    async fn read(
        &self,
        partition: u32,
        from: Offset,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Entry>, LogError> {
        self.check_partition(partition)?;
        let from = i64::try_from(from).map_err(|_| storage("read", "offset too large"))?;
        let pool = &self.readers[partition as usize];
        let idle = {
            let mut idle = pool
                .lock()
                .map_err(|_| LogError::Storage("a Kafka reader panicked".into()))?;
            match idle.iter().position(|r| r.next == Some(from)) {
                Some(i) => Some(idle.swap_remove(i)),
                None => idle.pop(),
            }
        };
        let mut reader = match idle {
            Some(r) => r,
            None => Reader {
                consumer: self.reader_consumer()?,
                next: None,
            },
        };
        let topic = self.address.topic.clone();
        let (reader, result) = tokio::task::spawn_blocking(move || {
            let result = poll_batch(&mut reader, &topic, partition, from, max, wait);
            (reader, result)
        })
        .await
        .map_err(|e| storage("read", e))?;
        if let Ok(mut idle) = pool.lock() {
            // Two readers per partition serve the processor and the archiver; a third is kept
            // for an occasional other reader (a reprocess), more are let go.
            if idle.len() < 3 {
                idle.push(reader);
            }
        }
        result
    }

    async fn end_offset(&self, partition: u32) -> Result<Offset, LogError> {
        self.check_partition(partition)?;
        let (_, producer) = self.current_producer()?;
        let topic = self.address.topic.clone();
        let (_, high) = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_watermarks(&topic, partition as i32, CALL_TIMEOUT)
        })
        .await
        .map_err(|e| storage("end offset", e))?
        .map_err(|e| storage("end offset", e))?;
        Ok(high.max(0) as u64)
    }

    async fn commit(&self, group: &str, partition: u32, offset: Offset) -> Result<(), LogError> {
        self.check_partition(partition)?;
        let consumer = self.group_consumer(group)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.address.topic,
            partition as i32,
            KafkaOffset::Offset(offset as i64),
        )
        .map_err(|e| storage("commit", e))?;
        tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|e| storage("commit", e))?
            .map_err(|e| storage("commit", e))
    }

    async fn committed(&self, group: &str, partition: u32) -> Result<Option<Offset>, LogError> {
        self.check_partition(partition)?;
        let consumer = self.group_consumer(group)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.address.topic, partition as i32);
        let topic = self.address.topic.clone();
        let got =
            tokio::task::spawn_blocking(move || consumer.committed_offsets(tpl, CALL_TIMEOUT))
                .await
                .map_err(|e| storage("committed offset", e))?
                .map_err(|e| storage("committed offset", e))?;
        Ok(got
            .find_partition(&topic, partition as i32)
            .and_then(|e| match e.offset() {
                KafkaOffset::Offset(o) if o >= 0 => Some(o as u64),
                _ => None,
            }))
    }

    fn appended_through(&self, partition: u32) -> Option<Offset> {
        self.delivered
            .get(partition as usize)
            .map(|d| d.load(std::sync::atomic::Ordering::Relaxed))
    }

    async fn join(&self, group: &str) -> Result<Box<dyn Membership>, LogError> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let leaving = Arc::new(AtomicBool::new(false));
        let mut c = ClientConfig::new();
        // Detect a killed member within 10 s (librdkafka's default is 45 s).
        c.set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "2000");
        self.address.apply(&mut c);
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest");
        let consumer: Arc<BaseConsumer<GroupContext>> = Arc::new(
            c.create_with_context(GroupContext {
                member: Some(MemberState {
                    topic: self.address.topic.clone(),
                    changes: tx.clone(),
                    leaving: leaving.clone(),
                }),
            })
            .map_err(|e| LogError::Storage(config_error("group member", &e)))?,
        );
        consumer
            .subscribe(&[&self.address.topic])
            .map_err(|e| storage("subscribe", e))?;
        self.groups
            .lock()
            .map_err(|_| LogError::Storage("a Kafka group consumer panicked".into()))?
            .insert(group.to_string(), consumer.clone());
        let (groups, name, stop) = (self.groups.clone(), group.to_string(), leaving.clone());
        std::thread::Builder::new()
            .name(format!("kafka-group-{group}"))
            .spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    // Rebalance callbacks run inside this poll; the partitions are paused, so
                    // a message is only one fetched before the pause, and ignored.
                    let _ = consumer.poll(Duration::from_millis(100));
                    if let Some((code, reason)) = consumer.client().fatal_error() {
                        let _ = tx.send(Err(storage("group member", format!("{code}: {reason}"))));
                        break;
                    }
                }
                stop.store(true, Ordering::SeqCst);
                if let Ok(mut g) = groups.lock() {
                    if g.get(&name).is_some_and(|c| Arc::ptr_eq(c, &consumer)) {
                        g.remove(&name);
                    }
                }
                // The last handle closes the consumer here, which leaves the group.
                drop(consumer);
            })
            .map_err(|e| storage("group member thread", e))?;
        Ok(Box::new(KafkaMembership {
            changes: rx,
            leaving,
        }))
    }

    async fn truncate(&self, partition: u32, _before: Offset) -> Result<u64, LogError> {
        // Kafka deletes by the topic's own retention (retention.ms / retention.bytes).
        self.check_partition(partition)?;
        Ok(0)
    }
}

/// Polls up to `max` records of `partition` from `from` with `reader` (see [`Log::read`]):
/// waits up to `wait` for the first one; once records are known to be there, keeps fetching
/// (up to [`FILL_TIMEOUT`]) until the batch is full or the end of the partition is reached. An
/// end-of-partition event is believed only when the partition's end offset confirms it: an
/// idle pooled reader may hold a stale one from before more records arrived.
fn poll_batch(
    reader: &mut Reader,
    topic: &str,
    partition: u32,
    from: i64,
    max: usize,
    wait: Duration,
) -> Result<Vec<Entry>, LogError> {
    if reader.next != Some(from) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition as i32, KafkaOffset::Offset(from))
            .map_err(|e| storage("read", e))?;
        reader
            .consumer
            .assign(&tpl)
            .map_err(|e| storage("read", e))?;
        reader.next = Some(from);
    }
    let end = |reader: &Reader| {
        reader
            .consumer
            .fetch_watermarks(topic, partition as i32, CALL_TIMEOUT)
            .map(|(_, high)| high)
            .map_err(|e| storage("read", e))
    };
    let mut out = Vec::new();
    let started = Instant::now();
    // Set once records are known to be there: from then on the read waits up to FILL_TIMEOUT
    // (from that moment) instead of `wait`.
    let mut filling: Option<Instant> = None;
    let mut looked_up_end = false;
    while out.len() < max {
        let timeout = match filling {
            Some(since) => FILL_TIMEOUT.saturating_sub(since.elapsed()),
            None => wait.saturating_sub(started.elapsed()),
        };
        match reader.consumer.poll(timeout) {
            Some(Ok(m)) => {
                let offset = m.offset();
                reader.next = Some(offset + 1);
                if offset >= from {
                    out.push(Entry {
                        offset: offset as u64,
                        payload: m.payload().unwrap_or_default().to_vec(),
                    });
                }
                filling.get_or_insert_with(Instant::now);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {
                let position = reader.next.unwrap_or(from);
                if end(reader)? <= position {
                    break;
                }
                // A stale end from before more records arrived: they are there, fetch them.
                filling.get_or_insert_with(Instant::now);
            }
            Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                reader.next = None;
                return Err(storage("read", e));
            }
            Some(Err(e)) => {
                // Brokers going away and coming back: the position is still right, so the
                // read keeps what it has and goes on until its time is up.
                tracing::debug!(error = %e, partition, "Kafka consumer");
                if timeout.is_zero() {
                    break;
                }
            }
            None if filling.is_some() => {
                if timeout.is_zero() {
                    break;
                }
            }
            None if !looked_up_end => {
                // Nothing arrived within `wait`. A consumer just positioned may not have
                // fetched yet: records exist when the end is past the position.
                looked_up_end = true;
                if end(reader)? <= reader.next.unwrap_or(from) {
                    break;
                }
                filling = Some(Instant::now());
            }
            None => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_settings_and_errors_name_the_part() {
        let a = KafkaAddress::parse(
            "kafka://k1:9092,k2:9092/footfall.events?partitions=16&replication=3&security.protocol=SASL_SSL&sasl.password=s3cret",
        )
        .unwrap();
        assert_eq!(a.brokers, "k1:9092,k2:9092");
        assert_eq!(a.topic, "footfall.events");
        assert_eq!(a.create_partitions, Some(16));
        assert_eq!(a.replication, 3);
        assert_eq!(a.client.len(), 2);
        assert!(
            !format!("{a:?}").contains("s3cret"),
            "passwords are not shown"
        );

        let err = |u: &str| KafkaAddress::parse(u).unwrap_err();
        assert!(err("http://k:9092/t").contains("kafka://"));
        assert!(err("kafka://k:9092").contains("no topic"));
        assert!(err("kafka:///t").contains("no broker"));
        assert!(err("kafka://k:9092/a b").contains("not a Kafka topic name"));
        assert!(err("kafka://k:9092/t?partitions=0").contains("partitions"));
        assert!(err("kafka://k:9092/t?linger").contains("no '='"));
        let p = KafkaAddress::parse("kafka://k:9092/t?sasl.password=a%26b%3Dc").unwrap();
        assert_eq!(p.client, vec![("sasl.password".into(), "a&b=c".into())]);
    }
}
