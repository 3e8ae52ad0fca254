//! Single-use email links (`identity_email_tokens`): verification and
//! password reset, stored as hashes. A sign-up's verification link carries
//! the credentials that sign-up chose ([`PendingSignUp`]): they become the
//! user's only when that link is followed, and are cleared when it is
//! spent.

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

/// What a sign-up chose, waiting on its verification link.
#[derive(Clone, Debug)]
pub(crate) struct PendingSignUp {
    /// The argon2id hash of the password chosen.
    pub(crate) password_hash: String,
    /// The name given.
    pub(crate) name: String,
    /// The phone number given (E.164), empty when none: sent its code once
    /// the link is followed.
    pub(crate) phone: String,
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
    /// The sign-up it was sent for (verification links of sign-ups only).
    pub(crate) sign_up: Option<PendingSignUp>,
}

/// What spending a link leaves of it: its use time, no credentials.
const SPENT: &str = "used_time = $1, password_hash = NULL, name = NULL, phone = NULL";

/// Stores a link by the hash of its secret (with the sign-up it is sent
/// for, if any).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn insert<C: ConnectionTrait>(
    c: &C,
    hash: String,
    user_id: &str,
    purpose: Purpose,
    email: &str,
    sign_up: Option<&PendingSignUp>,
    now: i64,
    expire: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        "INSERT INTO identity_email_tokens (token_hash, user_id, purpose, email, create_time, \
         expire_time, password_hash, name, phone) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        vec![
            hash.into(),
            user_id.into(),
            purpose.as_str().into(),
            email.into(),
            now.into(),
            expire.into(),
            sign_up.map(|s| s.password_hash.clone()).into(),
            sign_up.map(|s| s.name.clone()).into(),
            sign_up.map(|s| s.phone.clone()).into(),
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
        "SELECT user_id, email, expire_time, used_time, password_hash, name, phone \
         FROM identity_email_tokens WHERE token_hash = $1 AND purpose = $2",
        vec![hash.into(), purpose.as_str().into()],
    )
    .await?
    .map(|row| {
        let password_hash: Option<String> = get(&row, "password_hash")?;
        let name: Option<String> = get(&row, "name")?;
        let phone: Option<String> = get(&row, "phone")?;
        Ok(EmailToken {
            user_id: get(&row, "user_id")?,
            email: get(&row, "email")?,
            expire_time: get(&row, "expire_time")?,
            used_time: get(&row, "used_time")?,
            sign_up: password_hash.map(|password_hash| PendingSignUp {
                password_hash,
                name: name.unwrap_or_default(),
                phone: phone.unwrap_or_default(),
            }),
        })
    })
    .transpose()
}

/// The newest unused sign-up waiting on a link of the user's, if any.
pub(crate) async fn newest_sign_up<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
) -> Result<Option<PendingSignUp>, DbErr> {
    one(
        c,
        "SELECT password_hash, name, phone FROM identity_email_tokens WHERE user_id = $1 \
         AND purpose = 'verify' AND used_time IS NULL AND password_hash IS NOT NULL \
         ORDER BY create_time DESC LIMIT 1",
        vec![user_id.into()],
    )
    .await?
    .map(|row| {
        Ok(PendingSignUp {
            password_hash: get(&row, "password_hash")?,
            name: get::<Option<String>>(&row, "name")?.unwrap_or_default(),
            phone: get::<Option<String>>(&row, "phone")?.unwrap_or_default(),
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
        &format!(
            "UPDATE identity_email_tokens SET {SPENT} WHERE token_hash = $2 \
             AND purpose = $3 AND used_time IS NULL AND expire_time > $1"
        ),
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
        &format!(
            "UPDATE identity_email_tokens SET {SPENT} WHERE token_hash = $2 AND used_time IS NULL"
        ),
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
        &format!(
            "UPDATE identity_email_tokens SET {SPENT} WHERE user_id = $2 AND purpose = $3 \
             AND used_time IS NULL"
        ),
        vec![now.into(), user_id.into(), purpose.as_str().into()],
    )
    .await?;
    Ok(())
}

/// Spends every unused sign-up link of the user (their address was proved
/// some other way, or one sign-up's link was followed).
pub(crate) async fn spend_sign_ups<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    now: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        &format!(
            "UPDATE identity_email_tokens SET {SPENT} WHERE user_id = $2 AND purpose = 'verify' \
             AND used_time IS NULL AND password_hash IS NOT NULL"
        ),
        vec![now.into(), user_id.into()],
    )
    .await?;
    Ok(())
}
