//! When a failed delivery is retried.

use std::time::Duration;

/// The longest wait between two attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);

/// How long a claimed message stays claimed: a worker that stops mid-send
/// loses the claim after this, and another worker (or the same one after a
/// restart) sends again.
pub const LEASE: Duration = Duration::from_secs(5 * 60);

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again after this delay.
    RetryAfter(Duration),
    /// Give up: the message is FAILED.
    GiveUp,
}

/// The decision after attempt number `attempts` (1 for the first) failed.
/// Permanent failures give up at once; temporary ones retry with
/// exponential back-off (`base`, doubling, capped at [`MAX_DELAY`]) until
/// `max_attempts` attempts were made.
pub fn after_failure(
    attempts: u32,
    max_attempts: u32,
    base: Duration,
    permanent: bool,
) -> AfterFailure {
    if permanent || attempts >= max_attempts.max(1) {
        return AfterFailure::GiveUp;
    }
    let exponent = attempts.saturating_sub(1).min(20);
    let delay = base.saturating_mul(1u32 << exponent).min(MAX_DELAY);
    AfterFailure::RetryAfter(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_the_base_and_are_capped() {
        let base = Duration::from_secs(30);
        let delays: Vec<_> = (1..=9)
            .map(|a| after_failure(a, 100, base, false))
            .collect();
        assert_eq!(delays[0], AfterFailure::RetryAfter(Duration::from_secs(30)));
        assert_eq!(delays[1], AfterFailure::RetryAfter(Duration::from_secs(60)));
        assert_eq!(
            delays[2],
            AfterFailure::RetryAfter(Duration::from_secs(120))
        );
        assert_eq!(delays[8], AfterFailure::RetryAfter(MAX_DELAY));
    }

    #[test]
    fn gives_up_after_max_attempts_or_on_a_permanent_failure() {
        let base = Duration::from_secs(1);
        assert_eq!(after_failure(3, 3, base, false), AfterFailure::GiveUp);
        assert!(matches!(
            after_failure(2, 3, base, false),
            AfterFailure::RetryAfter(_)
        ));
        assert_eq!(after_failure(1, 3, base, true), AfterFailure::GiveUp);
    }
}
