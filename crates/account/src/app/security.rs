//! Security settings and support access: UpdateSecuritySettings,
//! GrantSupportAccess, RevokeSupportAccess. Each is one transaction on the
//! locked account, with its audit event (and, for settings, the policy-log
//! entries gateways enforce).

use tenancy_runtime::Error;
use tenancy_runtime::ids::new_id;

use super::App;
use super::members::Actor;
use super::policy::{allowlist_of, membership_entry, settings_entry};
use crate::domain::AccountError;
use crate::domain::mfa::{self, DeadlineChange};
use crate::store::{self, AccountRow, SupportGrantRow};

/// The settings a request changes (`None`: left as they are).
#[derive(Debug, Default)]
pub(crate) struct SettingsChange {
    /// Enforce 2FA.
    pub(crate) enforce_mfa: Option<bool>,
    /// The grace period, milliseconds.
    pub(crate) grace_ms: Option<i64>,
    /// The allowlist, as stored (normalised CIDRs).
    pub(crate) allowlist: Option<Vec<String>>,
    /// The default delivery of new servers' root passwords
    /// (`ServerCredentialDelivery` code: NONE, EMAIL or SMS).
    pub(crate) credential_delivery: Option<i32>,
}

/// UpdateSecuritySettings: the account's settings afterwards.
pub(crate) async fn update_settings(
    app: &App,
    actor: &Actor<'_>,
    change: SettingsChange,
) -> Result<AccountRow, Error> {
    let now = app.now();
    let account = &actor.account_id;
    let txn = store::begin(&app.db).await?;
    store::lock_account(&txn, account).await?;
    let before = AccountRow::load(&txn, account)
        .await?
        .ok_or(AccountError::AccountNotFound)?;
    let mut row = before.clone();
    if let Some(enforce) = change.enforce_mfa {
        row.enforce_mfa = enforce;
    }
    if let Some(grace) = change.grace_ms {
        row.mfa_grace_ms = grace;
    }
    if let Some(list) = &change.allowlist {
        row.ip_allowlist_json = serde_json::to_string(list).map_err(Error::internal)?;
    }
    if let Some(delivery) = change.credential_delivery {
        row.server_credential_delivery = delivery;
    }
    let deadlines = mfa::on_save(
        (before.enforce_mfa, before.mfa_grace_ms),
        (row.enforce_mfa, row.mfa_grace_ms),
    );
    match deadlines {
        DeadlineChange::Start => {
            row.enforce_mfa_time = Some(now);
            store::set_mfa_deadlines(&txn, account, now, row.mfa_grace_ms, false).await?;
        }
        DeadlineChange::Resave => {
            let start = row.enforce_mfa_time.unwrap_or(now);
            store::set_mfa_deadlines(&txn, account, start, row.mfa_grace_ms, true).await?;
        }
        DeadlineChange::Clear => {
            row.enforce_mfa_time = None;
            store::clear_mfa_deadlines(&txn, account).await?;
        }
        DeadlineChange::Keep => {}
    }
    row.security_update_time = Some(now);
    row.security_update_user = actor.user_id.to_string();
    row.update(&txn).await?;
    let snap = |a: &AccountRow| {
        serde_json::json!({
            "enforce_mfa": a.enforce_mfa,
            "mfa_grace_period_seconds": a.mfa_grace_ms / 1000,
            "ip_allowlist": allowlist_of(a),
            "server_credential_delivery": a.server_credential_delivery,
        })
    };
    app.audit(
        actor.principal,
        account,
        "security_settings.update",
        ("account", ""),
        Some(snap(&before)),
        Some(snap(&row)),
    )
    .insert(&txn)
    .await?;
    let mut entries = vec![settings_entry(&row)];
    if deadlines.moves_deadlines() {
        // Personal deadlines moved: gateways enforce each member's own.
        for member in store::current_members(&txn, account).await? {
            entries.push(membership_entry(&member));
        }
    }
    store::append_policy(&txn, now, entries).await?;
    txn.commit().await?;
    app.policy_committed(account);
    Ok(row)
}

/// GrantSupportAccess: ends the grant in effect, if any, and records a new
/// one until `expire_time`.
pub(crate) async fn grant_support_access(
    app: &App,
    actor: &Actor<'_>,
    expire_time: i64,
    note: String,
) -> Result<SupportGrantRow, Error> {
    let now = app.now();
    let account = &actor.account_id;
    let grant = SupportGrantRow {
        id: new_id(),
        account_id: account.to_string(),
        granted_by: actor.user_id.to_string(),
        create_time: now,
        expire_time,
        note,
        revoke_time: None,
        revoked_by: String::new(),
    };
    let txn = store::begin(&app.db).await?;
    store::lock_account(&txn, account).await?;
    store::revoke_support_grants(&txn, account, now, &actor.user_id).await?;
    store::insert_support_grant(&txn, &grant).await?;
    app.audit(
        actor.principal,
        account,
        "support_access.grant",
        ("support_access", &grant.id),
        None,
        Some(serde_json::json!({"expire_time_ms": expire_time, "note": grant.note})),
    )
    .insert(&txn)
    .await?;
    let grant = store::support_grant(&txn, &grant.id)
        .await?
        .ok_or_else(|| Error::internal("grant missing"))?;
    txn.commit().await?;
    Ok(grant)
}

/// RevokeSupportAccess: the grant it ended, or `None` when none was in
/// effect.
pub(crate) async fn revoke_support_access(
    app: &App,
    actor: &Actor<'_>,
) -> Result<Option<SupportGrantRow>, Error> {
    let now = app.now();
    let account = &actor.account_id;
    let txn = store::begin(&app.db).await?;
    store::lock_account(&txn, account).await?;
    let Some(active) = store::active_support_grant(&txn, account, now).await? else {
        txn.commit().await?;
        return Ok(None);
    };
    store::revoke_support_grant(&txn, &active.id, now, &actor.user_id).await?;
    app.audit(
        actor.principal,
        account,
        "support_access.revoke",
        ("support_access", &active.id),
        None,
        None,
    )
    .insert(&txn)
    .await?;
    let grant = store::support_grant(&txn, &active.id)
        .await?
        .ok_or_else(|| Error::internal("grant missing"))?;
    txn.commit().await?;
    Ok(Some(grant))
}
