//! Contacts: the primary-contact invariant, verification tokens and the
//! verification message, each change in one transaction.
#![allow(missing_docs)]

use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbBackend, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use tenancy_runtime::db;
use tenancy_runtime::ids::{AccountId, ContactId};
use tenancy_runtime::{Error, Timestamp};

use super::entities::contact;
use crate::domain::ContactsError;
use crate::domain::contact::{self as rules, Contact, Resends};
use crate::domain::routing::Role;

/// A contact's editable fields.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    /// Display name.
    pub name: String,
    /// Address as entered (trimmed).
    pub email: String,
    /// E.164 or empty.
    pub phone: String,
    /// Notes.
    pub notes: String,
    /// Roles other than PRIMARY.
    pub roles: Vec<Role>,
}

/// The roles of a stored contact, in enum order.
fn roles_of(c: &contact::Model) -> Vec<Role> {
    let mut roles = Vec::new();
    if c.is_primary {
        roles.push(Role::Primary);
    }
    for (on, role) in [
        (c.role_billing, Role::Billing),
        (c.role_technical, Role::Technical),
        (c.role_emergency, Role::Emergency),
        (c.role_abuse, Role::Abuse),
    ] {
        if on {
            roles.push(role);
        }
    }
    roles
}

/// A stored contact as the domain sees it.
fn contact_of(m: contact::Model) -> Contact {
    let roles = roles_of(&m);
    Contact {
        id: ContactId::trusted(m.id),
        account_id: AccountId::trusted(m.account_id),
        name: m.name,
        email: m.email,
        email_verified: m.email_verified,
        email_verified_at: m.email_verified_at,
        verification_sent_at: m.verification_sent_at,
        verification_expires_at: m.verification_expires_at,
        phone: m.phone,
        notes: m.notes,
        roles,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

fn set_roles(a: &mut contact::ActiveModel, roles: &[Role]) {
    a.role_billing = Set(roles.contains(&Role::Billing));
    a.role_technical = Set(roles.contains(&Role::Technical));
    a.role_emergency = Set(roles.contains(&Role::Emergency));
    a.role_abuse = Set(roles.contains(&Role::Abuse));
}

fn email_taken() -> Error {
    ContactsError::ContactEmailTaken.into()
}

/// Locks the account's contacts for the rest of `txn`, so the checks of the
/// primary-contact rule and the contact limit cannot race: an advisory lock
/// on PostgreSQL; on SQLite a no-op write that takes the database's write
/// lock at once (a read-then-write transaction would fail with "database is
/// locked" when another writer committed in between).
async fn lock_account(txn: &DatabaseTransaction, account: &AccountId) -> Result<(), Error> {
    match txn.get_database_backend() {
        DbBackend::Sqlite => {
            db::exec(txn, "UPDATE contact SET id = id WHERE 1 = 0", Vec::new()).await?;
        }
        _ => {
            db::exec(
                txn,
                "SELECT pg_advisory_xact_lock(hashtext($1))",
                vec![format!("contacts:{account}").into()],
            )
            .await?;
        }
    }
    Ok(())
}

/// Begins a write transaction (immediate on SQLite so two writers never
/// deadlock upgrading read locks).
pub async fn begin(db: &DatabaseConnection) -> Result<DatabaseTransaction, Error> {
    Ok(tenancy_runtime::db::begin(db).await?)
}

/// One contact of `account`.
pub async fn get<C: ConnectionTrait>(
    db: &C,
    account: &AccountId,
    id: &ContactId,
) -> Result<Contact, Error> {
    row(db, account, id).await.map(contact_of)
}

/// The row of one contact of `account`.
async fn row<C: ConnectionTrait>(
    db: &C,
    account: &AccountId,
    id: &ContactId,
) -> Result<contact::Model, Error> {
    contact::Entity::find_by_id(id.as_str())
        .filter(contact::Column::AccountId.eq(account.as_str()))
        .one(db)
        .await?
        .ok_or_else(|| ContactsError::ContactNotFound.into())
}

/// A new verification token's hash and expiry, set on `a`.
fn new_verification(a: &mut contact::ActiveModel, token_hash: &str, now: Timestamp) {
    a.email_verified = Set(false);
    a.email_verified_at = Set(None);
    a.verification_token_hash = Set(Some(token_hash.to_owned()));
    a.verification_sent_at = Set(Some(now.millis()));
    a.verification_expires_at = Set(Some(now.plus(rules::VERIFICATION_LIFETIME).millis()));
}

/// Creates a contact in `txn` (the first of the account becomes primary);
/// the caller queues the verification message in the same transaction.
/// Returns `(contact, created)`: `created` is false for a repeat of
/// `request_id`.
pub async fn create(
    txn: &DatabaseTransaction,
    account: &AccountId,
    fields: &Fields,
    wants_primary: bool,
    request_id: Option<&str>,
    token_hash: &str,
    now: Timestamp,
) -> Result<(Contact, bool), Error> {
    lock_account(txn, account).await?;
    if let Some(request_id) = request_id {
        let earlier = contact::Entity::find()
            .filter(contact::Column::AccountId.eq(account.as_str()))
            .filter(contact::Column::RequestId.eq(request_id))
            .filter(
                contact::Column::CreatedAt
                    .gte(now.millis() - rules::REQUEST_ID_WINDOW.as_millis() as i64),
            )
            .one(txn)
            .await?;
        if let Some(c) = earlier {
            return Ok((contact_of(c), false));
        }
    }
    let count = contact::Entity::find()
        .filter(contact::Column::AccountId.eq(account.as_str()))
        .count(txn)
        .await?;
    let has_primary = contact::Entity::find()
        .filter(contact::Column::AccountId.eq(account.as_str()))
        .filter(contact::Column::IsPrimary.eq(true))
        .count(txn)
        .await?
        > 0;
    rules::check_new(count, has_primary, wants_primary)?;
    let norm = crate::domain::email::normalize(&fields.email);
    let taken = contact::Entity::find()
        .filter(contact::Column::AccountId.eq(account.as_str()))
        .filter(contact::Column::EmailNorm.eq(norm.as_str()))
        .count(txn)
        .await?;
    if taken > 0 {
        return Err(email_taken());
    }
    let mut a = contact::ActiveModel {
        id: Set(ContactId::new().into_string()),
        account_id: Set(account.to_string()),
        name: Set(fields.name.clone()),
        email: Set(fields.email.clone()),
        email_norm: Set(norm),
        resend_window_start: Set(Some(now.millis())),
        resend_count: Set(1),
        phone: Set(fields.phone.clone()),
        notes: Set(fields.notes.clone()),
        is_primary: Set(!has_primary),
        request_id: Set(request_id.map(str::to_owned)),
        created_at: Set(now.millis()),
        updated_at: Set(now.millis()),
        ..Default::default()
    };
    set_roles(&mut a, &fields.roles);
    new_verification(&mut a, token_hash, now);
    let model = a.insert(txn).await.map_err(|e| {
        if tenancy_runtime::db::is_unique_violation(&e) {
            email_taken()
        } else {
            e.into()
        }
    })?;
    Ok((contact_of(model), true))
}

/// What an update changes.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub notes: Option<String>,
    /// The full new role list (may include PRIMARY).
    pub roles: Option<Vec<Role>>,
}

/// Applies `changes` in `txn`; `token_hash` is used when the email changes
/// (the caller then queues a verification message). Returns the contact and
/// whether the email changed.
pub async fn update(
    txn: &DatabaseTransaction,
    account: &AccountId,
    id: &ContactId,
    changes: &Changes,
    token_hash: &str,
    now: Timestamp,
) -> Result<(Contact, bool), Error> {
    lock_account(txn, account).await?;
    let current = row(txn, account, id).await?;
    let mut a = current.clone().into_active_model();
    if let Some(roles) = &changes.roles {
        rules::check_roles_change(current.is_primary, roles.contains(&Role::Primary))?;
        set_roles(&mut a, roles);
    }
    if let Some(name) = &changes.name {
        a.name = Set(name.clone());
    }
    if let Some(phone) = &changes.phone {
        a.phone = Set(phone.clone());
    }
    if let Some(notes) = &changes.notes {
        a.notes = Set(notes.clone());
    }
    let mut email_changed = false;
    if let Some(email) = &changes.email {
        let norm = crate::domain::email::normalize(email);
        if *email != current.email {
            a.email = Set(email.clone());
        }
        if norm != current.email_norm {
            let taken = contact::Entity::find()
                .filter(contact::Column::AccountId.eq(account.as_str()))
                .filter(contact::Column::EmailNorm.eq(norm.as_str()))
                .filter(contact::Column::Id.ne(id.as_str()))
                .count(txn)
                .await?;
            if taken > 0 {
                return Err(email_taken());
            }
            a.email_norm = Set(norm);
            new_verification(&mut a, token_hash, now);
            a.resend_window_start = Set(Some(now.millis()));
            a.resend_count = Set(1);
            email_changed = true;
        }
    }
    a.updated_at = Set(now.millis());
    let model = a.update(txn).await.map_err(|e| {
        if tenancy_runtime::db::is_unique_violation(&e) {
            email_taken()
        } else {
            e.into()
        }
    })?;
    Ok((contact_of(model), email_changed))
}

/// Deletes a contact; the primary only when it is the last.
pub async fn delete(
    db: &DatabaseConnection,
    account: &AccountId,
    id: &ContactId,
) -> Result<(), Error> {
    let txn = tenancy_runtime::db::begin(db).await?;
    lock_account(&txn, account).await?;
    let current = row(&txn, account, id).await?;
    if current.is_primary {
        let others = contact::Entity::find()
            .filter(contact::Column::AccountId.eq(account.as_str()))
            .filter(contact::Column::Id.ne(id.as_str()))
            .count(&txn)
            .await?;
        rules::check_delete(current.is_primary, others)?;
    }
    contact::Entity::delete_by_id(id.as_str())
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(())
}

/// Makes `id` the primary contact atomically; returns it and the previous
/// primary (if it changed).
pub async fn set_primary(
    db: &DatabaseConnection,
    account: &AccountId,
    id: &ContactId,
    now: Timestamp,
) -> Result<(Contact, Option<Contact>), Error> {
    let txn = tenancy_runtime::db::begin(db).await?;
    lock_account(&txn, account).await?;
    let target = row(&txn, account, id).await?;
    if target.is_primary {
        return Ok((contact_of(target), None));
    }
    rules::check_new_primary(target.email_verified)?;
    let previous = contact::Entity::find()
        .filter(contact::Column::AccountId.eq(account.as_str()))
        .filter(contact::Column::IsPrimary.eq(true))
        .one(&txn)
        .await?;
    let previous = match previous {
        Some(p) => {
            let mut a = p.into_active_model();
            a.is_primary = Set(false);
            a.updated_at = Set(now.millis());
            Some(a.update(&txn).await?)
        }
        None => None,
    };
    let mut a = target.into_active_model();
    a.is_primary = Set(true);
    a.updated_at = Set(now.millis());
    let target = a.update(&txn).await?;
    txn.commit().await?;
    Ok((contact_of(target), previous.map(contact_of)))
}

/// Renews the verification token of an unverified contact, within the
/// resend limits.
pub async fn renew_verification(
    txn: &DatabaseTransaction,
    account: &AccountId,
    id: &ContactId,
    token_hash: &str,
    now: Timestamp,
) -> Result<Contact, Error> {
    lock_account(txn, account).await?;
    let current = row(txn, account, id).await?;
    let after = rules::resend(
        current.email_verified,
        Resends {
            last_sent: current.verification_sent_at.map(Timestamp),
            window_start: current.resend_window_start.map(Timestamp),
            count: current.resend_count,
        },
        now,
    )?;
    let mut a = current.into_active_model();
    new_verification(&mut a, token_hash, now);
    a.resend_window_start = Set(after.window_start.map(Timestamp::millis));
    a.resend_count = Set(after.count);
    a.updated_at = Set(now.millis());
    Ok(contact_of(a.update(txn).await?))
}

/// The outcome of following a verification link.
pub enum Verified {
    /// Verified now.
    Now(Contact),
    /// Was already verified with this link.
    Already(Contact),
}

/// Verifies the contact whose current token hashes to `token_hash`.
pub async fn verify(
    db: &DatabaseConnection,
    token_hash: &str,
    now: Timestamp,
) -> Result<Verified, Error> {
    let invalid = || Error::from(ContactsError::VerificationTokenInvalid);
    let txn = tenancy_runtime::db::begin(db).await?;
    if txn.get_database_backend() == DbBackend::Sqlite {
        db::exec(&txn, "UPDATE contact SET id = id WHERE 1 = 0", Vec::new()).await?;
    }
    let current = contact::Entity::find()
        .filter(contact::Column::VerificationTokenHash.eq(token_hash))
        .one(&txn)
        .await?
        .ok_or_else(invalid)?;
    if current.email_verified {
        return Ok(Verified::Already(contact_of(current)));
    }
    rules::check_token_fresh(current.verification_expires_at.map(Timestamp), now)?;
    let result = contact::Entity::update_many()
        .col_expr(contact::Column::EmailVerified, true.into())
        .col_expr(contact::Column::EmailVerifiedAt, now.millis().into())
        .col_expr(contact::Column::UpdatedAt, now.millis().into())
        .filter(contact::Column::Id.eq(current.id.as_str()))
        .filter(contact::Column::VerificationTokenHash.eq(token_hash))
        .exec(&txn)
        .await?;
    if result.rows_affected != 1 {
        return Err(invalid());
    }
    let model = get(
        &txn,
        &AccountId::trusted(current.account_id),
        &ContactId::trusted(current.id),
    )
    .await?;
    txn.commit().await?;
    Ok(Verified::Now(model))
}

/// Filters of [`list`].
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub role: Option<Role>,
    pub email_verified: Option<bool>,
}

fn list_condition(account: &AccountId, filter: &ListFilter) -> Condition {
    let mut cond = Condition::all().add(contact::Column::AccountId.eq(account.as_str()));
    if let Some(role) = filter.role {
        let col = match role {
            Role::Primary => contact::Column::IsPrimary,
            Role::Billing => contact::Column::RoleBilling,
            Role::Technical => contact::Column::RoleTechnical,
            Role::Emergency => contact::Column::RoleEmergency,
            Role::Abuse => contact::Column::RoleAbuse,
        };
        cond = cond.add(col.eq(true));
    }
    if let Some(v) = filter.email_verified {
        cond = cond.add(contact::Column::EmailVerified.eq(v));
    }
    cond
}

/// A page of contacts (primary first, then by creation) and the total.
pub async fn list(
    db: &DatabaseConnection,
    account: &AccountId,
    filter: &ListFilter,
    offset: u64,
    limit: u64,
) -> Result<(Vec<Contact>, u64), Error> {
    let total = contact::Entity::find()
        .filter(list_condition(account, filter))
        .count(db)
        .await?;
    let rows = contact::Entity::find()
        .filter(list_condition(account, filter))
        .order_by_desc(contact::Column::IsPrimary)
        .order_by_asc(contact::Column::CreatedAt)
        .order_by_asc(contact::Column::Id)
        .offset(offset)
        .limit(limit)
        .all(db)
        .await?;
    Ok((rows.into_iter().map(contact_of).collect(), total))
}

/// Every contact of `account`, for routing.
pub async fn all(db: &DatabaseConnection, account: &AccountId) -> Result<Vec<Contact>, Error> {
    Ok(contact::Entity::find()
        .filter(contact::Column::AccountId.eq(account.as_str()))
        .order_by_asc(contact::Column::CreatedAt)
        .all(db)
        .await?
        .into_iter()
        .map(contact_of)
        .collect())
}

/// Forgets verification tokens (spent or not) that expired before
/// `expired_before`; returns how many.
pub async fn prune_verification_tokens(
    db: &DatabaseConnection,
    expired_before: Timestamp,
) -> Result<u64, Error> {
    Ok(contact::Entity::update_many()
        .col_expr(
            contact::Column::VerificationTokenHash,
            Expr::value(Option::<String>::None),
        )
        .filter(contact::Column::VerificationTokenHash.is_not_null())
        .filter(contact::Column::VerificationExpiresAt.lt(expired_before.millis()))
        .exec(db)
        .await?
        .rows_affected)
}
