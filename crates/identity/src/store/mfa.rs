//! Second factors: pending TOTP enrolments (`identity_totp_pending`), the
//! last accepted TOTP step of each user (`identity_totp_last_step`), recovery codes
//! (`identity_recovery_codes`, hashed) and MFA challenges
//! (`identity_mfa_challenges`, hashed).

use sea_orm::{ConnectionTrait, DbErr};
use tenancy_runtime::db::{all, exec, get, one};

/// Spends a TOTP time step of the user; false when it is not after the
/// last step the user had accepted (RFC 6238 §5.2: that step's code, and
/// every earlier one, cannot be used again). One conditional upsert, so of
/// concurrent uses at most one wins.
pub(crate) async fn spend_step<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    step: i64,
    now: i64,
) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "INSERT INTO identity_totp_last_step (user_id, step, use_time) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO UPDATE SET step = excluded.step, use_time = excluded.use_time \
         WHERE identity_totp_last_step.step < excluded.step",
        vec![user_id.into(), step.into(), now.into()],
    )
    .await?;
    Ok(n == 1)
}

/// Spends the user's unused recovery code with this hash; whether there
/// was one.
pub(crate) async fn spend_recovery_code<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    code_hash: String,
    now: i64,
) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "UPDATE identity_recovery_codes SET used_time = $1 WHERE code_hash = $2 AND user_id = $3 \
         AND used_time IS NULL",
        vec![now.into(), code_hash.into(), user_id.into()],
    )
    .await?;
    Ok(n == 1)
}

/// The stored recovery codes not yet in the keyed form (`prefix`), from
/// earlier versions (their stored hashes).
pub(crate) async fn recovery_codes_without_prefix<C: ConnectionTrait>(
    c: &C,
    prefix: &str,
) -> Result<Vec<String>, DbErr> {
    all(
        c,
        "SELECT code_hash FROM identity_recovery_codes \
         WHERE substr(code_hash, 1, length($1)) <> $1",
        vec![prefix.into()],
    )
    .await?
    .iter()
    .map(|row| get(row, "code_hash"))
    .collect()
}

/// Replaces the stored hash of one recovery code.
pub(crate) async fn rehash_recovery_code<C: ConnectionTrait>(
    c: &C,
    old: &str,
    new: String,
) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_recovery_codes SET code_hash = $1 WHERE code_hash = $2",
        vec![new.into(), old.into()],
    )
    .await?;
    Ok(())
}

/// Replaces the user's recovery codes by these hashes (none: removes them).
pub(crate) async fn replace_recovery_codes<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    code_hashes: Vec<String>,
) -> Result<(), DbErr> {
    exec(
        c,
        "DELETE FROM identity_recovery_codes WHERE user_id = $1",
        vec![user_id.into()],
    )
    .await?;
    for hash in code_hashes {
        exec(
            c,
            "INSERT INTO identity_recovery_codes (code_hash, user_id) VALUES ($1, $2)",
            vec![hash.into(), user_id.into()],
        )
        .await?;
    }
    Ok(())
}

/// How many unused recovery codes the user has.
pub(crate) async fn recovery_codes_left<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
) -> Result<i64, DbErr> {
    Ok(one(
        c,
        "SELECT COUNT(*) AS n FROM identity_recovery_codes WHERE user_id = $1 AND used_time IS NULL",
        vec![user_id.into()],
    )
    .await?
    .map(|r| get::<i64>(&r, "n"))
    .transpose()?
    .unwrap_or(0))
}

/// Starts (or restarts) a TOTP enrolment with this sealed secret.
pub(crate) async fn start_enrollment<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    sealed: String,
    expire: i64,
) -> Result<(), DbErr> {
    end_enrollment(c, user_id).await?;
    exec(
        c,
        "INSERT INTO identity_totp_pending (user_id, secret, expire_time) VALUES ($1, $2, $3)",
        vec![user_id.into(), sealed.into(), expire.into()],
    )
    .await?;
    Ok(())
}

/// The sealed secret of the user's enrolment still pending at `now`.
pub(crate) async fn pending_enrollment<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    now: i64,
) -> Result<Option<String>, DbErr> {
    one(
        c,
        "SELECT secret FROM identity_totp_pending WHERE user_id = $1 AND expire_time > $2",
        vec![user_id.into(), now.into()],
    )
    .await?
    .map(|r| get::<String>(&r, "secret"))
    .transpose()
}

/// Discards the user's pending enrolment.
pub(crate) async fn end_enrollment<C: ConnectionTrait>(c: &C, user_id: &str) -> Result<(), DbErr> {
    exec(
        c,
        "DELETE FROM identity_totp_pending WHERE user_id = $1",
        vec![user_id.into()],
    )
    .await?;
    Ok(())
}

/// Stores a challenge by the hash of its token.
pub(crate) async fn insert_challenge<C: ConnectionTrait>(
    c: &C,
    hash: String,
    user_id: &str,
    account_id: &str,
    now: i64,
    expire: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        "INSERT INTO identity_mfa_challenges (token_hash, user_id, account_id, create_time, expire_time) \
         VALUES ($1, $2, $3, $4, $5)",
        vec![
            hash.into(),
            user_id.into(),
            account_id.into(),
            now.into(),
            expire.into(),
        ],
    )
    .await?;
    Ok(())
}

/// An unused challenge alive at `now`.
pub(crate) struct Challenge {
    /// Whose login it continues.
    pub(crate) user_id: String,
    /// The account the login named ("" for none).
    pub(crate) account_id: String,
    /// Wrong answers so far.
    pub(crate) failures: i32,
}

/// The unused challenge with this hash alive at `now`.
pub(crate) async fn live_challenge<C: ConnectionTrait>(
    c: &C,
    hash: &str,
    now: i64,
) -> Result<Option<Challenge>, DbErr> {
    one(
        c,
        "SELECT user_id, account_id, failures FROM identity_mfa_challenges WHERE token_hash = $1 \
         AND used_time IS NULL AND expire_time > $2",
        vec![hash.into(), now.into()],
    )
    .await?
    .map(|row| {
        Ok(Challenge {
            user_id: get(&row, "user_id")?,
            account_id: get(&row, "account_id")?,
            failures: get(&row, "failures")?,
        })
    })
    .transpose()
}

/// Counts an answer to the challenge before it is checked (one atomic
/// conditional update, so concurrent answers cannot all pass the limit):
/// whether the unused challenge, alive at `now`, had fewer than `limit`
/// counted. A right answer uses the challenge up, so what is counted are
/// the wrong ones.
pub(crate) async fn count_challenge_attempt<C: ConnectionTrait>(
    c: &C,
    hash: &str,
    now: i64,
    limit: i32,
) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "UPDATE identity_mfa_challenges SET failures = failures + 1 WHERE token_hash = $1 \
         AND used_time IS NULL AND expire_time > $2 AND failures < $3",
        vec![hash.into(), now.into(), limit.into()],
    )
    .await?;
    Ok(n == 1)
}

/// Uses the challenge up; whether it was unused.
pub(crate) async fn use_challenge<C: ConnectionTrait>(
    c: &C,
    hash: &str,
    now: i64,
) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "UPDATE identity_mfa_challenges SET used_time = $1 WHERE token_hash = $2 AND used_time IS NULL",
        vec![now.into(), hash.into()],
    )
    .await?;
    Ok(n == 1)
}
