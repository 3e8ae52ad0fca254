//! Per-recipient counts of the emails anyone can make identity send
//! (`identity_throttle`, keys `mail:<address key>`), so that nobody can
//! flood an address with links.

use sea_orm::{ConnectionTrait, DbErr};
use tenancy_runtime::db::{get, one};

/// Counts one email to the address with key `email_key` at `now` (atomic
/// upsert; a count whose window started `window` ms ago or earlier starts
/// again at 1) and returns the count in the current window, this one
/// included.
pub(crate) async fn count<C: ConnectionTrait>(
    c: &C,
    email_key: &str,
    now: i64,
    window: i64,
) -> Result<i64, DbErr> {
    let row = one(
        c,
        "INSERT INTO identity_throttle (key, failures, window_start, last_failure) \
         VALUES ($1, 1, $2, $2) ON CONFLICT (key) DO UPDATE SET \
         failures = CASE WHEN identity_throttle.window_start + $3 <= $2 THEN 1 \
                    ELSE identity_throttle.failures + 1 END, \
         window_start = CASE WHEN identity_throttle.window_start + $3 <= $2 THEN $2 \
                        ELSE identity_throttle.window_start END, \
         last_failure = $2 \
         RETURNING failures",
        vec![
            format!("mail:{email_key}").into(),
            now.into(),
            window.into(),
        ],
    )
    .await?
    .ok_or_else(|| DbErr::RecordNotFound("mail count".to_owned()))?;
    get(&row, "failures")
}
