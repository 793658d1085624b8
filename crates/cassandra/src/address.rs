//! `cassandra://` addresses.

use scylla::statement::{Consistency, SerialConsistency};

/// A parsed store address:
/// `cassandra://host1:9042,host2:9042/keyspace?setting=value&…` (`scylla://` is the same).
///
/// `scylla://` marks the cluster as ScyllaDB: `footfall migrate` then creates the keyspace
/// without tablets, which do not support the lightweight transactions Footfall uses.
///
/// Settings (all optional): `username`, `password` (plain-text authentication);
/// `tls=true` and `tls_ca=/path/ca.pem` (TLS, verifying the nodes against that CA, or the
/// system's CAs without it); `local_dc` (the data center to send requests to first);
/// `consistency` (`local_quorum` by default; also `quorum` or `all`: the processor reads a
/// cell, adds to it and writes it back, and a new owner of a partition must see the last
/// owner's writes, so levels that read or write fewer than a quorum are refused);
/// `serial_consistency` (`serial` by default, or `local_serial` when a single data center
/// allocates ids) for the lightweight transactions that allocate ids; `hourly_ttl_days`
/// (hourly cells expire after that many days, at most 3,650; 0, the default, keeps them);
/// and, for `footfall migrate` when it
/// creates the keyspace, `replication_factor=N` (SimpleStrategy) or
/// `datacenters=dc1:3,dc2:3` (NetworkTopologyStrategy; the default is SimpleStrategy with 1).
/// Values are percent-decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct CassandraAddress {
    /// Contact points, `host:port` (port 9042 when omitted).
    pub nodes: Vec<String>,
    /// Keyspace.
    pub keyspace: String,
    /// Plain-text credentials.
    pub credentials: Option<(String, String)>,
    /// Whether to use TLS.
    pub tls: bool,
    /// CA file to verify the nodes with.
    pub tls_ca: Option<String>,
    /// Preferred data center.
    pub local_dc: Option<String>,
    /// Consistency of reads and writes.
    pub consistency: Consistency,
    /// Consistency of the Paxos phase of lightweight transactions.
    pub serial_consistency: SerialConsistency,
    /// TTL of hourly cells, seconds; 0 keeps them.
    pub hourly_ttl_s: i32,
    /// Replication of a keyspace that `footfall migrate` creates, as CQL map text.
    pub replication: String,
    /// Whether the address said `scylla://`.
    pub scylla: bool,
}

impl std::fmt::Debug for CassandraAddress {
    // The password is never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CassandraAddress")
            .field("nodes", &self.nodes)
            .field("keyspace", &self.keyspace)
            .field("username", &self.credentials.as_ref().map(|c| &c.0))
            .field("tls", &self.tls)
            .field("local_dc", &self.local_dc)
            .field("consistency", &self.consistency)
            .finish_non_exhaustive()
    }
}

fn decode(s: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| format!("{s:?} is not valid UTF-8 once percent-decoded"))
}

/// Whether `name` is a CQL identifier that needs no quoting and keeps its case (unquoted
/// names are folded to lower case, so capitals are refused rather than silently changed).
fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl CassandraAddress {
    /// Parses an address.
    ///
    /// # Errors
    /// A message naming the part that is wrong: the scheme, a missing node list or keyspace,
    /// a keyspace that is not a plain identifier (letters, digits, `_`, at most 48), an
    /// unknown setting or a value it does not take.
    pub fn parse(url: &str) -> Result<CassandraAddress, String> {
        let rest = url
            .strip_prefix("cassandra://")
            .or_else(|| url.strip_prefix("scylla://"))
            .ok_or_else(|| format!("{url:?} does not start with cassandra:// or scylla://"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (hosts, keyspace) = path
            .split_once('/')
            .ok_or("the address has no /keyspace after the nodes")?;
        let nodes: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|h| {
                if h.contains(':') {
                    h.to_string()
                } else {
                    format!("{h}:9042")
                }
            })
            .collect();
        if nodes.is_empty() {
            return Err("the address names no node (cassandra://host:9042/keyspace)".into());
        }
        if !is_identifier(keyspace) {
            return Err(format!(
                "keyspace {keyspace:?} is not a plain CQL name (a lower-case letter, then lower-case letters, digits or _; at most 48)"
            ));
        }
        let mut a = CassandraAddress {
            nodes,
            keyspace: keyspace.to_string(),
            credentials: None,
            tls: false,
            tls_ca: None,
            local_dc: None,
            consistency: Consistency::LocalQuorum,
            serial_consistency: SerialConsistency::Serial,
            hourly_ttl_s: 0,
            replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
            scylla: url.starts_with("scylla://"),
        };
        let (mut username, mut password) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("setting {pair:?} has no =value"))?;
            let v = decode(v)?;
            match k {
                "username" => username = Some(v),
                "password" => password = Some(v),
                "tls" => {
                    a.tls = match v.as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(format!("tls={v:?}: use true or false")),
                    }
                }
                "tls_ca" => {
                    a.tls = true;
                    a.tls_ca = Some(v);
                }
                "local_dc" => a.local_dc = Some(v),
                "consistency" => {
                    a.consistency = match v.as_str() {
                        "quorum" => Consistency::Quorum,
                        "local_quorum" => Consistency::LocalQuorum,
                        "all" => Consistency::All,
                        _ => return Err(format!("consistency={v:?}: use local_quorum, quorum or all (the processor's read-modify-write needs a quorum)")),
                    }
                }
                "serial_consistency" => {
                    a.serial_consistency = match v.as_str() {
                        "serial" => SerialConsistency::Serial,
                        "local_serial" => SerialConsistency::LocalSerial,
                        _ => {
                            return Err(format!(
                                "serial_consistency={v:?}: use serial or local_serial"
                            ))
                        }
                    }
                }
                "hourly_ttl_days" => {
                    let days: i32 = v
                        .parse()
                        .ok()
                        // Cassandra refuses expiry times past 2038 (CASSANDRA-14092) and TTLs
                        // over 20 years; ten years stays clear of both for a long while.
                        .filter(|d| (0..=3_650).contains(d))
                        .ok_or_else(|| format!("hourly_ttl_days={v:?}: use days from 0 to 3650"))?;
                    a.hourly_ttl_s = days * 86_400;
                }
                "replication_factor" => {
                    let n: u32 = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        format!("replication_factor={v:?}: use a whole number from 1")
                    })?;
                    a.replication =
                        format!("{{'class': 'SimpleStrategy', 'replication_factor': {n}}}");
                }
                "datacenters" => {
                    let mut parts = vec!["'class': 'NetworkTopologyStrategy'".to_string()];
                    for dc in v.split(',') {
                        let bad = || format!("datacenters={v:?}: use dc1:3,dc2:3");
                        let (name, n) = dc.split_once(':').ok_or_else(bad)?;
                        let n: u32 = n.parse().ok().filter(|n| *n >= 1).ok_or_else(bad)?;
                        if !name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                            || name.is_empty()
                        {
                            return Err(bad());
                        }
                        parts.push(format!("'{name}': {n}"));
                    }
                    a.replication = format!("{{{}}}", parts.join(", "));
                }
                other => {
                    return Err(format!(
                        "unknown setting {other:?} (known: username, password, tls, tls_ca, local_dc, consistency, serial_consistency, hourly_ttl_days, replication_factor, datacenters)"
                    ))
                }
            }
        }
        match (username, password) {
            (Some(u), Some(p)) => a.credentials = Some((u, p)),
            (None, None) => {}
            _ => return Err("give both username and password, or neither".into()),
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_defaults_and_settings() {
        let a = CassandraAddress::parse("cassandra://n1,n2:9142/footfall").expect("parse");
        assert_eq!(a.nodes, ["n1:9042", "n2:9142"]);
        assert_eq!(a.keyspace, "footfall");
        assert_eq!(a.consistency, Consistency::LocalQuorum);
        assert_eq!(a.serial_consistency, SerialConsistency::Serial);
        assert_eq!(a.hourly_ttl_s, 0);
        assert!(!a.scylla);
        assert!(!a.tls && a.credentials.is_none());

        let a = CassandraAddress::parse(
            "scylla://n1/ks_2?username=ff&password=p%26ss&tls_ca=/etc/ca.pem&local_dc=eu-1&consistency=quorum&serial_consistency=local_serial&hourly_ttl_days=90&datacenters=eu-1:3,us_2:2",
        )
        .expect("parse");
        assert_eq!(a.credentials, Some(("ff".into(), "p&ss".into())));
        assert!(a.tls);
        assert_eq!(a.tls_ca.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(a.local_dc.as_deref(), Some("eu-1"));
        assert_eq!(a.consistency, Consistency::Quorum);
        assert_eq!(a.serial_consistency, SerialConsistency::LocalSerial);
        assert_eq!(a.hourly_ttl_s, 90 * 86_400);
        assert!(a.scylla);
        assert_eq!(
            a.replication,
            "{'class': 'NetworkTopologyStrategy', 'eu-1': 3, 'us_2': 2}"
        );
        // The password never shows in Debug output.
        assert!(!format!("{a:?}").contains("p&ss"));
    }

    #[test]
    fn bad_addresses_name_what_is_wrong() {
        let err = |u: &str| CassandraAddress::parse(u).expect_err(u);
        assert!(err("postgres://x/ks").contains("cassandra://"));
        assert!(err("cassandra://n1").contains("/keyspace"));
        assert!(err("cassandra:///ks").contains("no node"));
        assert!(err("cassandra://n1/foot-fall").contains("keyspace"));
        assert!(err("cassandra://n1/ks;DROP").contains("keyspace"));
        assert!(err("cassandra://n1/ks?consistency=most").contains("consistency"));
        assert!(err("cassandra://n1/ks?consistency=one").contains("quorum"));
        assert!(err("cassandra://n1/Footfall").contains("lower-case"));
        assert!(err("cassandra://n1/ks?hourly_ttl_days=20000").contains("3650"));
        assert!(err("cassandra://n1/ks?colour=red").contains("unknown setting \"colour\""));
        assert!(err("cassandra://n1/ks?username=a").contains("both"));
        assert!(err("cassandra://n1/ks?datacenters=dc1").contains("dc1:3"));
        assert!(err("cassandra://n1/ks?datacenters=a'b:3").contains("datacenters"));
        assert!(err("cassandra://n1/ks?hourly_ttl_days=-1").contains("hourly_ttl_days"));
    }
}
