//! Access-token signing keys (`identity_signing_keys`), private halves
//! sealed by the caller.

use sea_orm::{ConnectionTrait, DbErr};
use tenancy_runtime::db::{all, exec, get};

/// A signing key as stored.
pub(crate) struct KeyRow {
    /// The key id (JWT `kid`).
    pub(crate) kid: String,
    /// The sealed PKCS#8 private key.
    pub(crate) private_key: String,
    /// The public key (base64url `x`).
    pub(crate) public_x: String,
    /// When it starts signing (Unix ms).
    pub(crate) activate_time: i64,
    /// When it stops signing (Unix ms), if rotated out.
    pub(crate) retire_time: Option<i64>,
}

/// The keys not withdrawn, newest activation first.
pub(crate) async fn live<C: ConnectionTrait>(c: &C) -> Result<Vec<KeyRow>, DbErr> {
    all(
        c,
        "SELECT kid, private_key, public_x, activate_time, retire_time FROM identity_signing_keys \
         WHERE withdrawn = FALSE ORDER BY activate_time DESC",
        vec![],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(KeyRow {
            kid: get(r, "kid")?,
            private_key: get(r, "private_key")?,
            public_x: get(r, "public_x")?,
            activate_time: get(r, "activate_time")?,
            retire_time: get(r, "retire_time")?,
        })
    })
    .collect()
}

/// Stores a new key, created at `now`, signing from `activate` (Unix ms).
pub(crate) async fn insert<C: ConnectionTrait>(c: &C, key: &KeyRow, now: i64) -> Result<(), DbErr> {
    exec(
        c,
        "INSERT INTO identity_signing_keys (kid, private_key, public_x, create_time, activate_time) \
         VALUES ($1, $2, $3, $4, $5)",
        vec![
            key.kid.clone().into(),
            key.private_key.clone().into(),
            key.public_x.clone().into(),
            now.into(),
            key.activate_time.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Withdraws every live key at `now` (Unix ms): tokens they signed die.
pub(crate) async fn withdraw_all<C: ConnectionTrait>(c: &C, now: i64) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_signing_keys SET withdrawn = TRUE, retire_time = $1 \
         WHERE withdrawn = FALSE",
        vec![now.into()],
    )
    .await?;
    Ok(())
}

/// Retires the current key(s) at `at` (Unix ms): they stop signing then.
pub(crate) async fn retire_current<C: ConnectionTrait>(c: &C, at: i64) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_signing_keys SET retire_time = $1 \
         WHERE withdrawn = FALSE AND retire_time IS NULL",
        vec![at.into()],
    )
    .await?;
    Ok(())
}
