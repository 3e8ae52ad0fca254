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

/// What saving the security settings does to the members' personal
/// deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadlineChange {
    /// Enforcement begins now: every member gets [`deadline`].
    Start,
    /// The grace period changed under enforcement: every member gets
    /// [`resaved`].
    Resave,
    /// Enforcement ended: no member has a deadline.
    Clear,
    /// Nothing that decides deadlines changed.
    Keep,
}

impl DeadlineChange {
    /// Whether members' deadlines move (gateways must hear each one).
    pub fn moves_deadlines(self) -> bool {
        matches!(self, Self::Start | Self::Resave)
    }
}

/// The deadline change of saving (enforce, grace ms) `after` over `before`.
pub fn on_save(before: (bool, i64), after: (bool, i64)) -> DeadlineChange {
    match (before.0, after.0) {
        (false, true) => DeadlineChange::Start,
        (true, true) if after.1 != before.1 => DeadlineChange::Resave,
        (true, false) => DeadlineChange::Clear,
        _ => DeadlineChange::Keep,
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
    fn saving_settings_starts_resaves_or_clears_deadlines() {
        assert_eq!(on_save((false, 0), (true, 10)), DeadlineChange::Start);
        assert_eq!(on_save((true, 10), (true, 5)), DeadlineChange::Resave);
        assert_eq!(on_save((true, 10), (true, 10)), DeadlineChange::Keep);
        assert_eq!(on_save((true, 10), (false, 10)), DeadlineChange::Clear);
        assert_eq!(on_save((false, 0), (false, 10)), DeadlineChange::Keep);
        assert!(DeadlineChange::Resave.moves_deadlines());
        assert!(!DeadlineChange::Clear.moves_deadlines());
    }

    #[test]
    fn resaving_never_extends_but_tightening_shortens() {
        assert_eq!(resaved(Some(100), 200), 100);
        assert_eq!(resaved(Some(100), 50), 50);
        assert_eq!(resaved(None, 50), 50);
    }
}
