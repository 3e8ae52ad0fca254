//! Authorization metadata as the gateway reads it: the `authorization`
//! header (any bytes a client can send as a header value) and the
//! `x-forwarded-for` chain behind a trusted proxy.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;

use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use tenancy_gateway::client_ip::{canonical, client_ip};
use tenancy_gateway::credentials::bearer_token;

static TRUSTED: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    ["10.0.0.0/8", "fd00::/8"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
});

fuzz_target!(|data: &[u8]| {
    let (authorization, forwarded) = tenancy_fuzz::two_parts(data);
    if let Ok(value) = http::HeaderValue::from_bytes(authorization) {
        match bearer_token(&value) {
            Ok(token) => {
                assert!(!token.is_empty());
                assert_eq!(token, token.trim());
            }
            Err(error) => tenancy_fuzz::assert_client_error(&error),
        }
    }
    let Ok(forwarded) = std::str::from_utf8(forwarded) else {
        return;
    };
    let proxy = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let client = client_ip(proxy, forwarded.split('\n'), &TRUSTED);
    assert_eq!(client, canonical(client), "client addresses are canonical");
    // An untrusted peer is the client, whatever it forwards.
    let stranger = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
    assert_eq!(
        client_ip(stranger, forwarded.split('\n'), &TRUSTED),
        stranger
    );
});
