//! The delivery states of an outbox message.

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
}
