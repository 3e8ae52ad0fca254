//! Support-access grants: an account's consent for staff to act in it.

use sea_orm::{ConnectionTrait, QueryResult};
use tenancy_runtime::Error;
use tenancy_runtime::db::{all, exec, get, one};
use tenancy_runtime::ids::{AccountId, UserId};

use super::{i, s};

/// A support-access grant.
#[derive(Clone, Debug)]
pub struct SupportGrantRow {
    /// Id.
    pub id: String,
    /// The account.
    pub account_id: String,
    /// The owner who granted it.
    pub granted_by: String,
    /// Granted (Unix ms).
    pub create_time: i64,
    /// Ends (Unix ms).
    pub expire_time: i64,
    /// The owner's note.
    pub note: String,
    /// Ended early (Unix ms).
    pub revoke_time: Option<i64>,
    /// Who ended it early.
    pub revoked_by: String,
}

const GRANT_COLUMNS: &str =
    "id, account_id, granted_by, create_time, expire_time, note, revoke_time, revoked_by";

impl SupportGrantRow {
    fn read(r: &QueryResult) -> Result<Self, Error> {
        Ok(Self {
            id: get(r, "id")?,
            account_id: get(r, "account_id")?,
            granted_by: get(r, "granted_by")?,
            create_time: get(r, "create_time")?,
            expire_time: get(r, "expire_time")?,
            note: get(r, "note")?,
            revoke_time: get(r, "revoke_time")?,
            revoked_by: get(r, "revoked_by")?,
        })
    }

    /// Whether the grant is in effect at `now`.
    pub fn active(&self, now: i64) -> bool {
        self.revoke_time.is_none() && self.expire_time > now
    }
}

async fn one_grant<C: ConnectionTrait>(
    c: &C,
    sql: &str,
    values: Vec<sea_orm::Value>,
) -> Result<Option<SupportGrantRow>, Error> {
    one(c, sql, values)
        .await?
        .map(|r| SupportGrantRow::read(&r))
        .transpose()
}

/// A grant by id.
pub async fn support_grant<C: ConnectionTrait>(
    c: &C,
    id: &str,
) -> Result<Option<SupportGrantRow>, Error> {
    one_grant(
        c,
        &format!("SELECT {GRANT_COLUMNS} FROM account_support_grants WHERE id = $1"),
        vec![s(id)],
    )
    .await
}

/// The account's latest grant, in effect or not.
pub async fn latest_support_grant<C: ConnectionTrait>(
    c: &C,
    account_id: &AccountId,
) -> Result<Option<SupportGrantRow>, Error> {
    one_grant(
        c,
        &format!("SELECT {GRANT_COLUMNS} FROM account_support_grants WHERE account_id = $1 ORDER BY create_time DESC, id DESC"),
        vec![account_id.into()],
    )
    .await
}

/// The account's grant in effect at `now`, if any.
pub async fn active_support_grant<C: ConnectionTrait>(
    c: &C,
    account_id: &AccountId,
    now: i64,
) -> Result<Option<SupportGrantRow>, Error> {
    one_grant(
        c,
        &format!("SELECT {GRANT_COLUMNS} FROM account_support_grants WHERE account_id = $1 AND revoke_time IS NULL AND expire_time > $2 ORDER BY create_time DESC, id DESC"),
        vec![account_id.into(), i(now)],
    )
    .await
}

/// Grants in effect at `now` of accounts after `after`, by account id.
pub async fn active_support_grants<C: ConnectionTrait>(
    c: &C,
    now: i64,
    after: &str,
    limit: u64,
) -> Result<Vec<SupportGrantRow>, Error> {
    all(
        c,
        &format!("SELECT {GRANT_COLUMNS} FROM account_support_grants WHERE revoke_time IS NULL AND expire_time > $1 AND account_id > $2 ORDER BY account_id LIMIT {limit}"),
        vec![i(now), s(after)],
    )
    .await?
    .iter()
    .map(SupportGrantRow::read)
    .collect()
}

/// Ends every grant of the account in effect at `now`, by `user_id`.
pub async fn revoke_support_grants<C: ConnectionTrait>(
    c: &C,
    account_id: &AccountId,
    now: i64,
    user_id: &UserId,
) -> Result<(), Error> {
    exec(
        c,
        "UPDATE account_support_grants SET revoke_time = $2, revoked_by = $3 WHERE account_id = $1 AND revoke_time IS NULL AND expire_time > $2",
        vec![account_id.into(), i(now), user_id.into()],
    )
    .await?;
    Ok(())
}

/// Ends one grant at `now`, by `user_id`.
pub async fn revoke_support_grant<C: ConnectionTrait>(
    c: &C,
    id: &str,
    now: i64,
    user_id: &UserId,
) -> Result<(), Error> {
    exec(
        c,
        "UPDATE account_support_grants SET revoke_time = $2, revoked_by = $3 WHERE id = $1",
        vec![s(id), i(now), user_id.into()],
    )
    .await?;
    Ok(())
}

/// Records a new grant.
pub async fn insert_support_grant<C: ConnectionTrait>(
    c: &C,
    grant: &SupportGrantRow,
) -> Result<(), Error> {
    exec(
        c,
        "INSERT INTO account_support_grants (id, account_id, granted_by, create_time, expire_time, note, revoke_time, revoked_by) VALUES ($1, $2, $3, $4, $5, $6, NULL, '')",
        vec![
            s(&grant.id),
            s(&grant.account_id),
            s(&grant.granted_by),
            i(grant.create_time),
            i(grant.expire_time),
            s(&grant.note),
        ],
    )
    .await?;
    Ok(())
}
