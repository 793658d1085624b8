//! The store on Apache Cassandra or ScyllaDB (DESIGN §4.4, scaled-out mode), through the
//! ScyllaDB driver (`scylla`): prepared statements, token-aware routing, `LOCAL_QUORUM` by
//! default (see [`CassandraAddress`] for the settings). The tables are created and upgraded
//! by `footfall migrate` ([`migrate`], [`schema`]); `docs/cassandra.md` explains the design.
//!
//! **Replay-safe batches.** Cassandra has no multi-partition transaction, and a processor
//! flush ([`WriteBatch`]) touches thousands of partitions. Cells are written as absolute
//! values, so writing a batch twice is harmless; what must not happen is that a batch is
//! half-applied, the processor dies, and its successor re-reads the events from the old
//! checkpoint and adds them to cells that already hold them. So a flush with cells goes
//! through a redo log, per (consumer, log partition):
//!
//! 1. the batch's rows, encoded, are written to `batch_log` in chunks of at most 256 KiB;
//! 2. the checkpoint row gets a marker naming that batch (one row, so atomic);
//! 3. the cells, visits and mirrors are written (idempotent: absolute values, deletes);
//! 4. the checkpoint row gets the new position and loses the marker; the log is deleted.
//!
//! [`Store::restore_checkpoint`], which a new owner of the partition calls first, finds a marker left
//! by a writer that died between steps 2 and 4 and finishes the batch from the log (steps 3
//! and 4) before it answers. A writer that died before step 2 left nothing visible. Until a
//! batch's step 3 ends, a query may see some of its cells and not others, never a cell
//! counted twice. This relies on one writer per log partition, which the consumer groups
//! give ([`footfall_log::group`]); a writer that lives on past its revocation deadline is
//! not fenced off.
//!
//! Id allocation (sites, generations), unique domains and measurement ids, salts and served
//! spans use lightweight transactions (compare-and-set at `serial_consistency`).

pub mod address;
pub mod schema;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use footfall_model::rollup::{CellKey, CellValue, Dimension, Granularity};
use footfall_store::{
    ApiKey, CellRange, Checkpoint, Generation, Mirror, NewSite, ServedSpan, Site, Store,
    StoreError, VisitWrite, WriteBatch,
};
use futures_util::{StreamExt, TryStreamExt};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::{OpenSsl010Config, Session};
use scylla::client::session_builder::SessionBuilder;
use scylla::deserialize::row::DeserializeRow;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlValue, Row};
use serde::{Deserialize, Serialize};

pub use address::CassandraAddress;

/// Largest chunk of an encoded batch in the redo log, bytes.
const CHUNK_BYTES: usize = 256 << 10;
/// Shards of each log partition's open visits (see `schema`).
const VISIT_SHARDS: i16 = 256;
/// Statements in flight at once per store call.
const CONCURRENCY: usize = 64;
/// Compare-and-set attempts before an id allocation gives up.
const CAS_ATTEMPTS: usize = 64;

fn storage(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(format!("Cassandra {what}: {e}"))
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;
type BoxFuture<'a> = Boxed<'a, ()>;

/// Connects to the cluster (not to a keyspace).
///
/// # Errors
/// [`StoreError::Open`] naming the nodes and what to check: no node answered within 20 s,
/// authentication failed, or the TLS settings are unusable.
pub async fn connect(a: &CassandraAddress) -> Result<Session, StoreError> {
    let open = |reason: String| StoreError::Open {
        path: format!("cassandra://{}/{}", a.nodes.join(","), a.keyspace),
        reason,
    };
    let mut policy = DefaultPolicy::builder().token_aware(true);
    if let Some(dc) = &a.local_dc {
        policy = policy
            .prefer_datacenter(dc.clone())
            .permit_dc_failover(false);
    }
    let profile = ExecutionProfile::builder()
        .consistency(a.consistency)
        .serial_consistency(Some(a.serial_consistency))
        .load_balancing_policy(policy.build())
        .request_timeout(Some(Duration::from_secs(10)))
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&a.nodes)
        .connection_timeout(Duration::from_secs(5))
        // Writes are stamped by this client, in the order it makes them: the redo log's
        // marker and commit, and successive values of one cell, must not be reordered by the
        // clocks of whichever replicas coordinate them.
        .timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()))
        .default_execution_profile_handle(profile.into_handle());
    if let Some((user, password)) = &a.credentials {
        builder = builder.user(user, password);
    }
    if a.tls {
        use openssl::ssl::{SslConnector, SslMethod};
        // SslConnector verifies the nodes' certificates (the driver checks them against the
        // node's IP address, so certificates need IP entries).
        let mut ctx = SslConnector::builder(SslMethod::tls())
            .map_err(|e| open(format!("cannot set up TLS: {e}")))?;
        match &a.tls_ca {
            Some(ca) => ctx
                .set_ca_file(ca)
                .map_err(|e| open(format!("cannot read the CA file {ca}: {e}")))?,
            None => ctx
                .set_default_verify_paths()
                .map_err(|e| open(format!("cannot load the system's CAs: {e}")))?,
        }
        builder = builder.tls_context(Some(OpenSsl010Config::new(ctx)));
    }
    match tokio::time::timeout(Duration::from_secs(20), builder.build()).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(e)) => Err(open(format!(
            "{e}; check the address, the credentials and that the nodes run"
        ))),
        Err(_) => Err(open(
            "no node answered within 20 s; check the address and that the nodes run".into(),
        )),
    }
}

/// Creates the keyspace (with the address's replication) when it does not exist, and
/// applies the migrations it lacks; returns the versions applied now.
///
/// # Errors
/// [`StoreError::Open`] when the cluster cannot be reached; [`StoreError::Storage`] when a
/// statement fails (re-running `migrate` finishes an interrupted migration).
pub async fn migrate(a: &CassandraAddress) -> Result<Vec<i32>, StoreError> {
    let session = connect(a).await?;
    let ks = &a.keyspace;
    let ddl = |cql: String| {
        let session = &session;
        async move {
            session
                .query_unpaged(cql.as_str(), ())
                .await
                .map_err(|e| storage("migration", format!("{e} (in: {cql})")))?;
            session
                .await_schema_agreement()
                .await
                .map_err(|e| storage("schema agreement", e))?;
            Ok::<(), StoreError>(())
        }
    };
    // ScyllaDB's tablets do not support lightweight transactions, which id allocation needs.
    let tablets = if a.scylla {
        " AND tablets = {'enabled': false}"
    } else {
        ""
    };
    ddl(format!(
        "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {}{tablets}",
        a.replication
    ))
    .await?;
    ddl(schema::MIGRATIONS_TABLE.replace("{ks}", ks)).await?;
    let current = schema_version(&session, ks).await?.unwrap_or(0);
    let mut applied = Vec::new();
    for m in schema::MIGRATIONS.iter().filter(|m| m.version > current) {
        for s in m.statements {
            ddl(s.replace("{ks}", ks)).await?;
        }
        let record = format!(
            "INSERT INTO {ks}.schema_migrations (version, description, applied_at) VALUES (?, ?, toTimestamp(now()))"
        );
        session
            .query_unpaged(record, (m.version, m.description))
            .await
            .map_err(|e| storage("recording the migration", e))?;
        applied.push(m.version);
    }
    Ok(applied)
}

/// The newest applied migration of keyspace `ks`; `None` when it has none (or no table).
async fn schema_version(session: &Session, ks: &str) -> Result<Option<i32>, StoreError> {
    let table = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = 'schema_migrations'",
            (ks,),
        )
        .await
        .map_err(|e| storage("reading the schema", e))?
        .into_rows_result()
        .map_err(|e| storage("reading the schema", e))?
        .rows_num();
    if table == 0 {
        return Ok(None);
    }
    let cql = format!("SELECT version FROM {ks}.schema_migrations");
    let result = session
        .query_unpaged(cql, ())
        .await
        .map_err(|e| storage("reading the schema version", e))?;
    let rows = result
        .into_rows_result()
        .map_err(|e| storage("reading the schema version", e))?;
    let mut newest = None;
    for r in rows
        .rows::<(i32,)>()
        .map_err(|e| storage("reading the schema version", e))?
    {
        let (v,) = r.map_err(|e| storage("reading the schema version", e))?;
        newest = newest.max(Some(v));
    }
    Ok(newest)
}

/// A batch as kept in the redo log.
#[derive(Serialize, Deserialize)]
struct RedoBatch {
    /// Encoded cell key and value; an empty value deletes the cell.
    cells: Vec<(Vec<u8>, Vec<u8>)>,
    /// (log partition, site, visitor, state or delete).
    visits: Vec<(u32, u64, u64, Option<Vec<u8>>)>,
    mirrors: Vec<Mirror>,
}

impl RedoBatch {
    fn of(b: &WriteBatch) -> RedoBatch {
        RedoBatch {
            cells: b
                .cells
                .iter()
                .map(|(k, v)| {
                    let value = if v.is_zero() { Vec::new() } else { v.encode() };
                    (k.encode(), value)
                })
                .collect(),
            visits: b
                .visits
                .iter()
                .map(|v| (v.partition, v.site_id, v.visitor_id, v.state.clone()))
                .collect(),
            mirrors: b.mirrors.clone(),
        }
    }

    fn into_batch(self) -> Result<WriteBatch, StoreError> {
        let mut cells = Vec::with_capacity(self.cells.len());
        for (k, v) in self.cells {
            let key = CellKey::decode(&k)
                .ok_or_else(|| storage("redo log", "a cell key does not decode"))?;
            let value = if v.is_empty() {
                CellValue::default()
            } else {
                CellValue::decode(&v).map_err(|e| storage("redo log", e))?
            };
            cells.push((key, value));
        }
        Ok(WriteBatch {
            consumer: String::new(),
            cells,
            visits: self
                .visits
                .into_iter()
                .map(|(partition, site_id, visitor_id, state)| VisitWrite {
                    partition,
                    site_id,
                    visitor_id,
                    state,
                })
                .collect(),
            checkpoints: Vec::new(),
            mirrors: self.mirrors,
        })
    }
}

struct Statements {
    insert_cell: PreparedStatement,
    delete_cell: PreparedStatement,
    insert_bucket: PreparedStatement,
    get_cell: PreparedStatement,
    scan_bucket: PreparedStatement,
    count_bucket: PreparedStatement,
    bucket_index: PreparedStatement,
    get_checkpoint: PreparedStatement,
    commit_checkpoint: PreparedStatement,
    mark_pending: PreparedStatement,
    insert_chunk: PreparedStatement,
    get_chunks: PreparedStatement,
    delete_log: PreparedStatement,
    insert_visit: PreparedStatement,
    delete_visit: PreparedStatement,
    load_visits: PreparedStatement,
    insert_mirror: PreparedStatement,
    get_mirrors: PreparedStatement,
    get_site: PreparedStatement,
    put_site: PreparedStatement,
    list_sites: PreparedStatement,
    get_domain: PreparedStatement,
    get_domain_serial: PreparedStatement,
    claim_domain: PreparedStatement,
    release_domain: PreparedStatement,
    get_mid: PreparedStatement,
    get_mid_serial: PreparedStatement,
    claim_mid: PreparedStatement,
    counter_get: PreparedStatement,
    counter_create: PreparedStatement,
    counter_cas: PreparedStatement,
    put_generation: PreparedStatement,
    site_generations: PreparedStatement,
    all_generations: PreparedStatement,
    served_get: PreparedStatement,
    served_get_serial: PreparedStatement,
    served_create: PreparedStatement,
    served_cas: PreparedStatement,
    put_key: PreparedStatement,
    get_key: PreparedStatement,
    salt_claim: PreparedStatement,
    salt_get: PreparedStatement,
    salt_names: PreparedStatement,
    salt_delete: PreparedStatement,
}

/// The Cassandra/ScyllaDB store; see the crate docs.
pub struct CassandraStore {
    session: Arc<Session>,
    st: Arc<Statements>,
    hourly_ttl_s: i32,
    /// Last redo-log sequence number handed out (UTC µs, strictly increasing).
    seq: AtomicI64,
}

/// How a statement is prepared.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Plain, at the address's consistency; safe to retry.
    Idempotent,
    /// A lightweight transaction: not retried blindly by the driver.
    Conditional,
    /// A read at serial consistency (sees every committed lightweight transaction).
    SerialRead,
}

/// A row of the `checkpoints` table as read (see [`CassandraStore::checkpoint_row`]).
type CheckpointRow = (Option<Vec<u8>>, Option<i64>, Option<i32>, Option<Vec<u8>>);

impl CassandraStore {
    /// Connects, checks that the keyspace is at [`schema::LATEST`] and prepares every
    /// statement.
    ///
    /// # Errors
    /// [`StoreError::Open`]: the cluster cannot be reached (see [`connect`]), the keyspace
    /// does not exist or is at another schema version (run `footfall migrate`), or a
    /// statement cannot be prepared.
    pub async fn open(a: &CassandraAddress) -> Result<CassandraStore, StoreError> {
        let session = connect(a).await?;
        let open = |reason: String| StoreError::Open {
            path: format!("cassandra://{}/{}", a.nodes.join(","), a.keyspace),
            reason,
        };
        match schema_version(&session, &a.keyspace).await? {
            Some(v) if v == schema::LATEST => {}
            Some(v) if v > schema::LATEST => {
                return Err(open(format!(
                    "keyspace {} is at schema version {v}, newer than this binary's {}; upgrade footfall",
                    a.keyspace,
                    schema::LATEST
                )))
            }
            Some(v) => {
                return Err(open(format!(
                    "keyspace {} is at schema version {v}, this binary needs {}; run `footfall migrate`",
                    a.keyspace,
                    schema::LATEST
                )))
            }
            None => {
                return Err(open(format!(
                    "keyspace {} has no Footfall tables; run `footfall migrate` to create them",
                    a.keyspace
                )))
            }
        }
        let serial = match a.serial_consistency {
            SerialConsistency::Serial => Consistency::Serial,
            SerialConsistency::LocalSerial => Consistency::LocalSerial,
        };
        let ks = a.keyspace.as_str();
        let p = |cql: &'static str, kind: Kind| {
            let session = &session;
            async move {
                let mut st = session
                    .prepare(cql.replace("{ks}", ks))
                    .await
                    .map_err(|e| open(format!("preparing `{cql}` failed: {e}")))?;
                st.set_is_idempotent(kind != Kind::Conditional);
                if kind == Kind::SerialRead {
                    st.set_consistency(serial);
                }
                Ok::<PreparedStatement, StoreError>(st)
            }
        };
        use Kind::{Conditional as Cas, Idempotent as Plain, SerialRead as Serial};
        let st = Statements {
            insert_cell: p("INSERT INTO {ks}.cells (site_id, generation, granularity, dimension, bucket, value, cell) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?", Plain).await?,
            delete_cell: p("DELETE FROM {ks}.cells WHERE site_id = ? AND generation = ? AND granularity = ? AND dimension = ? AND bucket = ? AND value = ?", Plain).await?,
            insert_bucket: p("INSERT INTO {ks}.cell_buckets (site_id, generation, granularity, dimension, bucket) VALUES (?, ?, ?, ?, ?) USING TTL ?", Plain).await?,
            get_cell: p("SELECT cell FROM {ks}.cells WHERE site_id = ? AND generation = ? AND granularity = ? AND dimension = ? AND bucket = ? AND value = ?", Plain).await?,
            scan_bucket: p("SELECT value, cell FROM {ks}.cells WHERE site_id = ? AND generation = ? AND granularity = ? AND dimension = ? AND bucket = ?", Plain).await?,
            count_bucket: p("SELECT value FROM {ks}.cells WHERE site_id = ? AND generation = ? AND granularity = ? AND dimension = ? AND bucket = ? LIMIT ?", Plain).await?,
            bucket_index: p("SELECT bucket FROM {ks}.cell_buckets WHERE site_id = ? AND generation = ? AND granularity = ? AND dimension = ? AND bucket >= ? AND bucket <= ?", Plain).await?,
            get_checkpoint: p("SELECT checkpoint, pending_seq, pending_chunks, pending_checkpoint FROM {ks}.checkpoints WHERE consumer = ? AND log_partition = ?", Plain).await?,
            commit_checkpoint: p("UPDATE {ks}.checkpoints SET checkpoint = ?, pending_seq = null, pending_chunks = null, pending_checkpoint = null WHERE consumer = ? AND log_partition = ?", Plain).await?,
            mark_pending: p("UPDATE {ks}.checkpoints SET pending_seq = ?, pending_chunks = ?, pending_checkpoint = ? WHERE consumer = ? AND log_partition = ?", Plain).await?,
            insert_chunk: p("INSERT INTO {ks}.batch_log (consumer, log_partition, seq, chunk, data) VALUES (?, ?, ?, ?, ?)", Plain).await?,
            // A batch's chunks are up to 256 KiB each: a few per page.
            get_chunks: {
                let mut st = p("SELECT chunk, data FROM {ks}.batch_log WHERE consumer = ? AND log_partition = ? AND seq = ?", Plain).await?;
                st.set_page_size(4);
                st
            },
            delete_log: p("DELETE FROM {ks}.batch_log WHERE consumer = ? AND log_partition = ? AND seq <= ?", Plain).await?,
            insert_visit: p("INSERT INTO {ks}.visits (log_partition, shard, site_id, visitor_id, state) VALUES (?, ?, ?, ?, ?)", Plain).await?,
            delete_visit: p("DELETE FROM {ks}.visits WHERE log_partition = ? AND shard = ? AND site_id = ? AND visitor_id = ?", Plain).await?,
            load_visits: p("SELECT state FROM {ks}.visits WHERE log_partition = ? AND shard = ?", Plain).await?,
            insert_mirror: p("INSERT INTO {ks}.mirrors (log_partition, generation, site_id, mirror) VALUES (?, ?, ?, ?)", Plain).await?,
            get_mirrors: p("SELECT mirror FROM {ks}.mirrors WHERE log_partition = ?", Plain).await?,
            get_site: p("SELECT site FROM {ks}.sites WHERE id = ?", Plain).await?,
            put_site: p("INSERT INTO {ks}.sites (id, site) VALUES (?, ?)", Plain).await?,
            list_sites: p("SELECT site FROM {ks}.sites", Plain).await?,
            get_domain: p("SELECT id FROM {ks}.site_domains WHERE domain = ?", Plain).await?,
            get_domain_serial: p("SELECT id FROM {ks}.site_domains WHERE domain = ?", Serial).await?,
            claim_domain: p("INSERT INTO {ks}.site_domains (domain, id) VALUES (?, ?) IF NOT EXISTS", Cas).await?,
            release_domain: p("DELETE FROM {ks}.site_domains WHERE domain = ? IF id = ?", Cas).await?,
            get_mid: p("SELECT id FROM {ks}.site_measurement_ids WHERE measurement_id = ?", Plain).await?,
            get_mid_serial: p("SELECT id FROM {ks}.site_measurement_ids WHERE measurement_id = ?", Serial).await?,
            claim_mid: p("INSERT INTO {ks}.site_measurement_ids (measurement_id, id) VALUES (?, ?) IF NOT EXISTS", Cas).await?,
            counter_get: p("SELECT value FROM {ks}.counters WHERE name = ?", Serial).await?,
            counter_create: p("INSERT INTO {ks}.counters (name, value) VALUES (?, ?) IF NOT EXISTS", Cas).await?,
            counter_cas: p("UPDATE {ks}.counters SET value = ? WHERE name = ? IF value = ?", Cas).await?,
            put_generation: p("INSERT INTO {ks}.generations (site_id, id, generation) VALUES (?, ?, ?)", Plain).await?,
            site_generations: p("SELECT generation FROM {ks}.generations WHERE site_id = ?", Plain).await?,
            all_generations: p("SELECT generation FROM {ks}.generations", Plain).await?,
            served_get: p("SELECT history FROM {ks}.served WHERE site_id = ?", Plain).await?,
            served_get_serial: p("SELECT history, version FROM {ks}.served WHERE site_id = ?", Serial).await?,
            served_create: p("INSERT INTO {ks}.served (site_id, history, version) VALUES (?, ?, 1) IF NOT EXISTS", Cas).await?,
            served_cas: p("UPDATE {ks}.served SET history = ?, version = ? WHERE site_id = ? IF version = ?", Cas).await?,
            put_key: p("INSERT INTO {ks}.api_keys (hash, key) VALUES (?, ?)", Plain).await?,
            get_key: p("SELECT key FROM {ks}.api_keys WHERE hash = ?", Plain).await?,
            salt_claim: p("INSERT INTO {ks}.salts (name, salt) VALUES (?, ?) IF NOT EXISTS", Cas).await?,
            salt_get: p("SELECT salt FROM {ks}.salts WHERE name = ?", Serial).await?,
            salt_names: p("SELECT name FROM {ks}.salts", Plain).await?,
            salt_delete: p("DELETE FROM {ks}.salts WHERE name = ? IF EXISTS", Cas).await?,
        };
        Ok(CassandraStore {
            session: Arc::new(session),
            st: Arc::new(st),
            hourly_ttl_s: a.hourly_ttl_s,
            seq: AtomicI64::new(0),
        })
    }

    /// Runs a statement and returns nothing.
    async fn exec(
        &self,
        what: &str,
        st: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(st, values)
            .await
            .map(drop)
            .map_err(|e| storage(what, e))
    }

    /// Runs a lightweight transaction; true when it was applied.
    async fn cas(
        &self,
        what: &str,
        st: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<bool, StoreError> {
        let result = self
            .session
            .execute_unpaged(st, values)
            .await
            .map_err(|e| storage(what, e))?;
        let rows = result.into_rows_result().map_err(|e| storage(what, e))?;
        let row: Option<Row> = rows.maybe_first_row().map_err(|e| storage(what, e))?;
        // The first column of a conditional statement's answer is `[applied]`.
        Ok(matches!(
            row.as_ref().and_then(|r| r.columns.first()),
            Some(Some(CqlValue::Boolean(true)))
        ))
    }

    /// Every row of a (paged) query.
    async fn rows<R>(
        &self,
        what: &str,
        st: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Vec<R>, StoreError>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm> + Send + 'static,
    {
        let pager = self
            .session
            .execute_iter(st.clone(), values)
            .await
            .map_err(|e| storage(what, e))?;
        pager
            .rows_stream::<R>()
            .map_err(|e| storage(what, e))?
            .try_collect()
            .await
            .map_err(|e| storage(what, e))
    }

    /// The first row of an unpaged query, if any.
    async fn first<R>(
        &self,
        what: &str,
        st: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Option<R>, StoreError>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm>,
    {
        let result = self
            .session
            .execute_unpaged(st, values)
            .await
            .map_err(|e| storage(what, e))?;
        let rows = result.into_rows_result().map_err(|e| storage(what, e))?;
        rows.maybe_first_row::<R>().map_err(|e| storage(what, e))
    }

    /// Runs `futures` with at most [`CONCURRENCY`] in flight; the first error wins.
    async fn all<'a>(futures: Vec<BoxFuture<'a>>) -> Result<(), StoreError> {
        futures_util::stream::iter(futures)
            .buffer_unordered(CONCURRENCY)
            .try_for_each(|()| async { Ok(()) })
            .await
    }

    /// Writes the cells, visits and mirrors of a batch (idempotent).
    async fn apply(&self, b: &WriteBatch) -> Result<(), StoreError> {
        let st = &self.st;
        let mut work: Vec<BoxFuture<'_>> = Vec::new();
        let mut buckets = std::collections::BTreeSet::new();
        for (k, v) in &b.cells {
            let pk = cell_pk(k);
            if v.is_zero() {
                work.push(Box::pin(self.exec(
                    "cell delete",
                    &st.delete_cell,
                    (pk.0, pk.1, pk.2, pk.3, pk.4, k.value.as_str()),
                )));
            } else {
                let ttl = self.ttl(k.granularity);
                buckets.insert((pk, ttl));
                work.push(Box::pin(self.exec(
                    "cell write",
                    &st.insert_cell,
                    (
                        pk.0,
                        pk.1,
                        pk.2,
                        pk.3,
                        pk.4,
                        k.value.as_str(),
                        v.encode(),
                        ttl,
                    ),
                )));
            }
        }
        for (pk, ttl) in buckets {
            work.push(Box::pin(self.exec(
                "bucket index write",
                &st.insert_bucket,
                (pk.0, pk.1, pk.2, pk.3, pk.4, ttl),
            )));
        }
        for v in &b.visits {
            let key = (
                v.partition as i32,
                visit_shard(v.visitor_id),
                v.site_id as i64,
                v.visitor_id as i64,
            );
            match &v.state {
                Some(state) => work.push(Box::pin(self.exec(
                    "visit write",
                    &st.insert_visit,
                    (key.0, key.1, key.2, key.3, state.as_slice()),
                ))),
                None => work.push(Box::pin(self.exec("visit delete", &st.delete_visit, key))),
            }
        }
        for m in &b.mirrors {
            let json = serde_json::to_string(m).map_err(|e| storage("mirror", e))?;
            work.push(Box::pin(async move {
                self.exec(
                    "mirror write",
                    &st.insert_mirror,
                    (
                        m.partition as i32,
                        m.generation as i32,
                        m.site_id as i64,
                        json,
                    ),
                )
                .await
            }));
        }
        Self::all(work).await
    }

    fn ttl(&self, granularity: Granularity) -> i32 {
        if granularity == Granularity::Hour {
            self.hourly_ttl_s
        } else {
            0
        }
    }

    /// A redo-log sequence number above every earlier one of this process.
    fn next_seq(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let mut prev = self.seq.load(Ordering::SeqCst);
        loop {
            let next = now.max(prev + 1);
            match self
                .seq
                .compare_exchange(prev, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return next,
                Err(p) => prev = p,
            }
        }
    }

    async fn commit_checkpoint(&self, consumer: &str, cp: &Checkpoint) -> Result<(), StoreError> {
        let bytes = postcard::to_stdvec(cp).map_err(|e| storage("checkpoint", e))?;
        self.exec(
            "checkpoint write",
            &self.st.commit_checkpoint,
            (bytes, consumer, cp.partition as i32),
        )
        .await
    }

    /// Allocates the next value of counter `name`, starting at `first`.
    async fn allocate(&self, name: &str, first: i64) -> Result<i64, StoreError> {
        for attempt in 0..CAS_ATTEMPTS {
            contention_pause(attempt).await;
            let current: Option<(Option<i64>,)> = self
                .first("counter read", &self.st.counter_get, (name,))
                .await?;
            match current.and_then(|c| c.0) {
                None => {
                    if self
                        .cas("counter create", &self.st.counter_create, (name, first + 1))
                        .await?
                    {
                        return Ok(first);
                    }
                }
                Some(v) => {
                    if self
                        .cas("counter update", &self.st.counter_cas, (v + 1, name, v))
                        .await?
                    {
                        return Ok(v);
                    }
                }
            }
        }
        Err(storage(
            "id allocation",
            format!("{name} stayed contended for {CAS_ATTEMPTS} attempts"),
        ))
    }

    async fn site_by(
        &self,
        what: &str,
        index: &PreparedStatement,
        name: &str,
    ) -> Result<Option<Site>, StoreError> {
        let id: Option<(i64,)> = self.first(what, index, (name,)).await?;
        match id {
            Some((id,)) => self.site(id as u64).await,
            None => Ok(None),
        }
    }

    /// Changes a site's served-span history by compare-and-set; returns what `change`
    /// returned.
    async fn change_served<T>(
        &self,
        site_id: u64,
        change: impl Fn(&mut Vec<Vec<ServedSpan>>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        for attempt in 0..CAS_ATTEMPTS {
            contention_pause(attempt).await;
            let row: Option<(Option<String>, Option<i64>)> = self
                .first("served read", &self.st.served_get_serial, (site_id as i64,))
                .await?;
            let (mut history, version) = match row {
                Some((Some(h), Some(v))) => (
                    serde_json::from_str::<Vec<Vec<ServedSpan>>>(&h)
                        .map_err(|e| storage("served spans", e))?,
                    Some(v),
                ),
                _ => (Vec::new(), None),
            };
            let out = change(&mut history)?;
            let json = serde_json::to_string(&history).map_err(|e| storage("served spans", e))?;
            let applied = match version {
                None => {
                    self.cas(
                        "served create",
                        &self.st.served_create,
                        (site_id as i64, json),
                    )
                    .await?
                }
                Some(v) => {
                    self.cas(
                        "served update",
                        &self.st.served_cas,
                        (json, v + 1, site_id as i64, v),
                    )
                    .await?
                }
            };
            if applied {
                return Ok(out);
            }
        }
        Err(storage(
            "served spans",
            format!("site {site_id} stayed contended"),
        ))
    }

    /// A consumer's checkpoint row: (committed checkpoint, pending sequence, pending chunk
    /// count, pending checkpoint), each absent when not set.
    async fn checkpoint_row(
        &self,
        consumer: &str,
        partition: u32,
    ) -> Result<Option<CheckpointRow>, StoreError> {
        self.first(
            "checkpoint read",
            &self.st.get_checkpoint,
            (consumer, partition as i32),
        )
        .await
    }

    /// Finishes a batch that a dead writer marked but did not complete (see the crate docs).
    async fn roll_forward(
        &self,
        consumer: &str,
        partition: u32,
        seq: i64,
        chunks: i32,
        pending: &[u8],
        committed: Option<&[u8]>,
    ) -> Result<Checkpoint, StoreError> {
        let cp: Checkpoint = postcard::from_bytes(pending).map_err(|e| storage("redo log", e))?;
        let committed: Option<Checkpoint> = committed
            .map(|b| postcard::from_bytes(b).map_err(|e| storage("checkpoint", e)))
            .transpose()?;
        if let Some(c) = committed.filter(|c| c.offset >= cp.offset) {
            // A marker that outlived its own commit: the batch is applied; clear the marker.
            self.commit_checkpoint(consumer, &c).await?;
            return Ok(c);
        }
        let mut parts: Vec<(i32, Vec<u8>)> = self
            .rows(
                "redo log read",
                &self.st.get_chunks,
                (consumer, partition as i32, seq),
            )
            .await?;
        parts.sort_by_key(|p| p.0);
        if parts.len() != chunks as usize || parts.iter().enumerate().any(|(i, p)| p.0 != i as i32)
        {
            return Err(storage(
                "redo log",
                format!(
                    "batch {seq} of {consumer} partition {partition} has {} of its {chunks} chunks",
                    parts.len()
                ),
            ));
        }
        let bytes: Vec<u8> = parts.into_iter().flat_map(|p| p.1).collect();
        let redo: RedoBatch = postcard::from_bytes(&bytes).map_err(|e| storage("redo log", e))?;
        tracing::warn!(
            consumer,
            partition,
            offset = cp.offset,
            "finishing a batch that the partition's previous writer left half-written"
        );
        self.apply(&redo.into_batch()?).await?;
        self.commit_checkpoint(consumer, &cp).await?;
        let _ = self
            .exec(
                "redo log delete",
                &self.st.delete_log,
                (consumer, partition as i32, seq),
            )
            .await;
        Ok(cp)
    }

    async fn get_cell(&self, k: &CellKey) -> Result<Option<CellValue>, StoreError> {
        let pk = cell_pk(k);
        let row: Option<(Vec<u8>,)> = self
            .first(
                "cell read",
                &self.st.get_cell,
                (pk.0, pk.1, pk.2, pk.3, pk.4, k.value.as_str()),
            )
            .await?;
        row.map(|(bytes,)| CellValue::decode(&bytes).map_err(|e| storage("cell", e)))
            .transpose()
    }

    /// Every cell of one bucket of a range, by value.
    async fn scan_bucket(
        &self,
        range: &CellRange,
        bucket: i64,
    ) -> Result<Vec<(CellKey, CellValue)>, StoreError> {
        let rows: Vec<(String, Vec<u8>)> = self
            .rows(
                "cell scan",
                &self.st.scan_bucket,
                (
                    range.site_id as i64,
                    range.generation as i32,
                    range.granularity.code() as i8,
                    range.dimension.code() as i8,
                    bucket,
                ),
            )
            .await?;
        rows.into_iter()
            .map(|(value, bytes)| {
                let key = CellKey {
                    site_id: range.site_id,
                    generation: range.generation,
                    granularity: range.granularity,
                    dimension: range.dimension,
                    bucket,
                    value,
                };
                CellValue::decode(&bytes)
                    .map(|v| (key, v))
                    .map_err(|e| storage("cell", e))
            })
            .collect()
    }

    /// Buckets of a range that hold cells, ascending.
    async fn buckets(&self, r: &CellRange) -> Result<Vec<i64>, StoreError> {
        let rows: Vec<(i64,)> = self
            .rows(
                "bucket index read",
                &self.st.bucket_index,
                (
                    r.site_id as i64,
                    r.generation as i32,
                    r.granularity.code() as i8,
                    r.dimension.code() as i8,
                    r.from,
                    r.to,
                ),
            )
            .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Cells in a range, counted up to `limit` (≥ 1); a one-bucket range (the processor's
    /// cap) is counted without the bucket index.
    async fn count_range(&self, r: &CellRange, limit: u64) -> Result<u64, StoreError> {
        if r.from > r.to {
            return Ok(0);
        }
        if r.from == r.to {
            return self.count_bucket(r, r.from, limit).await;
        }
        let mut n = 0;
        for bucket in self.buckets(r).await? {
            n += self.count_bucket(r, bucket, limit - n).await?;
            if n >= limit {
                break;
            }
        }
        Ok(n)
    }

    /// Cells in one bucket, counted up to `limit`.
    async fn count_bucket(
        &self,
        r: &CellRange,
        bucket: i64,
        limit: u64,
    ) -> Result<u64, StoreError> {
        let rows: Vec<(String,)> = self
            .rows(
                "cell count",
                &self.st.count_bucket,
                (
                    r.site_id as i64,
                    r.generation as i32,
                    r.granularity.code() as i8,
                    r.dimension.code() as i8,
                    bucket,
                    limit.min(i32::MAX as u64) as i32,
                ),
            )
            .await?;
        Ok(rows.len() as u64)
    }
}

/// The partition key columns of a cell.
type CellPk = (i64, i32, i8, i8, i64);

fn cell_pk(k: &CellKey) -> CellPk {
    (
        k.site_id as i64,
        k.generation as i32,
        k.granularity.code() as i8,
        k.dimension.code() as i8,
        k.bucket,
    )
}

/// Before a compare-and-set retry: nothing the first time, then a few ms, growing, with
/// jitter from the clock so that contenders spread out.
async fn contention_pause(attempt: usize) {
    if attempt == 0 {
        return;
    }
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()) % 5);
    let ms = (attempt as u64).min(20) * 2 + jitter;
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

fn visit_shard(visitor_id: u64) -> i16 {
    (visitor_id % VISIT_SHARDS as u64) as i16
}

fn decode_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| storage(what, e))
}

#[async_trait]
impl Store for CassandraStore {
    async fn write_batch(&self, batch: Arc<WriteBatch>) -> Result<(), StoreError> {
        let has_rows =
            !batch.cells.is_empty() || !batch.visits.is_empty() || !batch.mirrors.is_empty();
        let [cp] = batch.checkpoints.as_slice() else {
            // No single position to guard (a reprocess's cells, or several positions): the
            // rows first, then the positions.
            self.apply(&batch).await?;
            for cp in &batch.checkpoints {
                self.commit_checkpoint(&batch.consumer, cp).await?;
            }
            return Ok(());
        };
        if !has_rows {
            return self.commit_checkpoint(&batch.consumer, cp).await;
        }
        let consumer = batch.consumer.as_str();
        let partition = cp.partition as i32;
        let seq = self.next_seq();
        let bytes =
            postcard::to_stdvec(&RedoBatch::of(&batch)).map_err(|e| storage("redo log", e))?;
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK_BYTES).collect();
        let writes: Vec<BoxFuture<'_>> = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| -> BoxFuture<'_> {
                Box::pin(self.exec(
                    "redo log write",
                    &self.st.insert_chunk,
                    (consumer, partition, seq, i as i32, *c),
                ))
            })
            .collect();
        Self::all(writes).await?;
        let pending = postcard::to_stdvec(cp).map_err(|e| storage("checkpoint", e))?;
        self.exec(
            "redo marker write",
            &self.st.mark_pending,
            (seq, chunks.len() as i32, pending, consumer, partition),
        )
        .await?;
        self.apply(&batch).await?;
        self.commit_checkpoint(consumer, cp).await?;
        if let Err(e) = self
            .exec(
                "redo log delete",
                &self.st.delete_log,
                (consumer, partition, seq),
            )
            .await
        {
            tracing::debug!(error = %e, "the redo log of an applied batch stays until the next one is deleted (older seqs go with it)");
        }
        Ok(())
    }

    async fn get_cells(&self, keys: &[CellKey]) -> Result<Vec<Option<CellValue>>, StoreError> {
        let reads: Vec<Boxed<'_, Option<CellValue>>> = keys
            .iter()
            .map(|k| Box::pin(self.get_cell(k)) as _)
            .collect();
        futures_util::stream::iter(reads)
            .buffered(CONCURRENCY)
            .try_collect()
            .await
    }

    async fn scan_cells(&self, range: &CellRange) -> Result<Vec<(CellKey, CellValue)>, StoreError> {
        if range.from > range.to {
            return Ok(Vec::new());
        }
        let buckets = self.buckets(range).await?;
        let scans: Vec<Boxed<'_, Vec<(CellKey, CellValue)>>> = buckets
            .into_iter()
            .map(|b| Box::pin(self.scan_bucket(range, b)) as _)
            .collect();
        let per_bucket: Vec<Vec<(CellKey, CellValue)>> = futures_util::stream::iter(scans)
            .buffered(CONCURRENCY / 4)
            .try_collect()
            .await?;
        Ok(per_bucket.into_iter().flatten().collect())
    }

    async fn count_cells(&self, ranges: &[CellRange], limit: u64) -> Result<Vec<u64>, StoreError> {
        if limit == 0 {
            return Ok(vec![0; ranges.len()]);
        }
        let counts: Vec<Boxed<'_, u64>> = ranges
            .iter()
            .map(|r| Box::pin(self.count_range(r, limit)) as _)
            .collect();
        futures_util::stream::iter(counts)
            .buffered(CONCURRENCY / 4)
            .try_collect()
            .await
    }

    async fn first_day(&self, site_id: u64, generation: u32) -> Result<Option<i64>, StoreError> {
        let total = CellRange {
            site_id,
            generation,
            granularity: Granularity::Day,
            dimension: Dimension::Total,
            from: i64::MIN,
            to: i64::MAX,
        };
        // The index may name a bucket whose cells were all deleted since.
        for bucket in self.buckets(&total).await? {
            if self.count_bucket(&total, bucket, 1).await? > 0 {
                return Ok(Some(bucket));
            }
        }
        Ok(None)
    }

    async fn checkpoint(
        &self,
        consumer: &str,
        partition: u32,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let row = self.checkpoint_row(consumer, partition).await?;
        // Readers (the query API's freshness) see the committed position, never a pending one.
        row.and_then(|r| r.0)
            .map(|b| postcard::from_bytes(&b).map_err(|e| storage("checkpoint", e)))
            .transpose()
    }

    async fn restore_checkpoint(
        &self,
        consumer: &str,
        partition: u32,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let row = self.checkpoint_row(consumer, partition).await?;
        match row {
            None => Ok(None),
            Some((committed, Some(seq), Some(chunks), Some(pending))) => self
                .roll_forward(
                    consumer,
                    partition,
                    seq,
                    chunks,
                    &pending,
                    committed.as_deref(),
                )
                .await
                .map(Some),
            Some((cp, _, _, _)) => cp
                .map(|b| postcard::from_bytes(&b).map_err(|e| storage("checkpoint", e)))
                .transpose(),
        }
    }

    async fn mirrors(&self, partition: u32) -> Result<Vec<Mirror>, StoreError> {
        let rows: Vec<(String,)> = self
            .rows("mirror read", &self.st.get_mirrors, (partition as i32,))
            .await?;
        rows.iter().map(|(j,)| decode_json("mirror", j)).collect()
    }

    async fn load_visits(&self, partition: u32) -> Result<Vec<Vec<u8>>, StoreError> {
        let reads: Vec<Boxed<'_, Vec<(Vec<u8>,)>>> = (0..VISIT_SHARDS)
            .map(|shard| {
                Box::pin(self.rows(
                    "visit read",
                    &self.st.load_visits,
                    (partition as i32, shard),
                )) as _
            })
            .collect();
        let shards: Vec<Vec<(Vec<u8>,)>> = futures_util::stream::iter(reads)
            .buffered(CONCURRENCY / 4)
            .try_collect()
            .await?;
        Ok(shards.into_iter().flatten().map(|r| r.0).collect())
    }

    async fn create_site(&self, new: NewSite) -> Result<Site, StoreError> {
        let taken_domain = || StoreError::Conflict(format!("a site with domain {:?}", new.domain));
        let taken_mid = || {
            StoreError::Conflict(format!(
                "a site with measurement id {:?}",
                new.measurement_id
            ))
        };
        // Checked first so that a refused site does not use up an id; the claims below
        // settle races.
        let d: Option<(i64,)> = self
            .first(
                "domain read",
                &self.st.get_domain_serial,
                (new.domain.as_str(),),
            )
            .await?;
        if d.is_some() {
            return Err(taken_domain());
        }
        let m: Option<(i64,)> = self
            .first(
                "measurement id read",
                &self.st.get_mid_serial,
                (new.measurement_id.as_str(),),
            )
            .await?;
        if m.is_some() {
            return Err(taken_mid());
        }
        let id = self.allocate("next_site_id", 1).await?;
        if !self
            .cas(
                "domain claim",
                &self.st.claim_domain,
                (new.domain.as_str(), id),
            )
            .await?
        {
            return Err(taken_domain());
        }
        if !self
            .cas(
                "measurement id claim",
                &self.st.claim_mid,
                (new.measurement_id.as_str(), id),
            )
            .await?
        {
            self.cas(
                "domain release",
                &self.st.release_domain,
                (new.domain.as_str(), id),
            )
            .await?;
            return Err(taken_mid());
        }
        let site = new.into_site(id as u64);
        let json = serde_json::to_string(&site).map_err(|e| storage("site", e))?;
        self.exec("site write", &self.st.put_site, (id, json))
            .await?;
        Ok(site)
    }

    async fn update_site(&self, site: &Site) -> Result<(), StoreError> {
        let old = self
            .site(site.id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("site {}", site.id)))?;
        let updated = Site {
            timezone: site.timezone.clone(),
            currency: site.currency.clone(),
            keep_query_params: site.keep_query_params.clone(),
            hash_routing: site.hash_routing,
            ..old
        };
        let json = serde_json::to_string(&updated).map_err(|e| storage("site", e))?;
        self.exec("site write", &self.st.put_site, (site.id as i64, json))
            .await
    }

    async fn site(&self, id: u64) -> Result<Option<Site>, StoreError> {
        let row: Option<(String,)> = self
            .first("site read", &self.st.get_site, (id as i64,))
            .await?;
        row.map(|(j,)| decode_json("site", &j)).transpose()
    }

    async fn site_by_domain(&self, domain: &str) -> Result<Option<Site>, StoreError> {
        self.site_by("domain read", &self.st.get_domain, domain)
            .await
    }

    async fn site_by_measurement_id(
        &self,
        measurement_id: &str,
    ) -> Result<Option<Site>, StoreError> {
        self.site_by("measurement id read", &self.st.get_mid, measurement_id)
            .await
    }

    async fn list_sites(&self) -> Result<Vec<Site>, StoreError> {
        let rows: Vec<(String,)> = self.rows("site list", &self.st.list_sites, ()).await?;
        let mut sites: Vec<Site> = rows
            .iter()
            .map(|(j,)| decode_json("site", j))
            .collect::<Result<_, _>>()?;
        sites.sort_by_key(|s| s.id);
        Ok(sites)
    }

    async fn allocate_generation(&self) -> Result<u32, StoreError> {
        let id = self.allocate("next_generation", 2).await?;
        u32::try_from(id).map_err(|_| StoreError::Storage("generation ids are exhausted".into()))
    }

    async fn put_generation(&self, g: &Generation) -> Result<(), StoreError> {
        let json = serde_json::to_string(g).map_err(|e| storage("generation", e))?;
        self.exec(
            "generation write",
            &self.st.put_generation,
            (g.site_id as i64, g.id as i32, json),
        )
        .await
    }

    async fn generations(&self, site_id: Option<u64>) -> Result<Vec<Generation>, StoreError> {
        let rows: Vec<(String,)> = match site_id {
            Some(s) => {
                self.rows("generation read", &self.st.site_generations, (s as i64,))
                    .await?
            }
            None => {
                self.rows("generation read", &self.st.all_generations, ())
                    .await?
            }
        };
        let mut out: Vec<Generation> = rows
            .iter()
            .map(|(j,)| decode_json("generation", j))
            .collect::<Result<_, _>>()?;
        out.sort_by_key(|g| (g.site_id, g.id));
        Ok(out)
    }

    async fn served(&self, site_id: u64) -> Result<Vec<ServedSpan>, StoreError> {
        let row: Option<(Option<String>,)> = self
            .first("served read", &self.st.served_get, (site_id as i64,))
            .await?;
        match row.and_then(|r| r.0) {
            Some(j) => {
                let mut history: Vec<Vec<ServedSpan>> = decode_json("served spans", &j)?;
                Ok(history.pop().unwrap_or_default())
            }
            None => Ok(Vec::new()),
        }
    }

    async fn serve_span(
        &self,
        site_id: u64,
        from_day: i64,
        to_day: i64,
        generation: u32,
    ) -> Result<Vec<ServedSpan>, StoreError> {
        self.change_served(site_id, |history| {
            let current = history.last().cloned().unwrap_or_default();
            let spans = footfall_store::with_span(&current, from_day, to_day, generation);
            history.push(spans.clone());
            Ok(spans)
        })
        .await
    }

    async fn pop_served(&self, site_id: u64) -> Result<Vec<ServedSpan>, StoreError> {
        self.change_served(site_id, |history| {
            if history.pop().is_none() {
                return Err(StoreError::NotFound(format!(
                    "an earlier served generation for site {site_id}"
                )));
            }
            Ok(history.last().cloned().unwrap_or_default())
        })
        .await
    }

    async fn put_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let json = serde_json::to_string(key).map_err(|e| storage("key", e))?;
        self.exec("key write", &self.st.put_key, (key.hash.as_str(), json))
            .await
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let row: Option<(String,)> = self.first("key read", &self.st.get_key, (hash,)).await?;
        row.map(|(j,)| decode_json("key", &j)).transpose()
    }

    async fn salt(&self, name: &str, candidate: [u8; 32]) -> Result<[u8; 32], StoreError> {
        if self
            .cas(
                "salt claim",
                &self.st.salt_claim,
                (name, candidate.as_slice()),
            )
            .await?
        {
            return Ok(candidate);
        }
        let row: Option<(Vec<u8>,)> = self.first("salt read", &self.st.salt_get, (name,)).await?;
        row.and_then(|(b,)| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| storage("salt", format!("salt {name:?} is missing or not 32 bytes")))
    }

    async fn salt_names(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = self.rows("salt list", &self.st.salt_names, ()).await?;
        let mut names: Vec<String> = rows.into_iter().map(|r| r.0).collect();
        names.sort();
        Ok(names)
    }

    async fn delete_salt(&self, name: &str) -> Result<(), StoreError> {
        self.cas("salt delete", &self.st.salt_delete, (name,))
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use footfall_model::rollup::Dimension;

    #[test]
    fn a_redo_batch_round_trips_cells_deletes_visits_and_mirrors() {
        let mut value = CellValue {
            visits: 3,
            pageviews: 5,
            ..Default::default()
        };
        value.visitors.insert(42);
        let key = |v: &str| CellKey {
            site_id: 7,
            generation: 1 | footfall_store::MIRROR_BIT,
            granularity: Granularity::Hour,
            dimension: Dimension::Page,
            bucket: -3,
            value: v.into(),
        };
        let batch = WriteBatch {
            consumer: "processor".into(),
            cells: vec![
                (key("/a"), value.clone()),
                (key("/gone"), CellValue::default()),
            ],
            visits: vec![
                VisitWrite {
                    partition: 2,
                    site_id: 7,
                    visitor_id: u64::MAX,
                    state: Some(vec![1, 2, 3]),
                },
                VisitWrite {
                    partition: 2,
                    site_id: 7,
                    visitor_id: 9,
                    state: None,
                },
            ],
            checkpoints: vec![],
            mirrors: vec![Mirror {
                partition: 2,
                generation: 4,
                site_id: 7,
                from_day: 10,
                to_day: 12,
                cut_offset: 99,
            }],
        };
        let bytes = postcard::to_stdvec(&RedoBatch::of(&batch)).expect("encode");
        let back: RedoBatch = postcard::from_bytes(&bytes).expect("decode");
        let back = back.into_batch().expect("batch");
        assert_eq!(back.cells[0], (key("/a"), value));
        assert!(back.cells[1].1.is_zero(), "a delete stays a delete");
        assert_eq!(back.visits, batch.visits);
        assert_eq!(back.mirrors, batch.mirrors);
    }

    #[test]
    fn ids_map_onto_signed_columns_and_back() {
        // CQL has no unsigned types: u64 ids and u32 generations are stored by their bits.
        for id in [0u64, 1, u64::MAX, 1 << 63] {
            assert_eq!((id as i64) as u64, id);
        }
        let g = 3 | footfall_store::MIRROR_BIT;
        assert_eq!((g as i32) as u32, g);
        assert!(visit_shard(u64::MAX) < VISIT_SHARDS && visit_shard(0) == 0);
    }

    /// The store conformance suite against a real cluster, when `FOOTFALL_TEST_CASSANDRA`
    /// names a node (`host:port`): each run migrates a fresh keyspace and drops it after.
    #[tokio::test]
    #[cfg_attr(
        not(footfall_cassandra),
        ignore = "set FOOTFALL_TEST_CASSANDRA=host:port to run it against a node"
    )]
    async fn the_cassandra_store_passes_the_store_conformance_suite() {
        let node = std::env::var("FOOTFALL_TEST_CASSANDRA").expect("FOOTFALL_TEST_CASSANDRA");
        let ks = format!(
            "footfall_test_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        let address =
            CassandraAddress::parse(&format!("cassandra://{node}/{ks}")).expect("address");
        assert_eq!(migrate(&address).await.expect("migrate"), [1]);
        assert!(migrate(&address).await.expect("migrate again").is_empty());
        let store = CassandraStore::open(&address).await.expect("open");
        footfall_store::conformance::run_all(&store).await;
        redo_log_finishes_a_half_written_batch(&store).await;
        let session = connect(&address).await.expect("connect");
        session
            .query_unpaged(format!("DROP KEYSPACE {ks}"), ())
            .await
            .expect("drop keyspace");
    }

    /// A writer that died after marking its batch: the next checkpoint read finishes it.
    async fn redo_log_finishes_a_half_written_batch(store: &CassandraStore) {
        let key = CellKey {
            site_id: 900,
            generation: 1,
            granularity: Granularity::Day,
            dimension: Dimension::Total,
            bucket: 20_000,
            value: String::new(),
        };
        let value = CellValue {
            visits: 11,
            ..Default::default()
        };
        let batch = WriteBatch {
            consumer: "redo-test".into(),
            cells: vec![(key.clone(), value.clone())],
            ..Default::default()
        };
        let cp = Checkpoint {
            partition: 5,
            offset: 1234,
            complete_through_us: 1,
        };
        // Steps 1 and 2 of a write, then the writer "dies".
        let seq = store.next_seq();
        let bytes = postcard::to_stdvec(&RedoBatch::of(&batch)).expect("encode");
        store
            .exec(
                "test",
                &store.st.insert_chunk,
                ("redo-test", 5i32, seq, 0i32, bytes.as_slice()),
            )
            .await
            .expect("chunk");
        store
            .exec(
                "test",
                &store.st.mark_pending,
                (
                    seq,
                    1i32,
                    postcard::to_stdvec(&cp).expect("cp"),
                    "redo-test",
                    5i32,
                ),
            )
            .await
            .expect("marker");
        assert_eq!(
            store
                .get_cells(std::slice::from_ref(&key))
                .await
                .expect("read"),
            [None]
        );
        assert_eq!(
            store.checkpoint("redo-test", 5).await.expect("cp"),
            Some(cp)
        );
        assert_eq!(store.get_cells(&[key]).await.expect("read"), [Some(value)]);
        // Finished once: the marker is gone.
        assert_eq!(
            store.checkpoint("redo-test", 5).await.expect("cp"),
            Some(cp)
        );
    }
}
