//! All of identity's SQL: portable (`$n` placeholders, which SQLite and
//! PostgreSQL both bind by number) through the one query helper,
//! [`tenancy_runtime::db`]. Every multi-step write runs in one transaction
//! ([`begin`]); rules that must hold under concurrency are enforced by keys
//! and conditional updates.

pub(crate) mod api_tokens;
pub(crate) mod code_words;
pub(crate) mod email_tokens;
pub(crate) mod keys;
pub(crate) mod login_events;
pub(crate) mod mfa;
pub(crate) mod networks;
pub(crate) mod revocations;
pub(crate) mod sessions;
pub(crate) mod ssh_keys;
pub(crate) mod throttle;
pub(crate) mod users;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, TransactionTrait,
};
use tenancy_runtime::db::exec;

use crate::domain::error::IdentityError;

/// Opens a write transaction. On SQLite it takes the database's write lock
/// at once (BEGIN IMMEDIATE semantics, through a no-op write), so a
/// transaction that reads before it writes cannot fail with a busy snapshot
/// when another writer (another connection or replica) commits in between;
/// writers queue instead. PostgreSQL needs nothing: its row locks and
/// constraints do the work.
pub(crate) async fn begin(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let tx = db.begin().await?;
    if tx.get_database_backend() == DbBackend::Sqlite {
        exec(
            &tx,
            "UPDATE identity_revocation_head SET position = position WHERE id = 1",
            vec![],
        )
        .await?;
    }
    Ok(tx)
}

impl From<DbErr> for IdentityError {
    fn from(error: DbErr) -> Self {
        IdentityError::Service(error.into())
    }
}
