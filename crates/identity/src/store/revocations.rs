//! The revocation log (`identity_revocations`) and its head
//! (`identity_revocation_head`, whose row lock orders appends).

use sea_orm::{ConnectionTrait, DbErr};
use tenancy_runtime::db::{bulk_page, exec, get, one};

/// One event of the log as stored (read from [`EVENT_COLUMNS`], in order).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub(crate) struct StoredEvent {
    /// Its position (1, 2, …).
    pub(crate) position: i64,
    /// When it was appended (Unix ms).
    pub(crate) create_time: i64,
    /// Until when it matters (Unix ms), if it ends.
    pub(crate) expire_time: Option<i64>,
    /// The `RevocationReason` number.
    pub(crate) reason: i32,
    /// `session`, `user_tokens_before`, `user_account`, `api_token`,
    /// `signing_keys` or `mfa`.
    pub(crate) kind: String,
    /// The session or API token revoked, or `on`/`off` for `mfa`.
    pub(crate) subject: String,
    /// The user concerned (may be empty).
    pub(crate) user_id: String,
    /// The account concerned (may be empty).
    pub(crate) account_id: String,
    /// The withdrawn key ids, comma-separated, for `signing_keys`.
    pub(crate) kids: String,
}

/// The PostgreSQL channel an append is announced on (at commit), so every
/// replica's watchers look at once.
pub(crate) const CHANNEL: &str = "tenancy_identity_revocations";

/// Takes the next position (locking the head row until commit).
pub(crate) async fn next_position<C: ConnectionTrait>(c: &C) -> Result<Option<i64>, DbErr> {
    one(
        c,
        "UPDATE identity_revocation_head SET position = position + 1 WHERE id = 1 RETURNING position",
        vec![],
    )
    .await?
    .map(|row| get::<i64>(&row, "position"))
    .transpose()
}

/// Stores an event at the position [`next_position`] gave.
pub(crate) async fn insert<C: ConnectionTrait>(c: &C, event: StoredEvent) -> Result<(), DbErr> {
    exec(
        c,
        "INSERT INTO identity_revocations (position, create_time, expire_time, reason, kind, \
         subject, user_id, account_id, cutoff, kids) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        vec![
            event.position.into(),
            event.create_time.into(),
            event.expire_time.into(),
            event.reason.into(),
            event.kind.into(),
            event.subject.into(),
            event.user_id.into(),
            event.account_id.into(),
            Option::<i64>::None.into(),
            event.kids.into(),
        ],
    )
    .await?;
    Ok(())
}

/// The columns of a [`StoredEvent`], in its fields' order.
const EVENT_COLUMNS: &str =
    "position, create_time, expire_time, reason, kind, subject, user_id, account_id, kids";

/// Events a page of the log holds at most.
const PAGE: u64 = 1000;

/// Up to 1000 events after `position`, in order.
pub(crate) async fn after<C: ConnectionTrait>(
    c: &C,
    position: i64,
) -> Result<Vec<StoredEvent>, DbErr> {
    bulk_page(
        c,
        EVENT_COLUMNS,
        "identity_revocations WHERE position > $1",
        "position",
        PAGE,
        vec![position.into()],
    )
    .await
}

/// Up to 1000 events after `position` and up to `up_to` that a watcher
/// rebuilding its state still needs, in order: those that never end
/// (`expire_time` NULL), those whose effect ends after `ended_before`
/// (Unix ms), and those created after `created_after` (Unix ms).
pub(crate) async fn in_effect_after<C: ConnectionTrait>(
    c: &C,
    position: i64,
    up_to: i64,
    ended_before: i64,
    created_after: i64,
) -> Result<Vec<StoredEvent>, DbErr> {
    bulk_page(
        c,
        EVENT_COLUMNS,
        "identity_revocations WHERE position > $1 AND position <= $2 \
         AND (expire_time IS NULL OR expire_time > $3 OR create_time > $4)",
        "position",
        PAGE,
        vec![
            position.into(),
            up_to.into(),
            ended_before.into(),
            created_after.into(),
        ],
    )
    .await
}

/// The position of the first event kept after `position`, if any.
pub(crate) async fn first_after<C: ConnectionTrait>(
    c: &C,
    position: i64,
) -> Result<Option<i64>, DbErr> {
    Ok(one(
        c,
        "SELECT MIN(position) AS p FROM identity_revocations WHERE position > $1",
        vec![position.into()],
    )
    .await?
    .map(|r| get::<Option<i64>>(&r, "p"))
    .transpose()?
    .flatten())
}

/// The position of the last event committed (0 for none).
pub(crate) async fn head<C: ConnectionTrait>(c: &C) -> Result<i64, DbErr> {
    Ok(one(
        c,
        "SELECT position FROM identity_revocation_head WHERE id = 1",
        vec![],
    )
    .await?
    .map(|r| get::<i64>(&r, "position"))
    .transpose()?
    .unwrap_or(0))
}
