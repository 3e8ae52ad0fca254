//! Contact fields: validation and the rules about roles.

use tenancy_runtime::Timestamp;
use tenancy_runtime::ids::{AccountId, ContactId};

use super::email;
use super::error::ContactsError;
use super::routing::Role;

/// A contact of an account, as the service shows and routes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// Its id.
    pub id: ContactId,
    /// Its account.
    pub account_id: AccountId,
    /// Display name.
    pub name: String,
    /// Address as entered.
    pub email: String,
    /// Whether the address is verified.
    pub email_verified: bool,
    /// When it was verified (ms since the epoch).
    pub email_verified_at: Option<i64>,
    /// When the current verification link was sent (ms).
    pub verification_sent_at: Option<i64>,
    /// When the current verification link expires (ms).
    pub verification_expires_at: Option<i64>,
    /// E.164 or empty.
    pub phone: String,
    /// Notes.
    pub notes: String,
    /// Its roles in enum order (PRIMARY first when it is the primary).
    pub roles: Vec<Role>,
    /// Created (ms).
    pub created_at: i64,
    /// Last changed (ms).
    pub updated_at: i64,
}

impl Contact {
    /// Whether it is the account's primary contact.
    pub fn is_primary(&self) -> bool {
        self.roles.contains(&Role::Primary)
    }
}

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

/// Validates a name (trimmed): 1 to 200 characters, one line (no control
/// or bidi formatting characters).
pub fn validate_name(name: &str) -> Result<(), &'static str> {
    match name.chars().count() {
        0 => Err("required"),
        n if n > MAX_NAME_CHARS => Err("at most 200 characters"),
        _ => tenancy_runtime::text::one_line(name),
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

/// How long a contact remembers a create's request id (a retry within it
/// returns the contact created first).
pub const REQUEST_ID_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The window [`RESENDS_PER_DAY`] counts in.
const RESEND_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Whether a new contact may be added to an account holding `count`
/// contacts, `has_primary` telling whether one of them is the primary. The
/// first contact becomes primary; asking for PRIMARY when there is one is
/// refused (SetPrimaryContact changes it).
pub fn check_new(count: u64, has_primary: bool, wants_primary: bool) -> Result<(), ContactsError> {
    if count >= MAX_CONTACTS {
        return Err(ContactsError::ContactLimitReached);
    }
    if wants_primary && has_primary {
        return Err(ContactsError::PrimaryExists);
    }
    Ok(())
}

/// Whether an update may set a contact's roles: PRIMARY stays where it is
/// (taken off the primary, or given to another, only by SetPrimaryContact).
pub fn check_roles_change(is_primary: bool, wants_primary: bool) -> Result<(), ContactsError> {
    match (is_primary, wants_primary) {
        (true, false) => Err(ContactsError::PrimaryKeepsRole),
        (false, true) => Err(ContactsError::PrimaryOnlyBySetPrimary),
        _ => Ok(()),
    }
}

/// Whether a contact may be deleted: the primary only when it is the last
/// (`others`: how many other contacts the account has).
pub fn check_delete(is_primary: bool, others: u64) -> Result<(), ContactsError> {
    if is_primary && others > 0 {
        Err(ContactsError::PrimaryDeletedFirst)
    } else {
        Ok(())
    }
}

/// Whether a contact may become the primary: its address is verified.
pub fn check_new_primary(email_verified: bool) -> Result<(), ContactsError> {
    if email_verified {
        Ok(())
    } else {
        Err(ContactsError::ContactEmailUnverified)
    }
}

/// A contact's verification-resend state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resends {
    /// When the last verification message was sent.
    pub last_sent: Option<Timestamp>,
    /// When the current day's window started.
    pub window_start: Option<Timestamp>,
    /// Messages sent in that window.
    pub count: i32,
}

/// The resend state after one more verification message at `now`, or why
/// not yet: a verified address needs none; at most one per
/// [`RESEND_INTERVAL`] and [`RESENDS_PER_DAY`] per day.
pub fn resend(
    email_verified: bool,
    before: Resends,
    now: Timestamp,
) -> Result<Resends, ContactsError> {
    if email_verified {
        return Err(ContactsError::ContactEmailAlreadyVerified);
    }
    let wait_until = |t: Timestamp| ContactsError::VerificationResendTooSoon {
        retry_after: std::time::Duration::from_millis(
            u64::try_from(t.millis() - now.millis()).unwrap_or(0),
        ),
    };
    if let Some(sent) = before.last_sent {
        let next = sent.plus(RESEND_INTERVAL);
        if now < next {
            return Err(wait_until(next));
        }
    }
    let (window, count) = match before.window_start {
        Some(start) if now < start.plus(RESEND_WINDOW) => (start, before.count),
        _ => (now, 0),
    };
    if count >= RESENDS_PER_DAY {
        return Err(wait_until(window.plus(RESEND_WINDOW)));
    }
    Ok(Resends {
        last_sent: Some(now),
        window_start: Some(window),
        count: count + 1,
    })
}

/// Whether a verification token that expires at `expires_at` is still good
/// at `now`.
pub fn check_token_fresh(
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> Result<(), ContactsError> {
    if expires_at.is_none_or(|t| now >= t) {
        Err(ContactsError::VerificationTokenExpired)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hundredth_contact_is_the_last_and_primary_is_taken_once() {
        assert!(check_new(99, true, false).is_ok());
        assert_eq!(
            check_new(100, true, false),
            Err(ContactsError::ContactLimitReached)
        );
        assert!(check_new(0, false, true).is_ok());
        assert_eq!(check_new(3, true, true), Err(ContactsError::PrimaryExists));
    }

    #[test]
    fn primary_moves_only_by_set_primary_and_is_deleted_last() {
        assert!(check_roles_change(true, true).is_ok());
        assert!(check_roles_change(false, false).is_ok());
        assert_eq!(
            check_roles_change(true, false),
            Err(ContactsError::PrimaryKeepsRole)
        );
        assert_eq!(
            check_roles_change(false, true),
            Err(ContactsError::PrimaryOnlyBySetPrimary)
        );
        assert!(check_delete(true, 0).is_ok());
        assert!(check_delete(false, 5).is_ok());
        assert_eq!(
            check_delete(true, 1),
            Err(ContactsError::PrimaryDeletedFirst)
        );
        assert_eq!(
            check_new_primary(false),
            Err(ContactsError::ContactEmailUnverified)
        );
    }

    #[test]
    fn resends_wait_a_minute_and_stop_at_ten_a_day() {
        let t0 = Timestamp(1_000_000_000);
        let first = Resends {
            last_sent: Some(t0),
            window_start: Some(t0),
            count: 1,
        };
        assert_eq!(
            resend(true, first, t0.plus(RESEND_INTERVAL)),
            Err(ContactsError::ContactEmailAlreadyVerified)
        );
        assert_eq!(
            resend(false, first, Timestamp(t0.millis() + 59_000)),
            Err(ContactsError::VerificationResendTooSoon {
                retry_after: std::time::Duration::from_secs(1)
            })
        );
        let mut state = first;
        let mut now = t0;
        for _ in 1..RESENDS_PER_DAY {
            now = now.plus(RESEND_INTERVAL);
            state = resend(false, state, now).unwrap();
        }
        assert_eq!(state.count, RESENDS_PER_DAY);
        assert_eq!(state.window_start, Some(t0));
        let refused = resend(false, state, now.plus(RESEND_INTERVAL));
        assert!(matches!(
            refused,
            Err(ContactsError::VerificationResendTooSoon { .. })
        ));
        let next_day = resend(false, state, t0.plus(RESEND_WINDOW)).unwrap();
        assert_eq!(next_day.count, 1);
        assert_eq!(next_day.window_start, Some(t0.plus(RESEND_WINDOW)));
    }

    #[test]
    fn a_token_is_good_until_it_expires() {
        let t = Timestamp(5_000);
        assert!(check_token_fresh(Some(Timestamp(5_001)), t).is_ok());
        assert_eq!(
            check_token_fresh(Some(t), t),
            Err(ContactsError::VerificationTokenExpired)
        );
        assert_eq!(
            check_token_fresh(None, t),
            Err(ContactsError::VerificationTokenExpired)
        );
    }

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
