//! The form of Public API tokens: `tny_` + base62(32 random bytes) (43
//! characters) + base62(CRC32 of those 43 characters) (6 characters).
//!
//! The prefix lets secret scanners recognise a leaked token; the checksum
//! (as in GitHub's tokens) lets anyone who sees a string tell a typo or
//! garbage from a token offline. Identity issues tokens in this form and
//! checks it before any lookup; the gateway checks it before asking
//! identity, so a string that is not a token costs no introspection. The
//! checksum is not a secret and proves nothing about who made the string:
//! guessing real tokens is stopped by their 190 random bits and by the
//! gateway's limit on failed introspections per address.

use rand::RngCore as _;

/// Prefix of Public API tokens.
pub const PREFIX: &str = "tny_";
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Base62 characters encoding 32 random bytes.
const BODY_LEN: usize = 43;
/// Base62 characters encoding the CRC32 checksum.
const CHECKSUM_LEN: usize = 6;
/// Length of a whole token.
pub const LEN: usize = PREFIX.len() + BODY_LEN + CHECKSUM_LEN;

/// `bytes` as a big-endian number in base62, left-padded with `0` to
/// `width` digits.
fn base62(bytes: &[u8], width: usize) -> String {
    let mut digits = Vec::with_capacity(width);
    let mut number = bytes.to_vec();
    while number.iter().any(|b| *b != 0) {
        let mut rem = 0u32;
        for byte in number.iter_mut() {
            let acc = (rem << 8) | u32::from(*byte);
            *byte = u8::try_from(acc / 62).unwrap_or(0);
            rem = acc % 62;
        }
        digits.push(BASE62[usize::try_from(rem).unwrap_or(0)]);
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

fn checksum(body: &str) -> String {
    base62(
        &crc32fast::hash(body.as_bytes()).to_be_bytes(),
        CHECKSUM_LEN,
    )
}

/// A new API token.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let body = base62(&bytes, BODY_LEN);
    let checksum = checksum(&body);
    format!("{PREFIX}{body}{checksum}")
}

/// Whether `token` has the API-token form: prefix, length, alphabet and a
/// valid checksum. Cheap (no allocation beyond the 6-digit checksum), for
/// refusing garbage before any lookup.
pub fn well_formed(token: &str) -> bool {
    let Some(rest) = token.strip_prefix(PREFIX) else {
        return false;
    };
    if rest.len() != BODY_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (body, sum) = rest.split_at(BODY_LEN);
    checksum(body) == sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_prefix_length_and_checksum() {
        let t = generate();
        assert!(t.starts_with("tny_"));
        assert_eq!(t.len(), LEN);
        assert!(well_formed(&t));
        let mut tampered = t.clone().into_bytes();
        tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
        assert!(!well_formed(&String::from_utf8(tampered).unwrap()));
        assert!(!well_formed("tny_short"));
        assert!(!well_formed(&format!("{}!", &t[..LEN - 1])));
        assert_ne!(generate(), t);
    }

    /// A token issued before this module existed (identity's own code,
    /// same form) stays well formed: the format is unchanged.
    #[test]
    fn a_token_in_the_issued_form_is_still_accepted() {
        let body = "0".repeat(BODY_LEN);
        let token = format!("{PREFIX}{body}{}", checksum(&body));
        assert!(well_formed(&token));
        assert_eq!(
            base62(&[0, 0, 0, 61], CHECKSUM_LEN),
            "00000z",
            "big-endian base62, zero-padded"
        );
    }
}
