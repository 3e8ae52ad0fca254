//! Secrets: random tokens, their stored hashes, constant-time comparison.
//!
//! High-entropy secrets (API tokens, refresh tokens, email links) are stored
//! as SHA-256: a slow hash buys nothing against 256-bit randomness, and the
//! lookup by hash stays an index scan. Low-entropy secrets are the identity
//! service's business: passwords and code words use argon2id there;
//! recovery codes (50 bits, looked up by hash) a keyed hash (HMAC-SHA256
//! under a key derived from the at-rest key, which is not in the database).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

/// A secret value shown to a client once. Neither `Debug` nor `Display`, so
/// it cannot reach a log by accident; `expose` is the one way out.
pub struct SecretToken(String);

impl SecretToken {
    /// `prefix` followed by 32 random bytes, base64url (43 characters).
    pub fn generate(prefix: &str) -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Wraps a secret a client sent.
    pub fn from_client(value: String) -> Self {
        Self(value)
    }

    /// The secret itself, for the one response that shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the database stores.
    pub fn hash(&self) -> String {
        sha256_hex(self.0.as_bytes())
    }
}

/// SHA-256 as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_prefixed_unique_and_hash_stably() {
        let a = SecretToken::generate("tnr_");
        let b = SecretToken::generate("tnr_");
        assert!(a.expose().starts_with("tnr_"));
        assert_eq!(a.expose().len(), 4 + 43);
        assert_ne!(a.expose(), b.expose());
        assert_eq!(
            a.hash(),
            SecretToken::from_client(a.expose().to_owned()).hash()
        );
        assert!(!a.hash().contains(a.expose()));
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
