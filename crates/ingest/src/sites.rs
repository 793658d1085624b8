//! A short-lived cache of site metadata, so that every hit does not read the store.
//! Misses are cached too (a flood of hits for an unknown domain costs one read per TTL). When
//! the store is unavailable, expired entries keep being used: the collector goes on accepting
//! hits of known sites into the log while the store is down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use footfall_model::clock::Clock;
use footfall_model::site::Site;
use footfall_store::{Store, StoreError};

/// Entries kept before the cache is emptied (bounds memory under a flood of unknown names).
const MAX_ENTRIES: usize = 100_000;

type Map = Mutex<HashMap<String, (Option<Site>, i64)>>;

/// Site lookups by domain and by measurement id, cached for `ttl_us`.
pub struct SiteCache {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ttl_us: i64,
    by_domain: Map,
    by_measurement_id: Map,
}

impl SiteCache {
    /// A cache over `store` whose entries live `ttl_us` µs.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, ttl_us: i64) -> Self {
        // Exported at 0 from the start (docs/metrics.md).
        metrics::counter!("footfall_collector_stale_site_lookups_total").increment(0);
        SiteCache {
            store,
            clock,
            ttl_us,
            by_domain: Mutex::default(),
            by_measurement_id: Mutex::default(),
        }
    }

    /// The cached entry: `(entry, fresh)`.
    fn cached(&self, map: &Map, key: &str) -> Option<(Option<Site>, bool)> {
        let now = self.clock.now_us();
        let m = map.lock().ok()?;
        m.get(key)
            .map(|(s, at)| (s.clone(), now - at < self.ttl_us))
    }

    fn remember(&self, map: &Map, key: &str, site: Option<Site>) {
        if let Ok(mut m) = map.lock() {
            if m.len() >= MAX_ENTRIES {
                // Forget misses first, so a flood of made-up names does not evict real sites.
                m.retain(|_, (s, _)| s.is_some());
                if m.len() >= MAX_ENTRIES {
                    m.clear();
                }
            }
            m.insert(key.to_string(), (site, self.clock.now_us()));
        }
    }

    /// A fresh cached entry, else the store's answer, else — when the store fails — a stale
    /// cached entry (so that the collector keeps accepting hits of known sites while the store
    /// is down), else the store's error.
    async fn lookup<F>(&self, map: &Map, key: &str, fetch: F) -> Result<Option<Site>, StoreError>
    where
        F: std::future::Future<Output = Result<Option<Site>, StoreError>>,
    {
        let cached = self.cached(map, key);
        if let Some((site, true)) = &cached {
            return Ok(site.clone());
        }
        match fetch.await {
            Ok(site) => {
                self.remember(map, key, site.clone());
                Ok(site)
            }
            // Only a stale *site* is served: a stale "no such site" could be a site created
            // since, whose hits must get 503 (and be retried), not be dropped.
            Err(e) => match cached {
                Some((Some(site), _)) => {
                    metrics::counter!("footfall_collector_stale_site_lookups_total").increment(1);
                    Ok(Some(site))
                }
                _ => Err(e),
            },
        }
    }

    /// The site with this domain.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails and nothing is cached.
    pub async fn by_domain(&self, domain: &str) -> Result<Option<Site>, StoreError> {
        self.lookup(&self.by_domain, domain, self.store.site_by_domain(domain))
            .await
    }

    /// The site with this measurement id.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails and nothing is cached.
    pub async fn by_measurement_id(
        &self,
        measurement_id: &str,
    ) -> Result<Option<Site>, StoreError> {
        self.lookup(
            &self.by_measurement_id,
            measurement_id,
            self.store.site_by_measurement_id(measurement_id),
        )
        .await
    }
}

impl SiteCache {
    /// Forgets every entry (after a site is created or changed).
    pub fn invalidate(&self) {
        for map in [&self.by_domain, &self.by_measurement_id] {
            if let Ok(mut m) = map.lock() {
                m.clear();
            }
        }
    }
}
