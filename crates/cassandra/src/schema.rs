//! The keyspace's tables and their versioned migrations (`footfall migrate`).
//!
//! Each migration is a list of CQL statements that are safe to run twice (`IF NOT EXISTS`),
//! so a migration interrupted half-way is finished by the next `footfall migrate`. Applied
//! versions are recorded in `schema_migrations`; a store opened by `footfall serve` refuses a
//! keyspace whose newest version is not [`LATEST`]. The table design and the partition sizes
//! it implies are explained in `docs/cassandra.md`.

/// One versioned migration.
pub struct Migration {
    /// Version, from 1, without gaps.
    pub version: i32,
    /// What it does, as recorded in `schema_migrations`.
    pub description: &'static str,
    /// Statements, with `{ks}` standing for the keyspace.
    pub statements: &'static [&'static str],
}

/// The newest schema version this binary reads and writes.
pub const LATEST: i32 = 1;

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "cells, bucket index, checkpoints with redo log, visits, mirrors, sites, keys, salts, generations, served spans",
    statements: &[
        // Rollup cells: one Cassandra partition per (site, generation, granularity,
        // dimension, bucket), one row per value; bounded by the processor's per-bucket cap.
        "CREATE TABLE IF NOT EXISTS {ks}.cells (
            site_id bigint, generation int, granularity tinyint, dimension tinyint,
            bucket bigint, value text, cell blob,
            PRIMARY KEY ((site_id, generation, granularity, dimension, bucket), value)
        ) WITH compaction = {'class': 'LeveledCompactionStrategy'}",
        // Which buckets of a (site, generation, granularity, dimension) hold cells: range
        // scans read only those partitions, and first_day reads its first row.
        "CREATE TABLE IF NOT EXISTS {ks}.cell_buckets (
            site_id bigint, generation int, granularity tinyint, dimension tinyint,
            bucket bigint,
            PRIMARY KEY ((site_id, generation, granularity, dimension), bucket)
        )",
        // A consumer's position per log partition, and the redo marker of a batch being
        // applied (pending_*): see the crate docs.
        "CREATE TABLE IF NOT EXISTS {ks}.checkpoints (
            consumer text, log_partition int, checkpoint blob,
            pending_seq bigint, pending_chunks int, pending_checkpoint blob,
            PRIMARY KEY ((consumer, log_partition))
        )",
        // The redo log: a batch's encoded rows, in chunks, until it is applied. Clustered by
        // seq so that one range delete removes a batch's log and any older leftovers.
        "CREATE TABLE IF NOT EXISTS {ks}.batch_log (
            consumer text, log_partition int, seq bigint, chunk int, data blob,
            PRIMARY KEY ((consumer, log_partition), seq, chunk)
        ) WITH gc_grace_seconds = 3600",
        // Open visits, spread over shards so that no partition collects too many tombstones
        // (every ended visit deletes its row); one day of gc grace, so repair daily.
        "CREATE TABLE IF NOT EXISTS {ks}.visits (
            log_partition int, shard smallint, site_id bigint, visitor_id bigint, state blob,
            PRIMARY KEY ((log_partition, shard), site_id, visitor_id)
        ) WITH gc_grace_seconds = 86400",
        "CREATE TABLE IF NOT EXISTS {ks}.mirrors (
            log_partition int, generation int, site_id bigint, mirror text,
            PRIMARY KEY ((log_partition), generation, site_id)
        )",
        "CREATE TABLE IF NOT EXISTS {ks}.sites (id bigint PRIMARY KEY, site text)",
        "CREATE TABLE IF NOT EXISTS {ks}.site_domains (domain text PRIMARY KEY, id bigint)",
        "CREATE TABLE IF NOT EXISTS {ks}.site_measurement_ids (measurement_id text PRIMARY KEY, id bigint)",
        "CREATE TABLE IF NOT EXISTS {ks}.api_keys (hash text PRIMARY KEY, key text)",
        "CREATE TABLE IF NOT EXISTS {ks}.salts (name text PRIMARY KEY, salt blob)",
        // Id allocators (next_site_id, next_generation), advanced by lightweight transactions.
        "CREATE TABLE IF NOT EXISTS {ks}.counters (name text PRIMARY KEY, value bigint)",
        "CREATE TABLE IF NOT EXISTS {ks}.generations (
            site_id bigint, id int, generation text,
            PRIMARY KEY ((site_id), id)
        )",
        // The history of a site's served spans (JSON), changed by compare-and-set on version.
        "CREATE TABLE IF NOT EXISTS {ks}.served (site_id bigint PRIMARY KEY, history text, version bigint)",
    ],
}];

/// The table that records applied migrations; created by `footfall migrate` before any.
pub const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS {ks}.schema_migrations (
    version int PRIMARY KEY, description text, applied_at timestamp
)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_run_from_one_without_gaps_up_to_latest() {
        let versions: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(versions, (1..=LATEST).collect::<Vec<_>>());
    }

    #[test]
    fn every_statement_is_safe_to_run_twice_and_names_the_keyspace() {
        for m in MIGRATIONS {
            for s in m.statements {
                assert!(s.starts_with("CREATE TABLE IF NOT EXISTS {ks}."), "{s}");
            }
        }
        assert!(MIGRATIONS_TABLE.starts_with("CREATE TABLE IF NOT EXISTS {ks}."));
    }
}
