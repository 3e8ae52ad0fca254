//! The operators' audit: one row per operator action, written in the
//! action's transaction, read newest first per user.

use sea_orm::{ConnectionTrait, DbErr};
use tenancy_runtime::db::{all, exec, get};
use tenancy_runtime::ids::{UserId, new_id};

use crate::domain::admin::AdminEvent;

/// Records `event` (its id is made here).
pub(crate) async fn insert<C: ConnectionTrait>(c: &C, event: &AdminEvent) -> Result<(), DbErr> {
    exec(
        c,
        "INSERT INTO identity_admin_audit (id, time, caller, request_id, action, user_id, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        vec![
            new_id().into(),
            event.time.into(),
            event.caller.as_str().into(),
            event.request_id.as_str().into(),
            event.action.as_str().into(),
            event.user_id.as_ref().map(UserId::to_string).into(),
            event.detail.as_str().into(),
        ],
    )
    .await?;
    Ok(())
}

/// The newest `limit` actions on `user`, newest first.
pub(crate) async fn for_user<C: ConnectionTrait>(
    c: &C,
    user: &UserId,
    limit: u64,
) -> Result<Vec<AdminEvent>, DbErr> {
    let rows = all(
        c,
        &format!(
            "SELECT time, caller, request_id, action, user_id, detail FROM identity_admin_audit \
             WHERE user_id = $1 ORDER BY time DESC, id DESC LIMIT {limit}"
        ),
        vec![user.into()],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AdminEvent {
                time: get(r, "time")?,
                caller: get(r, "caller")?,
                request_id: get(r, "request_id")?,
                action: get(r, "action")?,
                user_id: get::<Option<String>>(r, "user_id")?.map(UserId::trusted),
                detail: get(r, "detail")?,
            })
        })
        .collect()
}
