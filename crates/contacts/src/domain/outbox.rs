//! An outbox message and its delivery states.

use tenancy_runtime::ids::AccountId;

use super::routing::Category;
use super::templates::Template;

/// A queued message as the rest of the crate sees it (the store keeps its
/// storage-only columns: position, normalised address, lease).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The message id.
    pub id: String,
    /// The idempotency key (request id) it was queued under.
    pub idempotency_key: String,
    /// The recipient's address as given.
    pub to_email: String,
    /// The recipient's display name (may be empty).
    pub to_name: String,
    /// The rendered subject.
    pub subject: String,
    /// The rendered plain-text body.
    pub body_text: String,
    /// The rendered HTML body.
    pub body_html: String,
    /// The template it was rendered from.
    pub template: Template,
    /// JSON object of the template variables.
    pub template_data: String,
    /// The account it concerns, if any.
    pub account_id: Option<AccountId>,
    /// The notification category; `None`: not a routed notification.
    pub category: Option<Category>,
    /// Where it is in its delivery.
    pub state: MessageState,
    /// Attempts started so far.
    pub attempts: i32,
    /// When the next attempt is due (Unix ms), while one is to come.
    pub next_attempt_at: Option<i64>,
    /// When the last attempt started (Unix ms).
    pub last_attempt_at: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: String,
    /// When it was queued (Unix ms).
    pub created_at: i64,
    /// When it was accepted (Unix ms).
    pub sent_at: Option<i64>,
    /// The Message-ID header it is sent with.
    pub smtp_message_id: String,
    /// How it is delivered.
    pub channel: Channel,
    /// The SMS recipient (E.164); empty for email.
    pub to_phone: String,
}

/// How a queued message is delivered, numbered as the proto's
/// `OutboxChannel` (and stored so).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Channel {
    /// By email (SMTP).
    Email = 1,
    /// By SMS.
    Sms = 2,
}

impl Channel {
    /// Every channel, in number order.
    pub const ALL: [Channel; 2] = [Channel::Email, Channel::Sms];

    /// The channel stored or sent as `value`; `None` for 0 or unknown.
    pub fn from_i32(value: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|c| *c as i32 == value)
    }
}

/// Where a queued message is in its delivery, numbered as the proto's
/// `OutboxMessageState` (and stored so).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessageState {
    /// Waiting for its (next) attempt.
    Pending = 1,
    /// Claimed by a worker, under a lease.
    Sending = 2,
    /// Accepted by the SMTP server.
    Sent = 3,
    /// Given up after the last attempt or a permanent refusal.
    Failed = 4,
}

impl MessageState {
    /// Every state, in number order.
    pub const ALL: [MessageState; 4] = [
        MessageState::Pending,
        MessageState::Sending,
        MessageState::Sent,
        MessageState::Failed,
    ];

    /// The state stored or sent as `value`; `None` for 0 or unknown.
    pub fn from_i32(value: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s as i32 == value)
    }

    /// Whether a (next) attempt is still to come.
    pub fn is_waiting(self) -> bool {
        matches!(self, MessageState::Pending | MessageState::Sending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_keep_their_proto_numbers() {
        for (n, state) in (1..).zip(MessageState::ALL) {
            assert_eq!(state as i32, n);
            assert_eq!(MessageState::from_i32(n), Some(state));
        }
        assert_eq!(MessageState::from_i32(0), None);
        assert_eq!(MessageState::from_i32(5), None);
        assert!(MessageState::Sending.is_waiting());
        assert!(!MessageState::Sent.is_waiting());
    }

    #[test]
    fn channels_keep_their_proto_numbers() {
        for (n, channel) in (1..).zip(Channel::ALL) {
            assert_eq!(channel as i32, n);
            assert_eq!(Channel::from_i32(n), Some(channel));
        }
        assert_eq!(Channel::from_i32(0), None);
        assert_eq!(Channel::from_i32(3), None);
    }
}
