//! The signed principal metadata a service reads from the gateway
//! (`x-tenancy-principal-bin`, `x-tenancy-principal-sig`): any two values
//! as they arrive, and any principal bytes with a valid signature (what
//! only the protobuf decoder and the conversion behind the HMAC see).
#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use tenancy_runtime::{PrincipalKey, Timestamp};

static KEY: LazyLock<PrincipalKey> = LazyLock::new(|| {
    PrincipalKey::from_bytes(&tenancy_fuzz::PRINCIPAL_KEY)
        .unwrap_or_else(|| unreachable!("32 bytes"))
});

/// A fixed "now", so expiry is decided the same on every run.
const NOW: Timestamp = Timestamp(1_800_000_000_000);

/// A metadata value; empty as absent.
fn present(value: &[u8]) -> Option<&[u8]> {
    (!value.is_empty()).then_some(value)
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = tenancy_fuzz::selector(data) else {
        return;
    };
    let (principal, signature) = if mode % 2 == 0 {
        // Both metadata values as sent.
        let (principal, signature) = tenancy_fuzz::two_parts(rest);
        (principal.to_vec(), signature.to_vec())
    } else {
        // The fuzzer's principal bytes, signed with the key.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&tenancy_fuzz::PRINCIPAL_KEY) else {
            return;
        };
        mac.update(rest);
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        (
            STANDARD_NO_PAD.encode(rest).into_bytes(),
            signature.into_bytes(),
        )
    };
    if let Ok(verified) = KEY.verify(present(&principal), present(&signature), NOW) {
        // Only unexpired principals, signed for at most the longest lifetime.
        assert!(verified.expires_at_ms >= NOW.millis());
        if mode % 2 == 0 {
            // A valid signature from unsigned input would be a forgery.
            assert!(!principal.is_empty(), "verified without a principal value");
        }
    }
});
