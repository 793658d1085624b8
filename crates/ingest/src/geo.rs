//! Country, region and city of a client address, resolved at ingest (the address itself is
//! then dropped).
//!
//! Two sources, both optional:
//! - an MMDB database (`geoip.database`): MaxMind GeoIP2/GeoLite2 City or Country, or DB-IP's
//!   equivalents, read with the `maxminddb` crate. Country is the ISO 3166-1 alpha-2 code;
//!   region the ISO 3166-2 code of the first subdivision (`DE-BE`); city the English name.
//! - a CDN's country header (`geoip.country_header`, e.g. Cloudflare's `CF-IPCountry`),
//!   believed only from a trusted proxy; it supplies the country when the database has none.
//!
//! Anything unknown stays `None` (shown as `(unknown)`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use axum::http::{HeaderMap, HeaderName};
use serde::Deserialize;

/// Errors of [`Geo::open`].
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The database cannot be read.
    #[error("cannot open the GeoIP database {path}: {reason}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The header name is not a valid HTTP header name.
    #[error("geoip.country_header {0:?} is not a valid header name")]
    Header(String),
}

/// A resolved location.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// ISO 3166-1 alpha-2 country code.
    pub country: Option<String>,
    /// ISO 3166-2 subdivision code (`DE-BE`).
    pub region: Option<String>,
    /// City name (English).
    pub city: Option<String>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(default)]
    country: Option<Iso>,
    #[serde(default)]
    subdivisions: Option<Vec<Iso>>,
    #[serde(default)]
    city: Option<Named>,
}

#[derive(Deserialize)]
struct Iso {
    #[serde(default)]
    iso_code: Option<String>,
}

#[derive(Deserialize)]
struct Named {
    #[serde(default)]
    names: Option<BTreeMap<String, String>>,
}

/// The configured geolocation sources.
#[derive(Default)]
pub struct Geo {
    reader: Option<maxminddb::Reader<Vec<u8>>>,
    header: Option<HeaderName>,
}

fn valid_country(code: &str) -> Option<String> {
    let code = code.trim().to_ascii_uppercase();
    // Cloudflare sends XX for unknown and T1 for Tor.
    (code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()) && code != "XX")
        .then_some(code)
}

impl Geo {
    /// Opens the sources; both are optional.
    ///
    /// # Errors
    /// [`GeoError`] when the database cannot be read or the header name is invalid.
    pub fn open(database: Option<&Path>, country_header: Option<&str>) -> Result<Geo, GeoError> {
        let reader = database
            .map(|p| {
                maxminddb::Reader::open_readfile(p).map_err(|e| GeoError::Open {
                    path: p.display().to_string(),
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        let header = country_header
            .map(|h| {
                HeaderName::from_bytes(h.trim().as_bytes())
                    .map_err(|_| GeoError::Header(h.to_string()))
            })
            .transpose()?;
        Ok(Geo { reader, header })
    }

    /// Locates a client. `trusted_peer` says whether the request came through a trusted
    /// proxy, whose country header may then be believed.
    pub fn locate(&self, ip: IpAddr, headers: &HeaderMap, trusted_peer: bool) -> Location {
        let mut loc = Location::default();
        if let Some(reader) = &self.reader {
            if let Ok(Some(r)) = reader.lookup(ip).and_then(|found| found.decode::<Record>()) {
                loc.country = r
                    .country
                    .and_then(|c| c.iso_code)
                    .and_then(|c| valid_country(&c));
                if let (Some(country), Some(sub)) = (
                    &loc.country,
                    r.subdivisions
                        .and_then(|s| s.into_iter().next())
                        .and_then(|s| s.iso_code)
                        .filter(|s| !s.trim().is_empty()),
                ) {
                    loc.region = Some(format!("{country}-{}", sub.trim()));
                }
                loc.city = r
                    .city
                    .and_then(|c| c.names)
                    .and_then(|mut n| n.remove("en"));
            }
        }
        if loc.country.is_none() && trusted_peer {
            if let Some(h) = &self.header {
                loc.country = headers
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .and_then(valid_country);
            }
        }
        loc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize)]
    struct W {
        country: WIso,
        subdivisions: Vec<WIso>,
        city: WNamed,
    }
    #[derive(Serialize)]
    struct WIso {
        iso_code: String,
    }
    #[derive(Serialize)]
    struct WNamed {
        names: BTreeMap<String, String>,
    }

    /// Builds a two-network MMDB file of our own: 192.0.2.0/24 is Berlin, 2001:db8::/32 Paris.
    pub(crate) fn test_db(dir: &Path) -> std::path::PathBuf {
        let mut w = mmdb_writer::Writer::new("Footfall-Test-City");
        let city = |c: &str, s: &str, name: &str| W {
            country: WIso { iso_code: c.into() },
            subdivisions: vec![WIso { iso_code: s.into() }],
            city: WNamed {
                names: [("en".to_string(), name.to_string())].into(),
            },
        };
        w.insert(
            "192.0.2.0/24".parse::<ipnet::IpNet>().unwrap(),
            &city("DE", "BE", "Berlin"),
        )
        .unwrap();
        w.insert(
            "2001:db8::/32".parse::<ipnet::IpNet>().unwrap(),
            &city("FR", "IDF", "Paris"),
        )
        .unwrap();
        let path = dir.join("test.mmdb");
        std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
        path
    }

    #[test]
    fn database_lookups_and_the_cdn_header() {
        let dir = tempfile::tempdir().unwrap();
        let geo = Geo::open(Some(&test_db(dir.path())), Some("CF-IPCountry")).unwrap();
        let none = HeaderMap::new();
        let berlin = geo.locate("192.0.2.77".parse().unwrap(), &none, false);
        assert_eq!(
            berlin,
            Location {
                country: Some("DE".into()),
                region: Some("DE-BE".into()),
                city: Some("Berlin".into())
            }
        );
        assert_eq!(
            geo.locate("2001:db8::1".parse().unwrap(), &none, false)
                .city
                .as_deref(),
            Some("Paris")
        );
        assert_eq!(
            geo.locate("198.51.100.1".parse().unwrap(), &none, false),
            Location::default()
        );
        let mut cf = HeaderMap::new();
        cf.insert("cf-ipcountry", "jp".parse().unwrap());
        assert_eq!(
            geo.locate("198.51.100.1".parse().unwrap(), &cf, true)
                .country
                .as_deref(),
            Some("JP")
        );
        assert_eq!(
            geo.locate("198.51.100.1".parse().unwrap(), &cf, false)
                .country,
            None,
            "only from a trusted proxy"
        );
        cf.insert("cf-ipcountry", "XX".parse().unwrap());
        assert_eq!(
            geo.locate("198.51.100.1".parse().unwrap(), &cf, true)
                .country,
            None
        );
        assert!(Geo::open(Some(Path::new("/nonexistent.mmdb")), None).is_err());
    }
}
