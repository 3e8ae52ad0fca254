//! Keeps the revocation log bounded: entries older than the retention go,
//! oldest first, once no token they refuse can still be valid.

use sea_orm::{ConnectionTrait, DbErr};
use tenancy_runtime::db::{exec, get, one};

/// Deletes the oldest entries of the revocation log: each created before
/// `created_before` (Unix ms) whose effect ended before `now` (Unix ms),
/// up to the first entry that must stay. The newest entry always stays, so
/// a watcher at the head resumes without a reset. Only a prefix goes, so
/// the kept positions are contiguous and a watcher whose next position is
/// missing knows it was pruned. Returns how many were deleted.
pub(crate) async fn revocations<C: ConnectionTrait>(
    c: &C,
    created_before: i64,
    now: i64,
) -> Result<u64, DbErr> {
    exec(
        c,
        "DELETE FROM identity_revocations \
         WHERE position < (SELECT position FROM identity_revocation_head WHERE id = 1) \
         AND position < COALESCE((SELECT MIN(position) FROM identity_revocations \
                                  WHERE create_time >= $1 OR expire_time >= $2), \
                                 (SELECT position FROM identity_revocation_head WHERE id = 1))",
        vec![created_before.into(), now.into()],
    )
    .await
}

/// The position of the oldest entry kept, if any.
pub(crate) async fn oldest<C: ConnectionTrait>(c: &C) -> Result<Option<i64>, DbErr> {
    Ok(one(
        c,
        "SELECT MIN(position) AS p FROM identity_revocations",
        vec![],
    )
    .await?
    .map(|r| get::<Option<i64>>(&r, "p"))
    .transpose()?
    .flatten())
}
