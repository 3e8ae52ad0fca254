//! A ticket and a message of its conversation, as the service sees them
//! (the store maps its rows to these).

use tenancy_runtime::ids::{AccountId, MessageId, TicketId, UserId};

use super::{ActorKind, Category, Priority, Status};

/// A ticket with its CC users and counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// UUIDv7.
    pub id: TicketId,
    /// The account the ticket belongs to.
    pub account_id: AccountId,
    /// Trimmed subject.
    pub subject: String,
    /// The service it is about; `None`: account-general.
    pub service_id: Option<String>,
    /// What it is about.
    pub category: Category,
    /// How urgent it is.
    pub priority: Priority,
    /// Where it is in its lifecycle.
    pub status: Status,
    /// The member who created it.
    pub created_by_user_id: UserId,
    /// The staff user holding it.
    pub assignee_user_id: Option<UserId>,
    /// Customer-visible messages.
    pub message_count: i32,
    /// Internal notes.
    pub internal_note_count: i32,
    /// Sequence of the latest customer-visible message.
    pub last_message_sequence: i64,
    /// Sequence of the latest entry (message or note).
    pub last_sequence: i64,
    /// Unix ms.
    pub create_time: i64,
    /// Unix ms of the latest customer-visible change.
    pub update_time: i64,
    /// Unix ms of the latest customer-visible message.
    pub last_message_time: i64,
    /// Unix ms of the latest status change.
    pub status_change_time: i64,
    /// CC user ids, sorted.
    pub cc: Vec<UserId>,
}

/// A message or internal note of a ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketMessage {
    /// UUIDv7.
    pub id: MessageId,
    /// The ticket.
    pub ticket_id: TicketId,
    /// Position in the ticket, from 1.
    pub sequence: i64,
    /// Who wrote it.
    pub author_kind: ActorKind,
    /// The author; `None` for the system.
    pub author_user_id: Option<UserId>,
    /// Plain text as written.
    pub body: String,
    /// Staff-only note.
    pub internal: bool,
    /// Unix ms.
    pub create_time: i64,
}
