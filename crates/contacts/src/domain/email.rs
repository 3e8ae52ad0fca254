//! Email addresses: validation and the normalised form used for
//! de-duplication and look-ups.

/// The normalised form of an address: trimmed and lower-cased. Two
/// addresses with the same normalised form are the same recipient.
pub fn normalize(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Checks that `email` (already trimmed) is an address in the syntax of
/// [`tenancy_runtime::text::email`] (no IP literals, no quoted local
/// parts, a dotted host name).
pub fn validate(email: &str) -> Result<(), &'static str> {
    tenancy_runtime::text::email(email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_trims_and_lowercases() {
        assert_eq!(normalize("  Alice@Example.COM "), "alice@example.com");
    }

    #[test]
    fn plausible_addresses_pass_and_others_are_refused() {
        assert!(validate("a@example.com").is_ok());
        assert!(validate("first.last+tag@sub.example.co.uk").is_ok());
        for bad in [
            "",
            "no-at",
            "@example.com",
            "a@",
            "a@b",
            "a@.com",
            "a b@example.com",
            "a@example.com.",
            "a@@example.com",
            "<a@example.com>",
        ] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
        assert!(validate(&format!("{}@example.com", "a".repeat(250))).is_err());
    }
}
