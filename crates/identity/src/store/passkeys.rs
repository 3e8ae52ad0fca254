//! Passkeys (`identity_passkeys`) and the pending WebAuthn ceremonies
//! (`identity_passkey_ceremonies`) whose challenges they answer.

use sea_orm::{ConnectionTrait, DbErr, QueryResult};
use tenancy_runtime::db::{all, exec, get, one};

/// SQL: whether the user whose id is the column `user_id` has a passkey.
pub(crate) fn has_passkey(user_id: &str) -> String {
    format!("EXISTS (SELECT 1 FROM identity_passkeys p WHERE p.user_id = {user_id})")
}

/// SQL: whether the user (`users` is the alias of `identity_users`) has a
/// second factor: TOTP or a passkey.
pub(crate) fn has_second_factor(users: &str) -> String {
    format!(
        "({users}.totp_secret IS NOT NULL OR {})",
        has_passkey(&format!("{users}.id"))
    )
}

const COLUMNS: &str = "id, user_id, name, credential_id, credential, backup_eligible, suspect, \
    create_time, last_use_time";

/// A passkey as stored.
#[derive(Clone, Debug)]
pub(crate) struct PasskeyRow {
    /// Its id.
    pub(crate) id: String,
    /// Whose it is.
    pub(crate) user_id: String,
    /// The name the user gave it.
    pub(crate) name: String,
    /// The WebAuthn credential id, base64url.
    pub(crate) credential_id: String,
    /// The relying party's credential (webauthn-rs `Passkey`) as JSON:
    /// public key and signature counter.
    pub(crate) credential: String,
    /// Whether it may be synced (amr "swk"; else "hwk").
    pub(crate) backup_eligible: bool,
    /// Whether its counter went backwards: refused from then on.
    pub(crate) suspect: bool,
    /// Unix ms.
    pub(crate) create_time: i64,
    /// Unix ms.
    pub(crate) last_use_time: Option<i64>,
}

fn row(r: &QueryResult) -> Result<PasskeyRow, DbErr> {
    Ok(PasskeyRow {
        id: get(r, "id")?,
        user_id: get(r, "user_id")?,
        name: get(r, "name")?,
        credential_id: get(r, "credential_id")?,
        credential: get(r, "credential")?,
        backup_eligible: get(r, "backup_eligible")?,
        suspect: get(r, "suspect")?,
        create_time: get(r, "create_time")?,
        last_use_time: get(r, "last_use_time")?,
    })
}

/// How many passkeys the user has.
pub(crate) async fn count<C: ConnectionTrait>(c: &C, user_id: &str) -> Result<i64, DbErr> {
    Ok(one(
        c,
        "SELECT COUNT(*) AS n FROM identity_passkeys WHERE user_id = $1",
        vec![user_id.into()],
    )
    .await?
    .map(|r| get::<i64>(&r, "n"))
    .transpose()?
    .unwrap_or(0))
}

/// The user's passkeys, oldest first.
pub(crate) async fn of_user<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
) -> Result<Vec<PasskeyRow>, DbErr> {
    all(
        c,
        &format!(
            "SELECT {COLUMNS} FROM identity_passkeys WHERE user_id = $1 ORDER BY create_time, id"
        ),
        vec![user_id.into()],
    )
    .await?
    .iter()
    .map(row)
    .collect()
}

/// The passkey with this credential id (base64url).
pub(crate) async fn by_credential<C: ConnectionTrait>(
    c: &C,
    credential_id: &str,
) -> Result<Option<PasskeyRow>, DbErr> {
    one(
        c,
        &format!("SELECT {COLUMNS} FROM identity_passkeys WHERE credential_id = $1"),
        vec![credential_id.into()],
    )
    .await?
    .as_ref()
    .map(row)
    .transpose()
}

/// One passkey of the user.
pub(crate) async fn of_user_by_id<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    id: &str,
) -> Result<Option<PasskeyRow>, DbErr> {
    one(
        c,
        &format!("SELECT {COLUMNS} FROM identity_passkeys WHERE id = $1 AND user_id = $2"),
        vec![id.into(), user_id.into()],
    )
    .await?
    .as_ref()
    .map(row)
    .transpose()
}

/// Stores a new passkey (a taken credential id is a unique violation).
pub(crate) async fn insert<C: ConnectionTrait>(c: &C, p: &PasskeyRow) -> Result<(), DbErr> {
    exec(
        c,
        "INSERT INTO identity_passkeys (id, user_id, name, credential_id, credential, \
         backup_eligible, suspect, create_time, last_use_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        vec![
            p.id.clone().into(),
            p.user_id.clone().into(),
            p.name.clone().into(),
            p.credential_id.clone().into(),
            p.credential.clone().into(),
            p.backup_eligible.into(),
            p.suspect.into(),
            p.create_time.into(),
            p.last_use_time.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Renames one of the user's passkeys; whether it was theirs.
pub(crate) async fn rename<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    id: &str,
    name: &str,
) -> Result<bool, DbErr> {
    Ok(exec(
        c,
        "UPDATE identity_passkeys SET name = $1 WHERE id = $2 AND user_id = $3",
        vec![name.into(), id.into(), user_id.into()],
    )
    .await?
        == 1)
}

/// Deletes one of the user's passkeys; whether it was theirs.
pub(crate) async fn delete<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    id: &str,
) -> Result<bool, DbErr> {
    Ok(exec(
        c,
        "DELETE FROM identity_passkeys WHERE id = $1 AND user_id = $2",
        vec![id.into(), user_id.into()],
    )
    .await?
        == 1)
}

/// Records a use: the credential with its new counter, unless it was
/// marked suspect meanwhile; whether it was updated.
pub(crate) async fn used<C: ConnectionTrait>(
    c: &C,
    id: &str,
    credential: &str,
    now: i64,
) -> Result<bool, DbErr> {
    Ok(exec(
        c,
        "UPDATE identity_passkeys SET credential = $1, last_use_time = $2 \
         WHERE id = $3 AND suspect = FALSE",
        vec![credential.into(), now.into(), id.into()],
    )
    .await?
        == 1)
}

/// Marks a passkey suspect (its counter went backwards).
pub(crate) async fn mark_suspect<C: ConnectionTrait>(c: &C, id: &str) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_passkeys SET suspect = TRUE WHERE id = $1",
        vec![id.into()],
    )
    .await?;
    Ok(())
}

/// A pending ceremony: who it was issued to and its webauthn-rs state.
pub(crate) struct Ceremony {
    /// The user it is bound to (empty for a passwordless login).
    pub(crate) user_id: String,
    /// The session it is bound to (empty unless a registration).
    pub(crate) session_id: String,
    /// The webauthn-rs state (challenge, allowed credentials) as JSON.
    pub(crate) state: String,
}

/// Stores a ceremony under `key`, replacing one there; expired ceremonies
/// go at the same time.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn put_ceremony<C: ConnectionTrait>(
    c: &C,
    key: &str,
    user_id: &str,
    session_id: &str,
    ip: &str,
    state: &str,
    now: i64,
    expire_time: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        "DELETE FROM identity_passkey_ceremonies WHERE ceremony_key = $1 OR expire_time <= $2",
        vec![key.into(), now.into()],
    )
    .await?;
    exec(
        c,
        "INSERT INTO identity_passkey_ceremonies (ceremony_key, user_id, session_id, ip, state, expire_time) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        vec![
            key.into(),
            user_id.into(),
            session_id.into(),
            ip.into(),
            state.into(),
            expire_time.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Takes the live ceremony under `key`: it is deleted, so a challenge
/// answers once (of two concurrent takers, one gets it).
pub(crate) async fn take_ceremony<C: ConnectionTrait>(
    c: &C,
    key: &str,
    now: i64,
) -> Result<Option<Ceremony>, DbErr> {
    let Some(r) = one(
        c,
        "SELECT user_id, session_id, state FROM identity_passkey_ceremonies \
         WHERE ceremony_key = $1 AND expire_time > $2",
        vec![key.into(), now.into()],
    )
    .await?
    else {
        return Ok(None);
    };
    let taken = exec(
        c,
        "DELETE FROM identity_passkey_ceremonies WHERE ceremony_key = $1",
        vec![key.into()],
    )
    .await?;
    if taken != 1 {
        return Ok(None);
    }
    Ok(Some(Ceremony {
        user_id: get(&r, "user_id")?,
        session_id: get(&r, "session_id")?,
        state: get(&r, "state")?,
    }))
}

/// Live ceremonies begun from `ip` whose key starts with `prefix`.
pub(crate) async fn live_from<C: ConnectionTrait>(
    c: &C,
    ip: &str,
    prefix: &str,
    now: i64,
) -> Result<i64, DbErr> {
    Ok(one(
        c,
        "SELECT COUNT(*) AS n FROM identity_passkey_ceremonies \
         WHERE ip = $1 AND expire_time > $2 AND ceremony_key LIKE $3",
        vec![ip.into(), now.into(), format!("{prefix}%").into()],
    )
    .await?
    .map(|r| get::<i64>(&r, "n"))
    .transpose()?
    .unwrap_or(0))
}
