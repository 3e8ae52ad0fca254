//! All of identity's SQL: portable (`$n` placeholders, which SQLite and
//! PostgreSQL both bind by number) through the one query helper,
//! [`tenancy_runtime::db`]. Every multi-step write runs in one transaction
//! ([`begin`]); rules that must hold under concurrency are enforced by keys
//! and conditional updates.

pub(crate) mod admin_audit;
pub(crate) mod api_tokens;
pub(crate) mod code_words;
pub(crate) mod email_tokens;
pub(crate) mod keys;
pub(crate) mod login_events;
pub(crate) mod mail_quota;
pub(crate) mod mfa;
pub(crate) mod networks;
pub(crate) mod passkeys;
pub(crate) mod phones;
pub(crate) mod prune;
pub(crate) mod revocations;
pub(crate) mod sessions;
pub(crate) mod ssh_keys;
pub(crate) mod throttle;
pub(crate) mod users;

use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};

use crate::domain::error::IdentityError;

/// Opens a write transaction ([`tenancy_runtime::db::begin`]: the write
/// lock at once on SQLite, so a transaction that reads before it writes
/// never fails with a busy snapshot).
pub(crate) async fn begin(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    tenancy_runtime::db::begin(db).await
}

impl From<DbErr> for IdentityError {
    fn from(error: DbErr) -> Self {
        IdentityError::Service(error.into())
    }
}

/// Scratch tables for the tests proving that SQL filters agree with the
/// domain rules they pre-compute.
#[cfg(test)]
pub(crate) mod scratch {
    use sea_orm::{DatabaseTransaction, TransactionTrait, Value};
    use tenancy_runtime::db::{all, connect, exec, get};

    /// A table `t (id, columns…)` of BIGINT (NULL for `None`) in a fresh
    /// in-memory SQLite database, row `i` with id `i`.
    pub(crate) struct Table {
        // One connection throughout: each in-memory connection is its own
        // database.
        tx: DatabaseTransaction,
    }

    impl Table {
        /// Creates the table and fills it with `rows`.
        pub(crate) async fn new(columns: &[&str], rows: &[Vec<Option<i64>>]) -> Self {
            let pool = connect("sqlite::memory:", "test").await.unwrap();
            let tx = pool.begin().await.unwrap();
            let defs: Vec<String> = columns.iter().map(|c| format!("{c} BIGINT")).collect();
            let sql = format!(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, {})",
                defs.join(", ")
            );
            exec(&tx, &sql, vec![]).await.unwrap();
            let marks: Vec<String> = (2..=columns.len() + 1).map(|i| format!("${i}")).collect();
            let insert = format!(
                "INSERT INTO t (id, {}) VALUES ($1, {})",
                columns.join(", "),
                marks.join(", ")
            );
            for (id, row) in rows.iter().enumerate() {
                let mut values: Vec<Value> = vec![i64::try_from(id).unwrap().into()];
                values.extend(row.iter().map(|v| Value::from(*v)));
                exec(&tx, &insert, values).await.unwrap();
            }
            Self { tx }
        }

        /// The ids of the rows `condition` selects, in order.
        pub(crate) async fn selected(&self, condition: &str, values: Vec<Value>) -> Vec<usize> {
            let sql = format!("SELECT id FROM t WHERE {condition} ORDER BY id");
            all(&self.tx, &sql, values)
                .await
                .unwrap()
                .iter()
                .map(|r| usize::try_from(get::<i64>(r, "id").unwrap()).unwrap())
                .collect()
        }
    }
}
