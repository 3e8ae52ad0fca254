//! What every handler needs: the store, the peers, the clock, and the
//! event bus for WatchTicket; plus the access decisions shared by methods.

use std::sync::Arc;

use tenancy_proto::contacts as contacts_pb;
use tenancy_runtime::clock::SharedClock;
use tenancy_runtime::shutdown::Shutdown;
use tenancy_runtime::{Error, Principal, ids};
use tokio::sync::broadcast;

use crate::domain::{ActorKind, Category, Status, SupportError, Visibility};
use crate::peers::{Audit, Peers};
use crate::store::{MessageRow, Store, Ticket};

/// Something that happened to a ticket, for WatchTicket streams.
#[derive(Clone, Debug)]
pub(crate) enum Event {
    /// A message or internal note was added.
    Message(MessageRow),
    /// The status changed.
    Status {
        /// Before.
        previous: Status,
        /// Who caused it.
        by_kind: ActorKind,
        /// The user who caused it.
        by_user: Option<String>,
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

/// The shared state of the handlers.
pub(crate) struct App {
    pub(crate) store: Store,
    pub(crate) peers: Peers,
    pub(crate) clock: SharedClock,
    pub(crate) events: broadcast::Sender<(String, Event)>,
    pub(crate) shutdown: Shutdown,
    pub(crate) portal_url: String,
}

impl App {
    /// Publishes an event of `ticket_id` to watchers (none is fine).
    pub(crate) fn publish(&self, ticket_id: &str, event: Event) {
        let _ = self.events.send((ticket_id.to_owned(), event));
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
        ticket_id: &str,
    ) -> Result<Ticket, Error> {
        let user = principal.user()?;
        let account = principal.account()?;
        let ticket = self.load(ticket_id).await?;
        if ticket.row.account_id != account {
            return Err(SupportError::TicketNotFound.into());
        }
        if !self.customer_sees(user, account, &ticket).await? {
            return Err(SupportError::TicketNotFound.into());
        }
        Ok(ticket)
    }

    /// Whether `user` may see `ticket` now (one access check).
    pub(crate) async fn customer_sees(
        &self,
        user: &str,
        account: &str,
        ticket: &Ticket,
    ) -> Result<bool, Error> {
        let services: Vec<String> = ticket.row.service_id.iter().cloned().collect();
        let visibility = self
            .peers
            .visibility(user, account, services, false)
            .await?;
        Ok(visibility.sees(ticket.row.service_id.as_deref()))
    }

    /// A ticket staff may reach: it exists (else TICKET_NOT_FOUND), belongs
    /// to `account` when given, and its account has an active grant (else
    /// SUPPORT_ACCESS_NOT_GRANTED).
    pub(crate) async fn staff_ticket(
        &self,
        account: Option<&str>,
        ticket_id: &str,
    ) -> Result<Ticket, Error> {
        let ticket = self.load(ticket_id).await?;
        if account.is_some_and(|a| a != ticket.row.account_id) {
            return Err(SupportError::TicketNotFound.into());
        }
        self.require_grant(&ticket.row.account_id).await?;
        Ok(ticket)
    }

    /// SUPPORT_ACCESS_NOT_GRANTED unless the account has an active grant.
    pub(crate) async fn require_grant(&self, account_id: &str) -> Result<(), Error> {
        if self.peers.support_access(account_id).await? {
            Ok(())
        } else {
            Err(SupportError::SupportAccessNotGranted {
                account_id: account_id.to_owned(),
            }
            .into())
        }
    }

    /// A ticket by (already parsed) id.
    async fn load(&self, ticket_id: &str) -> Result<Ticket, Error> {
        self.store
            .ticket(ticket_id)
            .await?
            .ok_or_else(|| SupportError::TicketNotFound.into())
    }

    /// Records a staff action on a ticket in the account's audit log.
    pub(crate) async fn audit_staff(
        &self,
        principal: &Principal,
        account_id: &str,
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

    /// Visibility for a list: ONE BatchCheckAccess call with the whole
    /// accessible set.
    pub(crate) async fn list_visibility(
        &self,
        user: &str,
        account: &str,
    ) -> Result<Visibility, Error> {
        self.peers.visibility(user, account, Vec::new(), true).await
    }

    /// Notifies a customer-visible message, best effort, after commit: the
    /// creator and CC users (except the author) through contacts' Notify
    /// with SUPPORT_REPLIES (their preferences apply there), and for staff
    /// replies on technical tickets the account's TECHNICAL contacts. One
    /// idempotency key per message, so a retry never sends twice.
    /// `created`: the first message of a new ticket, which also notifies
    /// its author (the creator) as a receipt.
    pub(crate) fn notify_message(
        self: &Arc<Self>,
        ticket: &Ticket,
        message: &MessageRow,
        created: bool,
    ) {
        if message.internal {
            return;
        }
        let app = self.clone();
        let ticket = ticket.clone();
        let message = message.clone();
        tokio::spawn(async move {
            if let Err(error) = app.send_notifications(&ticket, &message, created).await {
                tracing::warn!(ticket_id = %ticket.row.id, %error, "ticket notification not sent");
            }
        });
    }

    async fn send_notifications(
        &self,
        ticket: &Ticket,
        message: &MessageRow,
        created: bool,
    ) -> Result<(), Error> {
        let author = if created {
            None
        } else {
            message.author_user_id.clone()
        };
        let mut people: Vec<String> = std::iter::once(ticket.row.created_by_user_id.clone())
            .chain(ticket.cc.iter().cloned())
            .filter(|u| Some(u) != author.as_ref())
            .collect();
        people.sort();
        people.dedup();
        let staff_reply = message.author_kind == ActorKind::Staff as i32;
        let author_name = if staff_reply {
            "Support".to_owned()
        } else {
            self.peers
                .users(message.author_user_id.iter().cloned().collect())
                .await
                .ok()
                .and_then(|u| u.into_iter().next())
                .map(|u| u.name)
                .unwrap_or_default()
        };
        let data: std::collections::HashMap<String, String> = [
            ("ticket_id", ticket.row.id.clone()),
            ("ticket_subject", ticket.row.subject.clone()),
            ("author_name", author_name),
            (
                "message_excerpt",
                message.body.chars().take(500).collect::<String>(),
            ),
            (
                "ticket_url",
                format!(
                    "{}/support/tickets/{}",
                    self.portal_url.trim_end_matches('/'),
                    ticket.row.id
                ),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        // Staff replies on technical tickets also reach the account's
        // TECHNICAL contacts (and only those contacts: chosen by role, not
        // by category), in the same Notify so that an address that is both
        // a member and a contact gets one email.
        let technical = staff_reply && ticket.row.category == Category::Technical as i32;
        if people.is_empty() && !technical {
            return Ok(());
        }
        let extra_recipients = if people.is_empty() {
            Vec::new()
        } else {
            self.peers
                .users(people)
                .await?
                .into_iter()
                .map(|u| contacts_pb::ExtraRecipient {
                    user_id: u.id,
                    email: u.email,
                    name: u.name,
                })
                .collect()
        };
        self.peers
            .notify(contacts_pb::NotifyRequest {
                request_id: if created {
                    format!("support:ticket-created:{}", ticket.row.id)
                } else {
                    format!("support:ticket-reply:{}", message.id)
                },
                account_id: ticket.row.account_id.clone(),
                category: contacts_pb::NotificationCategory::SupportReplies as i32,
                template: contacts_pb::MessageTemplate::TicketReply as i32,
                template_data: data,
                service_id: ticket.row.service_id.clone().unwrap_or_default(),
                extra_recipients,
                contact_roles: if technical {
                    vec![contacts_pb::ContactRole::Technical as i32]
                } else {
                    Vec::new()
                },
            })
            .await?;
        Ok(())
    }
}

/// Parses a ticket id; a malformed one is simply not found.
pub(crate) fn ticket_id(raw: &str) -> Result<String, Error> {
    ids::parse_id("ticket_id", raw).map_err(|_| SupportError::TicketNotFound.into())
}
