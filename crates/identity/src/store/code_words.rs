//! Staff checks of users' code words (`identity_code_word_checks`): the
//! audit trail, and the count behind the hourly limit.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use tenancy_runtime::db::{exec, get, one};

/// Failed checks of the user's code word after `since` (Unix ms).
pub(crate) async fn failures_since<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    since: i64,
) -> Result<i64, DbErr> {
    Ok(one(
        c,
        "SELECT COUNT(*) AS n FROM identity_code_word_checks WHERE user_id = $1 AND matched = FALSE \
         AND time > $2",
        vec![user_id.into(), since.into()],
    )
    .await?
    .map(|r| get::<i64>(&r, "n"))
    .transpose()?
    .unwrap_or(0))
}

/// One check, as audited.
pub(crate) struct Check<'a> {
    /// The check's id.
    pub(crate) id: String,
    /// Whose word was checked.
    pub(crate) user_id: &'a str,
    /// The staff member who checked.
    pub(crate) staff_user_id: &'a str,
    /// The account the call was about.
    pub(crate) account_id: &'a str,
    /// When (Unix ms).
    pub(crate) time: i64,
}

/// Takes one attempt of the hourly allowance, atomically: under the user's
/// row lock (PostgreSQL; SQLite's write lock through [`super::begin`]),
/// counts the failures after `since` and, when fewer than `limit`, records
/// `check` as a failure (turned into a match by [`matched`] once the word
/// is checked). Concurrent attempts queue on the lock, so at most `limit`
/// are ever let through. Returns the failures before this attempt, or
/// `None` when the allowance is used up (nothing recorded).
pub(crate) async fn reserve(
    db: &DatabaseConnection,
    check: Check<'_>,
    since: i64,
    limit: i64,
) -> Result<Option<i64>, DbErr> {
    let tx = super::begin(db).await?;
    exec(
        &tx,
        "UPDATE identity_users SET code_word_hash = code_word_hash WHERE id = $1",
        vec![check.user_id.into()],
    )
    .await?;
    let failures = failures_since(&tx, check.user_id, since).await?;
    if failures >= limit {
        tx.rollback().await?;
        return Ok(None);
    }
    record(&tx, check).await?;
    tx.commit().await?;
    Ok(Some(failures))
}

/// Marks a reserved check as a match.
pub(crate) async fn matched<C: ConnectionTrait>(c: &C, id: &str) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_code_word_checks SET matched = TRUE WHERE id = $1",
        vec![id.into()],
    )
    .await?;
    Ok(())
}

/// Records a check, as a failure until [`matched`].
async fn record<C: ConnectionTrait>(c: &C, check: Check<'_>) -> Result<(), DbErr> {
    exec(
        c,
        "INSERT INTO identity_code_word_checks (id, user_id, staff_user_id, account_id, time, matched) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        vec![
            check.id.into(),
            check.user_id.into(),
            check.staff_user_id.into(),
            check.account_id.into(),
            check.time.into(),
            false.into(),
        ],
    )
    .await?;
    Ok(())
}
