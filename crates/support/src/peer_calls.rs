//! Support's calls to other services that a rule depends on, made through
//! the one outbox of `tenancy_runtime::peer_calls` (table
//! `support_peer_calls`): today the notification of a customer-visible
//! message through contacts' Notify. The call is written in the SAME
//! transaction as the ticket or message (`crate::store`), delivered by the
//! request right after commit (in a task: the RPC does not wait for it)
//! and otherwise by the worker of any replica, until contacts
//! acknowledges; identity or contacts being down only delays it.
//!
//! The payload holds ids only. What the notification says (subject,
//! excerpt, author, recipients' names and addresses) is read at delivery:
//! from support's own tables, which keep the ticket and its messages, and
//! from identity; so the outbox holds no copy of a message body or of
//! personal data, and a late delivery reaches users at their current
//! address. Recipients are the ticket's creator and CC users at delivery
//! (contacts applies preferences and service access at delivery too).
//!
//! A repeated delivery sends nothing twice: Notify is idempotent by its
//! `request_id` (`support:ticket-created:<ticket>` or
//! `support:ticket-reply:<message>`), and a repeat whose content changed
//! meanwhile (REQUEST_ID_REUSED) means the message was notified already.

use sea_orm::ConnectionTrait;
use serde::{Deserialize, Serialize};
use tenancy_runtime::Error;
use tenancy_runtime::ids::{MessageId, TicketId};
use tenancy_runtime::peer_calls::{self, Enqueued, Kind};

/// Support's outbox of calls.
pub(crate) const TABLE: &str = "support_peer_calls";

/// contacts' Notify of a ticket message (`call_kind` 1).
pub(crate) const NOTIFY_MESSAGE: Kind<MessageNotice> = Kind::new(1, "Notify");

/// The notification of one customer-visible message.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct MessageNotice {
    /// The ticket.
    pub(crate) ticket_id: String,
    /// The message.
    pub(crate) message_id: String,
    /// Whether it is the first message of a new ticket (which also
    /// notifies its author, as a receipt).
    pub(crate) created: bool,
}

impl MessageNotice {
    /// The notice of message `message_id` of `ticket_id`.
    pub(crate) fn new(ticket_id: &TicketId, message_id: &MessageId, created: bool) -> Self {
        Self {
            ticket_id: ticket_id.to_string(),
            message_id: message_id.to_string(),
            created,
        }
    }
}

/// Writes the notification of a message in the caller's transaction `c`,
/// leased to the caller, who delivers it after commit with
/// `PeerCalls::deliver`.
pub(crate) async fn enqueue<C: ConnectionTrait>(
    c: &C,
    notice: &MessageNotice,
) -> Result<Enqueued, Error> {
    peer_calls::enqueue(c, TABLE, NOTIFY_MESSAGE, notice).await
}
