//! CIDR / allowlist entries: the account service's parser (UpdateSecuritySettings)
//! and the gateway's (from the pushed settings). Whatever the entries, an
//! address is admitted only if one of the parsed networks contains it, the
//! two agree, and the normalised list parses back to itself.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use tenancy_account::domain::validate::{allowlist, ip_allowed};
use tenancy_gateway::client_ip::canonical;
use tenancy_gateway::sync::settings_from_proto;
use tenancy_proto::account::SecuritySettings;

fn address(bytes: &[u8]) -> Option<(IpAddr, &[u8])> {
    let (kind, rest) = bytes.split_first()?;
    if kind % 2 == 0 {
        let (octets, rest) = rest.split_first_chunk::<4>()?;
        Some((IpAddr::V4(Ipv4Addr::from(*octets)), rest))
    } else {
        let (octets, rest) = rest.split_first_chunk::<16>()?;
        Some((IpAddr::V6(Ipv6Addr::from(*octets)), rest))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((ip, rest)) = address(data) else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let entries: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let ip = canonical(ip);
    if let Ok(nets) = allowlist(&entries) {
        let inside = nets.iter().any(|net| net.contains(&ip));
        if ip_allowed(&nets, Some(ip)) {
            assert!(nets.is_empty() || inside, "{ip} admitted outside {nets:?}");
        }
        let shown: Vec<String> = nets.iter().map(ToString::to_string).collect();
        assert_eq!(
            allowlist(&shown).ok().as_ref(),
            Some(&nets),
            "not idempotent"
        );
        // The gateway decides from the list the account service stored.
        let settings = settings_from_proto(&SecuritySettings {
            ip_allowlist: shown,
            ..SecuritySettings::default()
        });
        assert_eq!(
            settings.admits(ip),
            ip_allowed(&nets, Some(ip)),
            "gateway and account disagree on {ip} in {nets:?}"
        );
    }
    // Whatever the gateway is pushed, it admits nothing outside what it parsed.
    let settings = settings_from_proto(&SecuritySettings {
        ip_allowlist: entries,
        ..SecuritySettings::default()
    });
    if let Some(list) = &settings.ip_allowlist
        && settings.admits(ip)
    {
        assert!(list.iter().any(|net| net.contains(&ip)));
    }
});
