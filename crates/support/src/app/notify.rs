//! Notifications of customer-visible messages, through contacts' Notify.

use std::sync::Arc;

use tenancy_runtime::Error;
use tenancy_runtime::ids::UserId;

use super::App;
use crate::domain::{ActorKind, Category};
use crate::peers::TicketNotice;
use crate::store::{Ticket, TicketMessage};

impl App {
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
        message: &TicketMessage,
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
                tracing::warn!(ticket_id = %ticket.id, %error, "ticket notification not sent");
            }
        });
    }

    async fn send_notifications(
        &self,
        ticket: &Ticket,
        message: &TicketMessage,
        created: bool,
    ) -> Result<(), Error> {
        let author = if created {
            None
        } else {
            message.author_user_id.clone()
        };
        let mut people: Vec<UserId> = std::iter::once(ticket.created_by_user_id.clone())
            .chain(ticket.cc.iter().cloned().map(UserId::trusted))
            .filter(|u| Some(u.as_str()) != author.as_deref())
            .collect();
        people.sort();
        people.dedup();
        let staff_reply = message.author_kind == ActorKind::Staff;
        let author_name = if staff_reply {
            "Support".to_owned()
        } else {
            self.peers
                .users(
                    message
                        .author_user_id
                        .iter()
                        .cloned()
                        .map(UserId::trusted)
                        .collect(),
                )
                .await
                .ok()
                .and_then(|u| u.into_iter().next())
                .map(|u| u.name)
                .unwrap_or_default()
        };
        let data: std::collections::HashMap<String, String> = [
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
            .await?;
        Ok(())
    }
}
