//! API tokens (`identity_api_tokens`): the SQL form of their state.

use sea_orm::{ConnectionTrait, DbErr, QueryResult};
use tenancy_runtime::db::{all, exec, get, one};
use tenancy_runtime::ids::ApiTokenId;

use crate::domain::api_tokens::TokenState;

/// The condition selecting tokens in `state` at the time bound to the
/// placeholder `now` (e.g. `$3`): the SQL form of
/// [`token_state`](crate::domain::api_tokens::token_state), which stays the
/// definition (the tests below prove the two agree).
pub(crate) fn state_condition(state: TokenState, now: &str) -> String {
    match state {
        TokenState::Active => {
            format!("(revoke_time IS NULL AND (expire_time IS NULL OR expire_time > {now}))")
        }
        TokenState::Expired => {
            format!("(revoke_time IS NULL AND expire_time IS NOT NULL AND expire_time <= {now})")
        }
        TokenState::Revoked => "(revoke_time IS NOT NULL)".to_owned(),
    }
}

/// How many ACTIVE tokens the user holds for the account at `now`.
pub(crate) async fn count_active<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    account_id: &str,
    now: i64,
) -> Result<i64, DbErr> {
    Ok(one(
        c,
        &format!(
            "SELECT COUNT(*) AS n FROM identity_api_tokens WHERE user_id = $1 AND account_id = $2 \
             AND {}",
            state_condition(TokenState::Active, "$3")
        ),
        vec![user_id.into(), account_id.into(), now.into()],
    )
    .await?
    .map(|r| get::<i64>(&r, "n"))
    .transpose()?
    .unwrap_or(0))
}

const COLUMNS: &str = "id, name, user_id, account_id, last_four, read_only, create_time, \
    expire_time, last_used_time, last_used_ip, revoke_time, revoked_by, source_allowlist";

/// A token as stored (never its secret).
#[derive(Clone, Debug)]
pub(crate) struct ApiTokenRow {
    /// Its id.
    pub(crate) id: String,
    /// Its label.
    pub(crate) name: String,
    /// Whose it is.
    pub(crate) user_id: String,
    /// The account it acts in.
    pub(crate) account_id: String,
    /// The secret's last four characters.
    pub(crate) last_four: String,
    /// Whether it may only read.
    pub(crate) read_only: bool,
    /// When it was created (Unix ms).
    pub(crate) create_time: i64,
    /// When it expires (Unix ms), if ever.
    pub(crate) expire_time: Option<i64>,
    /// When a gateway last saw it (Unix ms).
    pub(crate) last_used_time: Option<i64>,
    /// From where.
    pub(crate) last_used_ip: String,
    /// When it was revoked (Unix ms).
    pub(crate) revoke_time: Option<i64>,
    /// Who revoked it.
    pub(crate) revoked_by: String,
    /// Where it may be used from: normalised CIDR blocks separated by
    /// spaces; empty: anywhere.
    pub(crate) source_allowlist: String,
}

impl ApiTokenRow {
    /// The source allowlist's entries.
    pub(crate) fn source_allowlist(&self) -> Vec<String> {
        self.source_allowlist
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }
}

fn token_from_row(r: &QueryResult) -> Result<ApiTokenRow, DbErr> {
    Ok(ApiTokenRow {
        id: get(r, "id")?,
        name: get(r, "name")?,
        user_id: get(r, "user_id")?,
        account_id: get(r, "account_id")?,
        last_four: get(r, "last_four")?,
        read_only: get(r, "read_only")?,
        create_time: get(r, "create_time")?,
        expire_time: get(r, "expire_time")?,
        last_used_time: get(r, "last_used_time")?,
        last_used_ip: get(r, "last_used_ip")?,
        revoke_time: get(r, "revoke_time")?,
        revoked_by: get(r, "revoked_by")?,
        source_allowlist: get(r, "source_allowlist")?,
    })
}

/// Stores a new token under the hash of its secret.
pub(crate) async fn insert<C: ConnectionTrait>(
    c: &C,
    token: &ApiTokenRow,
    secret_hash: String,
) -> Result<(), DbErr> {
    exec(
        c,
        "INSERT INTO identity_api_tokens (id, token_hash, user_id, account_id, name, last_four, \
         read_only, create_time, expire_time, source_allowlist) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        vec![
            token.id.clone().into(),
            secret_hash.into(),
            token.user_id.clone().into(),
            token.account_id.clone().into(),
            token.name.clone().into(),
            token.last_four.clone().into(),
            token.read_only.into(),
            token.create_time.into(),
            token.expire_time.into(),
            token.source_allowlist.clone().into(),
        ],
    )
    .await?;
    Ok(())
}

/// One token by id, in `account` when given.
pub(crate) async fn get_token<C: ConnectionTrait>(
    c: &C,
    id: &ApiTokenId,
    account: Option<&str>,
) -> Result<Option<ApiTokenRow>, DbErr> {
    one(
        c,
        &format!(
            "SELECT {COLUMNS} FROM identity_api_tokens WHERE id = $1 AND ($2 = '' OR account_id = $2)"
        ),
        vec![id.into(), account.unwrap_or_default().into()],
    )
    .await?
    .as_ref()
    .map(token_from_row)
    .transpose()
}

/// Revokes a token not revoked yet; whether it was.
pub(crate) async fn revoke<C: ConnectionTrait>(
    c: &C,
    id: &str,
    by: &str,
    now: i64,
) -> Result<bool, DbErr> {
    let n = exec(
        c,
        "UPDATE identity_api_tokens SET revoke_time = $1, revoked_by = $2 \
         WHERE id = $3 AND revoke_time IS NULL",
        vec![now.into(), by.into(), id.into()],
    )
    .await?;
    Ok(n == 1)
}

/// The ids of the member's unrevoked tokens for the account created at or
/// before `created_until` (Unix ms).
pub(crate) async fn unrevoked_of<C: ConnectionTrait>(
    c: &C,
    user_id: &str,
    account_id: &str,
    created_until: i64,
) -> Result<Vec<String>, DbErr> {
    all(
        c,
        "SELECT id FROM identity_api_tokens WHERE user_id = $1 AND account_id = $2 \
         AND revoke_time IS NULL AND create_time <= $3",
        vec![user_id.into(), account_id.into(), created_until.into()],
    )
    .await?
    .iter()
    .map(|r| get::<String>(r, "id"))
    .collect()
}

/// Which tokens a page lists.
pub(crate) struct Query<'a> {
    /// In this account.
    pub(crate) account_id: &'a str,
    /// Of this user (all when empty).
    pub(crate) user_id: &'a str,
    /// In one of these states (at least one).
    pub(crate) states: &'a [TokenState],
    /// The time the states are judged at (Unix ms).
    pub(crate) now: i64,
    /// Ids below this one ("" for the first page).
    pub(crate) after: &'a str,
    /// At most this many.
    pub(crate) limit: i64,
}

/// The tokens `query` names, newest (highest UUIDv7) first.
pub(crate) async fn page<C: ConnectionTrait>(
    c: &C,
    query: Query<'_>,
) -> Result<Vec<ApiTokenRow>, DbErr> {
    let states: Vec<String> = query
        .states
        .iter()
        .map(|s| state_condition(*s, "$3"))
        .collect();
    all(
        c,
        &format!(
            "SELECT {COLUMNS} FROM identity_api_tokens WHERE account_id = $1 \
             AND ($2 = '' OR user_id = $2) AND ({}) AND ($4 = '' OR id < $4) \
             ORDER BY id DESC LIMIT $5",
            states.join(" OR ")
        ),
        vec![
            query.account_id.into(),
            query.user_id.into(),
            query.now.into(),
            query.after.into(),
            query.limit.into(),
        ],
    )
    .await?
    .iter()
    .map(token_from_row)
    .collect()
}

/// What IntrospectApiToken needs of a token, found by its secret's hash.
pub(crate) struct Introspected {
    /// The token.
    pub(crate) token: ApiTokenRow,
    /// Whether its user has 2FA on.
    pub(crate) mfa: bool,
}

/// The token whose secret hashes to `hash`, with its user's 2FA flag.
pub(crate) async fn by_hash<C: ConnectionTrait>(
    c: &C,
    hash: &str,
) -> Result<Option<Introspected>, DbErr> {
    one(
        c,
        &format!(
            "SELECT {}, {} AS mfa FROM identity_api_tokens t \
             JOIN identity_users u ON u.id = t.user_id WHERE t.token_hash = $1",
            COLUMNS
                .split(", ")
                .map(|c| format!("t.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
            super::passkeys::has_second_factor("u")
        ),
        vec![hash.into()],
    )
    .await?
    .map(|row| {
        Ok(Introspected {
            token: token_from_row(&row)?,
            mfa: get(&row, "mfa")?,
        })
    })
    .transpose()
}

/// Records a gateway's report that the token was used at `time` from
/// `ip` (only moving forward).
pub(crate) async fn record_use<C: ConnectionTrait>(
    c: &C,
    id: &str,
    time: i64,
    ip: &str,
) -> Result<(), DbErr> {
    exec(
        c,
        "UPDATE identity_api_tokens SET last_used_time = $1, last_used_ip = $2 WHERE id = $3 \
         AND (last_used_time IS NULL OR last_used_time < $1)",
        vec![time.into(), ip.into(), id.into()],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::api_tokens::token_state;
    use crate::store::scratch::Table;

    /// Every combination of revocation and expiry around `now`: the rows
    /// each state's SQL selects are exactly those the domain function puts
    /// in that state.
    #[tokio::test]
    async fn sql_state_filters_agree_with_the_domain_rule() {
        let times = [
            None,
            Some(0_i64),
            Some(99),
            Some(100),
            Some(101),
            Some(i64::MAX),
        ];
        let mut rows = Vec::new();
        for revoke in times {
            for expire in times {
                rows.push(vec![revoke, expire]);
            }
        }
        let table = Table::new(&["revoke_time", "expire_time"], &rows).await;
        for now in [0_i64, 99, 100, 101] {
            for state in TokenState::ALL {
                let got = table
                    .selected(&state_condition(state, "$1"), vec![now.into()])
                    .await;
                let want: Vec<usize> = (0..rows.len())
                    .filter(|&i| token_state(rows[i][0], rows[i][1], now) == state)
                    .collect();
                assert_eq!(got, want, "{state:?} at {now}");
            }
        }
    }
}
