//! RecordAuditEvent: another service's audit event, once per idempotency
//! key.

use tenancy_runtime::Error;
use tenancy_runtime::ids::AccountId;

use super::{App, IDEMPOTENCY_WINDOW_MS, fingerprint};
use crate::domain::AccountError;
use crate::store::{self, AuditRow};

/// The idempotency scope of RecordAuditEvent.
const RECORD: &str = "record_audit_event";

/// Records `row` (of an existing account), or returns the event recorded
/// earlier under the same `request_id`.
pub(crate) async fn record_audit_event(
    app: &App,
    row: AuditRow,
    request_id: &str,
) -> Result<AuditRow, Error> {
    let now = app.now();
    let hash = fingerprint(&(
        &row.account_id,
        row.actor_kind,
        &row.actor_id,
        &row.action,
        &row.target_type,
        &row.target_id,
        &row.before,
        &row.after,
    ));
    let txn = store::begin(&app.db).await?;
    if !store::account_exists(&txn, &AccountId::trusted(row.account_id.as_str())).await? {
        return Err(AccountError::AccountNotFound.into());
    }
    if !request_id.is_empty()
        && let Some(id) =
            store::idempotent(&txn, RECORD, request_id, &hash, now - IDEMPOTENCY_WINDOW_MS).await?
    {
        let existing = store::audit_event(&txn, &id)
            .await?
            .ok_or_else(|| Error::internal("remembered audit event missing"))?;
        txn.commit().await?;
        return Ok(existing);
    }
    row.insert(&txn).await?;
    if !request_id.is_empty() {
        store::remember(&txn, RECORD, request_id, &hash, &row.id, now).await?;
    }
    txn.commit().await?;
    Ok(row)
}
