//! Portable SQL (SQLite and PostgreSQL both accept `$n` placeholders) and
//! row mapping. Every multi-step write runs in one transaction; rules that
//! must hold under concurrency are enforced by keys and conditional updates.

use sea_orm::{ConnectionTrait, DbErr, QueryResult, Statement, TryGetable, Value};

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
