//! Formats of the secrets the service hands out: API tokens, recovery codes,
//! code words.

use rand::Rng as _;
use tenancy_runtime::secret::sha256_hex;

/// API tokens: their form is shared with the gateway, which checks it
/// before asking identity about a token.
pub(crate) use tenancy_runtime::api_token::{
    generate as new_api_token, well_formed as api_token_well_formed,
};

use super::totp::SecretBox;

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
