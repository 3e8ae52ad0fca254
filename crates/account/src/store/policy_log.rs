//! Reads of WatchPolicies: the policy log after a position, and the state
//! a snapshot sends (accounts, live memberships), in batches.

use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend,
    IsolationLevel, TransactionTrait,
};
use tenancy_runtime::Error;
use tenancy_runtime::db::{all, bulk_page, get};

use super::{
    AccountSettings, LIVE_MEMBER_COLUMNS, LiveMember, SETTINGS_COLUMNS, StoredLiveMember,
    StoredSettings, i, n, s,
};
use crate::domain::MemberStatus;

/// A read-only transaction that sees one state throughout (REPEATABLE
/// READ on PostgreSQL; SQLite's transactions do anyway), for a snapshot.
pub async fn begin_snapshot(db: &DatabaseConnection) -> Result<DatabaseTransaction, Error> {
    Ok(if db.get_database_backend() == DbBackend::Postgres {
        db.begin_with_config(
            Some(IsolationLevel::RepeatableRead),
            Some(AccessMode::ReadOnly),
        )
        .await?
    } else {
        db.begin().await?
    })
}

/// An entry of the policy log.
#[derive(Clone, Debug)]
pub struct LoggedPolicy {
    /// Its position.
    pub position: i64,
    /// When it was written (Unix ms).
    pub time: i64,
    /// Its kind (see `policy_kind`).
    pub kind: i32,
    /// Its payload.
    pub payload: String,
}

/// At most `limit` policy-log entries after position `after`, in order.
pub async fn policy_after<C: ConnectionTrait>(
    c: &C,
    after: i64,
    limit: u64,
) -> Result<Vec<LoggedPolicy>, Error> {
    all(
        c,
        &format!("SELECT position, event_time, event_kind, payload FROM account_policy_log WHERE position > $1 ORDER BY position LIMIT {limit}"),
        vec![i(after)],
    )
    .await?
    .iter()
    .map(|row| {
        Ok(LoggedPolicy {
            position: get(row, "position")?,
            time: get(row, "event_time")?,
            kind: get(row, "event_kind")?,
            payload: get(row, "payload")?,
        })
    })
    .collect()
}

/// The security settings of at most `limit` accounts with ids after
/// `after`, by id (a page of a snapshot: one bulk page, see
/// [`bulk_page`]).
pub async fn settings_after<C: ConnectionTrait>(
    c: &C,
    after: &str,
    limit: u64,
) -> Result<Vec<AccountSettings>, Error> {
    let page: Vec<StoredSettings> = bulk_page(
        c,
        SETTINGS_COLUMNS,
        "account_accounts WHERE id > $1",
        "id",
        limit,
        vec![s(after)],
    )
    .await?;
    Ok(page.into_iter().map(AccountSettings::from).collect())
}

/// At most `limit` ACTIVE or SUSPENDED members after `after` (account id,
/// user id), in that order (a page of a snapshot: one bulk page, see
/// [`bulk_page`]).
pub async fn live_members_after<C: ConnectionTrait>(
    c: &C,
    after: (&str, &str),
    limit: u64,
) -> Result<Vec<LiveMember>, Error> {
    let page: Vec<StoredLiveMember> = bulk_page(
        c,
        LIVE_MEMBER_COLUMNS,
        "account_members WHERE status IN ($1, $2) AND (account_id, user_id) > ($3, $4)",
        "account_id, user_id",
        limit,
        vec![
            n(MemberStatus::Active.code()),
            n(MemberStatus::Suspended.code()),
            s(after.0),
            s(after.1),
        ],
    )
    .await?;
    page.into_iter().map(LiveMember::try_from).collect()
}
