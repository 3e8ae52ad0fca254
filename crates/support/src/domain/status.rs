//! The ticket lifecycle, as documented on the proto `TicketStatus`:
//!
//! | event                         | from                        | to                |
//! |-------------------------------|-----------------------------|-------------------|
//! | CreateTicket                  | -                           | OPEN              |
//! | customer message              | OPEN                        | OPEN              |
//! | customer message              | AWAITING_*, RESOLVED        | AWAITING_SUPPORT  |
//! | staff reply                   | OPEN, AWAITING_*, RESOLVED  | AWAITING_CUSTOMER (or named) |
//! | internal note                 | any                         | unchanged         |
//! | SetTicketStatus (staff)       | OPEN, AWAITING_*, RESOLVED  | AWAITING_*, RESOLVED, CLOSED |
//! | CloseTicket                   | any but CLOSED              | CLOSED            |
//! | ReopenTicket / Set(OPEN)      | RESOLVED, CLOSED            | OPEN              |
//!
//! Setting the current status again is a successful no-op; messages on a
//! CLOSED ticket are refused (TICKET_CLOSED).

use super::SupportError;

/// Where a ticket is in its lifecycle. The numbers are the proto values and
/// the stored values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// New or reopened, waiting for a first response.
    Open = 1,
    /// Support replied and waits for the customer.
    AwaitingCustomer = 2,
    /// The customer replied and waits for support.
    AwaitingSupport = 3,
    /// Support considers it solved.
    Resolved = 4,
    /// Closed; no messages until reopened.
    Closed = 5,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 5] = [
        Status::Open,
        Status::AwaitingCustomer,
        Status::AwaitingSupport,
        Status::Resolved,
        Status::Closed,
    ];

    /// The status with proto/stored value `value`.
    pub fn from_i32(value: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s as i32 == value)
    }

    /// The name without the enum prefix, for error metadata.
    pub fn name(self) -> &'static str {
        match self {
            Status::Open => "OPEN",
            Status::AwaitingCustomer => "AWAITING_CUSTOMER",
            Status::AwaitingSupport => "AWAITING_SUPPORT",
            Status::Resolved => "RESOLVED",
            Status::Closed => "CLOSED",
        }
    }

    /// The status after a customer message.
    pub fn after_customer_message(self) -> Result<Status, SupportError> {
        match self {
            Status::Closed => Err(SupportError::TicketClosed),
            Status::Open => Ok(Status::Open),
            _ => Ok(Status::AwaitingSupport),
        }
    }

    /// The status after a staff reply that names `requested` (default
    /// AWAITING_CUSTOMER). `requested` must be AWAITING_CUSTOMER,
    /// AWAITING_SUPPORT or RESOLVED; the caller validates that at the edge
    /// with [`Status::is_staff_reply_target`].
    pub fn after_staff_reply(self, requested: Option<Status>) -> Result<Status, SupportError> {
        if self == Status::Closed {
            return Err(SupportError::TicketClosed);
        }
        let to = requested.unwrap_or(Status::AwaitingCustomer);
        if Self::is_staff_reply_target(to) {
            Ok(to)
        } else {
            Err(SupportError::InvalidTransition { from: self, to })
        }
    }

    /// Whether a staff reply may name `to` as the status after it.
    pub fn is_staff_reply_target(to: Status) -> bool {
        matches!(
            to,
            Status::AwaitingCustomer | Status::AwaitingSupport | Status::Resolved
        )
    }

    /// An explicit change (SetTicketStatus, CloseTicket, ReopenTicket):
    /// `Ok(None)` when `to` is the current status (a no-op), `Ok(Some(to))`
    /// when allowed.
    pub fn change_to(self, to: Status) -> Result<Option<Status>, SupportError> {
        if self == to {
            return Ok(None);
        }
        let allowed = match to {
            Status::Open => matches!(self, Status::Resolved | Status::Closed),
            Status::Closed => true,
            Status::AwaitingCustomer | Status::AwaitingSupport | Status::Resolved => {
                self != Status::Closed
            }
        };
        if allowed {
            Ok(Some(to))
        } else {
            Err(SupportError::InvalidTransition { from: self, to })
        }
    }
}

/// How urgent a ticket is (proto and stored values; ordered).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// No time pressure.
    Low = 1,
    /// The usual.
    Normal = 2,
    /// A service is degraded.
    High = 3,
    /// A production service is down.
    Urgent = 4,
}

impl Priority {
    /// The priority with proto/stored value `value`.
    pub fn from_i32(value: i32) -> Option<Self> {
        [
            Priority::Low,
            Priority::Normal,
            Priority::High,
            Priority::Urgent,
        ]
        .into_iter()
        .find(|p| *p as i32 == value)
    }
}

/// What a ticket is about (proto and stored values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    /// Anything else.
    General = 1,
    /// Technical issues: staff replies notify TECHNICAL contacts.
    Technical = 2,
    /// Invoices, payments.
    Billing = 3,
}

impl Category {
    /// The category with proto/stored value `value`.
    pub fn from_i32(value: i32) -> Option<Self> {
        [Category::General, Category::Technical, Category::Billing]
            .into_iter()
            .find(|c| *c as i32 == value)
    }
}

/// Who wrote a message or changed a status (proto and stored values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActorKind {
    /// A member of the account.
    Customer = 1,
    /// The support team.
    Staff = 2,
    /// The support service itself.
    System = 3,
}

impl ActorKind {
    /// The actor kind with proto/stored value `value`.
    pub fn from_i32(value: i32) -> Option<Self> {
        [ActorKind::Customer, ActorKind::Staff, ActorKind::System]
            .into_iter()
            .find(|k| *k as i32 == value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn a_customer_message_keeps_open_and_otherwise_awaits_support() {
        assert_eq!(Open.after_customer_message(), Ok(Open));
        for from in [AwaitingCustomer, AwaitingSupport, Resolved] {
            assert_eq!(from.after_customer_message(), Ok(AwaitingSupport));
        }
        assert_eq!(
            Closed.after_customer_message(),
            Err(SupportError::TicketClosed)
        );
    }

    #[test]
    fn a_staff_reply_awaits_the_customer_or_the_named_status() {
        for from in [Open, AwaitingCustomer, AwaitingSupport, Resolved] {
            assert_eq!(from.after_staff_reply(None), Ok(AwaitingCustomer));
            assert_eq!(from.after_staff_reply(Some(Resolved)), Ok(Resolved));
            assert_eq!(
                from.after_staff_reply(Some(AwaitingSupport)),
                Ok(AwaitingSupport)
            );
            assert!(from.after_staff_reply(Some(Open)).is_err());
            assert!(from.after_staff_reply(Some(Closed)).is_err());
        }
        assert_eq!(
            Closed.after_staff_reply(None),
            Err(SupportError::TicketClosed)
        );
    }

    #[test]
    fn the_transition_table_is_enforced() {
        let allowed = [
            (Open, AwaitingCustomer),
            (Open, AwaitingSupport),
            (Open, Resolved),
            (Open, Closed),
            (AwaitingCustomer, AwaitingSupport),
            (AwaitingCustomer, Resolved),
            (AwaitingCustomer, Closed),
            (AwaitingSupport, AwaitingCustomer),
            (AwaitingSupport, Resolved),
            (AwaitingSupport, Closed),
            (Resolved, AwaitingCustomer),
            (Resolved, AwaitingSupport),
            (Resolved, Closed),
            (Resolved, Open),
            (Closed, Open),
        ];
        for from in Status::ALL {
            for to in Status::ALL {
                let result = from.change_to(to);
                if from == to {
                    assert_eq!(result, Ok(None), "{from:?} -> {to:?} is a no-op");
                } else if allowed.contains(&(from, to)) {
                    assert_eq!(result, Ok(Some(to)), "{from:?} -> {to:?}");
                } else {
                    assert_eq!(
                        result,
                        Err(SupportError::InvalidTransition { from, to }),
                        "{from:?} -> {to:?} must be refused"
                    );
                }
            }
        }
    }

    #[test]
    fn stored_values_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::from_i32(s as i32), Some(s));
        }
        assert_eq!(Status::from_i32(0), None);
        assert_eq!(Priority::from_i32(4), Some(Priority::Urgent));
        assert_eq!(Category::from_i32(9), None);
        assert_eq!(Category::from_i32(2), Some(Category::Technical));
        assert_eq!(ActorKind::from_i32(2), Some(ActorKind::Staff));
        assert_eq!(ActorKind::from_i32(0), None);
    }
}
