//! The account service's tables and transactions.
//!
//! Queries are written once in SQL that both SQLite and PostgreSQL accept,
//! with `$1`-style parameters, through `tenancy_runtime::db`.
//! Invariants that must hold under concurrency are enforced here:
//! - every write to an account's members, invitations or settings first
//!   bumps the account row's `lock_version` ([`lock_account`]), which takes
//!   the row lock on PostgreSQL and the database's write lock on SQLite, so
//!   such transactions on one account run one after another and the
//!   last-owner count is exact;
//! - positions of the policy change log come from a one-row counter that is
//!   bumped last in the transaction and held until commit, so log entries
//!   become visible in position order (a poller never skips one).

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Value};
use tenancy_runtime::db::{all, exec, get, one};
use tenancy_runtime::ids::{AccountId, ServiceId, UserId};
use tenancy_runtime::{Error, Reason};

use crate::domain::{GrantKind, Level, MemberStatus, Role, Scope, ServiceAccess};

pub mod audit;
pub mod invitations;
pub mod memberships;
pub mod policy_log;
pub mod prune;
pub mod rows;
pub mod services;
pub mod support;

pub use audit::*;
pub use invitations::*;
pub use memberships::*;
pub use policy_log::*;
pub use rows::*;
pub use services::*;
pub use support::*;

/// A string value.
pub fn s(v: impl AsRef<str>) -> Value {
    Value::String(Some(v.as_ref().to_owned()))
}

/// A nullable string value.
pub fn os(v: Option<String>) -> Value {
    Value::String(v)
}

/// A BIGINT value.
pub fn i(v: i64) -> Value {
    Value::BigInt(Some(v))
}

/// A nullable BIGINT value.
pub fn oi(v: Option<i64>) -> Value {
    Value::BigInt(v)
}

/// An INTEGER value.
pub fn n(v: i32) -> Value {
    Value::Int(Some(v))
}

/// A BOOLEAN value.
pub fn b(v: bool) -> Value {
    Value::Bool(Some(v))
}

/// Takes the account's write lock for the rest of the transaction; false
/// when the account does not exist.
pub async fn lock_account<C: ConnectionTrait>(
    c: &C,
    account_id: &AccountId,
) -> Result<bool, Error> {
    Ok(exec(
        c,
        "UPDATE account_accounts SET lock_version = lock_version + 1 WHERE id = $1",
        vec![account_id.into()],
    )
    .await?
        == 1)
}

/// Opens a write transaction ([`tenancy_runtime::db::begin`]: the write
/// lock at once on SQLite, so a transaction that reads before it writes
/// never fails with a busy snapshot).
pub async fn begin(db: &DatabaseConnection) -> Result<sea_orm::DatabaseTransaction, Error> {
    Ok(tenancy_runtime::db::begin(db).await?)
}

/// Kinds of policy log entries.
pub mod policy_kind {
    /// A `MembershipState` (protobuf, base64).
    pub const MEMBERSHIP_CHANGED: i32 = 1;
    /// A `MembershipRemoved`.
    pub const MEMBERSHIP_REMOVED: i32 = 2;
    /// A `SecuritySettings`.
    pub const SECURITY_SETTINGS_CHANGED: i32 = 3;
    /// The account's service catalogue or a member's grants changed (no
    /// payload). Followed by the access caches of all replicas; WatchPolicies
    /// skips it.
    pub const ACCESS_CHANGED: i32 = 4;
}

/// One policy log entry to append.
pub struct PolicyEntry {
    /// The account it concerns.
    pub account_id: AccountId,
    /// One of [`policy_kind`].
    pub kind: i32,
    /// The encoded protobuf message, base64.
    pub payload: String,
}

/// Appends `entries` to the policy log; call it last in the transaction.
pub async fn append_policy<C: ConnectionTrait>(
    c: &C,
    now: i64,
    entries: Vec<PolicyEntry>,
) -> Result<i64, Error> {
    if entries.is_empty() {
        return Ok(0);
    }
    let count = i64::try_from(entries.len()).unwrap_or(i64::MAX);
    let row = one(
        c,
        "UPDATE account_policy_head SET position = position + $1 WHERE id = 1 RETURNING position",
        vec![i(count)],
    )
    .await?
    .ok_or_else(|| Error::internal("policy head row missing"))?;
    let last: i64 = get(&row, "position")?;
    let mut position = last - count;
    // Multi-row inserts: a settings change can re-send every member's state.
    const ROWS_PER_INSERT: usize = 200;
    let mut entries = entries.into_iter().peekable();
    while entries.peek().is_some() {
        let mut sql = String::from(
            "INSERT INTO account_policy_log (position, event_time, account_id, event_kind, payload) VALUES ",
        );
        let mut values = Vec::new();
        for (k, entry) in entries.by_ref().take(ROWS_PER_INSERT).enumerate() {
            position += 1;
            let b = k * 5;
            if k > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5
            ));
            values.extend([
                i(position),
                i(now),
                (&entry.account_id).into(),
                n(entry.kind),
                s(entry.payload),
            ]);
        }
        exec(c, &sql, values).await?;
    }
    tenancy_runtime::db::notify(c, POLICY_CHANNEL).await?;
    Ok(last)
}

/// The PostgreSQL channel an append to the policy log is announced on (at
/// commit), so every replica's watchers look at once.
pub const POLICY_CHANNEL: &str = "tenancy_account_policies";

/// The latest policy log position.
pub async fn policy_head<C: ConnectionTrait>(c: &C) -> Result<i64, Error> {
    let row = one(
        c,
        "SELECT position FROM account_policy_head WHERE id = 1",
        vec![],
    )
    .await?;
    match row {
        Some(row) => Ok(get(&row, "position")?),
        None => Ok(0),
    }
}

/// Number of active owners: the members `domain::owners::OwnerFacts::
/// is_active_owner` accepts, counted in SQL (a test proves they agree).
pub async fn active_owners<C: ConnectionTrait>(
    c: &C,
    account_id: &AccountId,
) -> Result<u64, Error> {
    let row = one(
        c,
        "SELECT COUNT(*) AS c FROM account_members WHERE account_id = $1 AND role = $2 AND status = $3 AND portal_access = $4",
        vec![
            account_id.into(),
            n(Role::Owner.code()),
            n(MemberStatus::Active.code()),
            b(true),
        ],
    )
    .await?;
    let count: i64 = match row {
        Some(row) => get(&row, "c")?,
        None => 0,
    };
    Ok(u64::try_from(count).unwrap_or(0))
}

const MEMBER_COLUMNS: &str = "account_id, user_id, role, status, portal_access, password_pending, service_access, join_time, update_time, name_key, email, mfa_deadline, accepted, alias_id, added_name, kind, description, source_allowlist";

/// One membership row.
pub async fn member<C: ConnectionTrait>(
    c: &C,
    account_id: &AccountId,
    user_id: &UserId,
) -> Result<Option<MemberRow>, Error> {
    let row = one(
        c,
        &format!(
            "SELECT {MEMBER_COLUMNS} FROM account_members WHERE account_id = $1 AND user_id = $2"
        ),
        vec![account_id.into(), user_id.into()],
    )
    .await?;
    row.map(|r| MemberRow::read(&r)).transpose()
}

/// The member the API addresses as `id` (see [`MemberRow::public_id`]):
/// an accepted member by user id, or any member by the id it was first
/// shown under. A member who has not accepted is never found by their
/// user id, which the adding owner must not learn.
pub async fn member_by_public_id<C: ConnectionTrait>(
    c: &C,
    account_id: &AccountId,
    id: &UserId,
) -> Result<Option<MemberRow>, Error> {
    let row = one(
        c,
        &format!(
            "SELECT {MEMBER_COLUMNS} FROM account_members WHERE account_id = $1 AND (alias_id = $2 OR (accepted AND user_id = $2))"
        ),
        vec![account_id.into(), id.into()],
    )
    .await?;
    row.map(|r| MemberRow::read(&r)).transpose()
}

/// How many accounts the user created.
pub async fn accounts_created_by<C: ConnectionTrait>(
    c: &C,
    user_id: &UserId,
) -> Result<i64, Error> {
    Ok(one(
        c,
        "SELECT COUNT(*) AS c FROM account_accounts WHERE created_by = $1",
        vec![user_id.into()],
    )
    .await?
    .map(|r| get::<i64>(&r, "c"))
    .transpose()?
    .unwrap_or(0))
}

/// Whether the account exists.
pub async fn account_exists<C: ConnectionTrait>(
    c: &C,
    account_id: &AccountId,
) -> Result<bool, Error> {
    Ok(one(
        c,
        "SELECT id FROM account_accounts WHERE id = $1",
        vec![account_id.into()],
    )
    .await?
    .is_some())
}

/// The account's members that are not revoked.
pub async fn current_members<C: ConnectionTrait>(
    c: &C,
    account_id: &AccountId,
) -> Result<Vec<MemberRow>, Error> {
    all(
        c,
        &format!(
            "SELECT {MEMBER_COLUMNS} FROM account_members WHERE account_id = $1 AND status <> $2"
        ),
        vec![account_id.into(), n(MemberStatus::Revoked.code())],
    )
    .await?
    .iter()
    .map(MemberRow::read)
    .collect()
}

/// The column a member list is ordered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberOrder {
    /// Join time (the default).
    JoinTime,
    /// Lower-cased name at join time.
    Name,
    /// Email at join time.
    Email,
}

/// Where a member list page starts: after this key and user id.
#[derive(Clone, Debug)]
pub enum MemberKey {
    /// A join time.
    Time(i64),
    /// A name or an email.
    Text(String),
}

/// Which members a ListMembers page reads.
#[derive(Clone, Debug)]
pub struct MemberQuery<'a> {
    /// Only this role code (0: any).
    pub role: i32,
    /// Only these status codes (empty: any).
    pub statuses: &'a [i32],
    /// Only members with or without portal access.
    pub portal_access: Option<bool>,
    /// The order.
    pub order: MemberOrder,
    /// Descending instead of ascending.
    pub descending: bool,
    /// Only members after this (key, user id) in that order.
    pub after: Option<(MemberKey, &'a str)>,
    /// At most this many.
    pub limit: u64,
}

/// A page of the account's members.
pub async fn list_members<C: ConnectionTrait>(
    c: &C,
    account_id: &AccountId,
    q: &MemberQuery<'_>,
) -> Result<Vec<MemberRow>, Error> {
    let column = match q.order {
        MemberOrder::Name => "name_key",
        MemberOrder::Email => "email",
        MemberOrder::JoinTime => "join_time",
    };
    let mut sql = format!("SELECT {MEMBER_COLUMNS} FROM account_members WHERE account_id = $1");
    let mut values: Vec<Value> = vec![account_id.into()];
    if q.role != 0 {
        values.push(n(q.role));
        sql.push_str(&format!(" AND role = ${}", values.len()));
    }
    if !q.statuses.is_empty() {
        let mut ph = Vec::new();
        for st in q.statuses {
            values.push(n(*st));
            ph.push(format!("${}", values.len()));
        }
        sql.push_str(&format!(" AND status IN ({})", ph.join(", ")));
    }
    if let Some(p) = q.portal_access {
        values.push(b(p));
        sql.push_str(&format!(" AND portal_access = ${}", values.len()));
    }
    let (cmp, dir) = if q.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some((key, user)) = &q.after {
        values.push(match key {
            MemberKey::Time(t) => i(*t),
            MemberKey::Text(t) => s(t),
        });
        let a = values.len();
        values.push(s(user));
        let bb = values.len();
        sql.push_str(&format!(" AND ({column}, alias_id) {cmp} (${a}, ${bb})"));
    }
    // Ties are broken by `alias_id`, which page tokens carry: never the
    // user id of a member who has not accepted.
    sql.push_str(&format!(
        " ORDER BY {column} {dir}, alias_id {dir} LIMIT {}",
        q.limit
    ));
    all(c, &sql, values)
        .await?
        .iter()
        .map(MemberRow::read)
        .collect()
}

/// The grants of a member, as a scope (portal access and mode from `row`).
pub async fn scope<C: ConnectionTrait>(c: &C, row: &MemberRow) -> Result<Scope, Error> {
    let mut scopes = scopes(c, &row.account_id, std::slice::from_ref(&row.user_id)).await?;
    let mut scope = scopes.remove(&row.user_id).unwrap_or_default();
    scope.portal_access = row.portal_access;
    scope.service_access = row.service_access;
    Ok(scope)
}

/// The grants of several members of one account.
///
/// One row per (member, grant kind), the grants folded into one string by
/// the database: a member with a thousand selected services costs one row,
/// not a thousand (per-row overhead dominated ListMembers pages holding
/// such a member). Keys are UUIDs or tags, which never contain the ASCII
/// separators used.
pub async fn scopes<C: ConnectionTrait>(
    c: &C,
    account_id: &AccountId,
    user_ids: &[UserId],
) -> Result<std::collections::HashMap<UserId, Scope>, Error> {
    let mut out: std::collections::HashMap<UserId, Scope> = std::collections::HashMap::new();
    if user_ids.is_empty() {
        return Ok(out);
    }
    let placeholders: Vec<String> = (0..user_ids.len()).map(|k| format!("${}", k + 2)).collect();
    let mut values: Vec<Value> = vec![account_id.into()];
    values.extend(user_ids.iter().map(Value::from));
    let fold = if c.get_database_backend() == DbBackend::Postgres {
        "string_agg(grant_key || chr(31) || CAST(level AS TEXT), chr(30))"
    } else {
        "group_concat(grant_key || char(31) || CAST(level AS TEXT), char(30))"
    };
    let rows = all(
        c,
        &format!(
            "SELECT user_id, grant_kind, {fold} AS grants FROM account_member_grants WHERE account_id = $1 AND user_id IN ({}) GROUP BY user_id, grant_kind",
            placeholders.join(", ")
        ),
        values,
    )
    .await?;
    for row in rows {
        let user: UserId = get(&row, "user_id")?;
        let kind = GrantKind::from_code(get(&row, "grant_kind")?);
        let grants: String = get(&row, "grants")?;
        let mut parsed: Vec<(String, Level)> = grants
            .split('\u{1e}')
            .filter_map(|g| {
                let (key, lvl) = g.split_once('\u{1f}')?;
                Some((key.to_owned(), Level::from_code(lvl.parse().ok()?)?))
            })
            .collect();
        parsed.sort_unstable();
        let scope = out.entry(user).or_default();
        match kind {
            Some(GrantKind::Selected) => {
                scope.selected = parsed
                    .into_iter()
                    .map(|(k, _)| ServiceId::trusted(k))
                    .collect()
            }
            Some(GrantKind::Resource) => {
                scope.resources = parsed
                    .into_iter()
                    .map(|(k, l)| (ServiceId::trusted(k), l))
                    .collect()
            }
            _ => scope.tags = parsed,
        }
    }
    Ok(out)
}

/// Replaces a member's grants with those of `scope`.
pub async fn replace_grants<C: ConnectionTrait>(
    c: &C,
    account_id: &AccountId,
    user_id: &UserId,
    scope: &Scope,
) -> Result<(), Error> {
    exec(
        c,
        "DELETE FROM account_member_grants WHERE account_id = $1 AND user_id = $2",
        vec![account_id.into(), user_id.into()],
    )
    .await?;
    let mut grants: Vec<(GrantKind, &str, Level)> = Vec::new();
    if scope.service_access == ServiceAccess::Selected {
        grants.extend(
            scope
                .selected
                .iter()
                .map(|id| (GrantKind::Selected, id.as_str(), Level::Manage)),
        );
    }
    grants.extend(
        scope
            .resources
            .iter()
            .map(|(id, l)| (GrantKind::Resource, id.as_str(), *l)),
    );
    grants.extend(
        scope
            .tags
            .iter()
            .map(|(t, l)| (GrantKind::Tag, t.as_str(), *l)),
    );
    for chunk in grants.chunks(100) {
        let mut sql = String::from(
            "INSERT INTO account_member_grants (account_id, user_id, grant_kind, grant_key, level) VALUES ",
        );
        let mut values = Vec::with_capacity(chunk.len() * 5);
        for (k, (kind, key, lvl)) in chunk.iter().enumerate() {
            if k > 0 {
                sql.push_str(", ");
            }
            let base = k * 5;
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${})",
                base + 1,
                base + 2,
                base + 3,
                base + 4,
                base + 5
            ));
            values.extend([
                account_id.into(),
                user_id.into(),
                n(kind.code()),
                s(*key),
                n(lvl.code()),
            ]);
        }
        exec(c, &sql, values).await?;
    }
    Ok(())
}

/// Which of `ids` are services of the account.
pub async fn existing_services<C: ConnectionTrait>(
    c: &C,
    account_id: &AccountId,
    ids: &[ServiceId],
) -> Result<std::collections::HashSet<ServiceId>, Error> {
    let mut found = std::collections::HashSet::new();
    for chunk in ids.chunks(500) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|k| format!("${}", k + 2)).collect();
        let mut values: Vec<Value> = vec![account_id.into()];
        values.extend(chunk.iter().map(Value::from));
        let rows = all(
            c,
            &format!(
                "SELECT id FROM account_services WHERE account_id = $1 AND id IN ({})",
                placeholders.join(", ")
            ),
            values,
        )
        .await?;
        for row in rows {
            found.insert(get::<ServiceId>(&row, "id")?);
        }
    }
    Ok(found)
}

/// Records an idempotency key; returns the earlier result id when the key
/// was used before (with the same request), or REQUEST_ID_REUSED.
pub async fn idempotent<C: ConnectionTrait>(
    c: &C,
    scope: &str,
    key: &str,
    request_hash: &str,
    since: i64,
) -> Result<Option<String>, Error> {
    let row = one(
        c,
        "SELECT request_hash, result_id FROM account_idempotency WHERE scope = $1 AND idem_key = $2 AND create_time >= $3",
        vec![s(scope), s(key), i(since)],
    )
    .await?;
    match row {
        Some(row) => {
            let hash: String = get(&row, "request_hash")?;
            if hash != request_hash {
                return Err(Error::new(
                    Reason::RequestIdReused,
                    "idempotency_key was used for a different request",
                ));
            }
            Ok(Some(get(&row, "result_id")?))
        }
        None => Ok(None),
    }
}

/// Remembers the result of an idempotent request.
pub async fn remember<C: ConnectionTrait>(
    c: &C,
    scope: &str,
    key: &str,
    request_hash: &str,
    result_id: &str,
    now: i64,
) -> Result<(), Error> {
    exec(
        c,
        "DELETE FROM account_idempotency WHERE scope = $1 AND idem_key = $2",
        vec![s(scope), s(key)],
    )
    .await?;
    exec(
        c,
        "INSERT INTO account_idempotency (scope, idem_key, request_hash, result_id, create_time) VALUES ($1, $2, $3, $4, $5)",
        vec![s(scope), s(key), s(request_hash), s(result_id), i(now)],
    )
    .await?;
    Ok(())
}

/// Sets every member's personal 2FA deadline under enforcement that
/// started at `start` with `grace_ms` of grace: `domain::mfa::deadline(
/// start, join_time, grace_ms)`, or with `never_later` (the grace period
/// changed) `domain::mfa::resaved(current, that)`. Computed in SQL; a test
/// proves the two agree.
pub async fn set_mfa_deadlines<C: ConnectionTrait>(
    c: &C,
    account_id: &AccountId,
    start: i64,
    grace_ms: i64,
    never_later: bool,
) -> Result<(), Error> {
    let sql = if never_later {
        "UPDATE account_members SET mfa_deadline = CASE WHEN mfa_deadline IS NOT NULL AND mfa_deadline < (CASE WHEN join_time > $2 THEN join_time ELSE $2 END) + $3 THEN mfa_deadline ELSE (CASE WHEN join_time > $2 THEN join_time ELSE $2 END) + $3 END WHERE account_id = $1 AND kind = 1"
    } else {
        "UPDATE account_members SET mfa_deadline = (CASE WHEN join_time > $2 THEN join_time ELSE $2 END) + $3 WHERE account_id = $1 AND kind = 1"
    };
    exec(c, sql, vec![account_id.into(), i(start), i(grace_ms)]).await?;
    Ok(())
}

/// Drops every personal 2FA deadline of the account (enforcement ended).
pub async fn clear_mfa_deadlines<C: ConnectionTrait>(
    c: &C,
    account_id: &AccountId,
) -> Result<(), Error> {
    exec(
        c,
        "UPDATE account_members SET mfa_deadline = $2 WHERE account_id = $1",
        vec![account_id.into(), oi(None)],
    )
    .await?;
    Ok(())
}
