//! Contact fields: validation and the rules about roles.

use super::email;
use super::routing::Role;

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest notes, in characters.
pub const MAX_NOTES_CHARS: usize = 2000;
/// Most contacts per account.
pub const MAX_CONTACTS: u64 = 100;
/// A verification link's lifetime.
pub const VERIFICATION_LIFETIME: std::time::Duration =
    std::time::Duration::from_secs(7 * 24 * 3600);
/// Least time between two verification messages.
pub const RESEND_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
/// Most verification messages per contact per day.
pub const RESENDS_PER_DAY: i32 = 10;

/// Validates a name (trimmed): 1 to 200 characters.
pub fn validate_name(name: &str) -> Result<(), &'static str> {
    match name.chars().count() {
        0 => Err("required"),
        n if n > MAX_NAME_CHARS => Err("at most 200 characters"),
        _ if name.chars().any(char::is_control) => Err("must not contain control characters"),
        _ => Ok(()),
    }
}

/// Validates an address (trimmed).
pub fn validate_email(address: &str) -> Result<(), &'static str> {
    email::validate(address)
}

/// Validates a phone number: empty, or E.164 (`+`, then 8 to 15 digits, the
/// first not 0).
pub fn validate_phone(phone: &str) -> Result<(), &'static str> {
    if phone.is_empty() {
        return Ok(());
    }
    let digits = phone
        .strip_prefix('+')
        .ok_or("must be E.164: +, country code, number")?;
    let ok = (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(())
    } else {
        Err("must be E.164: +, country code, number, 8 to 15 digits, no spaces")
    }
}

/// Validates notes: at most 2000 characters.
pub fn validate_notes(notes: &str) -> Result<(), &'static str> {
    if notes.chars().count() > MAX_NOTES_CHARS {
        Err("at most 2000 characters")
    } else {
        Ok(())
    }
}

/// Parses roles from proto numbers: duplicates collapsed, sorted; an
/// UNSPECIFIED or unknown value is refused.
pub fn parse_roles(values: &[i32]) -> Result<Vec<Role>, &'static str> {
    let mut roles = values
        .iter()
        .map(|v| Role::from_i32(*v).ok_or("UNSPECIFIED or unknown role"))
        .collect::<Result<Vec<_>, _>>()?;
    roles.sort();
    roles.dedup();
    Ok(roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_must_be_e164() {
        assert!(validate_phone("").is_ok());
        assert!(validate_phone("+14155550100").is_ok());
        assert!(validate_phone("+4930123456").is_ok());
        for bad in [
            "14155550100",
            "+1 415 555 0100",
            "+1-415-555-0100",
            "+1234567",
            "+1234567890123456",
            "+0123456789",
            "+1415555010a",
        ] {
            assert!(validate_phone(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_notes_have_limits() {
        assert!(validate_name("").is_err());
        assert!(validate_name(&"n".repeat(200)).is_ok());
        assert!(validate_name(&"n".repeat(201)).is_err());
        assert!(validate_notes(&"n".repeat(2000)).is_ok());
        assert!(validate_notes(&"n".repeat(2001)).is_err());
    }

    #[test]
    fn roles_are_deduplicated_sorted_and_unspecified_is_refused() {
        assert_eq!(
            parse_roles(&[4, 2, 4]).unwrap(),
            [Role::Billing, Role::Emergency]
        );
        assert!(parse_roles(&[0]).is_err());
        assert!(parse_roles(&[9]).is_err());
    }
}
