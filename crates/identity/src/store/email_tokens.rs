//! Single-use email links (`identity_email_tokens`): verification and
//! password reset, stored as hashes.

use sea_orm::{ConnectionTrait, DbErr};
use tenancy_runtime::db::{exec, get, one};

/// What an email link was issued for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Proving an address (`verify`).
    Verify,
    /// Choosing a new password (`reset`).
    Reset,
    /// Logging in past the per-email cap of failed logins (`unlock`).
    Unlock,
}

impl Purpose {
    /// The stored name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Purpose::Verify => "verify",
            Purpose::Reset => "reset",
            Purpose::Unlock => "unlock",
        }
    }
}

/// A stored link.
pub(crate) struct EmailToken {
    /// The user it was sent to.
    pub(crate) user_id: String,
    /// The address it was sent to.
    pub(crate) email: String,
    /// Until when it works (Unix ms).
    pub(crate) expire_time: i64,
    /// When it was used (Unix ms), if it was.
    pub(crate) used_time: Option<i64>,
}

/// Stores a link by the hash of its secret.
pub(crate) async fn insert<C: ConnectionTrait>(
    c: &C,
    hash: String,
    user_id: &str,
    purpose: Purpose,
    email: &str,
    now: i64,
    expire: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        "INSERT INTO identity_email_tokens (token_hash, user_id, purpose, email, create_time, expire_time) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        vec![
            hash.into(),
            user_id.into(),
            purpose.as_str().into(),
            email.into(),
            now.into(),
            expire.into(),
        ],
    )
    .await?;
    Ok(())
}

/// The link with this hash and purpose.
pub(crate) async fn find<C: ConnectionTrait>(
    c: &C,
    hash: &str,
    purpose: Purpose,
) -> Result<Option<EmailToken>, DbErr> {
    one(
        c,
        "SELECT user_id, email, expire_time, used_time FROM identity_email_tokens \
         WHERE token_hash = $1 AND purpose = $2",
        vec![hash.into(), purpose.as_str().into()],
    )
    .await?
    .map(|row| {
        Ok(EmailToken {
            user_id: get(&row, "user_id")?,
            email: get(&row, "email")?,
            expire_time: get(&row, "expire_time")?,
            used_time: get(&row, "used_time")?,
        })
    })
    .transpose()
}

/// Spends the unused, unexpired link with this hash and purpose at `now`;
/// whether there was one.
pub(crate) async fn spend_live<C: ConnectionTrait>(
    c: &C,
    hash: &str,
    purpose: Purpose,
    now: i64,
) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "UPDATE identity_email_tokens SET used_time = $1 WHERE token_hash = $2 \
         AND purpose = $3 AND used_time IS NULL AND expire_time > $1",
        vec![now.into(), hash.into(), purpose.as_str().into()],
    )
    .await?;
    Ok(n == 1)
}

/// Spends the unused link with this hash (expiry checked by the caller);
/// whether there was one.
pub(crate) async fn spend<C: ConnectionTrait>(c: &C, hash: &str, now: i64) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "UPDATE identity_email_tokens SET used_time = $1 WHERE token_hash = $2 AND used_time IS NULL",
        vec![now.into(), hash.into()],
    )
    .await?;
    Ok(n == 1)
}

/// Spends every unused link of the user for `purpose`.
pub(crate) async fn spend_all_of<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    purpose: Purpose,
    now: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_email_tokens SET used_time = $1 WHERE user_id = $2 AND purpose = $3 \
         AND used_time IS NULL",
        vec![now.into(), user_id.into(), purpose.as_str().into()],
    )
    .await?;
    Ok(())
}
