//! The use cases: what every handler needs (the store, the peers, the
//! clock, the event bus for WatchTicket), the access decisions shared by
//! methods, and one function per use case with domain types in and out.
//!
//! - this module: [`App`], [`Event`], [`Side`], who may reach a ticket.
//! - `tickets`: create, list, status changes, CC users (customers).
//! - `messages`: adding and listing messages (both sides).
//! - `staff`: the queue, assignment and caller verification (staff).
//! - `notify`: notifications of new messages through contacts, delivered
//!   from the outbox of `crate::peer_calls`.

pub(crate) mod messages;
pub(crate) mod notify;
pub(crate) mod staff;
pub(crate) mod tickets;

use tenancy_runtime::clock::SharedClock;
use tenancy_runtime::ids::{AccountId, TicketId, UserId};
use tenancy_runtime::peer_calls::PeerCalls;
use tenancy_runtime::shutdown::Shutdown;
use tenancy_runtime::{Error, Principal};
use tokio::sync::broadcast;

use crate::domain::{ActorKind, Status, SupportError, Visibility};
use crate::peers::{Audit, Peers};
use crate::store::{Store, Ticket, TicketMessage, Written};

/// Something that happened to a ticket, for WatchTicket streams.
#[derive(Clone, Debug)]
pub(crate) enum Event {
    /// A message or internal note was added.
    Message(TicketMessage),
    /// The status changed.
    Status {
        /// Before.
        previous: Status,
        /// Who caused it.
        by_kind: ActorKind,
        /// The user who caused it.
        by_user: Option<UserId>,
        /// The ticket after.
        ticket: Box<Ticket>,
    },
    /// Other customer-visible fields changed.
    Updated {
        /// The ticket after.
        ticket: Box<Ticket>,
        /// Which fields.
        fields: Vec<String>,
    },
}

/// Who calls a method that customers and staff share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// A member of the ticket's account.
    Customer,
    /// The support team, under the account's grant.
    Staff,
}

impl Side {
    /// The kind of author this side writes as.
    pub(crate) fn actor(self) -> ActorKind {
        match self {
            Side::Customer => ActorKind::Customer,
            Side::Staff => ActorKind::Staff,
        }
    }
}

/// The shared state of the handlers.
pub(crate) struct App {
    pub(crate) store: Store,
    pub(crate) peers: Peers,
    /// The outbox of calls (ticket notifications), delivered after commit.
    pub(crate) peer_calls: PeerCalls,
    pub(crate) clock: SharedClock,
    pub(crate) events: broadcast::Sender<(TicketId, Event)>,
    pub(crate) shutdown: Shutdown,
}

impl App {
    /// Publishes an event of `ticket_id` to watchers (none is fine).
    pub(crate) fn publish(&self, ticket_id: &TicketId, event: Event) {
        let _ = self.events.send((ticket_id.clone(), event));
    }

    /// The customer-visible events of a write, published to watchers.
    pub(crate) fn publish_written(
        &self,
        written: &Written,
        by_kind: ActorKind,
        by_user: Option<UserId>,
    ) {
        if let Some(previous) = written.previous_status {
            self.publish(
                &written.ticket.id,
                Event::Status {
                    previous,
                    by_kind,
                    by_user,
                    ticket: Box::new(written.ticket.clone()),
                },
            );
        }
    }

    /// Which side a SupportService caller is on: staff who are not members
    /// of the selected account act as staff; everyone else as a customer.
    pub(crate) fn side(principal: &Principal) -> Side {
        if principal.staff && principal.role == tenancy_runtime::principal::Role::Unspecified {
            Side::Staff
        } else {
            Side::Customer
        }
    }

    /// A ticket the customer may see, else TICKET_NOT_FOUND.
    pub(crate) async fn customer_ticket(
        &self,
        principal: &Principal,
        ticket_id: &TicketId,
    ) -> Result<Ticket, Error> {
        let user = UserId::trusted(principal.user()?);
        let account = AccountId::trusted(principal.account()?);
        let ticket = self.load(ticket_id).await?;
        if ticket.account_id != account {
            return Err(SupportError::TicketNotFound.into());
        }
        if !self.customer_sees(&user, &account, &ticket).await? {
            return Err(SupportError::TicketNotFound.into());
        }
        Ok(ticket)
    }

    /// Whether `user` may see `ticket` now (one access check).
    pub(crate) async fn customer_sees(
        &self,
        user: &UserId,
        account: &AccountId,
        ticket: &Ticket,
    ) -> Result<bool, Error> {
        let services: Vec<String> = ticket.service_id.iter().cloned().collect();
        let visibility = self
            .peers
            .visibility(user, account, services, false)
            .await?;
        Ok(visibility.sees(ticket.service_id.as_deref()))
    }

    /// A ticket staff may reach: it exists (else TICKET_NOT_FOUND), belongs
    /// to `account` when given, and its account has an active grant (else
    /// SUPPORT_ACCESS_NOT_GRANTED).
    pub(crate) async fn staff_ticket(
        &self,
        account: Option<&AccountId>,
        ticket_id: &TicketId,
    ) -> Result<Ticket, Error> {
        let ticket = self.load(ticket_id).await?;
        if account.is_some_and(|a| *a != ticket.account_id) {
            return Err(SupportError::TicketNotFound.into());
        }
        self.require_grant(&ticket.account_id).await?;
        Ok(ticket)
    }

    /// Loads the ticket for the caller's side: customers need visibility,
    /// staff the account's grant (and every staff call is audited by the
    /// caller of this).
    pub(crate) async fn shared_ticket(
        &self,
        p: &Principal,
        id: &TicketId,
    ) -> Result<(Side, Ticket), Error> {
        match Self::side(p) {
            Side::Customer => Ok((Side::Customer, self.customer_ticket(p, id).await?)),
            Side::Staff => {
                let account = AccountId::trusted(p.account()?);
                Ok((Side::Staff, self.staff_ticket(Some(&account), id).await?))
            }
        }
    }

    /// SUPPORT_ACCESS_NOT_GRANTED unless the account has an active grant.
    pub(crate) async fn require_grant(&self, account_id: &AccountId) -> Result<(), Error> {
        if self.peers.support_access(account_id).await? {
            Ok(())
        } else {
            Err(SupportError::SupportAccessNotGranted {
                account_id: account_id.clone(),
            }
            .into())
        }
    }

    /// A ticket by (already parsed) id.
    async fn load(&self, ticket_id: &TicketId) -> Result<Ticket, Error> {
        self.store
            .ticket(ticket_id)
            .await?
            .ok_or_else(|| SupportError::TicketNotFound.into())
    }

    /// Records a staff action on a ticket in the account's audit log.
    pub(crate) async fn audit_staff(
        &self,
        principal: &Principal,
        account_id: &AccountId,
        action: &str,
        ticket_id: &str,
        key: Option<String>,
    ) -> Result<(), Error> {
        self.peers
            .audit(Audit {
                principal,
                account_id,
                action,
                target_type: "ticket",
                target_id: ticket_id,
                after: Vec::new(),
                idempotency_key: key.map(|k| format!("support:{action}:{k}")),
            })
            .await
    }

    /// Records a staff action on `ticket` when `side` is staff.
    pub(crate) async fn audit_if_staff(
        &self,
        p: &Principal,
        side: Side,
        ticket: &Ticket,
        action: &str,
        key: Option<String>,
    ) -> Result<(), Error> {
        if side == Side::Staff {
            self.audit_staff(p, &ticket.account_id, action, ticket.id.as_str(), key)
                .await?;
        }
        Ok(())
    }

    /// Visibility for a list: ONE BatchCheckAccess call with the whole
    /// accessible set.
    pub(crate) async fn list_visibility(
        &self,
        user: &UserId,
        account: &AccountId,
    ) -> Result<Visibility, Error> {
        self.peers.visibility(user, account, Vec::new(), true).await
    }
}
