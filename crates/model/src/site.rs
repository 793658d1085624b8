//! Site metadata.

use chrono_tz::Tz;

use crate::url_parts::PathRules;
use serde::{Deserialize, Serialize};

/// A merchant's site, as kept in the store and shown by `footfall sites list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// Internal numeric id, allocated by the store.
    pub id: u64,
    /// The site's domain (`shop.example`); also its `site_id` in the query API and its
    /// `domain` in the Plausible Events API.
    pub domain: String,
    /// IANA time zone name (`Europe/Berlin`); rollup buckets use it.
    pub timezone: String,
    /// ISO 4217 currency code in which revenue is summed.
    pub currency: String,
    /// GA4-style measurement id (`G-` + 10 upper-case alphanumerics).
    pub measurement_id: String,
    /// BLAKE3 hash (hex) of the Measurement Protocol API secret; the secret itself is shown
    /// once at creation and never stored.
    pub api_secret_hash: String,
    /// Creation time, UTC µs.
    pub created_at_us: i64,
    /// Query parameters kept in page paths (`q` keeps `/search?q=shoes`), lower case; every
    /// other parameter is dropped. Empty by default.
    #[serde(default)]
    pub keep_query_params: Vec<String>,
    /// Whether page paths include the URL fragment (`/#/cart`), for single-page apps that
    /// route by hash. Off by default.
    #[serde(default)]
    pub hash_routing: bool,
}

impl Site {
    /// The site's rules for page paths.
    pub fn path_rules(&self) -> PathRules<'_> {
        PathRules {
            keep_query_params: &self.keep_query_params,
            hash_routing: self.hash_routing,
        }
    }

    /// The parsed time zone; UTC if the stored name is unknown to this build's tz database.
    pub fn tz(&self) -> Tz {
        self.timezone.parse().unwrap_or(Tz::UTC)
    }
}
