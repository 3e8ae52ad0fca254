//! An API token's state: the one definition (the store's SQL filters are
//! tested against it in `store::api_tokens`).

/// Whether a token still opens the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum TokenState {
    /// Neither revoked nor past its expiry.
    Active,
    /// Past its expiry, never revoked.
    Expired,
    /// Revoked (whatever its expiry says: revocation wins).
    Revoked,
}

#[cfg(test)]
impl TokenState {
    /// Every state, in wire order.
    pub(crate) const ALL: [TokenState; 3] =
        [TokenState::Active, TokenState::Expired, TokenState::Revoked];
}

/// The state at `now` of a token revoked at `revoke_time` (if ever) that
/// expires at `expire_time` (if ever); all Unix ms.
pub(crate) fn token_state(
    revoke_time: Option<i64>,
    expire_time: Option<i64>,
    now: i64,
) -> TokenState {
    if revoke_time.is_some() {
        TokenState::Revoked
    } else if expire_time.is_some_and(|e| e <= now) {
        TokenState::Expired
    } else {
        TokenState::Active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_wins_over_expiry() {
        assert_eq!(token_state(Some(5), Some(1), 10), TokenState::Revoked);
    }

    #[test]
    fn a_token_expires_at_its_expiry_time() {
        assert_eq!(token_state(None, Some(10), 9), TokenState::Active);
        assert_eq!(token_state(None, Some(10), 10), TokenState::Expired);
        assert_eq!(token_state(None, None, i64::MAX), TokenState::Active);
    }
}
