//! Failure counters (`identity_throttle`) behind the back-off of logins,
//! second factors, proofs and notices.

use sea_orm::{ConnectionTrait, DbBackend, DbErr};
use tenancy_runtime::Timestamp;
use tenancy_runtime::db::{exec, get, one};

use crate::domain::throttle::State;

/// The counter under `key`, if any.
pub(crate) async fn state<C: ConnectionTrait>(c: &C, key: &str) -> Result<Option<State>, DbErr> {
    read(c, key, "").await
}

async fn read<C: ConnectionTrait>(c: &C, key: &str, lock: &str) -> Result<Option<State>, DbErr> {
    one(
        c,
        &format!(
            "SELECT failures, window_start, last_failure FROM identity_throttle WHERE key = $1{lock}"
        ),
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

/// The counter under `key`, locked until `c`'s transaction ends (created
/// empty when missing, so that there is a row to lock): concurrent attempts
/// on one key are checked and counted one after the other. SQLite: the
/// INSERT takes the database's write lock; PostgreSQL: `FOR UPDATE`.
pub(crate) async fn lock<C: ConnectionTrait>(c: &C, key: &str) -> Result<Option<State>, DbErr> {
    exec(
        c,
        "INSERT INTO identity_throttle (key, failures, window_start, last_failure) \
         VALUES ($1, 0, 0, 0) ON CONFLICT (key) DO NOTHING",
        vec![key.into()],
    )
    .await?;
    let lock = if c.get_database_backend() == DbBackend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    read(c, key, lock).await
}

/// Takes back one counted attempt under `key` (it succeeded, so it was no
/// failure).
pub(crate) async fn refund<C: ConnectionTrait>(c: &C, key: &str) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_throttle SET failures = failures - 1 WHERE key = $1 AND failures > 0",
        vec![key.into()],
    )
    .await?;
    Ok(())
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
