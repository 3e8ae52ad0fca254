//! Email addresses: validation and the normalised form used for
//! de-duplication and look-ups.

/// The longest address accepted (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;

/// The normalised form of an address: trimmed and lower-cased. Two
/// addresses with the same normalised form are the same recipient.
pub fn normalize(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Checks that `email` (already trimmed) looks like an RFC 5321 mailbox:
/// one `@`, a non-empty local part, a domain with a dot, no spaces or
/// control characters, at most 254 characters.
pub fn validate(email: &str) -> Result<(), &'static str> {
    if email.is_empty() {
        return Err("required");
    }
    if email.len() > MAX_EMAIL_LEN {
        return Err("at most 254 characters");
    }
    if email
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '"'))
    {
        return Err("must not contain spaces, quotes or separators");
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err("not an email address");
    };
    if local.is_empty() || local.len() > 64 || local.contains('@') {
        return Err("not an email address");
    }
    if domain.len() < 3
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
    {
        return Err("not an email address");
    }
    Ok(())
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
