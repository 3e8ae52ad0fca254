//! Phone verification codes (issue 17 §2): six digits, valid ten minutes,
//! five wrong guesses, five codes per user an hour, stored as a keyed hash
//! bound to the user and the number.

use std::time::Duration;

use rand::Rng as _;

use super::error::{IdentityError, Invalid};
use super::totp::SecretBox;

/// How long a code is valid.
pub(crate) const CODE_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Wrong guesses after which a code is spent.
pub(crate) const MAX_FAILURES: i32 = 5;
/// Codes one user may have sent per [`SEND_WINDOW`].
pub(crate) const MAX_CODES_PER_WINDOW: i32 = 5;
/// The window of [`MAX_CODES_PER_WINDOW`].
pub(crate) const SEND_WINDOW: Duration = Duration::from_secs(3600);
/// The longest code input looked at (longer is wrong without hashing).
pub(crate) const MAX_CODE_INPUT: usize = 16;

/// `input` as the E.164 number stored (`runtime::text::phone`), or
/// PHONE_INVALID naming `field`.
pub(crate) fn parse_phone(field: &str, input: &str) -> Result<String, IdentityError> {
    tenancy_runtime::text::phone(input)
        .map_err(|why| IdentityError::invalid(Invalid::Phone, field, why))
}

/// A fresh six-digit code.
pub(crate) fn new_code() -> String {
    format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32))
}

/// The stored form of `code` sent to `phone` for `user_id`: HMAC under a
/// key derived from the at-rest key, so a code for another user or number
/// never matches and a copy of the database gives nothing to search.
pub(crate) fn code_hash(key: &SecretBox, user_id: &str, phone: &str, code: &str) -> String {
    let data = format!("{user_id}\n{phone}\n{code}");
    hex::encode(key.keyed_hash(b"tenancy identity phone code v1", data.as_bytes()))
}

/// `phone` as a notice shows it: the country code's first digits and the
/// last two digits, the rest hidden.
pub(crate) fn masked(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 6 {
        return "•".repeat(digits.len());
    }
    let head: String = digits[..2].iter().collect();
    let tail: String = digits[digits.len() - 2..].iter().collect();
    format!("+{head}{}{tail}", "•".repeat(digits.len() - 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_bound_to_user_and_number() {
        let code = new_code();
        assert_eq!(code.len(), 6);
        assert!(code.bytes().all(|b| b.is_ascii_digit()));
        let key = SecretBox::new([3; 32]);
        let hash = code_hash(&key, "u1", "+358401234567", "123456");
        assert_eq!(hash, code_hash(&key, "u1", "+358401234567", "123456"));
        assert_ne!(hash, code_hash(&key, "u2", "+358401234567", "123456"));
        assert_ne!(hash, code_hash(&key, "u1", "+358401234568", "123456"));
        assert_ne!(
            hash,
            code_hash(&SecretBox::new([4; 32]), "u1", "+358401234567", "123456")
        );
    }

    #[test]
    fn masked_numbers_keep_only_their_ends() {
        assert_eq!(masked("+358401234567"), format!("+35{}67", "•".repeat(8)));
    }
}
