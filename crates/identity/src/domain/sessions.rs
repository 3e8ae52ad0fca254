//! When a portal session is live: the one definition (the store's SQL
//! filter is tested against it in `store::sessions`).

/// Whether a session is live at `now`: not ended, used within its idle
/// timeout (`expire_time`) and within its lifetime (`end_time`); all
/// Unix ms.
pub(crate) fn session_live(revoked: bool, expire_time: i64, end_time: i64, now: i64) -> bool {
    !revoked && expire_time > now && end_time > now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_dies_at_its_idle_expiry_its_end_or_when_ended() {
        assert!(session_live(false, 11, 11, 10));
        assert!(!session_live(false, 10, 11, 10));
        assert!(!session_live(false, 11, 10, 10));
        assert!(!session_live(true, 11, 11, 10));
    }
}
