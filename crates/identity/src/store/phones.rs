//! Pending phone verifications (`identity_phone_codes`, one row per user)
//! and the verified number (`identity_users.phone`).

use sea_orm::{ConnectionTrait, DbErr};
use tenancy_runtime::db::{exec, get, one};

/// A user's pending (or spent) phone verification.
#[derive(Clone, Debug)]
pub(crate) struct PhoneCodeRow {
    /// The number the code was sent to.
    pub(crate) phone: String,
    /// Keyed hash of (user, number, code); empty once spent.
    pub(crate) code_hash: String,
    /// Unix ms.
    pub(crate) expire_time: i64,
    /// Wrong guesses so far.
    pub(crate) failures: i32,
    /// Start of the hour codes are counted in (Unix ms).
    pub(crate) window_start: i64,
    /// Codes sent in that hour.
    pub(crate) sent_in_window: i32,
}

/// The user's row, locked until the transaction ends (PostgreSQL: `FOR
/// UPDATE`; SQLite: the write lock `store::begin` took).
pub(crate) async fn lock<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
) -> Result<Option<PhoneCodeRow>, DbErr> {
    let lock = tenancy_runtime::db::for_update(c);
    let row = one(
        c,
        &format!(
            "SELECT phone, code_hash, expire_time, failures, window_start, sent_in_window \
             FROM identity_phone_codes WHERE user_id = $1{lock}"
        ),
        vec![user_id.into()],
    )
    .await?;
    row.map(|r| {
        Ok(PhoneCodeRow {
            phone: get(&r, "phone")?,
            code_hash: get(&r, "code_hash")?,
            expire_time: get(&r, "expire_time")?,
            failures: get(&r, "failures")?,
            window_start: get(&r, "window_start")?,
            sent_in_window: get(&r, "sent_in_window")?,
        })
    })
    .transpose()
}

/// Writes the user's row.
pub(crate) async fn save<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    row: &PhoneCodeRow,
) -> Result<(), DbErr> {
    exec(
        c,
        "INSERT INTO identity_phone_codes \
         (user_id, phone, code_hash, expire_time, failures, window_start, sent_in_window) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (user_id) DO UPDATE SET phone = excluded.phone, \
         code_hash = excluded.code_hash, expire_time = excluded.expire_time, \
         failures = excluded.failures, window_start = excluded.window_start, \
         sent_in_window = excluded.sent_in_window",
        vec![
            user_id.into(),
            row.phone.clone().into(),
            row.code_hash.clone().into(),
            row.expire_time.into(),
            row.failures.into(),
            row.window_start.into(),
            row.sent_in_window.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Makes `phone` the user's verified number.
pub(crate) async fn set_phone<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    phone: &str,
    now: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_users SET phone = $2, update_time = $3 WHERE id = $1",
        vec![user_id.into(), phone.into(), now.into()],
    )
    .await?;
    Ok(())
}
