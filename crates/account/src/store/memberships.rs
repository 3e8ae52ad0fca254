//! A user's memberships across accounts: ListMyAccounts,
//! ListUserMemberships and GetDefaultAccount.

use sea_orm::{ConnectionTrait, QueryResult};
use tenancy_runtime::Error;
use tenancy_runtime::db::{all, get};
use tenancy_runtime::ids::UserId;

use super::{b, n, s};
use crate::domain::MemberStatus;
use crate::domain::default_account::Usable;

/// The memberships of user `$1` with their accounts (callers add status
/// filters, order and limit).
const MEMBERSHIPS_OF_USER: &str = "SELECT a.id, a.account_type, a.name, a.enforce_mfa, m.role, m.status, m.portal_access, m.join_time, m.mfa_deadline FROM account_members m JOIN account_accounts a ON a.id = m.account_id WHERE m.user_id = $1";

/// A membership of a user, with a summary of its account.
#[derive(Clone, Debug)]
pub struct UserMembership {
    /// The account.
    pub account_id: String,
    /// The account's `AccountType` code.
    pub account_type: i32,
    /// The account's name.
    pub account_name: String,
    /// Whether the account enforces 2FA.
    pub enforce_mfa: bool,
    /// The member's `Role` code.
    pub role: i32,
    /// The member's `MemberStatus` code.
    pub status: i32,
    /// Whether the member may sign in to the portal.
    pub portal_access: bool,
    /// Joined (Unix ms).
    pub join_time: i64,
    /// The member's 2FA deadline, if one was set.
    pub mfa_deadline: Option<i64>,
}

impl UserMembership {
    fn read(row: &QueryResult) -> Result<Self, Error> {
        Ok(Self {
            account_id: get(row, "id")?,
            account_type: get(row, "account_type")?,
            account_name: get(row, "name")?,
            enforce_mfa: get(row, "enforce_mfa")?,
            role: get(row, "role")?,
            status: get(row, "status")?,
            portal_access: get(row, "portal_access")?,
            join_time: get(row, "join_time")?,
            mfa_deadline: get(row, "mfa_deadline")?,
        })
    }
}

/// Every membership of `user_id`, any status, by account name and id, at
/// most `limit`.
pub async fn user_memberships<C: ConnectionTrait>(
    c: &C,
    user_id: &UserId,
    limit: u64,
) -> Result<Vec<UserMembership>, Error> {
    all(
        c,
        &format!("{MEMBERSHIPS_OF_USER} ORDER BY a.name, a.id LIMIT {limit}"),
        vec![s(user_id.as_str())],
    )
    .await?
    .iter()
    .map(UserMembership::read)
    .collect()
}

/// A page of the ACTIVE and SUSPENDED memberships of `user_id`, by
/// account name and id, after `after` (name, id).
pub async fn current_memberships<C: ConnectionTrait>(
    c: &C,
    user_id: &UserId,
    after: Option<(&str, &str)>,
    limit: u64,
) -> Result<Vec<UserMembership>, Error> {
    let mut values = vec![
        s(user_id.as_str()),
        n(MemberStatus::Active.code()),
        n(MemberStatus::Suspended.code()),
    ];
    let mut sql = format!("{MEMBERSHIPS_OF_USER} AND m.status IN ($2, $3)");
    if let Some((name, id)) = after {
        sql.push_str(" AND (a.name > $4 OR (a.name = $4 AND a.id > $5))");
        values.push(s(name));
        values.push(s(id));
    }
    sql.push_str(&format!(" ORDER BY a.name, a.id LIMIT {limit}"));
    all(c, &sql, values)
        .await?
        .iter()
        .map(UserMembership::read)
        .collect()
}

/// The memberships GetDefaultAccount chooses from: those of `user` (as the
/// caller gave it) that are ACTIVE with portal access, in `preferred`,
/// and the earliest joined one — enough for the domain rule (see
/// `domain::default_account`).
pub async fn usable_memberships<C: ConnectionTrait>(
    c: &C,
    user: &str,
    preferred: &[String],
) -> Result<Vec<Usable>, Error> {
    let usable_sql = "SELECT account_id, join_time FROM account_members \
        WHERE user_id = $1 AND status = $2 AND portal_access = $3";
    let base = || vec![s(user), n(MemberStatus::Active.code()), b(true)];
    let mut usable = Vec::new();
    if !preferred.is_empty() {
        let list = (0..preferred.len())
            .map(|i| format!("${}", i + 4))
            .collect::<Vec<_>>()
            .join(", ");
        let mut values = base();
        values.extend(preferred.iter().map(|id| s(id.as_str())));
        usable.extend(
            all(
                c,
                &format!("{usable_sql} AND account_id IN ({list})"),
                values,
            )
            .await?,
        );
    }
    usable.extend(
        all(
            c,
            &format!("{usable_sql} ORDER BY join_time, account_id LIMIT 1"),
            base(),
        )
        .await?,
    );
    usable
        .iter()
        .map(|row| {
            Ok(Usable {
                account_id: get(row, "account_id")?,
                join_time: get(row, "join_time")?,
            })
        })
        .collect()
}
