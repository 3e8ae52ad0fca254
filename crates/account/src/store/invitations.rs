//! Invitations: rows and their queries. States are stored as
//! `domain::InvitationState` codes.

use sea_orm::{ConnectionTrait, DbErr, QueryResult, Value};
use tenancy_runtime::Error;
use tenancy_runtime::db::{all, exec, get, one};
use tenancy_runtime::ids::{AccountId, InvitationId, UserId};

use super::{b, coded, i, n, oi, os, s};
use crate::domain::{InvitationState, Role, Scope};

const COLUMNS: &str = "id, account_id, email, role, scope_json, state, token_hash, create_time, expire_time, invited_by, send_time, send_count, close_time, user_id, for_existing_member";

const PENDING: i32 = InvitationState::Pending as i32;
const ACCEPTED: i32 = InvitationState::Accepted as i32;
const CANCELLED: i32 = InvitationState::Cancelled as i32;
const EXPIRED: i32 = InvitationState::Expired as i32;

/// An invitation to join an account.
#[derive(Clone, Debug)]
pub struct InvitationRow {
    /// Id.
    pub id: InvitationId,
    /// The account.
    pub account_id: AccountId,
    /// Who is invited.
    pub email: String,
    /// The role they get.
    pub role: Role,
    /// The access they get.
    pub scope: Scope,
    /// The stored state (see [`InvitationRow::effective_state`]).
    pub state: InvitationState,
    /// The hash of the link's token.
    pub token_hash: String,
    /// Sent first.
    pub create_time: i64,
    /// The link stops working.
    pub expire_time: i64,
    /// The member who invited.
    pub invited_by: UserId,
    /// Sent last.
    pub send_time: i64,
    /// Times sent.
    pub send_count: i32,
    /// Accepted, cancelled or replaced.
    pub close_time: Option<i64>,
    /// The invitee's user (created at invitation time; for an invitation
    /// to a member added without a password, the member's stand-in id).
    pub user_id: Option<UserId>,
    /// Sent to a member added without a password.
    pub for_existing_member: bool,
}

impl InvitationRow {
    fn read(r: &QueryResult) -> Result<Self, Error> {
        let scope: String = get(r, "scope_json")?;
        Ok(Self {
            id: get(r, "id")?,
            account_id: get(r, "account_id")?,
            email: get(r, "email")?,
            role: coded(r, "role", Role::from_code)?,
            scope: serde_json::from_str(&scope).unwrap_or_default(),
            state: coded(r, "state", InvitationState::from_code)?,
            token_hash: get(r, "token_hash")?,
            create_time: get(r, "create_time")?,
            expire_time: get(r, "expire_time")?,
            invited_by: get(r, "invited_by")?,
            send_time: get(r, "send_time")?,
            send_count: get(r, "send_count")?,
            close_time: get(r, "close_time")?,
            user_id: get(r, "user_id")?,
            for_existing_member: get(r, "for_existing_member")?,
        })
    }

    /// The state as clients see it at `now`.
    pub fn effective_state(&self, now: i64) -> InvitationState {
        self.state.at(self.expire_time, now)
    }

    /// Inserts the row; a unique violation (a pending invitation for the
    /// email exists) is returned as is, for the caller to name.
    pub async fn insert<C: ConnectionTrait>(&self, c: &C) -> Result<(), DbErr> {
        let scope = serde_json::to_string(&self.scope).unwrap_or_default();
        exec(
            c,
            &format!("INSERT INTO account_invitations ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"),
            vec![
                (&self.id).into(), (&self.account_id).into(), s(&self.email), n(self.role.code()), s(scope),
                n(self.state.code()), s(&self.token_hash), i(self.create_time), i(self.expire_time),
                (&self.invited_by).into(), i(self.send_time), n(self.send_count), oi(self.close_time),
                os(self.user_id.clone().map(UserId::into_string)), b(self.for_existing_member),
            ],
        )
        .await?;
        Ok(())
    }
}

async fn one_invitation<C: ConnectionTrait>(
    c: &C,
    filter: &str,
    values: Vec<Value>,
) -> Result<Option<InvitationRow>, Error> {
    one(
        c,
        &format!("SELECT {COLUMNS} FROM account_invitations WHERE {filter}"),
        values,
    )
    .await?
    .map(|r| InvitationRow::read(&r))
    .transpose()
}

/// An invitation by id (of `account_id`, when given).
pub async fn invitation<C: ConnectionTrait>(
    c: &C,
    id: &InvitationId,
    account_id: Option<&AccountId>,
) -> Result<Option<InvitationRow>, Error> {
    match account_id {
        Some(account) => {
            one_invitation(
                c,
                "id = $1 AND account_id = $2",
                vec![id.into(), account.into()],
            )
            .await
        }
        None => one_invitation(c, "id = $1", vec![id.into()]).await,
    }
}

/// The invitation whose link token hashes to `token_hash`.
pub async fn invitation_by_token<C: ConnectionTrait>(
    c: &C,
    token_hash: &str,
) -> Result<Option<InvitationRow>, Error> {
    one_invitation(c, "token_hash = $1", vec![s(token_hash)]).await
}

/// A page of the account's invitations in any of `states` (all when
/// empty), newest first, after `after` (create time, id).
pub async fn list_invitations<C: ConnectionTrait>(
    c: &C,
    account_id: &AccountId,
    states: &[InvitationState],
    now: i64,
    after: Option<(i64, &str)>,
    limit: u64,
) -> Result<Vec<InvitationRow>, Error> {
    let mut sql = format!("SELECT {COLUMNS} FROM account_invitations WHERE account_id = $1");
    let mut values: Vec<Value> = vec![account_id.into(), i(now)];
    let ors: Vec<String> = states
        .iter()
        .map(|state| match state {
            InvitationState::Pending => format!("(state = {PENDING} AND expire_time > $2)"),
            InvitationState::Expired => {
                format!("(state = {EXPIRED} OR (state = {PENDING} AND expire_time <= $2))")
            }
            InvitationState::Accepted => format!("state = {ACCEPTED}"),
            InvitationState::Cancelled => format!("state = {CANCELLED}"),
        })
        .collect();
    if !ors.is_empty() {
        sql.push_str(&format!(" AND ({})", ors.join(" OR ")));
    } else {
        sql.push_str(" AND $2 = $2");
    }
    if let Some((time, id)) = after {
        values.push(i(time));
        values.push(s(id));
        sql.push_str(" AND (create_time < $3 OR (create_time = $3 AND id < $4))");
    }
    sql.push_str(&format!(
        " ORDER BY create_time DESC, id DESC LIMIT {limit}"
    ));
    all(c, &sql, values)
        .await?
        .iter()
        .map(InvitationRow::read)
        .collect()
}

/// How [`close_pending_invitations`] closes an email's pending invitations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseAs {
    /// Those that expired by `now` become EXPIRED (an expired invitation no
    /// longer blocks a new one).
    Expired,
    /// All of them are CANCELLED at `now` (a new one replaces them).
    Cancelled,
}

/// Closes the email's pending invitations to the account.
pub async fn close_pending_invitations<C: ConnectionTrait>(
    c: &C,
    account_id: &AccountId,
    email: &str,
    now: i64,
    how: CloseAs,
) -> Result<(), Error> {
    let (sql, state) = match how {
        CloseAs::Expired => (
            format!(
                "UPDATE account_invitations SET state = $4, close_time = expire_time WHERE account_id = $1 AND email = $2 AND state = {PENDING} AND expire_time <= $3"
            ),
            EXPIRED,
        ),
        CloseAs::Cancelled => (
            format!(
                "UPDATE account_invitations SET state = $4, close_time = $3 WHERE account_id = $1 AND email = $2 AND state = {PENDING}"
            ),
            CANCELLED,
        ),
    };
    exec(c, &sql, vec![account_id.into(), s(email), i(now), n(state)]).await?;
    Ok(())
}

/// Renews a PENDING or EXPIRED invitation as `inv` (new token, expiry,
/// send time and count); Ok(false) when it is no longer either. A unique
/// violation (another pending invitation for the email) is returned as is.
pub async fn renew_invitation<C: ConnectionTrait>(
    c: &C,
    inv: &InvitationRow,
) -> Result<bool, DbErr> {
    Ok(exec(
        c,
        &format!("UPDATE account_invitations SET state = {PENDING}, token_hash = $2, expire_time = $3, send_time = $4, send_count = $5, close_time = NULL WHERE id = $1 AND state IN ({PENDING}, {EXPIRED})"),
        vec![(&inv.id).into(), s(&inv.token_hash), i(inv.expire_time), i(inv.send_time), n(inv.send_count)],
    )
    .await?
        == 1)
}

/// Cancels a PENDING or EXPIRED invitation at `now`; false when it is no
/// longer either.
pub async fn cancel_invitation<C: ConnectionTrait>(
    c: &C,
    id: &InvitationId,
    now: i64,
) -> Result<bool, Error> {
    Ok(exec(
        c,
        &format!("UPDATE account_invitations SET state = {CANCELLED}, close_time = $2 WHERE id = $1 AND state IN ({PENDING}, {EXPIRED})"),
        vec![id.into(), i(now)],
    )
    .await?
        != 0)
}

/// Accepts the invitation for `user_id` if it is still pending under
/// `token_hash` at `now`; false when it is not (used, cancelled, expired).
pub async fn claim_invitation<C: ConnectionTrait>(
    c: &C,
    id: &InvitationId,
    token_hash: &str,
    now: i64,
    user_id: &UserId,
) -> Result<bool, Error> {
    Ok(exec(
        c,
        &format!("UPDATE account_invitations SET state = {ACCEPTED}, close_time = $2, user_id = $4 WHERE id = $1 AND state = {PENDING} AND token_hash = $3 AND expire_time > $2"),
        vec![id.into(), i(now), s(token_hash), user_id.into()],
    )
    .await?
        != 0)
}
