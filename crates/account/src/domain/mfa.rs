//! Personal 2FA deadlines while an account enforces 2FA.

/// The deadline of a member who joined at `join_time` under enforcement
/// that began at `enforce_time` with `grace_ms` of grace.
pub fn deadline(enforce_time: i64, join_time: i64, grace_ms: i64) -> i64 {
    enforce_time.max(join_time).saturating_add(grace_ms)
}

/// A member's new deadline when the settings are saved: never later than
/// the deadline they already have (re-saving never extends it), earlier when
/// the policy is tightened.
pub fn resaved(current: Option<i64>, computed: i64) -> i64 {
    match current {
        Some(current) => current.min(computed),
        None => computed,
    }
}

/// The longest grace period: 30 days.
pub const MAX_GRACE_MS: i64 = 30 * 24 * 3600 * 1000;

/// How long before the deadline the reminder email goes out.
pub const REMINDER_BEFORE_MS: i64 = 3 * 24 * 3600 * 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_count_from_the_later_of_enforcement_and_joining() {
        assert_eq!(deadline(1000, 500, 10), 1010);
        assert_eq!(deadline(1000, 2000, 10), 2010);
    }

    #[test]
    fn resaving_never_extends_but_tightening_shortens() {
        assert_eq!(resaved(Some(100), 200), 100);
        assert_eq!(resaved(Some(100), 50), 50);
        assert_eq!(resaved(None, 50), 50);
    }
}
