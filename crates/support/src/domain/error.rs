//! The crate's one error type, mapped to [`tenancy_runtime::Error`] here and
//! nowhere else.

use tenancy_runtime::ids::{AccountId, UserId};
use tenancy_runtime::{Error, Reason};

use super::Status;

/// Why a support operation was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SupportError {
    /// The ticket does not exist or the caller may not see it.
    #[error("ticket not found")]
    TicketNotFound,
    /// The service is not one of the account's the caller may access.
    #[error("service not found")]
    ServiceNotFound,
    /// The ticket is CLOSED: reopen it first.
    #[error("the ticket is closed; reopen it first")]
    TicketClosed,
    /// The status change is not in the transition table.
    #[error("a ticket cannot go from {from:?} to {to:?}")]
    InvalidTransition {
        /// The current status.
        from: Status,
        /// The refused target.
        to: Status,
    },
    /// Staff may not reach the account: no active support-access grant.
    #[error("the account has not granted support access")]
    SupportAccessNotGranted {
        /// The account concerned.
        account_id: AccountId,
    },
    /// A request id was reused with different content.
    #[error("request_id was used for a different request")]
    RequestIdReused,
    /// The caller is no active member of the selected account.
    #[error("not an active member of the account")]
    NotAMember,
    /// A CC user of a new ticket (`cc_user_ids[index]`) may not see it.
    #[error("a CC user is not an active member who may see the ticket")]
    CcUserNotEligible {
        /// Where in `cc_user_ids`.
        index: usize,
    },
    /// A user added as CC (`add_user_ids[index]`) may not see the ticket.
    #[error("a user is not an active member who may see the ticket")]
    AddedUserNotEligible {
        /// Where in `add_user_ids`.
        index: usize,
    },
    /// A ticket would have more than [`MAX_CC`](super::validate::MAX_CC)
    /// CC users.
    #[error("at most 20 CC users")]
    CcLimitExceeded {
        /// The request field that added them.
        field: &'static str,
    },
    /// The assignee is not on the support team.
    #[error("the user is not on the support team")]
    AssigneeNotStaff,
    /// The ticket of a caller verification belongs to another account.
    #[error("the ticket belongs to another account")]
    TicketAccountMismatch,
    /// The user to verify is no member of the account.
    #[error("no such member of the account")]
    MemberNotFound,
    /// A concurrent call with the same request id is being processed.
    #[error("the same request_id is being processed; retry")]
    RequestInProgress,
    /// Someone else holds the ticket.
    #[error("the ticket is assigned to someone else")]
    AlreadyAssigned {
        /// The current assignee.
        assignee_user_id: UserId,
    },
}

impl From<SupportError> for Error {
    fn from(error: SupportError) -> Self {
        let message = error.to_string();
        match error {
            SupportError::TicketNotFound => Error::new(Reason::TicketNotFound, message),
            SupportError::ServiceNotFound => Error::new(Reason::ServiceNotFound, message),
            SupportError::TicketClosed => Error::new(Reason::TicketClosed, message),
            SupportError::InvalidTransition { from, to } => {
                Error::new(Reason::StatusTransitionInvalid, message)
                    .with_metadata("from", from.name())
                    .with_metadata("to", to.name())
            }
            SupportError::SupportAccessNotGranted { account_id } => {
                Error::new(Reason::SupportAccessNotGranted, message)
                    .with_metadata("account_id", account_id.into_string())
            }
            SupportError::RequestIdReused => Error::new(Reason::RequestIdReused, message)
                .with_field("request_id", "used before for a different request"),
            SupportError::RequestInProgress => Error::new(Reason::RequestInProgress, message),
            SupportError::NotAMember => Error::new(Reason::NotAMember, message),
            SupportError::CcUserNotEligible { index } => {
                Error::new(Reason::CcUserNotEligible, message).with_field(
                    format!("cc_user_ids[{index}]"),
                    "not an active member who may see the ticket",
                )
            }
            SupportError::AddedUserNotEligible { index } => {
                Error::new(Reason::CcUserNotEligible, message).with_field(
                    format!("add_user_ids[{index}]"),
                    "not an active member who may see the ticket",
                )
            }
            SupportError::CcLimitExceeded { field } => Error::new(Reason::CcLimitExceeded, message)
                .with_field(field, "at most 20 CC users"),
            SupportError::AssigneeNotStaff => Error::new(Reason::AssigneeNotStaff, message)
                .with_field("assignee_user_id", "not on the support team"),
            SupportError::TicketAccountMismatch => {
                Error::new(Reason::TicketAccountMismatch, message)
                    .with_field("ticket_id", "belongs to another account")
            }
            SupportError::MemberNotFound => Error::new(Reason::MemberNotFound, message),
            SupportError::AlreadyAssigned { assignee_user_id } => {
                Error::new(Reason::TicketAlreadyAssigned, message)
                    .with_metadata("assignee_user_id", assignee_user_id.into_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_tickets_are_not_found_never_permission_denied() {
        let error = Error::from(SupportError::TicketNotFound);
        assert_eq!(error.code(), tonic::Code::NotFound);
        assert_eq!(error.reason, Reason::TicketNotFound);
    }

    #[test]
    fn an_ineligible_cc_user_is_named_by_its_place_in_the_request() {
        let error = Error::from(SupportError::CcUserNotEligible { index: 2 });
        assert_eq!(error.reason, Reason::CcUserNotEligible);
        assert_eq!(error.violations[0].field, "cc_user_ids[2]");
        let error = Error::from(SupportError::AddedUserNotEligible { index: 0 });
        assert_eq!(error.violations[0].field, "add_user_ids[0]");
        assert_eq!(
            error.message,
            "a user is not an active member who may see the ticket"
        );
        let error = Error::from(SupportError::CcLimitExceeded {
            field: "add_user_ids",
        });
        assert_eq!(error.reason, Reason::CcLimitExceeded);
        assert_eq!(error.violations[0].field, "add_user_ids");
    }

    #[test]
    fn refused_transitions_name_both_statuses() {
        let error = Error::from(SupportError::InvalidTransition {
            from: Status::AwaitingCustomer,
            to: Status::Open,
        });
        assert_eq!(error.code(), tonic::Code::FailedPrecondition);
        assert_eq!(error.metadata["from"], "AWAITING_CUSTOMER");
        assert_eq!(error.metadata["to"], "OPEN");
    }
}
