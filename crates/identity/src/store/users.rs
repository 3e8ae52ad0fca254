//! Users (`identity_users`): the columns the use cases read one at a time.

use sea_orm::{ConnectionTrait, DbErr};
use tenancy_runtime::db::{get, one};
use tenancy_runtime::ids::{AccountId, UserId};

/// When the user last created a session (Unix ms); `None` for never or an
/// unknown user.
pub(crate) async fn last_login_time<C: ConnectionTrait>(
    c: &C,
    user: &UserId,
) -> Result<Option<i64>, DbErr> {
    Ok(one(
        c,
        "SELECT last_login_time FROM identity_users WHERE id = $1",
        vec![user.into()],
    )
    .await?
    .map(|row| get::<Option<i64>>(&row, "last_login_time"))
    .transpose()?
    .flatten())
}

/// The account the user last selected, if any.
pub(crate) async fn last_account<C: ConnectionTrait>(
    c: &C,
    user: &UserId,
) -> Result<Option<AccountId>, DbErr> {
    Ok(one(
        c,
        "SELECT last_account_id FROM identity_users WHERE id = $1",
        vec![user.into()],
    )
    .await?
    .map(|row| get::<Option<String>>(&row, "last_account_id"))
    .transpose()?
    .flatten()
    .map(AccountId::trusted))
}
