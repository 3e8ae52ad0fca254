//! Keeps the policy log bounded: entries older than the retention go.

use sea_orm::{ConnectionTrait, DbErr};
use tenancy_runtime::db::exec;

/// Deletes policy log entries committed before `created_before` (Unix ms),
/// but never the newest, so a watcher at the head resumes without a
/// snapshot. A watcher whose resume position is older than the oldest kept
/// entry gets a snapshot (WatchPolicies' POSITION_EXPIRED). Returns how
/// many were deleted.
pub async fn policy_log<C: ConnectionTrait>(c: &C, created_before: i64) -> Result<u64, DbErr> {
    exec(
        c,
        "DELETE FROM account_policy_log WHERE event_time < $1 \
         AND position < (SELECT position FROM account_policy_head WHERE id = 1)",
        vec![created_before.into()],
    )
    .await
}
