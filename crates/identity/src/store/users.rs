//! Users (`identity_users`): the columns the use cases read one at a time.

use sea_orm::{ConnectionTrait, DbErr, QueryResult};
use tenancy_runtime::db::{all, exec, get, one};
use tenancy_runtime::ids::{AccountId, UserId};

/// The columns a [`UserRow`] needs.
const COLUMNS: &str = "id, email, email_verified, pending_email, name, \
    password_hash IS NOT NULL AS password_set, totp_secret IS NOT NULL AS totp_enabled, \
    code_word_hash IS NOT NULL AS code_word_set, staff, create_time, update_time, \
    last_login_time, password_update_time, phone, api_account_id, \
    (SELECT COUNT(*) FROM identity_recovery_codes r WHERE r.user_id = identity_users.id \
     AND r.used_time IS NULL) AS recovery_codes_remaining, \
    (SELECT COUNT(*) FROM identity_passkeys p WHERE p.user_id = identity_users.id) AS passkey_count";

/// A user as the use cases see them (no secrets: only whether they are set).
#[derive(Clone, Debug)]
pub(crate) struct UserRow {
    /// Their id.
    pub(crate) id: String,
    /// Their address.
    pub(crate) email: String,
    /// Whether they proved it.
    pub(crate) email_verified: bool,
    /// A new address awaiting verification (may be empty).
    pub(crate) pending_email: String,
    /// Their name.
    pub(crate) name: String,
    /// Whether they have a password.
    pub(crate) password_set: bool,
    /// Whether TOTP is on.
    pub(crate) totp_enabled: bool,
    /// Whether a code word is set.
    pub(crate) code_word_set: bool,
    /// Whether they are staff.
    pub(crate) staff: bool,
    /// Unix ms.
    pub(crate) create_time: i64,
    /// Unix ms.
    pub(crate) update_time: i64,
    /// Unix ms.
    pub(crate) last_login_time: Option<i64>,
    /// Unix ms.
    pub(crate) password_update_time: Option<i64>,
    /// Unused recovery codes.
    pub(crate) recovery_codes_remaining: i64,
    /// Registered passkeys.
    pub(crate) passkey_count: i64,
    /// The verified phone number (E.164), empty when none.
    pub(crate) phone: String,
    /// For the user behind an API member: the account it belongs to (it
    /// has no email, password or session); empty for people.
    pub(crate) api_account_id: String,
}

fn user_from_row(row: &QueryResult) -> Result<UserRow, DbErr> {
    Ok(UserRow {
        id: get(row, "id")?,
        email: get(row, "email")?,
        email_verified: get(row, "email_verified")?,
        pending_email: get(row, "pending_email")?,
        name: get(row, "name")?,
        password_set: get(row, "password_set")?,
        totp_enabled: get(row, "totp_enabled")?,
        code_word_set: get(row, "code_word_set")?,
        staff: get(row, "staff")?,
        create_time: get(row, "create_time")?,
        update_time: get(row, "update_time")?,
        last_login_time: get(row, "last_login_time")?,
        password_update_time: get(row, "password_update_time")?,
        recovery_codes_remaining: get(row, "recovery_codes_remaining")?,
        passkey_count: get(row, "passkey_count")?,
        phone: get(row, "phone")?,
        api_account_id: get(row, "api_account_id")?,
    })
}

/// A user by id.
/// Locks the user's row until `c`'s transaction ends, so that writes
/// that must not interleave for one user (a new reset link voiding the
/// others) run one after the other.
pub(crate) async fn lock<C: ConnectionTrait>(c: &C, id: &str) -> Result<(), DbErr> {
    one(
        c,
        &format!(
            "SELECT id FROM identity_users WHERE id = $1{}",
            tenancy_runtime::db::for_update(c)
        ),
        vec![id.into()],
    )
    .await?;
    Ok(())
}

pub(crate) async fn by_id<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<UserRow>, DbErr> {
    one(
        c,
        &format!("SELECT {COLUMNS} FROM identity_users WHERE id = $1"),
        vec![id.into()],
    )
    .await?
    .as_ref()
    .map(user_from_row)
    .transpose()
}

/// A user by the case-insensitive key of their address.
pub(crate) async fn by_email_key<C: ConnectionTrait>(
    c: &C,
    key: &str,
) -> Result<Option<UserRow>, DbErr> {
    one(
        c,
        &format!("SELECT {COLUMNS} FROM identity_users WHERE email_key = $1"),
        vec![key.into()],
    )
    .await?
    .as_ref()
    .map(user_from_row)
    .transpose()
}

/// The users among `ids` (unknown ones left out, in no order).
pub(crate) async fn by_ids<C: ConnectionTrait>(
    c: &C,
    ids: &[UserId],
) -> Result<Vec<UserRow>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    all(
        c,
        &format!(
            "SELECT {COLUMNS} FROM identity_users WHERE id IN ({})",
            placeholders.join(", ")
        ),
        ids.iter().map(Into::into).collect(),
    )
    .await?
    .iter()
    .map(user_from_row)
    .collect()
}

/// When the user last created a session (Unix ms); `None` for never or an
/// unknown user.
pub(crate) async fn last_login_time<C: ConnectionTrait>(
    c: &C,
    user: &UserId,
) -> Result<Option<i64>, DbErr> {
    Ok(one(
        c,
        "SELECT last_login_time FROM identity_users WHERE id = $1",
        vec![user.into()],
    )
    .await?
    .map(|row| get::<Option<i64>>(&row, "last_login_time"))
    .transpose()?
    .flatten())
}

/// The account the user last selected, if any.
pub(crate) async fn last_account<C: ConnectionTrait>(
    c: &C,
    user: &UserId,
) -> Result<Option<AccountId>, DbErr> {
    Ok(one(
        c,
        "SELECT last_account_id FROM identity_users WHERE id = $1",
        vec![user.into()],
    )
    .await?
    .map(|row| get::<Option<String>>(&row, "last_account_id"))
    .transpose()?
    .flatten()
    .map(AccountId::trusted))
}

/// A user to create: without a password (a sign-up's waits on its
/// verification link, an invited person's on their invitation).
pub(crate) struct NewUser<'a> {
    /// Their id.
    pub(crate) id: &'a UserId,
    /// Their address as given (normalised).
    pub(crate) email: &'a str,
    /// Its case-insensitive key.
    pub(crate) email_key: &'a str,
    /// Their name.
    pub(crate) name: &'a str,
}

/// Creates a user at `now` unless the address is taken; whether it was
/// created.
pub(crate) async fn insert<C: ConnectionTrait>(
    c: &C,
    user: NewUser<'_>,
    now: i64,
) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "INSERT INTO identity_users (id, email, email_key, name, create_time, update_time) \
         VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (email_key) DO NOTHING",
        vec![
            user.id.into(),
            user.email.into(),
            user.email_key.into(),
            user.name.into(),
            now.into(),
        ],
    )
    .await?;
    Ok(n == 1)
}

/// Creates the user behind an API member of `account_id`: no email (its
/// `email_key` is `api:<id>`, which no parsed address equals), no password.
pub(crate) async fn insert_api_user<C: ConnectionTrait>(
    c: &C,
    id: &str,
    account_id: &str,
    name: &str,
    now: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        "INSERT INTO identity_users (id, email, email_key, name, api_account_id, create_time, \
         update_time) VALUES ($1, '', $2, $3, $4, $5, $5)",
        vec![
            id.into(),
            format!("api:{id}").into(),
            name.into(),
            account_id.into(),
            now.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Notes when a verification link was last sent.
pub(crate) async fn mark_verification_sent<C: ConnectionTrait>(
    c: &C,
    id: &str,
    now: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_users SET last_verification_sent = $1 WHERE id = $2",
        vec![now.into(), id.into()],
    )
    .await?;
    Ok(())
}

/// The user's address key and pending address.
pub(crate) async fn email_keys<C: ConnectionTrait>(
    c: &C,
    id: &str,
) -> Result<Option<(String, String)>, DbErr> {
    one(
        c,
        "SELECT email_key, pending_email FROM identity_users WHERE id = $1",
        vec![id.into()],
    )
    .await?
    .map(|row| Ok((get(&row, "email_key")?, get(&row, "pending_email")?)))
    .transpose()
}

/// Marks the user's current address verified.
pub(crate) async fn mark_verified<C: ConnectionTrait>(
    c: &C,
    id: &str,
    now: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_users SET email_verified = TRUE, update_time = $1 WHERE id = $2",
        vec![now.into(), id.into()],
    )
    .await?;
    Ok(())
}

/// Verifies the unverified user's address with the credentials of the
/// sign-up whose link was followed (replacing any password and the name
/// that were there); whether the user was unverified.
pub(crate) async fn activate_sign_up<C: ConnectionTrait>(
    c: &C,
    id: &str,
    password_hash: &str,
    name: &str,
    now: i64,
) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "UPDATE identity_users SET password_hash = $1, password_update_time = $2, \
         update_time = $2, email_verified = TRUE, name = $3 \
         WHERE id = $4 AND email_verified = FALSE",
        vec![password_hash.into(), now.into(), name.into(), id.into()],
    )
    .await?;
    Ok(n == 1)
}

/// Makes `address` (key `key`) the user's verified address, clearing the
/// pending one; a unique violation when another user has it.
pub(crate) async fn switch_email<C: ConnectionTrait>(
    c: &C,
    id: &str,
    address: &str,
    key: &str,
    now: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_users SET email = $1, email_key = $2, pending_email = '', \
         email_verified = TRUE, update_time = $3 WHERE id = $4",
        vec![address.into(), key.into(), now.into(), id.into()],
    )
    .await?;
    Ok(())
}

/// Changes the name and/or the pending address (`None`: unchanged).
pub(crate) async fn update_profile<C: ConnectionTrait>(
    c: &C,
    id: &str,
    name: Option<String>,
    pending_email: Option<String>,
    now: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_users SET name = COALESCE($1, name), \
         pending_email = COALESCE($2, pending_email), update_time = $3 WHERE id = $4",
        vec![name.into(), pending_email.into(), now.into(), id.into()],
    )
    .await?;
    Ok(())
}

/// Sets the first password of a user who has none (verifying the address,
/// and the name when given); whether the user had none.
pub(crate) async fn set_initial_password<C: ConnectionTrait>(
    c: &C,
    id: &str,
    hash: String,
    name: Option<String>,
    now: i64,
) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "UPDATE identity_users SET password_hash = $1, password_update_time = $2, \
         update_time = $2, email_verified = TRUE, name = COALESCE($3, name) \
         WHERE id = $4 AND password_hash IS NULL",
        vec![hash.into(), now.into(), name.into(), id.into()],
    )
    .await?;
    Ok(n == 1)
}

/// What an access token says of its user, and the revocation log's head.
pub(crate) struct TokenFlags {
    /// Whether they are staff.
    pub(crate) staff: bool,
    /// Whether they have a second factor (TOTP or a passkey).
    pub(crate) mfa: bool,
    /// The revocation log's head position.
    pub(crate) rev: i64,
}

/// The flags of the user's access tokens, read with the log's head.
pub(crate) async fn token_flags<C: ConnectionTrait>(
    c: &C,
    id: &str,
) -> Result<Option<TokenFlags>, DbErr> {
    one(
        c,
        &format!(
            "SELECT staff, {} AS mfa, \
             (SELECT position FROM identity_revocation_head WHERE id = 1) AS rev \
             FROM identity_users WHERE id = $1",
            super::passkeys::has_second_factor("identity_users")
        ),
        vec![id.into()],
    )
    .await?
    .map(|row| {
        Ok(TokenFlags {
            staff: get(&row, "staff")?,
            mfa: get(&row, "mfa")?,
            rev: get::<Option<i64>>(&row, "rev")?.unwrap_or(0),
        })
    })
    .transpose()
}

/// What a password login needs of a user.
#[derive(Clone)]
pub(crate) struct LoginRow {
    /// Their id.
    pub(crate) id: String,
    /// Their password's hash, if any; for an unverified user, the hash
    /// their newest unused sign-up chose (which only says whether to
    /// resend the link: it cannot log in before that link is followed).
    pub(crate) password_hash: Option<String>,
    /// Whether their address is verified.
    pub(crate) email_verified: bool,
    /// Whether TOTP is on.
    pub(crate) totp: bool,
    /// Whether they have a passkey.
    pub(crate) passkeys: bool,
    /// Their name.
    pub(crate) name: String,
    /// Their address.
    pub(crate) email: String,
    /// When a verification link was last sent (Unix ms).
    pub(crate) last_verification_sent: i64,
}

/// The login view of the user with this address key.
pub(crate) async fn login_row<C: ConnectionTrait>(
    c: &C,
    email_key: &str,
) -> Result<Option<LoginRow>, DbErr> {
    one(
        c,
        &format!(
            "SELECT id, COALESCE(password_hash, (SELECT t.password_hash FROM identity_email_tokens t \
         WHERE t.user_id = identity_users.id AND t.purpose = 'verify' AND t.used_time IS NULL \
         AND t.password_hash IS NOT NULL AND email_verified = FALSE \
         ORDER BY t.create_time DESC LIMIT 1)) AS password_hash, email_verified, \
         totp_secret IS NOT NULL AS totp, {} AS passkeys, name, email, \
         last_verification_sent FROM identity_users WHERE email_key = $1",
            super::passkeys::has_passkey("identity_users.id")
        ),
        vec![email_key.into()],
    )
    .await?
    .map(|row| {
        Ok(LoginRow {
            id: get(&row, "id")?,
            password_hash: get(&row, "password_hash")?,
            email_verified: get(&row, "email_verified")?,
            totp: get(&row, "totp")?,
            passkeys: get(&row, "passkeys")?,
            name: get(&row, "name")?,
            email: get(&row, "email")?,
            last_verification_sent: get(&row, "last_verification_sent")?,
        })
    })
    .transpose()
}

/// Replaces the password's hash (a rehash at new parameters: the password
/// itself did not change). A user without a password keeps none: an
/// unverified user's login checks a sign-up's hash, which must not become
/// theirs that way.
pub(crate) async fn rehash_password<C: ConnectionTrait>(
    c: &C,
    id: &str,
    hash: String,
) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_users SET password_hash = $1 WHERE id = $2 AND password_hash IS NOT NULL",
        vec![hash.into(), id.into()],
    )
    .await?;
    Ok(())
}

/// A new password (ResetPassword also verifies the address it was sent to).
pub(crate) async fn set_password<C: ConnectionTrait>(
    c: &C,
    id: &str,
    hash: String,
    now: i64,
    verify_email: bool,
) -> Result<(), DbErr> {
    let sql = if verify_email {
        "UPDATE identity_users SET password_hash = $1, password_update_time = $2, update_time = $2, \
         email_verified = TRUE WHERE id = $3"
    } else {
        "UPDATE identity_users SET password_hash = $1, password_update_time = $2, update_time = $2 \
         WHERE id = $3"
    };
    exec(c, sql, vec![hash.into(), now.into(), id.into()]).await?;
    Ok(())
}

/// The user's password hash, if any (`None` for an unknown user).
pub(crate) async fn password_hash<C: ConnectionTrait>(
    c: &C,
    id: &str,
) -> Result<Option<Option<String>>, DbErr> {
    one(
        c,
        "SELECT password_hash FROM identity_users WHERE id = $1",
        vec![id.into()],
    )
    .await?
    .map(|r| get::<Option<String>>(&r, "password_hash"))
    .transpose()
}

/// Notes a new session: last login and, when one is selected, the account.
pub(crate) async fn note_login<C: ConnectionTrait>(
    c: &C,
    id: &str,
    account: Option<String>,
    now: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_users SET last_login_time = $1, last_account_id = COALESCE($2, last_account_id) \
         WHERE id = $3",
        vec![now.into(), account.into(), id.into()],
    )
    .await?;
    Ok(())
}

/// Remembers the account the user selected last.
pub(crate) async fn set_last_account<C: ConnectionTrait>(
    c: &C,
    id: &str,
    account: &str,
) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_users SET last_account_id = $1 WHERE id = $2",
        vec![account.into(), id.into()],
    )
    .await?;
    Ok(())
}

/// Grants or revokes staff; whether it changed.
pub(crate) async fn set_staff<C: ConnectionTrait>(
    c: &C,
    id: &str,
    staff: bool,
    now: i64,
) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "UPDATE identity_users SET staff = $1, update_time = $2 WHERE id = $3 AND staff <> $1",
        vec![staff.into(), now.into(), id.into()],
    )
    .await?;
    Ok(n == 1)
}

/// Sets the code word's hash.
pub(crate) async fn set_code_word<C: ConnectionTrait>(
    c: &C,
    id: &str,
    hash: String,
    now: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_users SET code_word_hash = $1, update_time = $2 WHERE id = $3",
        vec![hash.into(), now.into(), id.into()],
    )
    .await?;
    Ok(())
}

/// The code word's hash, if set (`None` for an unknown user).
pub(crate) async fn code_word_hash<C: ConnectionTrait>(
    c: &C,
    id: &str,
) -> Result<Option<Option<String>>, DbErr> {
    one(
        c,
        "SELECT code_word_hash FROM identity_users WHERE id = $1",
        vec![id.into()],
    )
    .await?
    .map(|r| get::<Option<String>>(&r, "code_word_hash"))
    .transpose()
}

/// The sealed TOTP secret, if TOTP is on.
pub(crate) async fn totp_secret<C: ConnectionTrait>(
    c: &C,
    id: &str,
) -> Result<Option<String>, DbErr> {
    Ok(one(
        c,
        "SELECT totp_secret FROM identity_users WHERE id = $1",
        vec![id.into()],
    )
    .await?
    .map(|r| get::<Option<String>>(&r, "totp_secret"))
    .transpose()?
    .flatten())
}

/// Turns TOTP on with this sealed secret unless it is on; whether it was
/// off.
pub(crate) async fn enable_totp<C: ConnectionTrait>(
    c: &C,
    id: &str,
    sealed: String,
    now: i64,
) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "UPDATE identity_users SET totp_secret = $1, update_time = $2 WHERE id = $3 AND totp_secret IS NULL",
        vec![sealed.into(), now.into(), id.into()],
    )
    .await?;
    Ok(n == 1)
}

/// Turns TOTP off.
pub(crate) async fn disable_totp<C: ConnectionTrait>(
    c: &C,
    id: &str,
    now: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_users SET totp_secret = NULL, update_time = $1 WHERE id = $2",
        vec![now.into(), id.into()],
    )
    .await?;
    Ok(())
}

/// The user's password hash (if any) and address.
pub(crate) async fn password_and_email<C: ConnectionTrait>(
    c: &C,
    id: &str,
) -> Result<Option<(Option<String>, String)>, DbErr> {
    one(
        c,
        "SELECT password_hash, email FROM identity_users WHERE id = $1",
        vec![id.into()],
    )
    .await?
    .map(|r| Ok((get(&r, "password_hash")?, get(&r, "email")?)))
    .transpose()
}
