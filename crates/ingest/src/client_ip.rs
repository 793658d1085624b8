//! The client's IP address.
//!
//! The socket peer is the client unless the peer is a configured trusted proxy. Then the one
//! forwarding header that the proxies are configured to set ([`ForwardingHeader`]:
//! `X-Forwarded-For` by default, or RFC 7239 `Forwarded` with its `for=` parameters) is read
//! from the right: the first address that is not itself a trusted proxy is the client. The
//! other header is never read: a proxy that sets one passes the other through from the
//! client unchanged, so believing it would let any client choose its address. Entries may
//! carry ports and IPv6 brackets (`[2001:db8::1]:4711`), which are stripped; malformed
//! entries (`unknown`, obfuscated identifiers, garbage) are skipped. If every entry is
//! trusted, the leftmost one is the client.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The header in which the trusted proxies name the client (`server.forwarding_header`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardingHeader {
    /// `X-Forwarded-For: client, proxy1, ...` (nginx, ingress-nginx, cloud load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1` (Envoy, HAProxy's `option forwarded`).
    Forwarded,
}

/// Parses one address entry: `1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1`, `"[::1]"`.
pub fn parse_entry(raw: &str) -> Option<IpAddr> {
    let s = raw.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    if let Some(inner) = s.strip_prefix('[') {
        let end = inner.find(']')?;
        return inner[..end].parse().ok();
    }
    None
}

fn to_canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn forwarded_for(headers: &HeaderMap, header: ForwardingHeader) -> Vec<IpAddr> {
    let values = |name: &str| -> Vec<&str> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    };
    match header {
        ForwardingHeader::Forwarded => values("forwarded")
            .into_iter()
            .flat_map(|h| h.split(','))
            .flat_map(|element| element.split(';'))
            .filter_map(|pair| pair.split_once('='))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
            .filter_map(|(_, v)| parse_entry(v))
            .map(to_canonical)
            .collect(),
        ForwardingHeader::XForwardedFor => values("x-forwarded-for")
            .into_iter()
            .flat_map(|h| h.split(','))
            .filter_map(parse_entry)
            .map(to_canonical)
            .collect(),
    }
}

/// Whether `ip` is one of the `trusted` proxies.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = to_canonical(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client address of a request from `peer` with `headers`, trusting the forwarding
/// `header` only from `trusted` proxies.
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
    header: ForwardingHeader,
) -> IpAddr {
    let peer = to_canonical(peer);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let chain = forwarded_for(headers, header);
    chain
        .iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or(chain.first())
        .copied()
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    const XFF: ForwardingHeader = ForwardingHeader::XForwardedFor;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn forged_header_from_untrusted_peer_is_ignored() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6")]);
        assert_eq!(
            client_ip(
                "203.0.113.9".parse().unwrap(),
                &h,
                &nets(&["10.0.0.0/8"]),
                XFF
            ),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn chain_through_two_trusted_proxies_yields_the_client() {
        // client 198.51.100.7 → proxy 10.0.0.2 → proxy 10.0.0.1 → us. The client prepended a
        // forged entry, which is left of the real client and therefore never reached.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.2")]);
        assert_eq!(
            client_ip("10.0.0.1".parse().unwrap(), &h, &nets(&["10.0.0.0/8"]), XFF),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn ports_brackets_ipv6_and_garbage() {
        let h = headers(&[(
            "x-forwarded-for",
            "[2001:db8::1]:4711, unknown, 10.0.0.3:8080",
        )]);
        assert_eq!(
            client_ip("10.0.0.1".parse().unwrap(), &h, &nets(&["10.0.0.0/8"]), XFF),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        let f = headers(&[
            (
                "forwarded",
                "for=192.0.2.60;proto=http, for=\"[2001:db8::2]:80\"",
            ),
            ("x-forwarded-for", "9.9.9.9"),
        ]);
        assert_eq!(
            client_ip(
                "127.0.0.1".parse().unwrap(),
                &f,
                &nets(&["127.0.0.1/32"]),
                ForwardingHeader::Forwarded
            ),
            "2001:db8::2".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(
                "::ffff:10.0.0.1".parse().unwrap(),
                &HeaderMap::new(),
                &nets(&["10.0.0.0/8"]),
                XFF
            ),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn only_the_configured_header_is_believed() {
        // nginx replaced X-Forwarded-For with the address it saw and passed the client's own
        // Forwarded header through: the forged one must not win.
        let h = headers(&[
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-for", "198.51.100.9"),
        ]);
        let trusted = nets(&["10.0.0.0/8"]);
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(peer, &h, &trusted, XFF),
            "198.51.100.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(peer, &h, &trusted, ForwardingHeader::Forwarded),
            "6.6.6.6".parse::<IpAddr>().unwrap()
        );
        // A Forwarded header without for= names nobody: the peer is all there is.
        let h = headers(&[
            ("forwarded", "proto=https"),
            ("x-forwarded-for", "198.51.100.9"),
        ]);
        assert_eq!(
            client_ip(peer, &h, &trusted, ForwardingHeader::Forwarded),
            peer
        );
    }
}
