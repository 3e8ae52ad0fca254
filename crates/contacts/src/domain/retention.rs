//! How long the outbox and verification tokens keep what they no longer
//! need.

use std::time::Duration;

use tenancy_runtime::Timestamp;

/// The shortest time an idempotency key is remembered (the API promises
/// 30 days), whatever `mail.sent_retention` says.
pub const MIN_KEY_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// What a retention run removes: everything older than these instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// Delivered messages sent before this.
    pub sent_before: Timestamp,
    /// Failed messages whose last attempt was before this.
    pub failed_before: Timestamp,
    /// Idempotency keys first used before this whose messages are all gone.
    pub keys_before: Timestamp,
    /// Verification tokens (spent or not) that expired before this: their
    /// links then answer "not valid" instead of "expired" or "already
    /// verified".
    pub tokens_expired_before: Timestamp,
}

impl Cutoffs {
    /// The cutoffs of a run at `now`, keeping sent messages (and tokens)
    /// `sent` long and failed ones `failed` long.
    pub fn at(now: Timestamp, sent: Duration, failed: Duration) -> Self {
        Self {
            sent_before: now.minus(sent),
            failed_before: now.minus(failed),
            keys_before: now.minus(sent.max(MIN_KEY_RETENTION)),
            tokens_expired_before: now.minus(sent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn each_kind_is_kept_its_own_time_and_keys_at_least_thirty_days() {
        let now = Timestamp(1_000 * 86_400_000);
        let c = Cutoffs::at(now, 7 * DAY, 90 * DAY);
        assert_eq!(c.sent_before, now.minus(7 * DAY));
        assert_eq!(c.failed_before, now.minus(90 * DAY));
        assert_eq!(c.keys_before, now.minus(30 * DAY));
        assert_eq!(c.tokens_expired_before, now.minus(7 * DAY));
        let c = Cutoffs::at(now, 60 * DAY, 90 * DAY);
        assert_eq!(c.keys_before, now.minus(60 * DAY));
    }
}
