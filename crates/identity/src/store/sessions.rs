//! Portal sessions (`identity_sessions`) and their rotating refresh tokens
//! (`identity_refresh_tokens`, stored as hashes).

use sea_orm::{ConnectionTrait, DbErr, QueryResult};
use tenancy_runtime::db::{all, exec, get, one};

/// The condition selecting sessions live at the time bound to `$2`: the SQL
/// form of [`session_live`](crate::domain::sessions::session_live), which
/// stays the definition (the tests below prove the two agree).
const LIVE: &str = "revoke_time IS NULL AND expire_time > $2 AND end_time > $2";

/// A session as the token issuer needs it.
pub(crate) struct SessionRow {
    /// Its id.
    pub(crate) id: String,
    /// Whose it is.
    pub(crate) user_id: String,
    /// The account it selects, if any.
    pub(crate) account_id: Option<String>,
    /// RFC 8176 methods of its last authentication.
    pub(crate) amr: Vec<String>,
    /// When it last proved its credentials (Unix ms).
    pub(crate) auth_time: i64,
    /// Until when it lives without use (Unix ms).
    pub(crate) expire_time: i64,
    /// When it ends whatever happens (Unix ms).
    pub(crate) end_time: i64,
    /// Whether it was ended.
    pub(crate) revoked: bool,
}

/// A session as ListSessions shows it.
pub(crate) struct SessionListing {
    /// Its id.
    pub(crate) id: String,
    /// Whose it is.
    pub(crate) user_id: String,
    /// RFC 8176 methods of its last authentication.
    pub(crate) amr: Vec<String>,
    /// The account it selects ("" for none).
    pub(crate) account_id: String,
    /// The client's user agent.
    pub(crate) user_agent: String,
    /// Where it was created from.
    pub(crate) create_ip: String,
    /// Where it was last used from.
    pub(crate) last_ip: String,
    /// Unix ms.
    pub(crate) create_time: i64,
    /// Unix ms.
    pub(crate) last_seen_time: i64,
    /// Unix ms.
    pub(crate) auth_time: i64,
    /// Unix ms.
    pub(crate) expire_time: i64,
}

fn session_from_row(r: &QueryResult) -> Result<SessionRow, DbErr> {
    Ok(SessionRow {
        id: get(r, "id")?,
        user_id: get(r, "user_id")?,
        account_id: get(r, "account_id")?,
        amr: get::<String>(r, "amr")?
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        auth_time: get(r, "auth_time")?,
        expire_time: get(r, "expire_time")?,
        end_time: get(r, "end_time")?,
        revoked: get::<Option<i64>>(r, "revoke_time")?.is_some(),
    })
}

/// One session by id.
pub(crate) async fn load<C: ConnectionTrait>(c: &C, id: &str) -> Result<Option<SessionRow>, DbErr> {
    one(
        c,
        "SELECT id, user_id, account_id, amr, auth_time, expire_time, end_time, revoke_time \
         FROM identity_sessions WHERE id = $1",
        vec![id.into()],
    )
    .await?
    .as_ref()
    .map(session_from_row)
    .transpose()
}

/// A session to create.
pub(crate) struct NewSession<'a> {
    /// Its id.
    pub(crate) id: &'a str,
    /// Whose it is.
    pub(crate) user_id: &'a str,
    /// The account it selects.
    pub(crate) account_id: Option<String>,
    /// The client's user agent.
    pub(crate) user_agent: &'a str,
    /// The client's address.
    pub(crate) ip: &'a str,
    /// RFC 8176 methods, space-separated.
    pub(crate) amr: String,
    /// Unix ms (creation, last use and authentication).
    pub(crate) now: i64,
    /// Unix ms.
    pub(crate) expire_time: i64,
    /// Unix ms.
    pub(crate) end_time: i64,
}

/// Creates a session.
pub(crate) async fn insert<C: ConnectionTrait>(c: &C, s: NewSession<'_>) -> Result<(), DbErr> {
    exec(
        c,
        "INSERT INTO identity_sessions (id, user_id, account_id, user_agent, create_ip, last_ip, amr, \
         create_time, last_seen_time, auth_time, expire_time, end_time) \
         VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $7, $7, $8, $9)",
        vec![
            s.id.into(),
            s.user_id.into(),
            s.account_id.into(),
            s.user_agent.into(),
            s.ip.into(),
            s.amr.into(),
            s.now.into(),
            s.expire_time.into(),
            s.end_time.into(),
        ],
    )
    .await?;
    Ok(())
}

/// The ids of the user's open sessions, only those selecting `account`
/// when given, all but `except` when given.
pub(crate) async fn open_ids<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    account: Option<&str>,
    except: Option<&str>,
) -> Result<Vec<String>, DbErr> {
    all(
        c,
        "SELECT id FROM identity_sessions WHERE user_id = $1 AND revoke_time IS NULL \
         AND ($2 = '' OR account_id = $2) AND ($3 = '' OR id <> $3)",
        vec![
            user_id.into(),
            account.unwrap_or_default().into(),
            except.unwrap_or_default().into(),
        ],
    )
    .await?
    .iter()
    .map(|r| get::<String>(r, "id"))
    .collect()
}

/// One page of the user's live sessions at `now`, only those selecting
/// `account` when given: newest first (by creation, which never changes,
/// so pages neither repeat nor skip a session that is used meanwhile),
/// after the session created at `after` (time, id) when given, at most
/// `limit` (keyset, no OFFSET).
pub(crate) async fn list_open<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    account: Option<&str>,
    now: i64,
    after: Option<(i64, &str)>,
    limit: i64,
) -> Result<Vec<SessionListing>, DbErr> {
    let (time, id) = after.unwrap_or((i64::MAX, ""));
    all(
        c,
        &format!(
            "SELECT id, user_id, account_id, user_agent, create_ip, last_ip, amr, create_time, \
             last_seen_time, auth_time, expire_time FROM identity_sessions WHERE user_id = $1 \
             AND {LIVE} AND ($3 = '' OR account_id = $3) \
             AND (create_time < $4 OR (create_time = $4 AND ($5 = '' OR id < $5))) \
             ORDER BY create_time DESC, id DESC LIMIT $6"
        ),
        vec![
            user_id.into(),
            now.into(),
            account.unwrap_or_default().into(),
            time.into(),
            id.into(),
            limit.into(),
        ],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(SessionListing {
            id: get(r, "id")?,
            user_id: get(r, "user_id")?,
            amr: get::<String>(r, "amr")?
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            account_id: get::<Option<String>>(r, "account_id")?.unwrap_or_default(),
            user_agent: get(r, "user_agent")?,
            create_ip: get(r, "create_ip")?,
            last_ip: get(r, "last_ip")?,
            create_time: get(r, "create_time")?,
            last_seen_time: get(r, "last_seen_time")?,
            auth_time: get(r, "auth_time")?,
            expire_time: get(r, "expire_time")?,
        })
    })
    .collect()
}

/// Ends a session not ended yet; whether it was.
pub(crate) async fn end<C: ConnectionTrait>(c: &C, id: &str, now: i64) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "UPDATE identity_sessions SET revoke_time = $1 WHERE id = $2 AND revoke_time IS NULL",
        vec![now.into(), id.into()],
    )
    .await?;
    Ok(n == 1)
}

/// Whether the session exists and is the user's (ended or not).
pub(crate) async fn is_users<C: ConnectionTrait>(
    c: &C,
    id: &str,
    user_id: &str,
) -> Result<bool, DbErr> {
    Ok(one(
        c,
        "SELECT id FROM identity_sessions WHERE id = $1 AND user_id = $2",
        vec![id.into(), user_id.into()],
    )
    .await?
    .is_some())
}

/// Notes a refresh: new idle expiry, last use and client.
pub(crate) async fn refreshed<C: ConnectionTrait>(
    c: &C,
    id: &str,
    expire_time: i64,
    now: i64,
    ip: &str,
    user_agent: &str,
) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_sessions SET expire_time = $1, last_seen_time = $2, last_ip = $3, user_agent = $4 \
         WHERE id = $5",
        vec![
            expire_time.into(),
            now.into(),
            ip.into(),
            user_agent.into(),
            id.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Selects another account (or none) in the session.
pub(crate) async fn set_account<C: ConnectionTrait>(
    c: &C,
    id: &str,
    account: Option<String>,
) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_sessions SET account_id = $1 WHERE id = $2",
        vec![account.into(), id.into()],
    )
    .await?;
    Ok(())
}

/// SwitchAccount: selects `account` and notes the use.
pub(crate) async fn switch_account<C: ConnectionTrait>(
    c: &C,
    id: &str,
    account: &str,
    now: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_sessions SET account_id = $1, last_seen_time = $2 WHERE id = $3",
        vec![account.into(), now.into(), id.into()],
    )
    .await?;
    Ok(())
}

/// Notes a fresh authentication (and its methods) of the session.
pub(crate) async fn reauthenticated<C: ConnectionTrait>(
    c: &C,
    id: &str,
    now: i64,
    amr: &str,
) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_sessions SET auth_time = $1, amr = $2, last_seen_time = $1 WHERE id = $3",
        vec![now.into(), amr.into(), id.into()],
    )
    .await?;
    Ok(())
}

/// Moves the session's authentication time (a password change proves it).
pub(crate) async fn set_auth_time<C: ConnectionTrait>(
    c: &C,
    id: &str,
    now: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_sessions SET auth_time = $1 WHERE id = $2",
        vec![now.into(), id.into()],
    )
    .await?;
    Ok(())
}

/// Sets the methods of one session.
pub(crate) async fn set_amr<C: ConnectionTrait>(c: &C, id: &str, amr: &str) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_sessions SET amr = $1 WHERE id = $2",
        vec![amr.into(), id.into()],
    )
    .await?;
    Ok(())
}

/// Sets the methods of every session of the user.
pub(crate) async fn set_amr_of_user<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    amr: &str,
) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_sessions SET amr = $1 WHERE user_id = $2",
        vec![amr.into(), user_id.into()],
    )
    .await?;
    Ok(())
}

/// A gateway's report that the session was used at `seen` from `ip`:
/// moves last use forward and extends a live session's idle expiry to
/// `new_expire` (never past its end).
pub(crate) async fn seen<C: ConnectionTrait>(
    c: &C,
    id: &str,
    seen: i64,
    ip: &str,
    user_agent: &str,
    new_expire: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_sessions SET last_seen_time = $1, last_ip = $2, user_agent = $3, \
         expire_time = CASE WHEN revoke_time IS NULL AND expire_time > $1 AND $5 > expire_time \
         THEN CASE WHEN $5 < end_time THEN $5 ELSE end_time END ELSE expire_time END \
         WHERE id = $4 AND last_seen_time < $1",
        vec![
            seen.into(),
            ip.into(),
            user_agent.into(),
            id.into(),
            new_expire.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Stores a refresh token of the session by its hash.
pub(crate) async fn insert_refresh<C: ConnectionTrait>(
    c: &C,
    hash: String,
    session_id: &str,
    now: i64,
) -> Result<(), DbErr> {
    exec(
        c,
        "INSERT INTO identity_refresh_tokens (token_hash, session_id, create_time) VALUES ($1, $2, $3)",
        vec![hash.into(), session_id.into(), now.into()],
    )
    .await?;
    Ok(())
}

/// Rotates out the refresh token with this hash; whether it was current.
pub(crate) async fn rotate_refresh<C: ConnectionTrait>(
    c: &C,
    hash: &str,
    now: i64,
) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "UPDATE identity_refresh_tokens SET rotate_time = $1 WHERE token_hash = $2 AND rotate_time IS NULL",
        vec![now.into(), hash.into()],
    )
    .await?;
    Ok(n == 1)
}

/// The session of the refresh token with this hash (current or not).
pub(crate) async fn session_of_refresh<C: ConnectionTrait>(
    c: &C,
    hash: &str,
) -> Result<Option<String>, DbErr> {
    one(
        c,
        "SELECT session_id FROM identity_refresh_tokens WHERE token_hash = $1",
        vec![hash.into()],
    )
    .await?
    .map(|r| get::<String>(&r, "session_id"))
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sessions::session_live;
    use crate::store::scratch::Table;

    /// Every combination of revocation, idle expiry and end around `now`:
    /// the rows [`LIVE`] selects are exactly those the domain calls live.
    #[tokio::test]
    async fn sql_liveness_agrees_with_the_domain_rule() {
        let times = [0_i64, 99, 100, 101, i64::MAX];
        let mut rows = Vec::new();
        for revoke in [None, Some(50_i64)] {
            for expire in times {
                for end in times {
                    rows.push(vec![revoke, Some(expire), Some(end)]);
                }
            }
        }
        let table = Table::new(&["revoke_time", "expire_time", "end_time"], &rows).await;
        for now in [0_i64, 99, 100, 101] {
            // LIVE binds the time as $2.
            let condition = format!("$1 = $1 AND {LIVE}");
            let got = table
                .selected(&condition, vec![0_i64.into(), now.into()])
                .await;
            let want: Vec<usize> = (0..rows.len())
                .filter(|&i| {
                    let (revoked, expire, end) = (rows[i][0].is_some(), rows[i][1], rows[i][2]);
                    session_live(revoked, expire.unwrap_or(0), end.unwrap_or(0), now)
                })
                .collect();
            assert_eq!(got, want, "at {now}");
        }
    }
}
