//! The crate's one error type, mapped to [`tenancy_runtime::Error`] here and
//! nowhere else.

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
        account_id: String,
    },
    /// A request id was reused with different content.
    #[error("request_id was used for a different request")]
    RequestIdReused,
    /// Someone else holds the ticket.
    #[error("the ticket is assigned to someone else")]
    AlreadyAssigned {
        /// The current assignee.
        assignee_user_id: String,
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
                    .with_metadata("account_id", account_id)
            }
            SupportError::RequestIdReused => Error::new(Reason::RequestIdReused, message)
                .with_field("request_id", "used before for a different request"),
            SupportError::AlreadyAssigned { assignee_user_id } => {
                Error::new(Reason::TicketAlreadyAssigned, message)
                    .with_metadata("assignee_user_id", assignee_user_id)
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
