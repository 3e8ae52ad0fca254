//! Contacts: the primary-contact invariant, verification tokens and the
//! verification message, each change in one transaction.
#![allow(missing_docs)]

use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbBackend, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use tenancy_runtime::{Error, Reason, Timestamp};

use super::entities::contact;
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
pub fn roles_of(c: &contact::Model) -> Vec<Role> {
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

fn set_roles(a: &mut contact::ActiveModel, roles: &[Role]) {
    a.role_billing = Set(roles.contains(&Role::Billing));
    a.role_technical = Set(roles.contains(&Role::Technical));
    a.role_emergency = Set(roles.contains(&Role::Emergency));
    a.role_abuse = Set(roles.contains(&Role::Abuse));
}

/// The not-found error of every contact method.
pub fn not_found() -> Error {
    Error::new(Reason::ContactNotFound, "contact not found")
}

fn email_taken() -> Error {
    Error::new(
        Reason::ContactEmailTaken,
        "another contact of the account has this email",
    )
}

/// Locks the account's contacts for the rest of `txn`, so the checks of the
/// primary-contact rule and the contact limit cannot race: an advisory lock
/// on PostgreSQL; on SQLite a no-op write that takes the database's write
/// lock at once (a read-then-write transaction would fail with "database is
/// locked" when another writer committed in between).
async fn lock_account(txn: &DatabaseTransaction, account: &str) -> Result<(), Error> {
    if txn.get_database_backend() == DbBackend::Sqlite {
        txn.execute_unprepared("UPDATE contact SET id = id WHERE 1 = 0")
            .await?;
    }
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_raw(sea_orm::Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            [format!("contacts:{account}").into()],
        ))
        .await?;
    }
    Ok(())
}

/// Begins a write transaction (immediate on SQLite so two writers never
/// deadlock upgrading read locks).
pub async fn begin(db: &DatabaseConnection) -> Result<DatabaseTransaction, Error> {
    Ok(db.begin().await?)
}

/// One contact of `account`.
pub async fn get<C: ConnectionTrait>(
    db: &C,
    account: &str,
    id: &str,
) -> Result<contact::Model, Error> {
    contact::Entity::find_by_id(id.to_owned())
        .filter(contact::Column::AccountId.eq(account))
        .one(db)
        .await?
        .ok_or_else(not_found)
}

/// A new verification token's hash and expiry, set on `a`.
fn new_verification(a: &mut contact::ActiveModel, token_hash: &str, now: Timestamp) {
    a.email_verified = Set(false);
    a.email_verified_at = Set(None);
    a.verification_token_hash = Set(Some(token_hash.to_owned()));
    a.verification_sent_at = Set(Some(now.millis()));
    a.verification_expires_at = Set(Some(
        now.plus(crate::domain::contact::VERIFICATION_LIFETIME)
            .millis(),
    ));
}

/// Creates a contact in `txn` (the first of the account becomes primary);
/// the caller queues the verification message in the same transaction.
/// Returns `(contact, created)`: `created` is false for a repeat of
/// `request_id`.
pub async fn create(
    txn: &DatabaseTransaction,
    account: &str,
    fields: &Fields,
    wants_primary: bool,
    request_id: Option<&str>,
    token_hash: &str,
    now: Timestamp,
) -> Result<(contact::Model, bool), Error> {
    lock_account(txn, account).await?;
    if let Some(request_id) = request_id {
        let earlier = contact::Entity::find()
            .filter(contact::Column::AccountId.eq(account))
            .filter(contact::Column::RequestId.eq(request_id))
            .filter(contact::Column::CreatedAt.gte(now.millis() - 24 * 3600 * 1000))
            .one(txn)
            .await?;
        if let Some(c) = earlier {
            return Ok((c, false));
        }
    }
    let count = contact::Entity::find()
        .filter(contact::Column::AccountId.eq(account))
        .count(txn)
        .await?;
    if count >= crate::domain::contact::MAX_CONTACTS {
        return Err(Error::new(
            Reason::ContactLimitReached,
            "an account has at most 100 contacts",
        ));
    }
    let has_primary = contact::Entity::find()
        .filter(contact::Column::AccountId.eq(account))
        .filter(contact::Column::IsPrimary.eq(true))
        .count(txn)
        .await?
        > 0;
    if wants_primary && has_primary {
        return Err(Error::new(
            Reason::PrimaryChangeRequiresSetPrimary,
            "the account has a primary contact: use SetPrimaryContact",
        ));
    }
    let norm = crate::domain::email::normalize(&fields.email);
    let taken = contact::Entity::find()
        .filter(contact::Column::AccountId.eq(account))
        .filter(contact::Column::EmailNorm.eq(norm.as_str()))
        .count(txn)
        .await?;
    if taken > 0 {
        return Err(email_taken());
    }
    let mut a = contact::ActiveModel {
        id: Set(tenancy_runtime::ids::new_id()),
        account_id: Set(account.to_owned()),
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
    Ok((model, true))
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
    account: &str,
    id: &str,
    changes: &Changes,
    token_hash: &str,
    now: Timestamp,
) -> Result<(contact::Model, bool), Error> {
    lock_account(txn, account).await?;
    let current = get(txn, account, id).await?;
    let mut a = current.clone().into_active_model();
    if let Some(roles) = &changes.roles {
        let wants_primary = roles.contains(&Role::Primary);
        if current.is_primary && !wants_primary {
            return Err(Error::new(
                Reason::PrimaryContactRequired,
                "the primary contact keeps PRIMARY: make another contact primary first",
            ));
        }
        if !current.is_primary && wants_primary {
            return Err(Error::new(
                Reason::PrimaryChangeRequiresSetPrimary,
                "use SetPrimaryContact to change the primary contact",
            ));
        }
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
                .filter(contact::Column::AccountId.eq(account))
                .filter(contact::Column::EmailNorm.eq(norm.as_str()))
                .filter(contact::Column::Id.ne(id))
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
    Ok((model, email_changed))
}

/// Deletes a contact; the primary only when it is the last.
pub async fn delete(db: &DatabaseConnection, account: &str, id: &str) -> Result<(), Error> {
    let txn = db.begin().await?;
    lock_account(&txn, account).await?;
    let current = get(&txn, account, id).await?;
    if current.is_primary {
        let others = contact::Entity::find()
            .filter(contact::Column::AccountId.eq(account))
            .filter(contact::Column::Id.ne(id))
            .count(&txn)
            .await?;
        if others > 0 {
            return Err(Error::new(
                Reason::PrimaryContactRequired,
                "make another contact primary before deleting the primary contact",
            ));
        }
    }
    contact::Entity::delete_by_id(id.to_owned())
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(())
}

/// Makes `id` the primary contact atomically; returns it and the previous
/// primary (if it changed).
pub async fn set_primary(
    db: &DatabaseConnection,
    account: &str,
    id: &str,
    now: Timestamp,
) -> Result<(contact::Model, Option<contact::Model>), Error> {
    let txn = db.begin().await?;
    lock_account(&txn, account).await?;
    let target = get(&txn, account, id).await?;
    if target.is_primary {
        return Ok((target, None));
    }
    if !target.email_verified {
        return Err(Error::new(
            Reason::ContactEmailUnverified,
            "the new primary contact must have verified its email",
        ));
    }
    let previous = contact::Entity::find()
        .filter(contact::Column::AccountId.eq(account))
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
    Ok((target, previous))
}

/// Renews the verification token of an unverified contact, within the
/// resend limits.
pub async fn renew_verification(
    txn: &DatabaseTransaction,
    account: &str,
    id: &str,
    token_hash: &str,
    now: Timestamp,
) -> Result<contact::Model, Error> {
    lock_account(txn, account).await?;
    let current = get(txn, account, id).await?;
    if current.email_verified {
        return Err(Error::new(
            Reason::ContactEmailAlreadyVerified,
            "the contact's email is verified",
        ));
    }
    let interval = crate::domain::contact::RESEND_INTERVAL;
    if let Some(sent) = current.verification_sent_at {
        let next = Timestamp(sent).plus(interval);
        if now < next {
            let wait = std::time::Duration::from_millis(
                u64::try_from(next.millis() - now.millis()).unwrap_or(0),
            );
            return Err(Error::throttled(Reason::VerificationResendTooSoon, wait));
        }
    }
    let day = 24 * 3600 * 1000;
    let (window, count) = match current.resend_window_start {
        Some(start) if now.millis() - start < day => (start, current.resend_count),
        _ => (now.millis(), 0),
    };
    if count >= crate::domain::contact::RESENDS_PER_DAY {
        let wait = std::time::Duration::from_millis(
            u64::try_from(window + day - now.millis()).unwrap_or(0),
        );
        return Err(Error::throttled(Reason::VerificationResendTooSoon, wait));
    }
    let mut a = current.into_active_model();
    new_verification(&mut a, token_hash, now);
    a.resend_window_start = Set(Some(window));
    a.resend_count = Set(count + 1);
    a.updated_at = Set(now.millis());
    Ok(a.update(txn).await?)
}

/// The outcome of following a verification link.
pub enum Verified {
    /// Verified now.
    Now(contact::Model),
    /// Was already verified with this link.
    Already(contact::Model),
}

/// Verifies the contact whose current token hashes to `token_hash`.
pub async fn verify(
    db: &DatabaseConnection,
    token_hash: &str,
    now: Timestamp,
) -> Result<Verified, Error> {
    let invalid = || {
        Error::new(
            Reason::VerificationTokenInvalid,
            "this link is not valid (superseded, or the contact was deleted)",
        )
    };
    let txn = db.begin().await?;
    if txn.get_database_backend() == DbBackend::Sqlite {
        txn.execute_unprepared("UPDATE contact SET id = id WHERE 1 = 0")
            .await?;
    }
    let current = contact::Entity::find()
        .filter(contact::Column::VerificationTokenHash.eq(token_hash))
        .one(&txn)
        .await?
        .ok_or_else(invalid)?;
    if current.email_verified {
        return Ok(Verified::Already(current));
    }
    if current
        .verification_expires_at
        .is_none_or(|t| now.millis() >= t)
    {
        return Err(Error::new(
            Reason::VerificationTokenExpired,
            "this link has expired: ask the account for a new one",
        ));
    }
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
    let model = get(&txn, &current.account_id, &current.id).await?;
    txn.commit().await?;
    Ok(Verified::Now(model))
}

/// Filters of [`list`].
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub role: Option<Role>,
    pub email_verified: Option<bool>,
}

fn list_condition(account: &str, filter: &ListFilter) -> Condition {
    let mut cond = Condition::all().add(contact::Column::AccountId.eq(account));
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
    account: &str,
    filter: &ListFilter,
    offset: u64,
    limit: u64,
) -> Result<(Vec<contact::Model>, u64), Error> {
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
    Ok((rows, total))
}

/// Every contact of `account`, for routing.
pub async fn all(db: &DatabaseConnection, account: &str) -> Result<Vec<contact::Model>, Error> {
    Ok(contact::Entity::find()
        .filter(contact::Column::AccountId.eq(account))
        .order_by_asc(contact::Column::CreatedAt)
        .all(db)
        .await?)
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
