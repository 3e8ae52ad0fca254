//! Keeps the policy log bounded: entries older than the retention go.

use sea_orm::{ConnectionTrait, DbErr};
use tenancy_runtime::db::exec;

/// Deletes the oldest policy log entries: each committed before
/// `created_before` (Unix ms), up to the first entry that must stay, and
/// never the newest, so a watcher at the head resumes without a snapshot.
/// Only a prefix goes, so the kept positions are contiguous and a watcher
/// whose next position is missing knows it was pruned (WatchPolicies'
/// POSITION_EXPIRED; `tenancy_runtime::db::pruned_after`), even if
/// replicas' clocks put commit times slightly out of position order.
/// Returns how many were deleted.
pub async fn policy_log<C: ConnectionTrait>(c: &C, created_before: i64) -> Result<u64, DbErr> {
    exec(
        c,
        "DELETE FROM account_policy_log \
         WHERE position < (SELECT position FROM account_policy_head WHERE id = 1) \
         AND position < COALESCE((SELECT MIN(position) FROM account_policy_log \
                                  WHERE event_time >= $1), \
                                 (SELECT position FROM account_policy_head WHERE id = 1))",
        vec![created_before.into()],
    )
    .await
}
