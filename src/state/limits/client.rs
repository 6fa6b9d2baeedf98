//! Who the client is: the socket peer, or the right-most untrusted
//! `X-Forwarded-For` hop behind a trusted proxy; and the key limits count it by (an
//! IPv4 address, or an IPv6 /64).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::HeaderMap;

use crate::config::{ServerConfig, canonical_ip};

/// What limits are counted per: an IPv4 address, or an IPv6 /64 (one subscriber's
/// allocation: an attacker holds all of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    pub fn of(ip: IpAddr) -> Self {
        match canonical_ip(ip) {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Self(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
            v4 => Self(v4),
        }
    }

    pub fn ip(&self) -> IpAddr {
        self.0
    }
}

/// The client's address: the socket peer, unless the peer is a trusted proxy; then
/// the right-most `X-Forwarded-For` hop that is not itself trusted. Hops may carry a
/// port (`192.0.2.1:1000`, `[2001:db8::1]:1234`) and spaces; a hop that is no
/// address (empty, `unknown`, junk) is passed over, not taken as the end of the
/// chain, so the proxy's own address is only ever the answer when no hop names
/// another. A spoofed header from anyone else is ignored.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, server: &ServerConfig) -> IpAddr {
    let peer = canonical_ip(peer);
    if !server.is_trusted_proxy(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for ip in hops.iter().rev().filter_map(|hop| parse_hop(hop)) {
        client = canonical_ip(ip);
        if !server.is_trusted_proxy(client) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` hop: an address, with or without a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(trusted: &[&str]) -> ServerConfig {
        ServerConfig { trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(), ..Default::default() }
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a = ClientKey::of("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = ClientKey::of("2001:db8:1:2:ffff::9".parse().unwrap());
        let c = ClientKey::of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(ClientKey::of("::ffff:192.0.2.1".parse().unwrap()).ip(), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let spoofed = xff(&["203.0.113.7"]);
        assert_eq!(client_ip(peer, &spoofed, &server(&[])), peer, "untrusted peer: header ignored");
        let trusted = server(&["10.0.0.0/8"]);
        assert_eq!(client_ip(peer, &spoofed, &trusted).to_string(), "203.0.113.7");
        // The client may prepend lies; the right-most untrusted hop is the truth.
        let chain = xff(&["198.51.100.1, 203.0.113.7", "10.0.0.9"]);
        assert_eq!(client_ip(peer, &chain, &trusted).to_string(), "203.0.113.7");
        let garbage = xff(&["not-an-ip, 10.0.0.9"]);
        assert_eq!(client_ip(peer, &garbage, &trusted).to_string(), "10.0.0.9", "no other hop to believe");
        assert_eq!(client_ip(peer, &HeaderMap::new(), &trusted), peer);
    }

    #[test]
    fn hops_with_ports_spaces_and_junk_still_name_the_client() {
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let trusted = server(&["10.0.0.0/8"]);
        for (header, client) in [
            ("192.0.2.5:1000", "192.0.2.5"),
            ("[2001:db8::1]:1234", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("192.0.2.5 ,", "192.0.2.5"),
            ("192.0.2.5, unknown", "192.0.2.5"),
            ("192.0.2.5, , 10.0.0.7:80", "192.0.2.5"),
            ("  192.0.2.5  ", "192.0.2.5"),
        ] {
            assert_eq!(client_ip(peer, &xff(&[header]), &trusted).to_string(), client, "{header:?}");
        }
    }
}
