//! The networks users created sessions from (`identity_login_networks`),
//! for the new-address notice.

use sea_orm::{ConnectionTrait, DbErr};
use tenancy_runtime::db::{exec, get, one};
use tenancy_runtime::ids::UserId;

/// When `user` last created a session from `network` (Unix ms), if
/// remembered.
pub(crate) async fn last_seen<C: ConnectionTrait>(
    c: &C,
    user: &UserId,
    network: &str,
) -> Result<Option<i64>, DbErr> {
    one(
        c,
        "SELECT last_time FROM identity_login_networks WHERE user_id = $1 AND network = $2",
        vec![user.into(), network.into()],
    )
    .await?
    .map(|row| get::<i64>(&row, "last_time"))
    .transpose()
}

/// Remembers `network` for `user` at `now`, and forgets the user's
/// networks last seen at or before `forget_until` (Unix ms), so a user's
/// rows stay few.
pub(crate) async fn remember<C: ConnectionTrait>(
    c: &C,
    user: &UserId,
    network: &str,
    now: i64,
    forget_until: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        "INSERT INTO identity_login_networks (user_id, network, last_time) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, network) DO UPDATE SET last_time = excluded.last_time",
        vec![user.into(), network.into(), now.into()],
    )
    .await?;
    exec(
        c,
        "DELETE FROM identity_login_networks WHERE user_id = $1 AND last_time <= $2",
        vec![user.into(), forget_until.into()],
    )
    .await?;
    Ok(())
}
