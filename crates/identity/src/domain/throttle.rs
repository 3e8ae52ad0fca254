//! Attempt limiting that an attacker cannot turn into a lock-out of the
//! real user: exponential back-off per (email, source IP) after 5 failures,
//! a per-email cap far above human rates, a per-IP cap. A throttled attempt
//! is refused before any hashing.

use std::time::Duration;

use tenancy_runtime::Timestamp;

/// Failures per (email, IP) before back-off starts.
pub(crate) const FREE_FAILURES: i64 = 5;
/// Longest back-off.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// Window of the per-email and per-IP caps.
pub(crate) const WINDOW: Duration = Duration::from_secs(3600);
/// Failures per email per window (all addresses together).
pub(crate) const EMAIL_CAP: i64 = 100;
/// Failures per source IP per window (all emails together).
pub(crate) const IP_CAP: i64 = 300;
/// Security notices of one kind to one user per window, so that whoever
/// can trigger them cannot flood the user's mailbox.
pub(crate) const NOTICE_CAP: i64 = 5;

/// The kind of counter, which decides its rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Counter {
    /// (email or user, IP): exponential back-off.
    Pair,
    /// One email or user, all sources: a cap per window.
    Email,
    /// One source IP: a cap per window.
    Ip,
    /// One kind of notice to one user: a cap per window (counts notices
    /// sent, not failures).
    Notice,
}

/// One stored counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct State {
    pub(crate) failures: i64,
    pub(crate) window_start: Timestamp,
    pub(crate) last_failure: Timestamp,
}

/// Until when attempts are refused, if they are at `now`.
pub(crate) fn blocked_until(kind: Counter, state: State, now: Timestamp) -> Option<Timestamp> {
    let until = match kind {
        Counter::Pair => {
            if state.failures < FREE_FAILURES {
                return None;
            }
            let exponent = u32::try_from(state.failures - FREE_FAILURES)
                .unwrap_or(31)
                .min(20);
            let delay = Duration::from_secs(1u64 << exponent).min(MAX_BACKOFF);
            state.last_failure.plus(delay)
        }
        Counter::Email | Counter::Ip | Counter::Notice => {
            let cap = match kind {
                Counter::Email => EMAIL_CAP,
                Counter::Notice => NOTICE_CAP,
                _ => IP_CAP,
            };
            if state.failures < cap {
                return None;
            }
            state.window_start.plus(WINDOW)
        }
    };
    (until > now).then_some(until)
}

/// Until when a counter refuses attempts at `now`, if it does: none once
/// its window is over (it restarts with the next failure). The one check
/// of a stored counter, for an attempt that is counted and for a check
/// that counts nothing.
pub(crate) fn refusing_until(kind: Counter, state: State, now: Timestamp) -> Option<Timestamp> {
    if window_over(kind, state, now) {
        return None;
    }
    blocked_until(kind, state, now)
}

/// How long a counter's window lasts: a pair's from its last failure (it
/// outlasts the longest back-off), a cap's from its window's start.
pub(crate) fn window(kind: Counter) -> Duration {
    match kind {
        Counter::Pair => MAX_BACKOFF.max(WINDOW),
        Counter::Email | Counter::Ip | Counter::Notice => WINDOW,
    }
}

/// Whether `kind`'s window runs from the last failure (pairs) rather than
/// from the window's start (caps).
pub(crate) fn window_from_last_failure(kind: Counter) -> bool {
    kind == Counter::Pair
}

/// Whether the window of a counter is over (the counter restarts).
pub(crate) fn window_over(kind: Counter, state: State, now: Timestamp) -> bool {
    let since = if window_from_last_failure(kind) {
        state.last_failure
    } else {
        state.window_start
    };
    since.plus(window(kind)) <= now
}

/// The counter after one more failure at `now` (`None`: there was none
/// yet): one whose window is over starts again at 1. What
/// `store::throttle::count_failure` computes in SQL.
#[cfg(test)]
pub(crate) fn after_failure(kind: Counter, state: Option<State>, now: Timestamp) -> State {
    match state {
        Some(s) if !window_over(kind, s, now) => State {
            failures: s.failures + 1,
            window_start: s.window_start,
            last_failure: now,
        },
        _ => State {
            failures: 1,
            window_start: now,
            last_failure: now,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(failures: i64, at: i64) -> State {
        State {
            failures,
            window_start: Timestamp(at),
            last_failure: Timestamp(at),
        }
    }

    #[test]
    fn pairs_back_off_exponentially_after_five_failures() {
        let now = Timestamp(1_000_000);
        assert_eq!(blocked_until(Counter::Pair, state(4, 1_000_000), now), None);
        assert_eq!(
            blocked_until(Counter::Pair, state(5, 1_000_000), now),
            Some(Timestamp(1_001_000))
        );
        assert_eq!(
            blocked_until(Counter::Pair, state(7, 1_000_000), now),
            Some(Timestamp(1_004_000))
        );
        assert_eq!(
            blocked_until(Counter::Pair, state(60, 1_000_000), now),
            Some(Timestamp(1_000_000 + 900_000))
        );
        assert_eq!(blocked_until(Counter::Pair, state(5, 0), now), None);
    }

    #[test]
    fn a_counter_whose_window_is_over_refuses_nothing() {
        let now = Timestamp(10_000_000);
        assert_eq!(
            refusing_until(Counter::Ip, state(300, 9_000_000), now),
            Some(Timestamp(9_000_000 + 3_600_000))
        );
        assert_eq!(
            refusing_until(Counter::Ip, state(299, 9_000_000), now),
            None
        );
        assert_eq!(
            refusing_until(Counter::Ip, state(300, 6_400_000), now),
            None
        );
        assert_eq!(
            refusing_until(Counter::Pair, state(6, 9_999_000), now),
            Some(Timestamp(9_999_000 + 2_000))
        );
        assert_eq!(refusing_until(Counter::Pair, state(60, 0), now), None);
    }

    #[test]
    fn caps_hold_for_the_window() {
        let now = Timestamp(10_000);
        assert_eq!(blocked_until(Counter::Email, state(99, 0), now), None);
        assert_eq!(
            blocked_until(Counter::Email, state(100, 0), now),
            Some(Timestamp(3_600_000))
        );
        assert_eq!(blocked_until(Counter::Ip, state(299, 0), now), None);
        assert!(window_over(Counter::Ip, state(1, 0), Timestamp(3_600_000)));
        assert_eq!(blocked_until(Counter::Notice, state(4, 0), now), None);
        assert_eq!(
            blocked_until(Counter::Notice, state(5, 0), now),
            Some(Timestamp(3_600_000))
        );
    }
}
