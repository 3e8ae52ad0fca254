//! Secrets: random tokens, their stored hashes, constant-time comparison.
//!
//! High-entropy secrets (API tokens, refresh tokens, email links) are stored
//! as SHA-256: a slow hash buys nothing against 256-bit randomness, and the
//! lookup by hash stays an index scan. Low-entropy secrets are the identity
//! service's business: passwords and code words use argon2id there;
//! recovery codes (50 bits, looked up by hash) a keyed hash (HMAC-SHA256
//! under a key derived from the at-rest key, which is not in the database).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
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

/// HMAC-SHA256 under a 32-byte key (zero-padded to the 64-byte block, as
/// HMAC pads any shorter key).
pub fn mac(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    use hmac::Mac as _;
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new(&block.into());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Encrypts secrets at rest with a 32-byte key (XChaCha20-Poly1305): TOTP
/// secrets and signing keys in identity, secrets in contacts' outbox.
#[derive(Clone)]
pub struct SecretBox {
    key: [u8; 32],
}

impl SecretBox {
    /// A box for `key`.
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// base64(nonce ‖ ciphertext), bound to `context` (the user id).
    pub fn seal(&self, plain: &[u8], context: &str) -> Result<String, String> {
        let cipher = XChaCha20Poly1305::new((&self.key).into());
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|e| e.to_string())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(STANDARD.encode(out))
    }

    /// HMAC-SHA256 of `data` under a key derived from this one for
    /// `purpose` (a fixed label per use), for secrets stored as keyed
    /// hashes.
    pub fn keyed_hash(&self, purpose: &[u8], data: &[u8]) -> [u8; 32] {
        let derived = mac(&self.key, purpose);
        mac(&derived, data)
    }

    /// The plain text of what [`Self::seal`] made with `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, String> {
        let bytes = STANDARD.decode(sealed).map_err(|e| e.to_string())?;
        if bytes.len() < 24 {
            return Err("sealed secret too short".into());
        }
        let (nonce, body) = bytes.split_at(24);
        XChaCha20Poly1305::new((&self.key).into())
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| "cannot decrypt secret".to_owned())
    }
}

/// A 32-byte key from the setting `setting`: its value `text` (hex or
/// base64 of 32 bytes) when set, else HMAC-SHA256 of `label` under the
/// principal key (`principal_hex`), so each use gets its own key.
pub fn key_setting(
    setting: &str,
    text: Option<&str>,
    principal_hex: &str,
    label: &[u8],
) -> Result<[u8; 32], crate::config::ConfigError> {
    use crate::config::ConfigError;
    if let Some(text) = text {
        let text = text.trim();
        let bytes = hex::decode(text)
            .ok()
            .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
            .ok_or_else(|| ConfigError::new(setting, "must be hex or base64 of 32 bytes"))?;
        return <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| ConfigError::new(setting, "must be exactly 32 bytes"));
    }
    let principal = hex::decode(principal_hex)
        .map_err(|e| ConfigError::new(setting, format_args!("principal key: {e}")))?;
    let mut mac = <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(&principal)
        .map_err(|e| ConfigError::new(setting, e))?;
    hmac::Mac::update(&mut mac, label);
    Ok(hmac::Mac::finalize(mac).into_bytes().into())
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

    /// The padded key is HMAC's own key handling (RFC 4231 case 2 shape:
    /// compare with the library's variable-length key path).
    #[test]
    fn keyed_hashes_are_hmac_sha256() {
        use hmac::Mac as _;
        let key = [9u8; 32];
        let mut reference = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&key).unwrap();
        reference.update(b"data");
        let expected: [u8; 32] = reference.finalize().into_bytes().into();
        assert_eq!(mac(&key, b"data"), expected);
        let b = SecretBox::new(key);
        assert_ne!(b.keyed_hash(b"a", b"data"), b.keyed_hash(b"b", b"data"));
    }

    #[test]
    fn sealed_secrets_open_only_with_the_key_and_context() {
        let b = SecretBox::new([7; 32]);
        let sealed = b.seal(b"secret", "user-1").unwrap();
        assert_eq!(b.open(&sealed, "user-1").unwrap(), b"secret");
        assert!(b.open(&sealed, "user-2").is_err());
        assert!(SecretBox::new([8; 32]).open(&sealed, "user-1").is_err());
    }
}
