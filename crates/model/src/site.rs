//! Site metadata.

use chrono_tz::Tz;
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
}

impl Site {
    /// The parsed time zone; UTC if the stored name is unknown to this build's tz database.
    pub fn tz(&self) -> Tz {
        self.timezone.parse().unwrap_or(Tz::UTC)
    }
}
