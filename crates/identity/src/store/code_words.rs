//! Staff checks of users' code words (`identity_code_word_checks`): the
//! audit trail, and the count behind the hourly limit.

use sea_orm::{ConnectionTrait, DbErr};
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
    /// Whether the word matched.
    pub(crate) matched: bool,
}

/// Records a check.
pub(crate) async fn record<C: ConnectionTrait>(c: &C, check: Check<'_>) -> Result<(), DbErr> {
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
            check.matched.into(),
        ],
    )
    .await?;
    Ok(())
}
