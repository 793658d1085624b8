//! The client's IP address.
//!
//! The socket peer is the client unless the peer is a configured trusted proxy. Then the
//! `Forwarded` header (RFC 7239 `for=`) or, when it has no usable `for=` address,
//! `X-Forwarded-For` is read from the right: the first address that is not itself a trusted proxy is the client. Entries may
//! carry ports and IPv6 brackets (`[2001:db8::1]:4711`), which are stripped; malformed
//! entries (`unknown`, obfuscated identifiers, garbage) are skipped. If every entry is
//! trusted, the leftmost one is the client.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

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

fn forwarded_for(headers: &HeaderMap) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let forwarded: Vec<&str> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        for element in forwarded.iter().flat_map(|h| h.split(',')) {
            for pair in element.split(';') {
                if let Some((k, v)) = pair.split_once('=') {
                    if k.trim().eq_ignore_ascii_case("for") {
                        if let Some(ip) = parse_entry(v) {
                            out.push(to_canonical(ip));
                        }
                    }
                }
            }
        }
        if !out.is_empty() {
            return out;
        }
    }
    for value in headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        out.extend(value.split(',').filter_map(parse_entry).map(to_canonical));
    }
    out
}

/// Whether `ip` is one of the `trusted` proxies.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = to_canonical(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client address of a request from `peer` with `headers`, trusting forwarding headers
/// only from `trusted` proxies.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = to_canonical(peer);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let chain = forwarded_for(headers);
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

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn forged_header_from_untrusted_peer_is_ignored() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6")]);
        assert_eq!(
            client_ip("203.0.113.9".parse().unwrap(), &h, &nets(&["10.0.0.0/8"])),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn chain_through_two_trusted_proxies_yields_the_client() {
        // client 198.51.100.7 → proxy 10.0.0.2 → proxy 10.0.0.1 → us. The client prepended a
        // forged entry, which is left of the real client and therefore never reached.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.2")]);
        assert_eq!(
            client_ip("10.0.0.1".parse().unwrap(), &h, &nets(&["10.0.0.0/8"])),
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
            client_ip("10.0.0.1".parse().unwrap(), &h, &nets(&["10.0.0.0/8"])),
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
            client_ip("127.0.0.1".parse().unwrap(), &f, &nets(&["127.0.0.1/32"])),
            "2001:db8::2".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(
                "::ffff:10.0.0.1".parse().unwrap(),
                &HeaderMap::new(),
                &nets(&["10.0.0.0/8"])
            ),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn forwarded_without_for_falls_back_to_x_forwarded_for() {
        let h = headers(&[
            ("forwarded", "proto=https;host=shop.example"),
            ("x-forwarded-for", "198.51.100.9"),
        ]);
        assert_eq!(
            client_ip("10.0.0.1".parse().unwrap(), &h, &nets(&["10.0.0.0/8"])),
            "198.51.100.9".parse::<IpAddr>().unwrap()
        );
    }
}
