//! JWT header and claims: the gateway's verifier on any string (the header
//! is parsed before any signature check), and on tokens whose payload is
//! the fuzzer's bytes signed with the known key (the claims parser and
//! the conversion to the cached form, which a forged signature never
//! reaches).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use tenancy_gateway::jwt::{JwtVerifier, PortalToken};

static VERIFIER: LazyLock<JwtVerifier> = LazyLock::new(tenancy_fuzz::jwt_verifier);

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = tenancy_fuzz::selector(data) else {
        return;
    };
    let token = match mode % 3 {
        // Any text as the token.
        0 => match std::str::from_utf8(rest) {
            Ok(text) => text.to_owned(),
            Err(_) => return,
        },
        // The fuzzer's claims, signed.
        1 => tenancy_fuzz::sign_jwt(&tenancy_fuzz::jwt_header(), rest),
        // The fuzzer's header and claims (split at the first newline), signed.
        _ => {
            let (header, claims) = tenancy_fuzz::two_parts(rest);
            tenancy_fuzz::sign_jwt(header, claims)
        }
    };
    if let Ok(claims) = VERIFIER.verify(&token) {
        // Verified claims are unexpired (within the leeway).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let leeway = i64::try_from(tenancy_gateway::jwt::LEEWAY_SECONDS).unwrap_or(0);
        assert!(
            claims.exp.saturating_add(leeway) >= now,
            "expired token verified"
        );
        if let Ok(cached) = PortalToken::from_claims(&claims) {
            assert_eq!(cached.rev, claims.rev);
            assert_eq!(cached.expire_ms, claims.exp.saturating_mul(1000));
        }
    }
});
