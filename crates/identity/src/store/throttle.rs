//! Failure counters (`identity_throttle`) behind the back-off of logins,
//! second factors, proofs and notices.

use sea_orm::{ConnectionTrait, DbErr};
use tenancy_runtime::Timestamp;
use tenancy_runtime::db::{exec, get, one};

use crate::domain::throttle::State;

/// The counter under `key`, if any.
pub(crate) async fn state<C: ConnectionTrait>(c: &C, key: &str) -> Result<Option<State>, DbErr> {
    one(
        c,
        "SELECT failures, window_start, last_failure FROM identity_throttle WHERE key = $1",
        vec![key.into()],
    )
    .await?
    .map(|row| {
        Ok(State {
            failures: get(&row, "failures")?,
            window_start: Timestamp(get(&row, "window_start")?),
            last_failure: Timestamp(get(&row, "last_failure")?),
        })
    })
    .transpose()
}

/// Counts a failure under `key` at `now` (atomic upsert): a counter whose
/// window (from its `last_failure` when `since_last`, else from its
/// `window_start`) is over starts again at 1.
pub(crate) async fn count_failure<C: ConnectionTrait>(
    c: &C,
    key: &str,
    now: i64,
    window: i64,
    since_last: bool,
) -> Result<(), DbErr> {
    let since = if since_last {
        "identity_throttle.last_failure"
    } else {
        "identity_throttle.window_start"
    };
    exec(
        c,
        &format!(
            "INSERT INTO identity_throttle (key, failures, window_start, last_failure) \
             VALUES ($1, 1, $2, $2) ON CONFLICT (key) DO UPDATE SET \
             failures = CASE WHEN {since} + $3 <= $2 THEN 1 ELSE identity_throttle.failures + 1 END, \
             window_start = CASE WHEN {since} + $3 <= $2 THEN $2 ELSE identity_throttle.window_start END, \
             last_failure = $2"
        ),
        vec![key.into(), now.into(), window.into()],
    )
    .await?;
    Ok(())
}

/// Forgets the counter under `key`.
pub(crate) async fn clear<C: ConnectionTrait>(c: &C, key: &str) -> Result<(), DbErr> {
    exec(
        c,
        "DELETE FROM identity_throttle WHERE key = $1",
        vec![key.into()],
    )
    .await?;
    Ok(())
}

/// Forgets the counter under `key` and every one whose key starts with
/// `prefix` (compared without LIKE, whose wildcards a key may contain);
/// how many there were.
pub(crate) async fn clear_with_prefix<C: ConnectionTrait>(
    c: &C,
    key: &str,
    prefix: &str,
) -> Result<u64, DbErr> {
    exec(
        c,
        "DELETE FROM identity_throttle WHERE key = $1 OR substr(key, 1, length($2)) = $2",
        vec![key.into(), prefix.into()],
    )
    .await
}
