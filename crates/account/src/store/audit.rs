//! The audit log's list query (rows and single reads: `rows.rs`).

use sea_orm::{ConnectionTrait, Value};
use tenancy_runtime::Error;
use tenancy_runtime::db::all;
use tenancy_runtime::ids::AccountId;

use super::{AUDIT_COLUMNS, AuditRow, i, n, s};

/// The filters of ListAuditEvents (empty strings and 0: any).
pub struct AuditQuery<'a> {
    /// An `ActorKind` code.
    pub actor_kind: i32,
    /// The actor's id.
    pub actor_id: &'a str,
    /// An action, or an action prefix ending in `.`.
    pub action: &'a str,
    /// The target's type.
    pub target_type: &'a str,
    /// The target's id.
    pub target_id: &'a str,
    /// Events at or after (Unix ms).
    pub start: Option<i64>,
    /// Events before (Unix ms).
    pub end: Option<i64>,
    /// After this (event time, id), in the order newest first.
    pub after: Option<(i64, &'a str)>,
    /// At most this many.
    pub limit: u64,
}

/// A page of the account's audit events matching `q`, newest first.
pub async fn list_audit_events<C: ConnectionTrait>(
    c: &C,
    account_id: &AccountId,
    q: &AuditQuery<'_>,
) -> Result<Vec<AuditRow>, Error> {
    let mut sql = format!("SELECT {AUDIT_COLUMNS} FROM account_audit_events WHERE account_id = $1");
    let mut values = vec![s(account_id.as_str())];
    fn push(sql: &mut String, values: &mut Vec<Value>, clause: &str, v: Value) {
        values.push(v);
        sql.push_str(&clause.replace("$?", &format!("${}", values.len())));
    }
    if q.actor_kind != 0 {
        push(
            &mut sql,
            &mut values,
            " AND actor_kind = $?",
            n(q.actor_kind),
        );
    }
    if !q.actor_id.is_empty() {
        push(&mut sql, &mut values, " AND actor_id = $?", s(q.actor_id));
    }
    if !q.action.is_empty() {
        if q.action.ends_with('.') {
            let len = i32::try_from(q.action.len()).unwrap_or(64);
            push(
                &mut sql,
                &mut values,
                &format!(" AND substr(action, 1, {len}) = $?"),
                s(q.action),
            );
        } else {
            push(&mut sql, &mut values, " AND action = $?", s(q.action));
        }
    }
    if !q.target_type.is_empty() {
        push(
            &mut sql,
            &mut values,
            " AND target_type = $?",
            s(q.target_type),
        );
    }
    if !q.target_id.is_empty() {
        push(&mut sql, &mut values, " AND target_id = $?", s(q.target_id));
    }
    if let Some(a) = q.start {
        push(&mut sql, &mut values, " AND event_time >= $?", i(a));
    }
    if let Some(b) = q.end {
        push(&mut sql, &mut values, " AND event_time < $?", i(b));
    }
    if let Some((time, id)) = q.after {
        values.push(i(time));
        let t = values.len();
        values.push(s(id));
        let d = values.len();
        sql.push_str(&format!(
            " AND (event_time < ${t} OR (event_time = ${t} AND id < ${d}))"
        ));
    }
    sql.push_str(&format!(
        " ORDER BY event_time DESC, id DESC LIMIT {}",
        q.limit
    ));
    all(c, &sql, values)
        .await?
        .iter()
        .map(AuditRow::read)
        .collect()
}
