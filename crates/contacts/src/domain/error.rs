//! The crate's one error type, mapped to [`tenancy_runtime::Error`] here and
//! nowhere else.

use std::time::Duration;

use tenancy_runtime::{Error, Reason};

/// Why a contacts operation was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContactsError {
    /// The contact does not exist in the caller's account.
    #[error("contact not found")]
    ContactNotFound,
    /// Another contact of the account has this address (normalised).
    #[error("another contact of the account has this email")]
    ContactEmailTaken,
    /// The account has [`MAX_CONTACTS`](super::contact::MAX_CONTACTS).
    #[error("an account has at most 100 contacts")]
    ContactLimitReached,
    /// A new contact asks for PRIMARY while the account has one.
    #[error("the account has a primary contact: use SetPrimaryContact")]
    PrimaryExists,
    /// An update adds PRIMARY to a contact that is not the primary.
    #[error("use SetPrimaryContact to change the primary contact")]
    PrimaryOnlyBySetPrimary,
    /// An update takes PRIMARY off the primary contact.
    #[error("the primary contact keeps PRIMARY: make another contact primary first")]
    PrimaryKeepsRole,
    /// The primary contact is deleted while others remain.
    #[error("make another contact primary before deleting the primary contact")]
    PrimaryDeletedFirst,
    /// The new primary contact's address is not verified.
    #[error("the new primary contact must have verified its email")]
    ContactEmailUnverified,
    /// A verification is resent for a verified address.
    #[error("the contact's email is verified")]
    ContactEmailAlreadyVerified,
    /// A verification message was sent too recently, or too many today.
    #[error("too many attempts; retry in {} s", retry_after.as_secs_f64().ceil())]
    VerificationResendTooSoon {
        /// When the next one may be sent.
        retry_after: Duration,
    },
    /// No contact's current verification token is this one.
    #[error("this link is not valid (superseded, or the contact was deleted)")]
    VerificationTokenInvalid,
    /// The verification token's lifetime is over.
    #[error("this link has expired: ask the account for a new one")]
    VerificationTokenExpired,
    /// No outbox message has this id.
    #[error("outbox message not found")]
    OutboxMessageNotFound,
    /// A request id (idempotency key) was used with other content.
    #[error("this request_id was used with different content")]
    RequestIdReused,
    /// The first call with this request id has not finished.
    #[error("retry")]
    RequestInProgress,
    /// The user whose preferences are asked for is no member of the account.
    #[error("no such member in this account")]
    MemberNotFound,
    /// Another member's preferences, asked for by someone not an OWNER.
    #[error("only an OWNER manages another member's preferences")]
    OwnerOnly,
    /// Notify or ResolveRecipients for an account that does not exist.
    #[error("no such account")]
    AccountNotFound,
}

impl From<ContactsError> for Error {
    fn from(error: ContactsError) -> Self {
        let message = error.to_string();
        let reason = match error {
            ContactsError::ContactNotFound => Reason::ContactNotFound,
            ContactsError::ContactEmailTaken => Reason::ContactEmailTaken,
            ContactsError::ContactLimitReached => Reason::ContactLimitReached,
            ContactsError::PrimaryExists | ContactsError::PrimaryOnlyBySetPrimary => {
                Reason::PrimaryChangeRequiresSetPrimary
            }
            ContactsError::PrimaryKeepsRole | ContactsError::PrimaryDeletedFirst => {
                Reason::PrimaryContactRequired
            }
            ContactsError::ContactEmailUnverified => Reason::ContactEmailUnverified,
            ContactsError::ContactEmailAlreadyVerified => Reason::ContactEmailAlreadyVerified,
            ContactsError::VerificationResendTooSoon { retry_after } => {
                return Error::throttled(Reason::VerificationResendTooSoon, retry_after);
            }
            ContactsError::VerificationTokenInvalid => Reason::VerificationTokenInvalid,
            ContactsError::VerificationTokenExpired => Reason::VerificationTokenExpired,
            ContactsError::OutboxMessageNotFound => Reason::OutboxMessageNotFound,
            ContactsError::RequestIdReused => Reason::RequestIdReused,
            ContactsError::RequestInProgress => Reason::RequestInProgress,
            ContactsError::MemberNotFound => Reason::MemberNotFound,
            ContactsError::OwnerOnly => {
                return Error::role_too_low(tenancy_proto::auth::Role::Owner, message);
            }
            ContactsError::AccountNotFound => Reason::AccountNotFound,
        };
        Error::new(reason, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_contacts_are_not_found() {
        let error = Error::from(ContactsError::ContactNotFound);
        assert_eq!(error.code(), tonic::Code::NotFound);
        assert_eq!(error.reason, Reason::ContactNotFound);
        assert_eq!(error.message, "contact not found");
    }

    #[test]
    fn both_primary_refusals_share_their_reason_with_their_own_message() {
        for (error, message) in [
            (
                ContactsError::PrimaryExists,
                "the account has a primary contact: use SetPrimaryContact",
            ),
            (
                ContactsError::PrimaryOnlyBySetPrimary,
                "use SetPrimaryContact to change the primary contact",
            ),
        ] {
            let error = Error::from(error);
            assert_eq!(error.reason, Reason::PrimaryChangeRequiresSetPrimary);
            assert_eq!(error.message, message);
        }
        let error = Error::from(ContactsError::PrimaryDeletedFirst);
        assert_eq!(error.reason, Reason::PrimaryContactRequired);
    }

    #[test]
    fn a_resend_too_soon_says_when_to_retry() {
        let error = Error::from(ContactsError::VerificationResendTooSoon {
            retry_after: Duration::from_millis(1500),
        });
        assert_eq!(error.reason, Reason::VerificationResendTooSoon);
        assert_eq!(error.retry_after, Some(Duration::from_millis(1500)));
        assert_eq!(error.message, "too many attempts; retry in 2 s");
    }

    #[test]
    fn another_members_preferences_need_an_owner() {
        let error = Error::from(ContactsError::OwnerOnly);
        assert_eq!(error.reason, Reason::RoleTooLow);
        assert_eq!(error.metadata["required_role"], "ROLE_OWNER");
    }
}
