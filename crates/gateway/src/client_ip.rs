//! Which address a request comes from.
//!
//! The TCP peer, unless the peer is a trusted proxy: then the right-most
//! `x-forwarded-for` entry that is not itself a trusted proxy. Entries left
//! of it were written by the client and prove nothing. IPv4-mapped IPv6
//! addresses (`::ffff:192.0.2.1`) are treated as the IPv4 address they
//! carry, so allowlists written in IPv4 match dual-stack listeners.

use std::net::IpAddr;

use ipnet::IpNet;

/// Turns `::ffff:a.b.c.d` into `a.b.c.d`; other addresses are unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client address of a request from `peer` with the given
/// `x-forwarded-for` header values (each may hold a comma-separated list).
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'a str>,
    trusted_proxies: &[IpNet],
) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted_proxies) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for.flat_map(|v| v.split(',')).collect();
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            // A garbled entry ends the chain we can believe: what is left of
            // it could be anything. The last trusted hop is the best we know.
            break;
        };
        let ip = canonical(ip);
        if !is_trusted(ip, trusted_proxies) {
            return ip;
        }
    }
    peer
}

/// What per-address limits count `ip` under: the address itself for IPv4
/// (IPv4-mapped IPv6 too), its /64 for IPv6 (what one subscriber usually
/// holds: counting full addresses would give each of them 2^64 budgets).
pub fn subscriber(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ipnet::Ipv6Net::new(v6, 64)
                .map_or(IpAddr::V6(v6), |net| IpAddr::V6(net.trunc().addr())),
        },
        v4 => v4,
    }
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// An `x-forwarded-for` entry: `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]:443`
/// or `1.2.3.4:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Ok(socket) = hop.parse::<std::net::SocketAddr>() {
        return Some(socket.ip());
    }
    hop.strip_prefix('[')
        .and_then(|rest| rest.split(']').next())
        .and_then(|inner| inner.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let got = client_ip(
            ip("198.51.100.9"),
            ["203.0.113.1"].into_iter(),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(got, ip("198.51.100.9"));
    }

    #[test]
    fn a_trusted_proxy_gives_the_rightmost_untrusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = client_ip(
            ip("10.0.0.2"),
            ["6.6.6.6, 203.0.113.1", "10.0.0.7"].into_iter(),
            &trusted,
        );
        assert_eq!(
            got,
            ip("203.0.113.1"),
            "the spoofed left-most entry is ignored"
        );
    }

    #[test]
    fn a_trusted_proxy_without_forwarded_for_is_the_client() {
        let got = client_ip(ip("10.0.0.2"), std::iter::empty(), &nets(&["10.0.0.0/8"]));
        assert_eq!(got, ip("10.0.0.2"));
    }

    #[test]
    fn ipv4_mapped_ipv6_is_treated_as_ipv4() {
        assert_eq!(canonical(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        let got = client_ip(
            ip("::ffff:10.0.0.2"),
            ["[::ffff:203.0.113.5]:443"].into_iter(),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(got, ip("203.0.113.5"));
        assert_eq!(canonical(ip("2001:db8::1")), ip("2001:db8::1"));
    }

    #[test]
    fn ipv6_hops_and_ports_parse() {
        let trusted = nets(&["fd00::/8"]);
        let got = client_ip(ip("fd00::1"), ["2001:db8::7"].into_iter(), &trusted);
        assert_eq!(got, ip("2001:db8::7"));
        let got = client_ip(ip("fd00::1"), ["198.51.100.1:5555"].into_iter(), &trusted);
        assert_eq!(got, ip("198.51.100.1"));
    }

    #[test]
    fn a_garbled_hop_stops_the_chain_at_the_last_trusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = client_ip(
            ip("10.0.0.2"),
            ["203.0.113.1, garbage"].into_iter(),
            &trusted,
        );
        assert_eq!(got, ip("10.0.0.2"));
    }
}
