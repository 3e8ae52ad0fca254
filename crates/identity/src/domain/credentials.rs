//! Formats of the secrets the service hands out: API tokens, recovery codes,
//! code words.

use rand::Rng as _;
use rand::RngCore as _;
use tenancy_runtime::secret::sha256_hex;

use super::totp::SecretBox;

/// Prefix of Public API tokens.
pub(crate) const API_TOKEN_PREFIX: &str = "tny_";
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Base62 characters encoding 32 random bytes.
const BODY_LEN: usize = 43;
/// Base62 characters encoding the CRC32 checksum.
const CHECKSUM_LEN: usize = 6;

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

/// A new API token: `tny_` + base62(32 random bytes) + base62(CRC32 of the
/// body), recognisable by secret scanners and checkable offline.
pub(crate) fn new_api_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let body = base62(&bytes, BODY_LEN);
    let checksum = base62(
        &crc32fast::hash(body.as_bytes()).to_be_bytes(),
        CHECKSUM_LEN,
    );
    format!("{API_TOKEN_PREFIX}{body}{checksum}")
}

/// Whether `token` has the API-token shape and a valid checksum (cheap
/// rejection of garbage before any lookup).
pub(crate) fn api_token_well_formed(token: &str) -> bool {
    let Some(rest) = token.strip_prefix(API_TOKEN_PREFIX) else {
        return false;
    };
    if rest.len() != BODY_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (body, checksum) = rest.split_at(BODY_LEN);
    base62(
        &crc32fast::hash(body.as_bytes()).to_be_bytes(),
        CHECKSUM_LEN,
    ) == checksum
}

/// Ten fresh recovery codes, `xxxxx-xxxxx` in lower-case base32.
pub(crate) fn new_recovery_codes() -> Vec<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::rngs::OsRng;
    (0..10)
        .map(|_| {
            let chars: String = (0..10)
                .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
                .collect();
            format!("{}-{}", &chars[..5], &chars[5..])
        })
        .collect()
}

/// Marks the stored form of recovery codes keyed with the server's key.
pub(crate) const RECOVERY_KEYED: &str = "k1:";

/// The stored form of a recovery code: HMAC-SHA256, under a key derived
/// from the at-rest key (`auth.totp_encryption_key`, never stored in the
/// database), of the unkeyed form ([`unkeyed_recovery_code_hash`]),
/// marked [`RECOVERY_KEYED`]. A code holds only 50 bits, which an offline
/// search through SHA-256 alone would find; without the key, a copy of the
/// database gives nothing to search against.
pub(crate) fn recovery_code_hash(key: &SecretBox, user_id: &str, code: &str) -> String {
    rekeyed_recovery_code_hash(key, &unkeyed_recovery_code_hash(user_id, code))
}

/// The stored form of a code from its unkeyed form (what earlier versions
/// stored, which the service re-keys in place at start).
pub(crate) fn rekeyed_recovery_code_hash(key: &SecretBox, unkeyed: &str) -> String {
    format!(
        "{RECOVERY_KEYED}{}",
        hex::encode(key.keyed_hash(b"tenancy identity recovery codes v1", unkeyed.as_bytes()))
    )
}

/// SHA-256 over the user id and the code normalised (case-insensitive,
/// spaces and hyphens ignored): the input of the keyed hash.
fn unkeyed_recovery_code_hash(user_id: &str, code: &str) -> String {
    let normalised: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    sha256_hex(format!("{user_id}:{normalised}").as_bytes())
}

/// A code word normalised for comparison: trimmed, inner white space
/// collapsed, lower-cased. `None` unless 4–64 code points.
pub(crate) fn normalise_code_word(raw: &str) -> Option<String> {
    let collapsed = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    let lower = collapsed.to_lowercase();
    (4..=64).contains(&lower.chars().count()).then_some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_tokens_have_prefix_length_and_checksum() {
        let t = new_api_token();
        assert!(t.starts_with("tny_"));
        assert_eq!(t.len(), 4 + 43 + 6);
        assert!(api_token_well_formed(&t));
        let mut tampered = t.clone().into_bytes();
        tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
        assert!(!api_token_well_formed(
            &String::from_utf8(tampered).unwrap()
        ));
        assert!(!api_token_well_formed("tny_short"));
        assert_ne!(new_api_token(), t);
    }

    #[test]
    fn recovery_codes_are_ten_and_normalise() {
        let key = SecretBox::new([7; 32]);
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        assert_eq!(codes[0].len(), 11);
        assert_eq!(
            recovery_code_hash(&key, "u", &codes[0]),
            recovery_code_hash(&key, "u", &codes[0].to_uppercase().replace('-', " "))
        );
        assert_ne!(
            recovery_code_hash(&key, "u", &codes[0]),
            recovery_code_hash(&key, "v", &codes[0])
        );
    }

    #[test]
    fn recovery_codes_are_stored_keyed() {
        let code = "abcde-fghij";
        let stored = recovery_code_hash(&SecretBox::new([7; 32]), "u", code);
        assert!(stored.starts_with(RECOVERY_KEYED));
        // Not the plain SHA-256 earlier versions stored, and another key
        // gives another value.
        assert_ne!(stored, unkeyed_recovery_code_hash("u", code));
        assert!(!stored.contains(&unkeyed_recovery_code_hash("u", code)));
        assert_ne!(
            stored,
            recovery_code_hash(&SecretBox::new([8; 32]), "u", code)
        );
        // A stored unkeyed value re-keys to what the code hashes to now.
        assert_eq!(
            rekeyed_recovery_code_hash(
                &SecretBox::new([7; 32]),
                &unkeyed_recovery_code_hash("u", code)
            ),
            stored
        );
    }

    #[test]
    fn code_words_normalise_and_are_bounded() {
        assert_eq!(
            normalise_code_word("  Blue   Moon "),
            Some("blue moon".into())
        );
        assert_eq!(normalise_code_word("abc"), None);
        assert_eq!(normalise_code_word(&"x".repeat(65)), None);
    }
}
