//! Formats of the secrets the service hands out: API tokens, recovery codes,
//! code words.

use rand::Rng as _;
use tenancy_runtime::secret::sha256_hex;

/// API tokens: their form is shared with the gateway, which checks it
/// before asking identity about a token.
pub(crate) use tenancy_runtime::api_token::{
    generate as new_api_token, well_formed as api_token_well_formed,
};

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

/// The stored form of a recovery code: SHA-256 over the user id and the
/// code normalised (case-insensitive, spaces and hyphens ignored).
pub(crate) fn recovery_code_hash(user_id: &str, code: &str) -> String {
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
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        assert_eq!(codes[0].len(), 11);
        assert_eq!(
            recovery_code_hash("u", &codes[0]),
            recovery_code_hash("u", &codes[0].to_uppercase().replace('-', " "))
        );
        assert_ne!(
            recovery_code_hash("u", &codes[0]),
            recovery_code_hash("v", &codes[0])
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
