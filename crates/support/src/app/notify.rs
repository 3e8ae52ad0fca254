//! Notifications of customer-visible messages, through contacts' Notify,
//! made durable by the outbox of `crate::peer_calls`: the call is written
//! with the message, delivered here right after commit, and retried by the
//! worker until contacts acknowledges.

use std::collections::HashMap;
use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tenancy_runtime::ids::{MessageId, TicketId, UserId};
use tenancy_runtime::peer_calls::{Enqueued, PeerCalls};
use tenancy_runtime::{Error, Metrics};

use super::App;
use crate::domain::{ActorKind, Category};
use crate::peer_calls::{MessageNotice, NOTIFY_MESSAGE, TABLE};
use crate::peers::{Peers, TicketNotice};
use crate::store::Store;

impl App {
    /// Delivers the notification written with a message, after commit, in
    /// a task of its own (the caller does not wait for it; if it fails, or
    /// the process ends first, the worker delivers it).
    pub(crate) fn notify_message(&self, notification: Option<Enqueued>) {
        if let Some(call) = notification {
            let calls = self.peer_calls.clone();
            tokio::spawn(async move { calls.deliver(call).await });
        }
    }
}

/// Support's outbox in `db`: notifications rendered from `store`, sent
/// through `peers`, with links into the portal at `portal_url`; measured
/// in `metrics`.
pub(crate) fn outbox(
    db: DatabaseConnection,
    store: Store,
    peers: Peers,
    portal_url: String,
    metrics: &Metrics,
) -> PeerCalls {
    let notifier = Arc::new(Notifier {
        store,
        peers,
        portal_url,
    });
    PeerCalls::new(db, TABLE, metrics).on(NOTIFY_MESSAGE, move |notice: MessageNotice| {
        let notifier = notifier.clone();
        async move { notifier.send(notice).await }
    })
}

/// What a notification is made from.
struct Notifier {
    store: Store,
    peers: Peers,
    portal_url: String,
}

impl Notifier {
    /// Notifies a customer-visible message: the creator and CC users
    /// (except the author) through contacts' Notify with SUPPORT_REPLIES
    /// (their preferences apply there), and for staff replies on technical
    /// tickets the account's TECHNICAL contacts. One idempotency key per
    /// message, so a repeated delivery never sends twice. `created`: the
    /// first message of a new ticket, which also notifies its author (the
    /// creator) as a receipt. Any failure of identity or contacts is an
    /// error: the call is retried, never sent incomplete.
    async fn send(&self, notice: MessageNotice) -> Result<(), Error> {
        let ticket_id = TicketId::trusted(notice.ticket_id);
        let message_id = MessageId::trusted(notice.message_id);
        let (Some(ticket), Some(message)) = (
            self.store.ticket(&ticket_id).await?,
            self.store.message(&message_id).await?,
        ) else {
            // Support never deletes tickets or messages: a call naming
            // none (a damaged row) has nothing to notify.
            tracing::warn!(%ticket_id, %message_id, "notified message not found; dropped");
            return Ok(());
        };
        let created = notice.created;
        let author = if created {
            None
        } else {
            message.author_user_id.clone()
        };
        let mut people: Vec<UserId> = std::iter::once(ticket.created_by_user_id.clone())
            .chain(ticket.cc.iter().cloned())
            .filter(|u| Some(u) != author.as_ref())
            .collect();
        people.sort();
        people.dedup();
        let staff_reply = message.author_kind == ActorKind::Staff;
        let author_name = if staff_reply {
            "Support".to_owned()
        } else {
            // An author identity does not know (any more) is unnamed.
            self.peers
                .users(message.author_user_id.iter().cloned().collect())
                .await?
                .into_iter()
                .next()
                .map(|u| u.name)
                .unwrap_or_default()
        };
        let data: HashMap<String, String> = [
            ("ticket_id", ticket.id.to_string()),
            ("ticket_subject", ticket.subject.clone()),
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
                    ticket.id
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
        let technical = staff_reply && ticket.category == Category::Technical;
        if people.is_empty() && !technical {
            return Ok(());
        }
        let users = if people.is_empty() {
            Vec::new()
        } else {
            self.peers.users(people).await?
        };
        self.peers
            .notify(TicketNotice {
                request_id: if created {
                    format!("support:ticket-created:{}", ticket.id)
                } else {
                    format!("support:ticket-reply:{}", message.id)
                },
                account_id: ticket.account_id.clone(),
                service_id: ticket.service_id.clone(),
                data,
                users,
                technical_contacts: technical,
            })
            .await
    }
}
