//! The login history (`identity_login_events`).

use sea_orm::{ConnectionTrait, DbErr};
use tenancy_runtime::db::{all, exec, get};

/// One attempt as stored.
#[derive(Clone, Debug)]
pub(crate) struct LoginEventRow {
    /// Its id.
    pub(crate) id: String,
    /// The user who tried.
    pub(crate) user_id: String,
    /// The account named (may be empty).
    pub(crate) account_id: String,
    /// The session created or used (may be empty).
    pub(crate) session_id: String,
    /// When (Unix ms).
    pub(crate) time: i64,
    /// The client's address.
    pub(crate) ip: String,
    /// The client's user agent.
    pub(crate) user_agent: String,
    /// The `LoginMethod` number.
    pub(crate) method: i32,
    /// The `LoginOutcome` number.
    pub(crate) outcome: i32,
}

/// Records an attempt.
pub(crate) async fn insert<C: ConnectionTrait>(c: &C, event: LoginEventRow) -> Result<(), DbErr> {
    exec(
        c,
        "INSERT INTO identity_login_events (id, user_id, account_id, session_id, time, ip, \
         user_agent, method, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        vec![
            event.id.into(),
            event.user_id.into(),
            event.account_id.into(),
            event.session_id.into(),
            event.time.into(),
            event.ip.into(),
            event.user_agent.into(),
            event.method.into(),
            event.outcome.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Which events a page lists.
pub(crate) struct Query<'a> {
    /// The user's.
    pub(crate) user_id: &'a str,
    /// In this account only (all when empty).
    pub(crate) account_id: &'a str,
    /// At or after (Unix ms).
    pub(crate) start: i64,
    /// Before (Unix ms).
    pub(crate) end: i64,
    /// After the event `(time, id)` of the previous page (`i64::MAX`, ""
    /// for the first).
    pub(crate) after: (i64, String),
    /// Only these methods (all when empty).
    pub(crate) methods: &'a [i32],
    /// Only these outcomes (all when empty).
    pub(crate) outcomes: &'a [i32],
    /// At most this many.
    pub(crate) limit: i64,
}

/// The events `query` names, newest first (keyset pagination over
/// `(time, id)`; the filters are in the query, so pages are full and never
/// skip a row).
pub(crate) async fn page<C: ConnectionTrait>(
    c: &C,
    query: Query<'_>,
) -> Result<Vec<LoginEventRow>, DbErr> {
    let mut sql = String::from(
        "SELECT id, user_id, account_id, session_id, time, ip, user_agent, method, outcome \
         FROM identity_login_events WHERE user_id = $1 AND ($2 = '' OR account_id = $2) \
         AND time >= $3 AND time < $4 AND (time < $5 OR (time = $5 AND ($6 = '' OR id < $6)))",
    );
    let mut values: Vec<sea_orm::Value> = vec![
        query.user_id.into(),
        query.account_id.into(),
        query.start.into(),
        query.end.into(),
        query.after.0.into(),
        query.after.1.into(),
    ];
    for (column, wanted) in [("method", query.methods), ("outcome", query.outcomes)] {
        if wanted.is_empty() {
            continue;
        }
        let mut placeholders = Vec::new();
        for value in wanted {
            values.push((*value).into());
            placeholders.push(format!("${}", values.len()));
        }
        sql.push_str(&format!(" AND {column} IN ({})", placeholders.join(", ")));
    }
    values.push(query.limit.into());
    sql.push_str(&format!(
        " ORDER BY time DESC, id DESC LIMIT ${}",
        values.len()
    ));
    all(c, &sql, values)
        .await?
        .iter()
        .map(|r| {
            Ok(LoginEventRow {
                id: get(r, "id")?,
                user_id: get(r, "user_id")?,
                account_id: get(r, "account_id")?,
                session_id: get(r, "session_id")?,
                time: get(r, "time")?,
                ip: get(r, "ip")?,
                user_agent: get(r, "user_agent")?,
                method: get(r, "method")?,
                outcome: get(r, "outcome")?,
            })
        })
        .collect()
}
