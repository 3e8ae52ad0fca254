//! Portable SQL (SQLite and PostgreSQL both accept `$n` placeholders) and
//! row mapping. Every multi-step write runs in one transaction; rules that
//! must hold under concurrency are enforced by keys and conditional updates.

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, QueryResult,
    Statement, TransactionTrait, TryGetable, Value,
};

/// Runs a statement, returning the number of rows affected.
pub(crate) async fn exec<C: ConnectionTrait>(
    c: &C,
    sql: &str,
    values: Vec<Value>,
) -> Result<u64, DbErr> {
    let statement = Statement::from_sql_and_values(c.get_database_backend(), sql, values);
    Ok(c.execute_raw(statement).await?.rows_affected())
}

/// Runs a query, returning all rows.
pub(crate) async fn all<C: ConnectionTrait>(
    c: &C,
    sql: &str,
    values: Vec<Value>,
) -> Result<Vec<QueryResult>, DbErr> {
    let statement = Statement::from_sql_and_values(c.get_database_backend(), sql, values);
    c.query_all_raw(statement).await
}

/// Runs a query, returning the first row if any.
pub(crate) async fn one<C: ConnectionTrait>(
    c: &C,
    sql: &str,
    values: Vec<Value>,
) -> Result<Option<QueryResult>, DbErr> {
    let statement = Statement::from_sql_and_values(c.get_database_backend(), sql, values);
    c.query_one_raw(statement).await
}

/// Reads a column.
pub(crate) fn get<T: TryGetable>(row: &QueryResult, column: &str) -> Result<T, DbErr> {
    row.try_get::<T>("", column)
}

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
