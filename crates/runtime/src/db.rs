//! Database connections through sea-orm, and migrations at start.
//!
//! Each service owns its database: a SQLite file by default, PostgreSQL in
//! production. Both are reached through the same sea-orm code; where SQL
//! differs, the service's store module says so.

use std::time::Duration;

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

use crate::config::{ConfigError, redact_url};

mod page;

/// Connects to `url`, naming `setting` in the error when that fails.
///
/// SQLite files are created with their directory; they run in WAL mode so
/// readers do not block the writer, and with `secure_delete` on every
/// connection: a deleted row's bytes are overwritten with zeros in the
/// file, not just marked free (sealed secrets in contacts' outbox, hashes
/// of spent tokens and links elsewhere; see the README, "Secrets at rest").
pub async fn connect(url: &str, setting: &str) -> Result<DatabaseConnection, ConfigError> {
    let is_sqlite = url.starts_with("sqlite:");
    let is_postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if !is_sqlite && !is_postgres {
        return Err(ConfigError::new(
            setting,
            format_args!(
                "unsupported database URL {:?}: expected sqlite://… or postgres://…",
                redact_url(url)
            ),
        ));
    }
    if is_sqlite {
        ensure_sqlite_dir(url).map_err(|e| ConfigError::new(setting, e))?;
    }
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(if is_sqlite { 8 } else { 16 })
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        // Per connection, so on every connection of the pool (a PRAGMA
        // run once through the pool reaches one connection only).
        .map_sqlx_sqlite_opts(|sqlite| {
            sqlite
                .pragma("secure_delete", "ON")
                .pragma("synchronous", "NORMAL")
        });
    let db = Database::connect(options).await.map_err(|e| {
        ConfigError::new(
            setting,
            format_args!("cannot connect to {}: {e}", redact_url(url)),
        )
    })?;
    if db.get_database_backend() == DbBackend::Sqlite {
        // WAL is a property of the database file: once is enough.
        db.execute_unprepared("PRAGMA journal_mode = WAL;")
            .await
            .map_err(|e| ConfigError::new(setting, format_args!("cannot configure SQLite: {e}")))?;
    }
    Ok(db)
}

/// Opens a write transaction: on SQLite `BEGIN IMMEDIATE`, which takes
/// the database's write lock at once (waiting for it up to the busy
/// timeout), so a transaction that reads before it writes cannot fail
/// with SQLITE_BUSY ("database is locked") when another connection or
/// replica commits in between — a deferred transaction's read snapshot
/// cannot be upgraded to a write then, and SQLite answers at once without
/// waiting. On PostgreSQL a plain `BEGIN`: its row locks and constraints
/// do the work. Every service opens its writing transactions here.
pub async fn begin(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
}

/// Runs every pending migration of `M`, one migrator at a time.
///
/// Every replica migrates at start (deploy runs `tenancy migrate` as an init
/// container of each), so several may start on one fresh database at once.
/// All of `M`'s migrations run in one transaction that first takes a lock
/// for `M` alone: on PostgreSQL a transaction-level advisory lock keyed by
/// `M`'s migration table (services sharing a database do not wait for each
/// other), on SQLite the database's write lock (`BEGIN IMMEDIATE`). The
/// next migrator waits, then finds nothing pending. A failed migration
/// rolls back every step of this run.
pub async fn migrate<M: MigratorTrait>(
    db: &DatabaseConnection,
    setting: &str,
) -> Result<(), ConfigError> {
    let failed =
        |e: sea_orm::DbErr| ConfigError::new(setting, format_args!("migration failed: {e}"));
    // SQLite gives up waiting for its write lock after its busy timeout
    // (5 s); another migrator may hold it longer on a loaded machine.
    let deadline = std::time::Instant::now() + MIGRATION_LOCK_WAIT;
    let txn = loop {
        let begun = db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await;
        match begun {
            Ok(txn) => break txn,
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(failed(e)),
        }
    };
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtext('tenancy migrations'), hashtext($1))",
            [M::migration_table_name().to_string().into()],
        ))
        .await
        .map_err(failed)?;
    }
    M::up(&txn, None).await.map_err(failed)?;
    txn.commit().await.map_err(failed)
}

/// How long a migrator waits for another one on SQLite before it fails.
const MIGRATION_LOCK_WAIT: Duration = Duration::from_secs(120);

/// Whether SQLite refused a lock after its busy timeout (`SQLITE_BUSY`).
fn is_busy(error: &sea_orm::DbErr) -> bool {
    error.to_string().contains("database is locked")
}

/// Connects and migrates: what every service does at start.
pub async fn open<M: MigratorTrait>(
    url: &str,
    setting: &str,
) -> Result<DatabaseConnection, ConfigError> {
    let db = connect(url, setting).await?;
    migrate::<M>(&db, setting).await?;
    Ok(db)
}

fn ensure_sqlite_dir(url: &str) -> std::io::Result<()> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    match std::path::Path::new(path).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir),
        _ => Ok(()),
    }
}

/// Runs a statement of portable SQL (`$1`-style parameters, which both
/// SQLite and PostgreSQL bind by number), returning the rows it changed.
/// The one query helper every service's `store/` uses.
pub async fn exec<C: ConnectionTrait>(
    c: &C,
    sql: &str,
    values: Vec<sea_orm::Value>,
) -> Result<u64, sea_orm::DbErr> {
    Ok(c.execute_raw(statement(c, sql, values))
        .await?
        .rows_affected())
}

/// Announces, on PostgreSQL, that a change log grew: a `NOTIFY` on
/// `channel`, delivered to every listener (every replica's
/// [`wake_on_notify`]) when the caller's transaction commits, and not at
/// all if it rolls back. Nothing on SQLite (one process; its followers are
/// woken in memory and poll).
pub async fn notify<C: ConnectionTrait>(c: &C, channel: &str) -> Result<(), sea_orm::DbErr> {
    if c.get_database_backend() == DbBackend::Postgres {
        exec(c, "SELECT pg_notify($1, '')", vec![channel.into()]).await?;
    }
    Ok(())
}

/// How often followers of a change log poll it: on PostgreSQL a fallback
/// only (they are woken by [`wake_on_notify`]), on SQLite the way other
/// processes' appends are seen.
pub fn follow_poll_interval(db: &DatabaseConnection) -> Duration {
    if db.get_database_backend() == DbBackend::Postgres {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(200)
    }
}

/// Whether the entries of a change log right after position `last` were
/// pruned, given the first position read after it (`first`; `None` when
/// nothing follows): the oldest position kept, if so. Positions are
/// contiguous and pruning removes only the oldest, so a gap is exactly
/// that, and checking the entries read (not the oldest position looked up
/// before reading them) leaves no window for a prune in between. A reader
/// from 0 has nothing to resume. One rule for identity's revocation log
/// and account's policy log.
pub fn pruned_after(last: i64, first: Option<i64>) -> Option<i64> {
    let first = first?;
    (last > 0 && first != last + 1).then_some(first)
}

/// On PostgreSQL, wakes `wake` (`notify_waiters`) whenever a transaction
/// that called [`notify`] on `channel` commits, in any process on the
/// database: one `LISTEN` connection per process and channel, taken from
/// the pool, kept until the returned task is aborted, re-established after
/// a failure (1 s apart; followers poll meanwhile, and are woken once it is
/// back). `None` on SQLite.
pub fn wake_on_notify(
    db: &DatabaseConnection,
    channel: &'static str,
    wake: std::sync::Arc<tokio::sync::Notify>,
) -> Option<tokio::task::JoinHandle<()>> {
    use sea_orm::sqlx::postgres::PgListener;
    if db.get_database_backend() != DbBackend::Postgres {
        return None;
    }
    let pool = db.get_postgres_connection_pool().clone();
    Some(tokio::spawn(async move {
        loop {
            let listener = async {
                let mut listener = PgListener::connect_with(&pool).await?;
                listener.listen(channel).await?;
                Ok::<_, sea_orm::sqlx::Error>(listener)
            };
            match listener.await {
                Ok(mut listener) => {
                    // Anything appended while not listening is found now.
                    wake.notify_waiters();
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(_)) => wake.notify_waiters(),
                            // The connection was lost (and is re-opened by
                            // the next call): look again.
                            Ok(None) => wake.notify_waiters(),
                            Err(error) => {
                                tracing::warn!(%error, channel, "LISTEN failed; polling meanwhile");
                                break;
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, channel, "cannot LISTEN; polling meanwhile");
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }))
}

/// Runs a query of portable SQL, returning every row.
pub async fn all<C: ConnectionTrait>(
    c: &C,
    sql: &str,
    values: Vec<sea_orm::Value>,
) -> Result<Vec<sea_orm::QueryResult>, sea_orm::DbErr> {
    c.query_all_raw(statement(c, sql, values)).await
}

/// Runs a query of portable SQL, returning its first row if any.
pub async fn one<C: ConnectionTrait>(
    c: &C,
    sql: &str,
    values: Vec<sea_orm::Value>,
) -> Result<Option<sea_orm::QueryResult>, sea_orm::DbErr> {
    c.query_one_raw(statement(c, sql, values)).await
}

/// Up to `limit` rows of `SELECT {columns} FROM {from} ORDER BY {order}`,
/// read in bulk: for long reads (a snapshot of every membership, a log
/// from its start) where the driver's cost per row is most of the time.
///
/// `columns` are plain column names of `from` (a table and its WHERE,
/// whose placeholders `values` fill); `T` is read from each row as the
/// sequence of its columns in that order (a struct's derived `Deserialize`
/// takes a sequence). A BOOLEAN column is 0/1 on SQLite and true/false on
/// PostgreSQL: read it as a [`Flag`].
///
/// How, by database (measured in the README, "How it grows"):
/// - SQLite: one JSON array the database builds. sqlx's SQLite driver
///   copies every value of every row in its worker thread and hands each
///   row over a channel, waking the reader: ~20 µs a row of 18 columns,
///   against ~2 for SQLite to build the row in JSON and serde to read it.
/// - PostgreSQL: plain rows, each column decoded by its type straight into
///   `T`. There the database is the cost: a 1000-row page of 9 columns
///   took 2.07 ms as rows and 4.94 ms built as JSON.
pub async fn bulk_page<C: ConnectionTrait, T: serde::de::DeserializeOwned>(
    c: &C,
    columns: &str,
    from: &str,
    order: &str,
    limit: u64,
    values: Vec<sea_orm::Value>,
) -> Result<Vec<T>, DbErr> {
    let malformed = |e: &dyn std::fmt::Display| {
        DbErr::Custom(format!("a page of {from} is not the rows expected: {e}"))
    };
    if c.get_database_backend() == DbBackend::Postgres {
        let sql = format!("SELECT {columns} FROM {from} ORDER BY {order} LIMIT {limit}");
        return all(c, &sql, values)
            .await?
            .iter()
            .map(|row| {
                let row = row
                    .try_as_pg_row()
                    .ok_or_else(|| malformed(&"not a PostgreSQL row"))?;
                page::from_row(row).map_err(|e| malformed(&e))
            })
            .collect();
    }
    let sql = format!(
        "SELECT json_group_array(json_array({columns}) ORDER BY {order}) AS page \
         FROM (SELECT {columns} FROM {from} ORDER BY {order} LIMIT {limit})"
    );
    let Some(row) = one(c, &sql, values).await? else {
        return Ok(Vec::new());
    };
    let page: String = get(&row, "page")?;
    serde_json::from_str(&page).map_err(|e| malformed(&e))
}

/// A BOOLEAN column in a [`bulk_page`]: 0/1 from SQLite, true/false from
/// PostgreSQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flag(pub bool);

impl<'de> serde::Deserialize<'de> for Flag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Flag;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a boolean, or 0 or 1")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Flag, E> {
                match v {
                    0 => Ok(Flag(false)),
                    1 => Ok(Flag(true)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Unsigned(v), &self)),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Flag, E> {
                u64::try_from(v)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
                    .and_then(|v| self.visit_u64(v))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The clause that locks the rows a SELECT reads until the transaction
/// ends: ` FOR UPDATE` on PostgreSQL; nothing on SQLite, where the write
/// lock a write transaction takes at its start already orders writers.
pub fn for_update<C: ConnectionTrait>(c: &C) -> &'static str {
    if c.get_database_backend() == sea_orm::DbBackend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    }
}

/// Reads column `column` of `row`.
pub fn get<T: sea_orm::TryGetable>(
    row: &sea_orm::QueryResult,
    column: &str,
) -> Result<T, sea_orm::DbErr> {
    row.try_get::<T>("", column)
}

/// A stored enum number as its domain value (`of`, e.g. `Status::from_i32`):
/// a number this service never writes is a damaged row, INTERNAL naming
/// the column, never a silent default.
pub fn stored<T>(column: &str, value: i32, of: fn(i32) -> Option<T>) -> Result<T, crate::Error> {
    of(value).ok_or_else(|| crate::Error::internal(format!("stored {column} {value} is unknown")))
}

fn statement<C: ConnectionTrait>(c: &C, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(c.get_database_backend(), sql, values)
}

/// Whether a database error is a unique-constraint violation, which services
/// turn into ALREADY_EXISTS instead of INTERNAL.
pub fn is_unique_violation(error: &sea_orm::DbErr) -> bool {
    matches!(
        error.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Concurrent transactions that read before they write, on a SQLite
    /// file shared by the pool's connections: with `BEGIN` (deferred) some
    /// fail at once with "database is locked" (a read snapshot cannot be
    /// upgraded once another connection committed); through [`begin`]
    /// they queue for the write lock and every one commits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn write_transactions_that_read_first_never_fail_busy_on_sqlite() {
        let dir = std::env::temp_dir().join(format!("tenancy-db-begin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/t.db?mode=rwc", dir.display());
        let db = connect(&url, "x").await.unwrap();
        exec(&db, "CREATE TABLE t (n INTEGER)", vec![])
            .await
            .unwrap();
        let tasks = (0..32).map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    let tx = begin(&db).await?;
                    let row = one(&tx, "SELECT COUNT(*) AS c FROM t", vec![]).await?;
                    let count: i64 = row.map_or(Ok(0), |r| get(&r, "c"))?;
                    tokio::task::yield_now().await;
                    exec(
                        &tx,
                        "INSERT INTO t (n) VALUES ($1)",
                        vec![(count + i).into()],
                    )
                    .await?;
                    tx.commit().await?;
                }
                Ok::<_, DbErr>(())
            })
        });
        let results = futures::future::join_all(tasks).await;
        let _ = std::fs::remove_dir_all(&dir);
        for r in results {
            r.unwrap().expect("a write transaction failed");
        }
    }

    /// `$n` binds by number on SQLite too (sqlx maps `$n` to argument n),
    /// so one SQL text serves both databases, parameters in any order and
    /// repeated.
    #[tokio::test]
    async fn numbered_parameters_bind_by_number_on_sqlite() {
        let db = connect("sqlite::memory:", "x").await.unwrap();
        let row = one(
            &db,
            "SELECT $2 || $1 || $2 AS joined",
            vec!["a".into(), "b".into()],
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(get::<String>(&row, "joined").unwrap(), "bab");
        exec(&db, "CREATE TABLE t (a TEXT, b INTEGER)", vec![])
            .await
            .unwrap();
        let changed = exec(
            &db,
            "INSERT INTO t (b, a) VALUES ($2, $1), ($2, $1)",
            vec!["x".into(), 7.into()],
        )
        .await
        .unwrap();
        assert_eq!(changed, 2);
        let rows = all(&db, "SELECT a, b FROM t WHERE b = $1", vec![7.into()])
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(get::<String>(&rows[0], "a").unwrap(), "x");
    }

    /// A [`bulk_page`] holds exactly the rows the plain SELECT would, in
    /// its order, with text that needs escaping, NULLs, big integers and
    /// booleans intact; no rows is an empty page; a row that is not `T` is
    /// an error naming the table, not a default. On PostgreSQL when
    /// `TENANCY_TEST_DATABASE_URL` is set (as CI runs it), else SQLite.
    #[tokio::test]
    async fn a_bulk_page_holds_the_rows_of_the_select_in_order() {
        #[derive(Debug, PartialEq, serde::Deserialize)]
        struct Row {
            k: String,
            n: i64,
            at: Option<i64>,
            on: Flag,
            r: Option<i32>,
        }
        let url = match std::env::var("TENANCY_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => "sqlite::memory:".to_owned(),
        };
        let db = connect(&url, "test").await.unwrap();
        let table = format!("bulk_page_t{}", crate::ids::new_id().replace('-', ""));
        exec(
            &db,
            &format!("CREATE TABLE {table} (k TEXT PRIMARY KEY, n BIGINT NOT NULL, at BIGINT NULL, on_ BOOLEAN NOT NULL, r INTEGER NULL)"),
            vec![],
        )
        .await
        .unwrap();
        let odd = "quote \" backslash \\ newline \n tab \t unicode é ✓";
        let rows = [
            ("b", i64::MAX, None, true, Some(i32::MIN)),
            ("a", -1, Some(1_700_000_000_000), false, None),
            (odd, 0, Some(i64::MIN), true, Some(i32::MAX)),
            ("c", 7, None, false, Some(0)),
        ];
        for (k, n, at, on, r) in rows {
            exec(
                &db,
                &format!("INSERT INTO {table} (k, n, at, on_, r) VALUES ($1, $2, $3, $4, $5)"),
                vec![k.into(), n.into(), at.into(), on.into(), r.into()],
            )
            .await
            .unwrap();
        }
        let page = |after: &'static str, limit| {
            let (db, table) = (db.clone(), table.clone());
            async move {
                bulk_page::<_, Row>(
                    &db,
                    "k, n, at, on_, r",
                    &format!("{table} WHERE k > $1"),
                    "k",
                    limit,
                    vec![after.into()],
                )
                .await
            }
        };
        let row = |k: &str, n, at, on, r| Row {
            k: k.to_owned(),
            n,
            at,
            on: Flag(on),
            r,
        };
        assert_eq!(
            page("", 3).await.unwrap(),
            [
                row("a", -1, Some(1_700_000_000_000), false, None),
                row("b", i64::MAX, None, true, Some(i32::MIN)),
                row("c", 7, None, false, Some(0)),
            ]
        );
        assert_eq!(
            page("c", 3).await.unwrap(),
            [row(odd, 0, Some(i64::MIN), true, Some(i32::MAX))]
        );
        assert_eq!(page("z", 3).await.unwrap(), []);
        let error = bulk_page::<_, (String, String)>(&db, "k, n", &table, "k", 10, vec![])
            .await
            .unwrap_err();
        assert!(error.to_string().contains(&table), "{error}");
        // More columns than fields, or a NULL where none may be: errors too.
        let error = bulk_page::<_, (String,)>(&db, "k, n", &table, "k", 10, vec![])
            .await
            .unwrap_err();
        assert!(error.to_string().contains(&table), "{error}");
        let error = bulk_page::<_, (String, i32)>(&db, "k, r", &table, "k", 10, vec![])
            .await
            .unwrap_err();
        assert!(error.to_string().contains(&table), "{error}");
        exec(&db, &format!("DROP TABLE {table}"), vec![])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_unsupported_url_names_the_setting() {
        let error = connect("mysql://x", "identity.database_url")
            .await
            .unwrap_err();
        assert_eq!(error.setting, "identity.database_url");
    }

    #[tokio::test]
    async fn an_unreachable_postgres_names_the_setting_without_the_password() {
        let error = connect("postgres://u:secret@127.0.0.1:1/db", "account.database_url")
            .await
            .unwrap_err();
        assert_eq!(error.setting, "account.database_url");
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[tokio::test]
    async fn a_sqlite_file_and_its_directory_are_created() {
        let dir = std::env::temp_dir().join(format!("tenancy-db-{}", uuid::Uuid::new_v4()));
        let url = format!("sqlite://{}/nested/x.db?mode=rwc", dir.display());
        let db = connect(&url, "x").await.unwrap();
        db.execute_unprepared("CREATE TABLE t (id INTEGER)")
            .await
            .unwrap();
        assert!(dir.join("nested/x.db").exists());
    }
}
