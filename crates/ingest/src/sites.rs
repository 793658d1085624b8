//! A short-lived cache of site metadata, so that every hit does not read the store.
//! Misses are cached too (a flood of hits for an unknown domain costs one read per TTL).

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
        SiteCache {
            store,
            clock,
            ttl_us,
            by_domain: Mutex::default(),
            by_measurement_id: Mutex::default(),
        }
    }

    fn cached(&self, map: &Map, key: &str) -> Option<Option<Site>> {
        let now = self.clock.now_us();
        let m = map.lock().ok()?;
        m.get(key)
            .filter(|(_, at)| now - at < self.ttl_us)
            .map(|(s, _)| s.clone())
    }

    fn remember(&self, map: &Map, key: &str, site: Option<Site>) {
        if let Ok(mut m) = map.lock() {
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
            m.insert(key.to_string(), (site, self.clock.now_us()));
        }
    }

    /// The site with this domain.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    pub async fn by_domain(&self, domain: &str) -> Result<Option<Site>, StoreError> {
        if let Some(hit) = self.cached(&self.by_domain, domain) {
            return Ok(hit);
        }
        let site = self.store.site_by_domain(domain).await?;
        self.remember(&self.by_domain, domain, site.clone());
        Ok(site)
    }

    /// The site with this measurement id.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    pub async fn by_measurement_id(
        &self,
        measurement_id: &str,
    ) -> Result<Option<Site>, StoreError> {
        if let Some(hit) = self.cached(&self.by_measurement_id, measurement_id) {
            return Ok(hit);
        }
        let site = self.store.site_by_measurement_id(measurement_id).await?;
        self.remember(&self.by_measurement_id, measurement_id, site.clone());
        Ok(site)
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
