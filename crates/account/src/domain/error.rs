//! The account service's refusals: the one vocabulary its rules speak, and
//! the one place that turns them into a gRPC answer (reason, message,
//! metadata).

use tenancy_proto::auth::Role as AuthRole;
use tenancy_runtime::ids::ServiceId;
use tenancy_runtime::{Error, Reason};

use super::Role;

/// Why the account service refuses a request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccountError {
    /// The caller is not (or no longer) a member of the account.
    #[error("you are not a member of this account")]
    NotAMember,
    /// The caller's membership is suspended.
    #[error("your membership of this account is suspended")]
    CallerSuspended,
    /// The caller may not sign in to the account.
    #[error("you may not sign in to this account")]
    PortalAccessDisabled,
    /// The caller's role is below what the method needs.
    #[error("your role in this account does not allow this")]
    RoleTooLow {
        /// The role the method needs.
        required: Role,
    },
    /// The account does not exist.
    #[error("account not found")]
    AccountNotFound,
    /// The member does not exist.
    #[error("member not found")]
    MemberNotFound,
    /// The membership was revoked: only a new invitation brings it back.
    #[error("the membership was revoked; invite them again")]
    MemberRevoked,
    /// The change does not apply to an API member (never an owner, never
    /// portal access), or an API-member change named a person.
    #[error("{0}")]
    ApiMemberRestricted(&'static str),
    /// The person is a member already.
    #[error("this person is already a member")]
    MemberExists,
    /// The invitee is a member already.
    #[error("you are already a member of this account")]
    AlreadyMember,
    /// No such invitation (or not of the caller's account).
    #[error("invitation not found")]
    InvitationNotFound,
    /// The invitation was accepted.
    #[error("the invitation was already accepted")]
    InvitationUsed,
    /// The invitation was cancelled.
    #[error("the invitation was cancelled")]
    InvitationCancelled,
    /// The invitation expired.
    #[error("the invitation expired; ask for a new one")]
    InvitationExpired,
    /// The invitation was sent less than a minute ago.
    #[error("too many attempts; retry in {} s", wait.as_secs_f64().ceil())]
    InvitationResendTooSoon {
        /// How long until it may be sent again.
        wait: std::time::Duration,
    },
    /// A pending invitation for the email exists.
    #[error("a pending invitation for this email exists; resend it instead")]
    InvitationPending,
    /// The change would leave the account without an active owner.
    #[error("the account must keep at least one active owner with portal access")]
    LastActiveOwner,
    /// A method that acts on others named the caller.
    #[error("use LeaveAccount")]
    TargetIsSelf,
    /// The service does not exist (or the caller may not see it).
    #[error("service not found")]
    ServiceNotFound,
    /// The user created as many accounts as one may.
    #[error("a user may create at most {max} accounts")]
    AccountLimitReached {
        /// The limit.
        max: i64,
    },
    /// Another service of the account has this external id.
    #[error("another service of the account has this external_id")]
    ExternalIdInUse {
        /// The service holding it (`None` if it went away meanwhile: the
        /// metadata is then empty).
        service_id: Option<ServiceId>,
    },
}

impl From<AccountError> for Error {
    fn from(error: AccountError) -> Self {
        let message = error.to_string();
        match error {
            AccountError::NotAMember => Error::new(Reason::NotAMember, message),
            AccountError::CallerSuspended => Error::new(Reason::MemberSuspended, message),
            AccountError::PortalAccessDisabled => Error::new(Reason::PortalAccessDisabled, message),
            AccountError::RoleTooLow { required } => Error::role_too_low(
                AuthRole::try_from(required.code()).unwrap_or(AuthRole::Owner),
                message,
            ),
            AccountError::AccountNotFound => Error::new(Reason::AccountNotFound, message),
            AccountError::MemberNotFound => Error::new(Reason::MemberNotFound, message),
            AccountError::MemberRevoked => Error::new(Reason::MemberRevoked, message),
            AccountError::ApiMemberRestricted(_) => {
                Error::new(Reason::ApiMemberRestricted, message)
            }
            AccountError::MemberExists => Error::new(Reason::MemberExists, message),
            AccountError::AlreadyMember => Error::new(Reason::MemberExists, message),
            AccountError::InvitationNotFound => Error::new(Reason::InvitationNotFound, message),
            AccountError::InvitationUsed => Error::new(Reason::InvitationUsed, message),
            AccountError::InvitationCancelled => Error::new(Reason::InvitationCancelled, message),
            AccountError::InvitationExpired => Error::new(Reason::InvitationExpired, message),
            AccountError::InvitationResendTooSoon { wait } => {
                Error::throttled(Reason::InvitationResendTooSoon, wait)
            }
            AccountError::InvitationPending => Error::new(Reason::InvitationPending, message),
            AccountError::LastActiveOwner => Error::new(Reason::LastActiveOwner, message),
            AccountError::TargetIsSelf => Error::new(Reason::TargetIsSelf, message),
            AccountError::ServiceNotFound => Error::new(Reason::ServiceNotFound, message),
            AccountError::AccountLimitReached { .. } => {
                Error::new(Reason::AccountLimitReached, message)
            }
            AccountError::ExternalIdInUse { service_id } => {
                Error::new(Reason::ExternalIdInUse, message).with_metadata(
                    "service_id",
                    service_id.map(ServiceId::into_string).unwrap_or_default(),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every refusal keeps the code, reason and message clients saw before
    /// the enum existed; ROLE_TOO_LOW names the role needed.
    #[test]
    fn each_refusal_has_its_reason_code_and_message() {
        let cases = [
            (AccountError::NotAMember, Reason::NotAMember),
            (AccountError::CallerSuspended, Reason::MemberSuspended),
            (
                AccountError::PortalAccessDisabled,
                Reason::PortalAccessDisabled,
            ),
            (AccountError::AccountNotFound, Reason::AccountNotFound),
            (AccountError::MemberNotFound, Reason::MemberNotFound),
            (AccountError::MemberRevoked, Reason::MemberRevoked),
            (AccountError::MemberExists, Reason::MemberExists),
            (AccountError::LastActiveOwner, Reason::LastActiveOwner),
            (AccountError::AlreadyMember, Reason::MemberExists),
            (AccountError::InvitationNotFound, Reason::InvitationNotFound),
            (AccountError::InvitationUsed, Reason::InvitationUsed),
            (
                AccountError::InvitationCancelled,
                Reason::InvitationCancelled,
            ),
            (AccountError::InvitationExpired, Reason::InvitationExpired),
            (AccountError::InvitationPending, Reason::InvitationPending),
            (AccountError::TargetIsSelf, Reason::TargetIsSelf),
            (AccountError::ServiceNotFound, Reason::ServiceNotFound),
        ];
        for (error, reason) in cases {
            let message = error.to_string();
            let mapped = Error::from(error);
            assert_eq!(mapped.reason, reason);
            assert_eq!(mapped.message, message);
        }
        let mapped = Error::from(AccountError::RoleTooLow {
            required: Role::Owner,
        });
        assert_eq!(mapped.reason, Reason::RoleTooLow);
        assert_eq!(
            mapped.metadata.get("required_role").map(String::as_str),
            Some("ROLE_OWNER")
        );
        let wait = std::time::Duration::from_millis(1500);
        let error = AccountError::InvitationResendTooSoon { wait };
        let message = error.to_string();
        let mapped = Error::from(error);
        assert_eq!(mapped.reason, Reason::InvitationResendTooSoon);
        assert_eq!(mapped.message, message);
        assert_eq!(mapped.message, "too many attempts; retry in 2 s");
        assert_eq!(mapped.retry_after, Some(wait));
        let mapped = Error::from(AccountError::AccountLimitReached { max: 100 });
        assert_eq!(mapped.reason, Reason::AccountLimitReached);
        assert_eq!(mapped.message, "a user may create at most 100 accounts");
        let mapped = Error::from(AccountError::ExternalIdInUse {
            service_id: Some(ServiceId::trusted("s1")),
        });
        assert_eq!(mapped.reason, Reason::ExternalIdInUse);
        assert_eq!(
            mapped.metadata.get("service_id").map(String::as_str),
            Some("s1")
        );
        assert_eq!(
            Error::from(AccountError::MemberRevoked).message,
            "the membership was revoked; invite them again"
        );
    }
}
