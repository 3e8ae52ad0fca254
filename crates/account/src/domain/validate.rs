//! Parsing of user input into normalised values; each function returns a
//! description of what is wrong, which the API turns into a field violation.

/// Characters of a string (Unicode scalar values).
fn chars(s: &str) -> usize {
    s.chars().count()
}

/// A trimmed text of `min..=max` characters on one line (no control or
/// bidi formatting characters: [`tenancy_runtime::text::one_line`]).
pub fn text(value: &str, min: usize, max: usize) -> Result<String, String> {
    let value = value.trim();
    let n = chars(value);
    if n < min {
        return Err(if min == 1 {
            "required".to_owned()
        } else {
            format!("at least {min} characters")
        });
    }
    if n > max {
        return Err(format!("at most {max} characters"));
    }
    tenancy_runtime::text::one_line(value)?;
    Ok(value.to_owned())
}

/// An email address, lower-cased, in the syntax of
/// [`tenancy_runtime::text::email`].
pub fn email(value: &str) -> Result<String, String> {
    let value = value.trim().to_lowercase();
    tenancy_runtime::text::email(&value)?;
    Ok(value)
}

/// An ISO 3166-1 alpha-2 code: two upper-case ASCII letters.
pub fn country_code(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("required".to_owned());
    }
    if value.len() == 2 && value.chars().all(|c| c.is_ascii_uppercase()) {
        Ok(value.to_owned())
    } else {
        Err("must be an ISO 3166-1 alpha-2 code in upper case, e.g. \"NL\"".to_owned())
    }
}

/// A VAT number: upper case without spaces or dots, starting with two
/// letters, at most 32 characters; empty allowed.
pub fn vat_number(value: &str) -> Result<String, String> {
    let value: String = value
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '.')
        .collect::<String>()
        .to_uppercase();
    if value.is_empty() {
        return Ok(value);
    }
    let prefix_ok = value.chars().take(2).all(|c| c.is_ascii_uppercase());
    if value.len() > 32
        || value.len() < 4
        || !prefix_ok
        || !value.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Err(
            "must be a VAT number with its country prefix, e.g. \"NL123456789B01\"".to_owned(),
        );
    }
    Ok(value)
}

/// A service kind: 1 to 64 of a-z, 0-9, "_".
pub fn kind(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(value.to_owned())
    } else {
        Err("1 to 64 characters of a-z, 0-9 and \"_\"".to_owned())
    }
}

/// A tag: 1 to 64 letters, digits, "-", "_", ".", ":", lower-cased.
pub fn tag(value: &str) -> Result<String, String> {
    let value = value.trim().to_lowercase();
    let ok = !value.is_empty()
        && chars(&value) <= 64
        && value
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(value)
    } else {
        Err("1 to 64 letters, digits, \"-\", \"_\", \".\" or \":\"".to_owned())
    }
}

/// The most entries an IP allowlist may have.
pub const MAX_ALLOWLIST: usize = 100;

pub use tenancy_runtime::allowlist::{admits as ip_allowed, cidr, parse as allowlist};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlists_are_normalised_and_deduplicated() {
        let list = allowlist(&[
            "10.1.2.3/8".into(),
            "192.0.2.1".into(),
            "2001:DB8::1/32".into(),
            "::ffff:198.51.100.0/120".into(),
            "10.0.0.0/8".into(),
        ])
        .unwrap();
        let shown: Vec<String> = list.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "10.0.0.0/8",
                "192.0.2.1/32",
                "2001:db8::/32",
                "198.51.100.0/24"
            ]
        );
    }

    #[test]
    fn bad_entries_are_reported_by_index() {
        let bad =
            allowlist(&["10.0.0.0/8".into(), "nope".into(), "1.2.3.4/33".into()]).unwrap_err();
        assert_eq!(bad.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn addresses_are_matched_against_the_list() {
        let list = allowlist(&["203.0.113.0/24".into()]).unwrap();
        assert!(ip_allowed(&list, "203.0.113.7".parse().ok()));
        assert!(ip_allowed(&list, "::ffff:203.0.113.7".parse().ok()));
        assert!(!ip_allowed(&list, "198.51.100.1".parse().ok()));
        assert!(ip_allowed(&[], None));
    }

    #[test]
    fn emails_and_vat_numbers_are_normalised() {
        assert_eq!(email(" Ann@Example.COM ").unwrap(), "ann@example.com");
        assert!(email("ann@example").is_err());
        assert_eq!(vat_number("nl 1234.5678.9B01").unwrap(), "NL123456789B01");
    }
}

/// Property: an allowlist as UpdateSecuritySettings parses it never
/// admits an address outside its entries (checked with plain bit masks),
/// in whatever form (IPv4, IPv6, IPv4-mapped) the entry or the address
/// comes.
#[cfg(test)]
mod properties {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    /// An entry's text and the IPv4 network it means: (first address, prefix).
    fn v4_entry() -> impl Strategy<Value = (String, (u32, u8))> {
        (any::<u32>(), 0u8..=32, any::<bool>(), any::<bool>()).prop_map(|(a, p, mapped, bare)| {
            let text = match (mapped, bare) {
                (false, true) => Ipv4Addr::from(a).to_string(),
                (false, false) => format!("{}/{p}", Ipv4Addr::from(a)),
                (true, true) => Ipv4Addr::from(a).to_ipv6_mapped().to_string(),
                (true, false) => format!("{}/{}", Ipv4Addr::from(a).to_ipv6_mapped(), p + 96),
            };
            (text, (a, if bare { 32 } else { p }))
        })
    }

    fn inside(ip: u32, (first, prefix): (u32, u8)) -> bool {
        let host = 32 - u32::from(prefix);
        host == 32 || (ip ^ first) >> host == 0
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]

        #[test]
        fn random_allowlists_never_admit_an_address_outside_them(
            entries in prop::collection::vec(v4_entry(), 1..6),
            v6 in prop::collection::vec((any::<u128>(), 0u8..=128), 0..3),
            ip in any::<u32>(),
            near in any::<bool>(),
            as_mapped in any::<bool>(),
        ) {
            // Half the time an address near the first entry's network.
            let ip = if near { entries[0].1.0 ^ (ip & 0xff) } else { ip };
            let mut texts: Vec<String> = entries.iter().map(|(t, _)| t.clone()).collect();
            texts.extend(v6.iter().map(|(a, p)| format!("{}/{p}", Ipv6Addr::from(*a))));
            let list = allowlist(&texts).map_err(|bad| TestCaseError::fail(format!("{bad:?}")))?;
            let v4 = Ipv4Addr::from(ip);
            let address = if as_mapped { IpAddr::V6(v4.to_ipv6_mapped()) } else { IpAddr::V4(v4) };
            // An IPv4 client (mapped or not) is matched as IPv4: only the
            // IPv4 entries (written mapped or not) can hold it.
            let contained = entries.iter().any(|(_, net)| inside(ip, *net));
            prop_assert_eq!(ip_allowed(&list, Some(address)), contained, "{} in {:?}", address, texts);
        }
    }
}
