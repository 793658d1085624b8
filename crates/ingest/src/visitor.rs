//! Visitor identity (DESIGN §4.5).
//!
//! - Protocols with a client id (GA4 `client_id`): visitor = BLAKE3 keyed hash, under a
//!   secret key kept in the store, of (site, client id).
//! - Cookieless protocols: visitor = BLAKE3 keyed hash, under the **daily salt** of the UTC
//!   day of receipt, of (site, IP, User-Agent). Salts are 32 random bytes kept in the store
//!   as `day:YYYY-MM-DD`; the previous day's salt is used as well, so that a visit in
//!   progress at the rotation continues ([`Event::prev_visitor_id`]); salts older than the
//!   previous day are deleted by [`VisitorHasher::rotate`]. The same person is therefore a
//!   new visitor every UTC day: unique visitors over ranges longer than a day are an upper
//!   bound.
//!
//! A keyed hash (rather than a plain one) means nobody without the salt can test whether an
//! IP address maps to a visitor id, and once the salt is deleted, nobody at all can.
//!
//! [`Event::prev_visitor_id`]: footfall_model::Event::prev_visitor_id

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDate, Utc};
use footfall_store::{Store, StoreError};

/// Name of the secret key for client-id hashes in the store.
const CLIENT_KEY: &str = "key:client-id";
const DAY_PREFIX: &str = "day:";
/// Prefix of the salt names of access-log import runs: `import-run:YYYY-MM-DD:<site>:<id>`,
/// dated by the UTC day the run started. [`VisitorHasher::rotate`] deletes those older than
/// the previous day, so an abandoned run's salt does not outlive a completed one's by long.
pub const IMPORT_RUN_PREFIX: &str = "import-run:";

/// The date embedded in a salt name that starts with `prefix`, if any.
fn salt_date(name: &str, prefix: &str) -> Option<NaiveDate> {
    let rest = name.strip_prefix(prefix)?;
    NaiveDate::parse_from_str(rest.get(..10)?, "%Y-%m-%d").ok()
}

/// 32 random bytes from the operating system.
///
/// # Errors
/// [`StoreError::Storage`] if the OS has no randomness to give (it then cannot run safely).
pub fn random_key() -> Result<[u8; 32], StoreError> {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).map_err(|e| StoreError::Storage(format!("no OS randomness: {e}")))?;
    Ok(k)
}

/// Hash of (site, IP, User-Agent) under `salt`, the first 8 bytes as a little-endian u64.
pub fn cookieless_hash(salt: &[u8; 32], site_id: u64, ip: IpAddr, user_agent: &str) -> u64 {
    let mut h = blake3::Hasher::new_keyed(salt);
    h.update(&site_id.to_le_bytes());
    match ip {
        IpAddr::V4(v4) => h.update(&v4.octets()),
        IpAddr::V6(v6) => h.update(&v6.octets()),
    };
    h.update(&[0]);
    h.update(user_agent.as_bytes());
    first_u64(h.finalize())
}

fn first_u64(hash: blake3::Hash) -> u64 {
    let b = hash.as_bytes();
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Computes visitor ids; see the module docs.
pub struct VisitorHasher {
    store: Arc<dyn Store>,
    client_key: [u8; 32],
    salts: Mutex<BTreeMap<NaiveDate, [u8; 32]>>,
}

fn day_of(now_us: i64) -> NaiveDate {
    DateTime::<Utc>::from_timestamp_micros(now_us).map_or(NaiveDate::MIN, |t| t.date_naive())
}

impl VisitorHasher {
    /// Loads the client-id key and the existing daily salts, creating the key on first use.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    pub async fn new(store: Arc<dyn Store>) -> Result<Self, StoreError> {
        let client_key = store.salt(CLIENT_KEY, random_key()?).await?;
        let mut salts = BTreeMap::new();
        for name in store.salt_names().await? {
            if let Some(date) = name
                .strip_prefix(DAY_PREFIX)
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            {
                salts.insert(date, store.salt(&name, random_key()?).await?);
            }
        }
        Ok(VisitorHasher {
            store,
            client_key,
            salts: Mutex::new(salts),
        })
    }

    /// Visitor id of a GA4-style client id.
    pub fn client_id(&self, site_id: u64, client_id: &str) -> u64 {
        let mut h = blake3::Hasher::new_keyed(&self.client_key);
        h.update(&site_id.to_le_bytes());
        h.update(client_id.as_bytes());
        first_u64(h.finalize())
    }

    /// Hash of a client-supplied session id, so that raw ids are not kept.
    pub fn session_id(&self, site_id: u64, session_id: &str) -> u64 {
        let mut h = blake3::Hasher::new_keyed(&self.client_key);
        h.update(b"session");
        h.update(&site_id.to_le_bytes());
        h.update(session_id.as_bytes());
        first_u64(h.finalize())
    }

    /// (visitor id under today's salt, visitor id under yesterday's salt if it exists).
    ///
    /// # Errors
    /// [`StoreError`] when today's salt must be created and the store fails.
    pub async fn cookieless(
        &self,
        site_id: u64,
        ip: IpAddr,
        user_agent: &str,
        now_us: i64,
    ) -> Result<(u64, Option<u64>), StoreError> {
        let today = day_of(now_us);
        let (salt, prev) = {
            let salts = self
                .salts
                .lock()
                .map_err(|_| StoreError::Storage("salt cache poisoned".into()))?;
            (
                salts.get(&today).copied(),
                today.pred_opt().and_then(|y| salts.get(&y).copied()),
            )
        };
        let salt = match salt {
            Some(s) => s,
            None => {
                let s = self
                    .store
                    .salt(&format!("{DAY_PREFIX}{today}"), random_key()?)
                    .await?;
                if let Ok(mut salts) = self.salts.lock() {
                    salts.insert(today, s);
                }
                s
            }
        };
        Ok((
            cookieless_hash(&salt, site_id, ip, user_agent),
            prev.map(|p| cookieless_hash(&p, site_id, ip, user_agent)),
        ))
    }

    /// Deletes daily salts, and salts of import runs, dated before yesterday (UTC) from the
    /// store and the cache; returns how many were deleted.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    pub async fn rotate(&self, now_us: i64) -> Result<usize, StoreError> {
        let Some(keep_from) = day_of(now_us).pred_opt() else {
            return Ok(0);
        };
        let mut deleted = 0;
        for name in self.store.salt_names().await? {
            let date = salt_date(&name, DAY_PREFIX).or_else(|| salt_date(&name, IMPORT_RUN_PREFIX));
            if date.is_some_and(|d| d < keep_from) {
                self.store.delete_salt(&name).await?;
                deleted += 1;
            }
        }
        if let Ok(mut salts) = self.salts.lock() {
            salts.retain(|d, _| *d >= keep_from);
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use footfall_store::embedded::EmbeddedStore;

    const DAY_US: i64 = 86_400_000_000;

    #[tokio::test]
    async fn salts_rotate_daily_and_previous_day_continues_visits() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).unwrap());
        let h = VisitorHasher::new(store.clone()).await.unwrap();
        let ip: IpAddr = "203.0.113.5".parse().unwrap();
        let t0 = 1_700_000_000_000_000;
        let (d1, prev1) = h.cookieless(1, ip, "UA", t0).await.unwrap();
        assert_eq!(prev1, None);
        assert_eq!(
            h.cookieless(1, ip, "UA", t0 + 1000).await.unwrap().0,
            d1,
            "stable within a day"
        );
        assert_ne!(
            h.cookieless(2, ip, "UA", t0).await.unwrap().0,
            d1,
            "sites do not share visitors"
        );
        assert_ne!(h.cookieless(1, ip, "UA2", t0).await.unwrap().0, d1);
        let (d2, prev2) = h.cookieless(1, ip, "UA", t0 + DAY_US).await.unwrap();
        assert_ne!(d2, d1, "a new day has a new salt");
        assert_eq!(
            prev2,
            Some(d1),
            "the previous salt continues yesterday's visitor"
        );
        h.cookieless(1, ip, "UA", t0 + 2 * DAY_US).await.unwrap();
        // t0 is 2023-11-14 UTC; an abandoned import run of that day goes with its daily salt.
        store
            .salt("import-run:2023-11-14:shop.example:abc", [9; 32])
            .await
            .unwrap();
        store
            .salt("import-run:2023-11-16:shop.example:def", [9; 32])
            .await
            .unwrap();
        assert_eq!(
            h.rotate(t0 + 2 * DAY_US).await.unwrap(),
            2,
            "only the salts dated two days ago go"
        );
        let names = store.salt_names().await.unwrap();
        assert_eq!(names.iter().filter(|n| n.starts_with("day:")).count(), 2);
        assert_eq!(
            names
                .iter()
                .filter(|n| n.starts_with("import-run:"))
                .count(),
            1
        );
        // A restarted hasher reads the same salts.
        let again = VisitorHasher::new(store).await.unwrap();
        assert_eq!(again.client_id(1, "abc"), h.client_id(1, "abc"));
    }
}
