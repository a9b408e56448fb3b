//! The client's address, decided once per request at the edge.
//!
//! The address is the socket's peer, unless that peer is a configured trusted proxy: then the
//! forwarded headers it added (`Forwarded` first, else `X-Forwarded-For`) are read from the
//! right, skipping further trusted proxies, and the first address not trusted is the client.
//! A direct client cannot choose its address with a header. The audit log and every policy
//! read this one value ([`ClientAddr`] in the request's extensions), never the headers.

use std::net::{IpAddr, SocketAddr};

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

/// The address a request came from, as decided by [`TrustedProxies`]. `None` when the server
/// was called without a socket (in tests through `oneshot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

/// The proxies whose forwarded headers are believed, as CIDR ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses CIDR ranges (`10.0.0.0/8`, `::1/128`) or single addresses.
    pub fn parse<S: AsRef<str>>(ranges: &[S]) -> Result<TrustedProxies, String> {
        ranges
            .iter()
            .map(|r| {
                let r = r.as_ref().trim();
                r.parse::<IpNet>()
                    .or_else(|_| r.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("'{r}' is not an IP address or CIDR range"))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request from `peer` with these headers.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let hops = forwarded_hops(headers);
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                // An entry that names no address ("unknown", an obfuscated name) ends what can be
                // known: the last trusted hop is the best answer.
                None => break,
                Some(ip) => {
                    client = *ip;
                    if !self.trusts(*ip) {
                        break;
                    }
                }
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The addresses a request passed through, oldest first, from `Forwarded` (RFC 7239) if
/// present, else from `X-Forwarded-For`. `None` for an entry that is not an address.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name: &str| -> Vec<String> {
        headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
    };
    let forwarded = values("forwarded");
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, v)| parse_node(v.trim().trim_matches('"')))
            })
            .collect();
    }
    values("x-forwarded-for").iter().flat_map(|v| v.split(',')).map(|v| parse_node(v.trim())).collect()
}

/// An address as forwarded headers write it: `1.2.3.4`, `1.2.3.4:5678`, `[::1]`, `[::1]:80`,
/// `::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(canonical(addr.ip()));
    }
    let inner = node.strip_prefix('[')?.split(']').next()?;
    inner.parse::<IpAddr>().ok().map(canonical)
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<ClientAddr>().copied().unwrap_or(ClientAddr(None)))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("valid header"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_direct_client_cannot_choose_its_address() {
        let none = TrustedProxies::default();
        let forged = headers(&[("x-forwarded-for", "10.9.9.9"), ("forwarded", "for=10.9.9.9")]);
        assert_eq!(none.client_of(ip("203.0.113.7"), &forged), ip("203.0.113.7"));
        let lb = TrustedProxies::parse(&["10.0.0.0/8"]).expect("valid");
        assert_eq!(lb.client_of(ip("203.0.113.7"), &forged), ip("203.0.113.7"), "the peer is not a trusted proxy");
    }

    #[test]
    fn trusted_proxies_are_skipped_from_the_right() {
        let lb = TrustedProxies::parse(&["10.0.0.0/8", "::1"]).expect("valid");
        // The client put a fake address first; the proxy appended the real one.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.4, 10.0.0.2")]);
        assert_eq!(lb.client_of(ip("10.0.0.1"), &h), ip("198.51.100.4"));
        let h = headers(&[("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "198.51.100.4")]);
        assert_eq!(lb.client_of(ip("::1"), &h), ip("198.51.100.4"), "several header lines");
        let h = headers(&[("forwarded", r#"for=1.1.1.1, for="[2001:db8::7]:4711";proto=https"#)]);
        assert_eq!(lb.client_of(ip("10.0.0.1"), &h), ip("2001:db8::7"));
        let h = headers(&[("forwarded", "for=unknown"), ("x-forwarded-for", "198.51.100.4")]);
        assert_eq!(lb.client_of(ip("10.0.0.1"), &h), ip("10.0.0.1"), "Forwarded wins; unknown stops the walk");
        assert_eq!(lb.client_of(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
        assert_eq!(lb.client_of(ip("::ffff:10.0.0.1"), &headers(&[("x-forwarded-for", "192.0.2.1")])), ip("192.0.2.1"));
    }

    #[test]
    fn ranges_parse() {
        assert!(TrustedProxies::parse(&["10.0.0.0/8", "192.168.1.1", "fd00::/8"]).is_ok());
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(&["proxy.local"]).is_err());
    }
}
