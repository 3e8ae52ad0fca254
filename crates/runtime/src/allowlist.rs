//! IP allowlists as clients send them: CIDR blocks or bare addresses
//! (IPv4 and IPv6), normalised (host bits cleared, IPv4-mapped IPv6 turned
//! into IPv4, duplicates dropped). One parser for every list: the account's
//! portal allowlist, an API member's and an API token's source allowlists.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::{Error, Reason};

/// The most entries an API member's or API token's source allowlist may
/// have: a handful of CI runners or NAT gateways, not a routing table.
pub const MAX_SOURCE_ALLOWLIST: usize = 20;

/// Parses one allowlist entry: a CIDR or a bare address, host bits
/// cleared, IPv4-mapped IPv6 turned into IPv4.
pub fn cidr(value: &str) -> Result<IpNet, String> {
    let value = value.trim();
    let net = match value.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => match value.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => return Err(format!("{value:?} is not an IP network in CIDR notation")),
        },
    };
    let net = match net {
        IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
            Some(v4) if v6.prefix_len() >= 96 => {
                IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).map_err(|e| e.to_string())?
            }
            _ => IpNet::V6(v6),
        },
        v4 => v4,
    };
    Ok(net.trunc())
}

/// Parses an allowlist: every bad entry's index with its problem, or the
/// normalised, de-duplicated list in the given order.
pub fn parse(entries: &[String]) -> Result<Vec<IpNet>, Vec<(usize, String)>> {
    let mut bad = Vec::new();
    let mut out: Vec<IpNet> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        match cidr(entry) {
            Ok(net) if !out.contains(&net) => out.push(net),
            Ok(_) => {}
            Err(e) => bad.push((i, e)),
        }
    }
    if bad.is_empty() { Ok(out) } else { Err(bad) }
}

/// Parses the allowlist in request field `field` (at most `max` entries,
/// counted before any entry is read): INVALID_ARGUMENT `ALLOWLIST_TOO_LONG`
/// naming the field, or `CIDR_INVALID` with one violation per bad entry
/// (`field[i]`).
pub fn parse_field(field: &str, entries: &[String], max: usize) -> Result<Vec<IpNet>, Error> {
    if entries.len() > max {
        let what = format!("at most {max} entries");
        return Err(Error::new(Reason::AllowlistTooLong, what.clone()).with_field(field, what));
    }
    parse(entries).map_err(|bad| {
        let mut e = Error::new(Reason::CidrInvalid, format!("invalid entries in {field}"));
        for (k, why) in bad {
            e = e.with_field(format!("{field}[{k}]"), why);
        }
        e
    })
}

/// A parsed allowlist as stored and sent on: its networks' text forms.
pub fn to_strings(nets: &[IpNet]) -> Vec<String> {
    nets.iter().map(ToString::to_string).collect()
}

/// Whether `ip` may use what `allowlist` guards (empty: everyone).
pub fn admits(allowlist: &[IpNet], ip: Option<IpAddr>) -> bool {
    if allowlist.is_empty() {
        return true;
    }
    let Some(ip) = ip else { return false };
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    allowlist.iter().any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_allowlist_field_is_capped_and_names_bad_entries() {
        let too_long: Vec<String> = (0..=MAX_SOURCE_ALLOWLIST)
            .map(|i| format!("10.0.{i}.0/24"))
            .collect();
        let e = parse_field("source_allowlist", &too_long, MAX_SOURCE_ALLOWLIST).unwrap_err();
        assert_eq!(e.reason, Reason::AllowlistTooLong);
        let e = parse_field(
            "source_allowlist",
            &["10.0.0.0/8".into(), "nope".into()],
            MAX_SOURCE_ALLOWLIST,
        )
        .unwrap_err();
        assert_eq!(e.reason, Reason::CidrInvalid);
        assert_eq!(e.violations[0].field, "source_allowlist[1]");
        let ok = parse_field(
            "source_allowlist",
            &["2001:db8::1/32".into(), "::ffff:192.0.2.7".into()],
            MAX_SOURCE_ALLOWLIST,
        )
        .unwrap();
        assert_eq!(to_strings(&ok), ["2001:db8::/32", "192.0.2.7/32"]);
        assert!(admits(&ok, Some("192.0.2.7".parse().unwrap())));
        assert!(!admits(&ok, Some("192.0.2.8".parse().unwrap())));
        assert!(!admits(&ok, None));
    }
}
