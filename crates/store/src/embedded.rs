//! The embedded store: one `redb` database file (a well-kept ACID B-tree engine).
//!
//! Tables: `cells` (encoded [`CellKey`] → encoded [`CellValue`]), `checkpoints`
//! ((consumer, partition) → postcard [`Checkpoint`]), `visits` ((partition, site, visitor) →
//! processor bytes), `sites` (id → JSON), `site_domains`, `site_measurement_ids` (→ id),
//! `api_keys` (hash → JSON), `salts` (name → 32 bytes), `meta` (name → u64),
//! `generations` ((site, id) → JSON), `served` (site → JSON history of served spans),
//! `mirrors` ((partition, generation, site) → JSON).
//! A [`WriteBatch`] is one write transaction, committed with fsync.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use footfall_model::rollup::{CellKey, CellValue, Dimension, Granularity};
use footfall_model::site::Site;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::{
    ApiKey, CellRange, Checkpoint, Generation, Mirror, NewSite, ServedSpan, Store, StoreError,
    WriteBatch,
};

const CELLS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("cells");
const CHECKPOINTS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("checkpoints");
const VISITS: TableDefinition<(u32, u64, u64), &[u8]> = TableDefinition::new("visits");
const SITES: TableDefinition<u64, &[u8]> = TableDefinition::new("sites");
const SITE_DOMAINS: TableDefinition<&str, u64> = TableDefinition::new("site_domains");
const SITE_MIDS: TableDefinition<&str, u64> = TableDefinition::new("site_measurement_ids");
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys");
const SALTS: TableDefinition<&str, &[u8]> = TableDefinition::new("salts");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const GENERATIONS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("generations");
const SERVED: TableDefinition<u64, &[u8]> = TableDefinition::new("served");
const MIRRORS: TableDefinition<(u32, u32, u64), &[u8]> = TableDefinition::new("mirrors");

fn storage(e: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(e.to_string())
}

/// The embedded store; see the module docs.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

/// The default file of the embedded store under a data directory.
pub fn default_path(data_dir: &Path) -> PathBuf {
    data_dir.join("store").join("store.redb")
}

impl EmbeddedStore {
    /// Opens (or creates) the store file with a 64 MiB page cache.
    ///
    /// # Errors
    /// [`StoreError::Open`] when the file is in use by another process or unreadable.
    pub fn open(path: &Path) -> Result<EmbeddedStore, StoreError> {
        Self::open_with_cache(path, 64 << 20)
    }

    /// Opens (or creates) the store file with a page cache of `cache_bytes` (bounds the
    /// store's share of memory).
    ///
    /// # Errors
    /// [`StoreError::Open`] when the file is in use by another process or unreadable.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<EmbeddedStore, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        }
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => open_err(
                    "it is in use by another process (is `footfall serve` running?)".into(),
                ),
                other => open_err(other.to_string()),
            })?;
        let txn = db.begin_write().map_err(|e| open_err(e.to_string()))?;
        {
            let init = |r: Result<(), redb::TableError>| r.map_err(|e| open_err(e.to_string()));
            init(txn.open_table(CELLS).map(drop))?;
            init(txn.open_table(CHECKPOINTS).map(drop))?;
            init(txn.open_table(VISITS).map(drop))?;
            init(txn.open_table(SITES).map(drop))?;
            init(txn.open_table(SITE_DOMAINS).map(drop))?;
            init(txn.open_table(SITE_MIDS).map(drop))?;
            init(txn.open_table(KEYS).map(drop))?;
            init(txn.open_table(SALTS).map(drop))?;
            init(txn.open_table(META).map(drop))?;
            init(txn.open_table(GENERATIONS).map(drop))?;
            init(txn.open_table(SERVED).map(drop))?;
            init(txn.open_table(MIRRORS).map(drop))?;
        }
        txn.commit().map_err(|e| open_err(e.to_string()))?;
        Ok(EmbeddedStore { db: Arc::new(db) })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(storage)?
    }
}

fn decode_site(bytes: &[u8]) -> Result<Site, StoreError> {
    serde_json::from_slice(bytes).map_err(storage)
}

fn read_site_by_index(
    db: &Database,
    index: TableDefinition<'static, &'static str, u64>,
    name: &str,
) -> Result<Option<Site>, StoreError> {
    let txn = db.begin_read().map_err(storage)?;
    let Some(id) = txn
        .open_table(index)
        .map_err(storage)?
        .get(name)
        .map_err(storage)?
        .map(|v| v.value())
    else {
        return Ok(None);
    };
    let sites = txn.open_table(SITES).map_err(storage)?;
    let found = sites.get(id).map_err(storage)?;
    found.map(|v| decode_site(v.value())).transpose()
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn write_batch(&self, batch: Arc<WriteBatch>) -> Result<(), StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(storage)?;
            {
                let mut cells = txn.open_table(CELLS).map_err(storage)?;
                for (key, value) in &batch.cells {
                    let k = key.encode();
                    if value.is_zero() {
                        cells.remove(k.as_slice()).map_err(storage)?;
                    } else {
                        cells
                            .insert(k.as_slice(), value.encode().as_slice())
                            .map_err(storage)?;
                    }
                }
                let mut visits = txn.open_table(VISITS).map_err(storage)?;
                for v in &batch.visits {
                    let k = (v.partition, v.site_id, v.visitor_id);
                    match &v.state {
                        Some(state) => {
                            visits.insert(k, state.as_slice()).map_err(storage)?;
                        }
                        None => {
                            visits.remove(k).map_err(storage)?;
                        }
                    }
                }
                let mut mirrors = txn.open_table(MIRRORS).map_err(storage)?;
                for m in &batch.mirrors {
                    let json = serde_json::to_vec(m).map_err(storage)?;
                    mirrors
                        .insert((m.partition, m.generation, m.site_id), json.as_slice())
                        .map_err(storage)?;
                }
                let mut cps = txn.open_table(CHECKPOINTS).map_err(storage)?;
                for cp in &batch.checkpoints {
                    let bytes = postcard::to_stdvec(cp).map_err(storage)?;
                    cps.insert((batch.consumer.as_str(), cp.partition), bytes.as_slice())
                        .map_err(storage)?;
                }
            }
            txn.commit().map_err(storage)
        })
        .await
    }

    async fn get_cells(&self, keys: &[CellKey]) -> Result<Vec<Option<CellValue>>, StoreError> {
        let encoded: Vec<Vec<u8>> = keys.iter().map(CellKey::encode).collect();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let cells = txn.open_table(CELLS).map_err(storage)?;
            encoded
                .iter()
                .map(|k| match cells.get(k.as_slice()).map_err(storage)? {
                    Some(v) => CellValue::decode(v.value()).map(Some).map_err(storage),
                    None => Ok(None),
                })
                .collect()
        })
        .await
    }

    async fn scan_cells(&self, range: &CellRange) -> Result<Vec<(CellKey, CellValue)>, StoreError> {
        if range.from > range.to {
            return Ok(Vec::new());
        }
        let (start, end) = key_bounds(range);
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let cells = txn.open_table(CELLS).map_err(storage)?;
            let mut out = Vec::new();
            for item in cells
                .range(start.as_slice()..end.as_slice())
                .map_err(storage)?
            {
                let (k, v) = item.map_err(storage)?;
                let key = CellKey::decode(k.value())
                    .ok_or_else(|| StoreError::Storage("a stored cell key is corrupt".into()))?;
                out.push((key, CellValue::decode(v.value()).map_err(storage)?));
            }
            Ok(out)
        })
        .await
    }

    async fn count_cells(&self, ranges: &[CellRange], limit: u64) -> Result<Vec<u64>, StoreError> {
        let bounds: Vec<Option<(Vec<u8>, Vec<u8>)>> = ranges
            .iter()
            .map(|r| (r.from <= r.to).then(|| key_bounds(r)))
            .collect();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let cells = txn.open_table(CELLS).map_err(storage)?;
            let mut out = Vec::with_capacity(bounds.len());
            for b in &bounds {
                let mut n = 0;
                if let Some((start, end)) = b {
                    for item in cells
                        .range(start.as_slice()..end.as_slice())
                        .map_err(storage)?
                    {
                        item.map_err(storage)?;
                        n += 1;
                        if n >= limit {
                            break;
                        }
                    }
                }
                out.push(n);
            }
            Ok(out)
        })
        .await
    }

    async fn first_day(&self, site_id: u64, generation: u32) -> Result<Option<i64>, StoreError> {
        let start = CellKey::prefix(
            site_id,
            generation,
            Granularity::Day,
            Dimension::Total,
            i64::MIN,
        )
        .to_vec();
        let end = CellKey::prefix(
            site_id,
            generation,
            Granularity::Day,
            Dimension::Page,
            i64::MIN,
        )
        .to_vec();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let cells = txn.open_table(CELLS).map_err(storage)?;
            let first = cells
                .range(start.as_slice()..end.as_slice())
                .map_err(storage)?
                .next();
            match first {
                Some(item) => {
                    let (k, _) = item.map_err(storage)?;
                    Ok(CellKey::decode(k.value()).map(|k| k.bucket))
                }
                None => Ok(None),
            }
        })
        .await
    }

    async fn checkpoint(
        &self,
        consumer: &str,
        partition: u32,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let consumer = consumer.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let t = txn.open_table(CHECKPOINTS).map_err(storage)?;
            let found = t.get((consumer.as_str(), partition)).map_err(storage)?;
            found
                .map(|v| postcard::from_bytes(v.value()).map_err(storage))
                .transpose()
        })
        .await
    }

    async fn load_visits(&self, partition: u32) -> Result<Vec<Vec<u8>>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let t = txn.open_table(VISITS).map_err(storage)?;
            let mut out = Vec::new();
            for item in t
                .range((partition, 0, 0)..=(partition, u64::MAX, u64::MAX))
                .map_err(storage)?
            {
                out.push(item.map_err(storage)?.1.value().to_vec());
            }
            Ok(out)
        })
        .await
    }

    async fn create_site(&self, new: NewSite) -> Result<Site, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(storage)?;
            let site;
            {
                let mut domains = txn.open_table(SITE_DOMAINS).map_err(storage)?;
                if domains.get(new.domain.as_str()).map_err(storage)?.is_some() {
                    return Err(StoreError::Conflict(format!(
                        "a site with domain {:?}",
                        new.domain
                    )));
                }
                let mut mids = txn.open_table(SITE_MIDS).map_err(storage)?;
                if mids
                    .get(new.measurement_id.as_str())
                    .map_err(storage)?
                    .is_some()
                {
                    return Err(StoreError::Conflict(format!(
                        "a site with measurement id {:?}",
                        new.measurement_id
                    )));
                }
                let mut meta = txn.open_table(META).map_err(storage)?;
                let id = meta
                    .get("next_site_id")
                    .map_err(storage)?
                    .map_or(1, |v| v.value());
                meta.insert("next_site_id", id + 1).map_err(storage)?;
                site = new.into_site(id);
                domains.insert(site.domain.as_str(), id).map_err(storage)?;
                mids.insert(site.measurement_id.as_str(), id)
                    .map_err(storage)?;
                let json = serde_json::to_vec(&site).map_err(storage)?;
                txn.open_table(SITES)
                    .map_err(storage)?
                    .insert(id, json.as_slice())
                    .map_err(storage)?;
            }
            txn.commit().map_err(storage)?;
            Ok(site)
        })
        .await
    }

    async fn update_site(&self, site: &Site) -> Result<(), StoreError> {
        let site = site.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(storage)?;
            {
                let mut sites = txn.open_table(SITES).map_err(storage)?;
                let old = match sites.get(site.id).map_err(storage)? {
                    Some(v) => decode_site(v.value())?,
                    None => return Err(StoreError::NotFound(format!("site {}", site.id))),
                };
                let updated = Site {
                    timezone: site.timezone,
                    currency: site.currency,
                    keep_query_params: site.keep_query_params,
                    hash_routing: site.hash_routing,
                    ..old
                };
                let json = serde_json::to_vec(&updated).map_err(storage)?;
                sites.insert(site.id, json.as_slice()).map_err(storage)?;
            }
            txn.commit().map_err(storage)
        })
        .await
    }

    async fn site(&self, id: u64) -> Result<Option<Site>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let t = txn.open_table(SITES).map_err(storage)?;
            let found = t.get(id).map_err(storage)?;
            found.map(|v| decode_site(v.value())).transpose()
        })
        .await
    }

    async fn site_by_domain(&self, domain: &str) -> Result<Option<Site>, StoreError> {
        let domain = domain.to_string();
        self.blocking(move |db| read_site_by_index(db, SITE_DOMAINS, &domain))
            .await
    }

    async fn site_by_measurement_id(
        &self,
        measurement_id: &str,
    ) -> Result<Option<Site>, StoreError> {
        let mid = measurement_id.to_string();
        self.blocking(move |db| read_site_by_index(db, SITE_MIDS, &mid))
            .await
    }

    async fn list_sites(&self) -> Result<Vec<Site>, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(storage)?;
            let t = txn.open_table(SITES).map_err(storage)?;
            let mut out = Vec::new();
            for item in t.iter().map_err(storage)? {
                out.push(decode_site(item.map_err(storage)?.1.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn mirrors(&self, partition: u32) -> Result<Vec<Mirror>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let table = txn.open_table(MIRRORS).map_err(storage)?;
            table
                .range((partition, 0, 0)..=(partition, u32::MAX, u64::MAX))
                .map_err(storage)?
                .map(|item| {
                    let (_, v) = item.map_err(storage)?;
                    serde_json::from_slice(v.value()).map_err(storage)
                })
                .collect()
        })
        .await
    }

    async fn allocate_generation(&self) -> Result<u32, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_write().map_err(storage)?;
            let id = {
                let mut meta = txn.open_table(META).map_err(storage)?;
                let id = meta
                    .get("next_generation")
                    .map_err(storage)?
                    .map_or(2, |v| v.value());
                meta.insert("next_generation", id + 1).map_err(storage)?;
                id
            };
            txn.commit().map_err(storage)?;
            u32::try_from(id)
                .map_err(|_| StoreError::Storage("generation ids are exhausted".into()))
        })
        .await
    }

    async fn put_generation(&self, generation: &Generation) -> Result<(), StoreError> {
        let g = generation.clone();
        self.blocking(move |db| {
            let json = serde_json::to_vec(&g).map_err(storage)?;
            let txn = db.begin_write().map_err(storage)?;
            txn.open_table(GENERATIONS)
                .map_err(storage)?
                .insert((g.site_id, g.id), json.as_slice())
                .map_err(storage)?;
            txn.commit().map_err(storage)
        })
        .await
    }

    async fn generations(&self, site_id: Option<u64>) -> Result<Vec<Generation>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let table = txn.open_table(GENERATIONS).map_err(storage)?;
            let range = match site_id {
                Some(s) => table.range((s, 0)..=(s, u32::MAX)),
                None => table.range::<(u64, u32)>(..),
            }
            .map_err(storage)?;
            range
                .map(|item| {
                    let (_, v) = item.map_err(storage)?;
                    serde_json::from_slice(v.value()).map_err(storage)
                })
                .collect()
        })
        .await
    }

    async fn served(&self, site_id: u64) -> Result<Vec<ServedSpan>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let table = txn.open_table(SERVED).map_err(storage)?;
            Ok(read_served(&table, site_id)?.pop().unwrap_or_default())
        })
        .await
    }

    async fn serve_span(
        &self,
        site_id: u64,
        from_day: i64,
        to_day: i64,
        generation: u32,
    ) -> Result<Vec<ServedSpan>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(storage)?;
            let spans = {
                let mut table = txn.open_table(SERVED).map_err(storage)?;
                let mut history = read_served(&table, site_id)?;
                let current = history.last().cloned().unwrap_or_default();
                let spans = crate::with_span(&current, from_day, to_day, generation);
                history.push(spans.clone());
                let json = serde_json::to_vec(&history).map_err(storage)?;
                table.insert(site_id, json.as_slice()).map_err(storage)?;
                spans
            };
            txn.commit().map_err(storage)?;
            Ok(spans)
        })
        .await
    }

    async fn pop_served(&self, site_id: u64) -> Result<Vec<ServedSpan>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(storage)?;
            let current = {
                let mut table = txn.open_table(SERVED).map_err(storage)?;
                let mut history = read_served(&table, site_id)?;
                if history.pop().is_none() {
                    return Err(StoreError::NotFound(format!(
                        "an earlier served generation for site {site_id}"
                    )));
                }
                let json = serde_json::to_vec(&history).map_err(storage)?;
                table.insert(site_id, json.as_slice()).map_err(storage)?;
                history.pop().unwrap_or_default()
            };
            txn.commit().map_err(storage)?;
            Ok(current)
        })
        .await
    }

    async fn put_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let key = key.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(storage)?;
            let json = serde_json::to_vec(&key).map_err(storage)?;
            txn.open_table(KEYS)
                .map_err(storage)?
                .insert(key.hash.as_str(), json.as_slice())
                .map_err(storage)?;
            txn.commit().map_err(storage)
        })
        .await
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let hash = hash.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let t = txn.open_table(KEYS).map_err(storage)?;
            let found = t.get(hash.as_str()).map_err(storage)?;
            found
                .map(|v| serde_json::from_slice(v.value()).map_err(storage))
                .transpose()
        })
        .await
    }

    async fn salt(&self, name: &str, candidate: [u8; 32]) -> Result<[u8; 32], StoreError> {
        let name = name.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(storage)?;
            let salt;
            {
                let mut t = txn.open_table(SALTS).map_err(storage)?;
                let existing = t
                    .get(name.as_str())
                    .map_err(storage)?
                    .map(|v| v.value().to_vec());
                salt = match existing {
                    Some(bytes) => bytes
                        .try_into()
                        .map_err(|_| StoreError::Storage(format!("salt {name:?} is corrupt")))?,
                    None => {
                        t.insert(name.as_str(), candidate.as_slice())
                            .map_err(storage)?;
                        candidate
                    }
                };
            }
            txn.commit().map_err(storage)?;
            Ok(salt)
        })
        .await
    }

    async fn salt_names(&self) -> Result<Vec<String>, StoreError> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(storage)?;
            let t = txn.open_table(SALTS).map_err(storage)?;
            let mut out = Vec::new();
            for item in t.iter().map_err(storage)? {
                out.push(item.map_err(storage)?.0.value().to_string());
            }
            Ok(out)
        })
        .await
    }

    async fn delete_salt(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(storage)?;
            txn.open_table(SALTS)
                .map_err(storage)?
                .remove(name.as_str())
                .map_err(storage)?;
            txn.commit().map_err(storage)
        })
        .await
    }
}

fn read_served(
    table: &impl ReadableTable<u64, &'static [u8]>,
    site_id: u64,
) -> Result<Vec<Vec<ServedSpan>>, StoreError> {
    match table.get(site_id).map_err(storage)? {
        Some(v) => serde_json::from_slice(v.value()).map_err(storage),
        None => Ok(Vec::new()),
    }
}

/// The encoded key bounds `start..end` of a cell range's keys.
fn key_bounds(range: &CellRange) -> (Vec<u8>, Vec<u8>) {
    let start = CellKey::prefix(
        range.site_id,
        range.generation,
        range.granularity,
        range.dimension,
        range.from,
    )
    .to_vec();
    let end = match range.to.checked_add(1) {
        Some(next) => CellKey::prefix(
            range.site_id,
            range.generation,
            range.granularity,
            range.dimension,
            next,
        )
        .to_vec(),
        None => {
            let mut e = CellKey::prefix(
                range.site_id,
                range.generation,
                range.granularity,
                range.dimension,
                range.to,
            )
            .to_vec();
            e.push(0xff);
            e
        }
    };
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
        crate::conformance::run_all(&store).await;
    }

    #[tokio::test]
    async fn second_open_of_a_file_in_use_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let _first = EmbeddedStore::open(&path).unwrap();
        let err = EmbeddedStore::open(&path).err().unwrap().to_string();
        assert!(err.contains("in use by another process"), "{err}");
    }
}
