//! The accounts' SSH public keys (`identity_ssh_keys`), unique per account
//! by fingerprint.

use sea_orm::{ConnectionTrait, DbErr, QueryResult};
use tenancy_runtime::db::{all, exec, get, one};
use tenancy_runtime::ids::{AccountId, SshKeyId, UserId};

const COLUMNS: &str = "id, account_id, name, public_key, fingerprint, algorithm, bits, comment, create_time, created_by";

/// A key as stored.
#[derive(Clone, Debug)]
pub(crate) struct SshKeyRow {
    /// Its id.
    pub(crate) id: SshKeyId,
    /// The account it opens.
    pub(crate) account_id: AccountId,
    /// Its label.
    pub(crate) name: String,
    /// The key as an OpenSSH line.
    pub(crate) public_key: String,
    /// `SHA256:…`.
    pub(crate) fingerprint: String,
    /// The `SshKeyAlgorithm` number.
    pub(crate) algorithm: i32,
    /// Its size in bits.
    pub(crate) bits: i32,
    /// The comment of the OpenSSH line.
    pub(crate) comment: String,
    /// When it was added (Unix ms).
    pub(crate) create_time: i64,
    /// Who added it.
    pub(crate) created_by: UserId,
}

fn key_from_row(r: &QueryResult) -> Result<SshKeyRow, DbErr> {
    Ok(SshKeyRow {
        id: SshKeyId::trusted(get::<String>(r, "id")?),
        account_id: AccountId::trusted(get::<String>(r, "account_id")?),
        name: get(r, "name")?,
        public_key: get(r, "public_key")?,
        fingerprint: get(r, "fingerprint")?,
        // INTEGER columns: i32 on both SQLite and PostgreSQL.
        algorithm: get(r, "algorithm")?,
        bits: get(r, "bits")?,
        comment: get(r, "comment")?,
        create_time: get(r, "create_time")?,
        created_by: UserId::trusted(get::<String>(r, "created_by")?),
    })
}

/// How many keys the account holds.
pub(crate) async fn count<C: ConnectionTrait>(c: &C, account: &AccountId) -> Result<i64, DbErr> {
    Ok(one(
        c,
        "SELECT COUNT(*) AS n FROM identity_ssh_keys WHERE account_id = $1",
        vec![account.into()],
    )
    .await?
    .map(|r| get::<i64>(&r, "n"))
    .transpose()?
    .unwrap_or(0))
}

/// Stores a key unless the account has one with its fingerprint; whether
/// it was stored.
pub(crate) async fn insert<C: ConnectionTrait>(c: &C, key: &SshKeyRow) -> Result<bool, DbErr> {
    let inserted = exec(
        c,
        "INSERT INTO identity_ssh_keys (id, account_id, name, public_key, fingerprint, algorithm, \
         bits, comment, create_time, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (account_id, fingerprint) DO NOTHING",
        vec![
            (&key.id).into(),
            (&key.account_id).into(),
            key.name.clone().into(),
            key.public_key.clone().into(),
            key.fingerprint.clone().into(),
            key.algorithm.into(),
            key.bits.into(),
            key.comment.clone().into(),
            key.create_time.into(),
            (&key.created_by).into(),
        ],
    )
    .await?;
    Ok(inserted == 1)
}

/// One key by id.
pub(crate) async fn get_key<C: ConnectionTrait>(
    c: &C,
    id: &SshKeyId,
) -> Result<Option<SshKeyRow>, DbErr> {
    one(
        c,
        &format!("SELECT {COLUMNS} FROM identity_ssh_keys WHERE id = $1"),
        vec![id.into()],
    )
    .await?
    .as_ref()
    .map(key_from_row)
    .transpose()
}

/// Up to `limit` keys of the account, newest first, after the key
/// `(time, id)` (`i64::MAX` and "" for the first page).
pub(crate) async fn page<C: ConnectionTrait>(
    c: &C,
    account: &AccountId,
    time: i64,
    id: &str,
    limit: i64,
) -> Result<Vec<SshKeyRow>, DbErr> {
    all(
        c,
        &format!(
            "SELECT {COLUMNS} FROM identity_ssh_keys WHERE account_id = $1 \
             AND (create_time < $2 OR (create_time = $2 AND ($3 = '' OR id < $3))) \
             ORDER BY create_time DESC, id DESC LIMIT $4"
        ),
        vec![account.into(), time.into(), id.into(), limit.into()],
    )
    .await?
    .iter()
    .map(key_from_row)
    .collect()
}

/// Deletes a key of the account; whether there was one.
pub(crate) async fn delete<C: ConnectionTrait>(
    c: &C,
    id: &SshKeyId,
    account: &AccountId,
) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "DELETE FROM identity_ssh_keys WHERE id = $1 AND account_id = $2",
        vec![id.into(), account.into()],
    )
    .await?;
    Ok(n > 0)
}
