//! The service catalogue: RegisterService, UpdateService, DeleteService.
//! Each is one transaction on the locked account that writes the service,
//! its audit event and an ACCESS_CHANGED policy-log entry (the access
//! caches of every replica follow it).

use tenancy_runtime::ids::ServiceId;
use tenancy_runtime::{Error, Principal};

use super::policy::access_entry;
use super::{App, IDEMPOTENCY_WINDOW_MS};
use crate::domain::AccountError;
use crate::store::{self, ServiceRow};

/// The idempotency scope of RegisterService.
const REGISTER: &str = "register_service";

/// RegisterService: the new service, or the one registered earlier under
/// the same `request_id` (with the same `request_hash`).
pub(crate) async fn register_service(
    app: &App,
    principal: &Principal,
    row: ServiceRow,
    request: Option<(&str, &str)>,
) -> Result<ServiceRow, Error> {
    let now = row.create_time;
    let txn = store::begin(&app.db).await?;
    if !store::lock_account(&txn, &row.account_id).await? {
        return Err(AccountError::AccountNotFound.into());
    }
    if let Some((key, hash)) = request
        && let Some(id) =
            store::idempotent(&txn, REGISTER, key, hash, now - IDEMPOTENCY_WINDOW_MS).await?
    {
        txn.commit().await?;
        return ServiceRow::load(&app.db, &ServiceId::trusted(id))
            .await?
            .ok_or_else(|| AccountError::ServiceNotFound.into());
    }
    if let Err(e) = row.save(&txn, true).await {
        drop(txn);
        // A unique violation of (account_id, external_id) is the only
        // expected failure here.
        if e.code() == tonic::Code::Internal
            && let Some(external_id) = &row.external_id
        {
            return Err(external_id_in_use(app, &row, external_id).await);
        }
        return Err(e);
    }
    if let Some((key, hash)) = request {
        store::remember(&txn, REGISTER, key, hash, row.id.as_str(), now).await?;
    }
    app.audit(
        principal,
        &row.account_id,
        "service.register",
        ("service", row.id.as_str()),
        None,
        Some(serde_json::json!({"kind": row.kind, "name": row.name, "tags": row.tags})),
    )
    .insert(&txn)
    .await?;
    store::append_policy(&txn, now, vec![access_entry(&row.account_id)]).await?;
    txn.commit().await?;
    app.policy_committed(&row.account_id);
    Ok(row)
}

/// UpdateService: `change` edits the service as stored under the account's
/// lock (it validates too); the service afterwards.
pub(crate) async fn update_service(
    app: &App,
    principal: &Principal,
    id: &ServiceId,
    change: impl FnOnce(&mut ServiceRow) -> Result<(), Error>,
) -> Result<ServiceRow, Error> {
    let found = ServiceRow::load(&app.db, id)
        .await?
        .ok_or(AccountError::ServiceNotFound)?;
    let txn = store::begin(&app.db).await?;
    store::lock_account(&txn, &found.account_id).await?;
    let before = ServiceRow::load(&txn, id)
        .await?
        .ok_or(AccountError::ServiceNotFound)?;
    let mut row = before.clone();
    change(&mut row)?;
    row.update_time = app.now();
    if let Err(e) = row.save(&txn, false).await {
        drop(txn);
        if let Some(external_id) = &row.external_id
            && row.external_id != before.external_id
        {
            return Err(external_id_in_use(app, &row, external_id).await);
        }
        return Err(e);
    }
    let snap = |r: &ServiceRow| serde_json::json!({"kind": r.kind, "name": r.name, "tags": r.tags, "external_id": r.external_id});
    app.audit(
        principal,
        &row.account_id,
        "service.update",
        ("service", row.id.as_str()),
        Some(snap(&before)),
        Some(snap(&row)),
    )
    .insert(&txn)
    .await?;
    store::append_policy(&txn, row.update_time, vec![access_entry(&row.account_id)]).await?;
    txn.commit().await?;
    app.policy_committed(&row.account_id);
    Ok(row)
}

/// DeleteService, with the grants naming the service.
pub(crate) async fn delete_service(
    app: &App,
    principal: &Principal,
    id: &ServiceId,
) -> Result<(), Error> {
    let row = ServiceRow::load(&app.db, id)
        .await?
        .ok_or(AccountError::ServiceNotFound)?;
    let txn = store::begin(&app.db).await?;
    store::lock_account(&txn, &row.account_id).await?;
    if !store::delete_service(&txn, &row.account_id, id).await? {
        return Err(AccountError::ServiceNotFound.into());
    }
    app.audit(
        principal,
        &row.account_id,
        "service.delete",
        ("service", row.id.as_str()),
        Some(serde_json::json!({"kind": row.kind, "name": row.name})),
        None,
    )
    .insert(&txn)
    .await?;
    store::append_policy(&txn, app.now(), vec![access_entry(&row.account_id)]).await?;
    txn.commit().await?;
    app.policy_committed(&row.account_id);
    Ok(())
}

/// EXTERNAL_ID_IN_USE naming the service that holds `external_id` (read
/// after the failed transaction; empty if it went away meanwhile).
async fn external_id_in_use(app: &App, row: &ServiceRow, external_id: &str) -> Error {
    let service_id = store::service_with_external_id(&app.db, &row.account_id, external_id)
        .await
        .ok()
        .flatten();
    AccountError::ExternalIdInUse { service_id }.into()
}
