//! Which network a login came from, for the new-address notice: a login
//! from a network the user has not logged in from recently is worth an
//! email, one from their usual network is not.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

/// How long a network stays known after the last session created from it.
pub(crate) const KNOWN_FOR: Duration = Duration::from_secs(90 * 24 * 3600);

/// The network of a client address: an IPv4 address itself; an IPv6
/// address's /64 (a household or phone holds a whole /64 and rotates its
/// addresses inside it, so the address alone would alert on every login);
/// an IPv4-mapped IPv6 address as its IPv4 address. Text that is no address
/// (a direct call without a client address) is its own network.
pub(crate) fn login_network(ip: &str) -> String {
    match ip.trim().parse::<IpAddr>().map(|a| a.to_canonical()) {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        Err(_) => ip.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_addresses_are_their_own_network() {
        assert_eq!(login_network("198.51.100.7"), "198.51.100.7");
        assert_ne!(login_network("198.51.100.7"), login_network("198.51.100.8"));
        assert_eq!(login_network("::ffff:198.51.100.7"), "198.51.100.7");
    }

    #[test]
    fn ipv6_addresses_share_their_slash_64() {
        assert_eq!(login_network("2001:db8:1:2:a::1"), "2001:db8:1:2::/64");
        assert_eq!(
            login_network("2001:db8:1:2:ffff:ffff:ffff:ffff"),
            login_network("2001:db8:1:2::9")
        );
        assert_ne!(
            login_network("2001:db8:1:2::1"),
            login_network("2001:db8:1:3::1")
        );
    }

    #[test]
    fn text_that_is_no_address_is_kept() {
        assert_eq!(login_network(""), "");
        assert_eq!(login_network("unknown"), "unknown");
    }
}
