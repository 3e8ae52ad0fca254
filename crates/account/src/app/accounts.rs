//! Accounts: CreateAccount and UpdateAccount, each one transaction with its
//! audit event (and, for a new account, the policy-log entries of its
//! settings and first owner).

use tenancy_runtime::ids::{AccountId, UserId};
use tenancy_runtime::{Error, Principal};

use super::policy::{membership_entry, settings_entry};
use super::{App, IDEMPOTENCY_WINDOW_MS};
use crate::domain::{AccountError, MemberStatus, Role, ServiceAccess, mfa};
use crate::peers::UserInfo;
use crate::store::{self, AccountRow, MemberRow};

/// The most accounts one user may create.
pub(crate) const MAX_ACCOUNTS_PER_USER: i64 = 100;

/// What CreateAccount made, or found made by an earlier request with the
/// same `request_id`.
pub(crate) struct Created {
    /// The account.
    pub(crate) account: AccountRow,
    /// The creator's membership (its first owner).
    pub(crate) owner: MemberRow,
    /// Made now (false: an earlier request's result).
    pub(crate) fresh: bool,
}

/// CreateAccount by `principal`'s user `user_id` (no account selected
/// yet): the account with them as its first owner. `profile` (best effort)
/// names them for sorting members; `request` is the idempotency key and
/// the request's fingerprint.
pub(crate) async fn create_account(
    app: &App,
    principal: &Principal,
    user_id: &UserId,
    row: AccountRow,
    profile: Option<&UserInfo>,
    request: Option<(&str, &str)>,
) -> Result<Created, Error> {
    let now = row.create_time;
    let idem_scope = format!("create_account:{user_id}");
    let txn = store::begin(&app.db).await?;
    if let Some((key, hash)) = request
        && let Some(existing) =
            store::idempotent(&txn, &idem_scope, key, hash, now - IDEMPOTENCY_WINDOW_MS).await?
    {
        txn.commit().await?;
        let existing = AccountId::trusted(existing);
        let account = AccountRow::load(&app.db, &existing)
            .await?
            .ok_or(AccountError::AccountNotFound)?;
        let owner = store::member(&app.db, &existing, user_id)
            .await?
            .ok_or(AccountError::MemberNotFound)?;
        return Ok(Created {
            account,
            owner,
            fresh: false,
        });
    }
    if store::accounts_created_by(&txn, user_id).await? >= MAX_ACCOUNTS_PER_USER {
        return Err(AccountError::AccountLimitReached {
            max: MAX_ACCOUNTS_PER_USER,
        }
        .into());
    }
    row.insert(&txn).await?;
    let owner = MemberRow {
        account_id: row.id.clone(),
        user_id: user_id.clone(),
        role: Role::Owner,
        status: MemberStatus::Active,
        portal_access: true,
        password_pending: false,
        service_access: ServiceAccess::All,
        join_time: now,
        update_time: now,
        name_key: profile.map(|u| u.name.to_lowercase()).unwrap_or_default(),
        email: profile.map(|u| u.email.clone()).unwrap_or_default(),
        mfa_deadline: join_deadline(&row, now),
        accepted: true,
        alias_id: user_id.clone(),
        added_name: String::new(),
        api: false,
        description: String::new(),
        source_allowlist: String::new(),
    };
    owner.upsert(&txn).await?;
    if let Some((key, hash)) = request {
        store::remember(&txn, &idem_scope, key, hash, row.id.as_str(), now).await?;
    }
    app.audit(
        principal,
        &row.id,
        "account.create",
        ("account", row.id.as_str()),
        None,
        Some(serde_json::json!({"name": row.name, "type": row.account_type})),
    )
    .insert(&txn)
    .await?;
    store::append_policy(
        &txn,
        now,
        vec![settings_entry(&row), membership_entry(&owner)],
    )
    .await?;
    txn.commit().await?;
    app.policy_committed(&row.id);
    Ok(Created {
        account: row,
        owner,
        fresh: true,
    })
}

/// UpdateAccount: `change` edits the profile as stored under the account's
/// lock (it validates too); the account afterwards.
pub(crate) async fn update_account(
    app: &App,
    principal: &Principal,
    account_id: &AccountId,
    change: impl FnOnce(&mut AccountRow) -> Result<(), Error>,
) -> Result<AccountRow, Error> {
    let txn = store::begin(&app.db).await?;
    store::lock_account(&txn, account_id).await?;
    let before = AccountRow::load(&txn, account_id)
        .await?
        .ok_or(AccountError::AccountNotFound)?;
    let mut row = before.clone();
    change(&mut row)?;
    row.update_time = app.now();
    row.update(&txn).await?;
    let snapshot = |a: &AccountRow| {
        serde_json::json!({
            "type": a.account_type, "name": a.name, "legal_name": a.legal_name,
            "country_code": a.country_code, "vat_number": a.vat_number,
            "registration_number": a.registration_number,
            "address": serde_json::from_str::<serde_json::Value>(&a.address_json).unwrap_or_default(),
        })
    };
    app.audit(
        principal,
        &row.id,
        "account.update",
        ("account", row.id.as_str()),
        Some(snapshot(&before)),
        Some(snapshot(&row)),
    )
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(row)
}

/// The personal 2FA deadline of a member joining `account` at `join_time`
/// (none unless it enforces 2FA).
pub(crate) fn join_deadline(account: &AccountRow, join_time: i64) -> Option<i64> {
    account.enforce_mfa.then(|| {
        mfa::deadline(
            account.enforce_mfa_time.unwrap_or(join_time),
            join_time,
            account.mfa_grace_ms,
        )
    })
}
