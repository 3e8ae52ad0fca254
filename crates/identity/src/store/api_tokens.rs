//! API tokens (`identity_api_tokens`): the SQL form of their state.

use sea_orm::{ConnectionTrait, DbErr};
use tenancy_runtime::db::{get, one};

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

#[cfg(test)]
mod tests {
    use sea_orm::TransactionTrait;
    use tenancy_runtime::db::{all, connect, exec};

    use super::*;
    use crate::domain::api_tokens::token_state;

    /// Every combination of revocation and expiry around `now`: the rows
    /// each state's SQL selects are exactly those the domain function puts
    /// in that state.
    #[tokio::test]
    async fn sql_state_filters_agree_with_the_domain_rule() {
        let pool = connect("sqlite::memory:", "test").await.unwrap();
        // One connection throughout: each in-memory connection is its own
        // database.
        let db = pool.begin().await.unwrap();
        exec(
            &db,
            "CREATE TABLE t (id INTEGER PRIMARY KEY, revoke_time BIGINT, expire_time BIGINT)",
            vec![],
        )
        .await
        .unwrap();
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
                let id = i64::try_from(rows.len()).unwrap();
                exec(
                    &db,
                    "INSERT INTO t (id, revoke_time, expire_time) VALUES ($1, $2, $3)",
                    vec![id.into(), revoke.into(), expire.into()],
                )
                .await
                .unwrap();
                rows.push((revoke, expire));
            }
        }
        for now in [0_i64, 99, 100, 101] {
            for state in TokenState::ALL {
                let sql = format!(
                    "SELECT id FROM t WHERE {} ORDER BY id",
                    state_condition(state, "$1")
                );
                let got: Vec<i64> = all(&db, &sql, vec![now.into()])
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| get::<i64>(r, "id").unwrap())
                    .collect();
                let want: Vec<i64> = rows
                    .iter()
                    .enumerate()
                    .filter(|(_, (r, e))| token_state(*r, *e, now) == state)
                    .map(|(i, _)| i64::try_from(i).unwrap())
                    .collect();
                assert_eq!(got, want, "{state:?} at {now}");
            }
        }
    }
}
