//! Migrations: every replica runs them at start, so many migrators meet on
//! one fresh database.

use sea_orm::{ConnectionTrait, Database, Statement};
use sea_orm_migration::MigratorTrait;
use tenancy::Part;
use tenancy_testkit::{TestDatabase, test_config};
use tokio::task::JoinSet;

/// Migrators of each service started at once.
const MIGRATORS: usize = 6;

/// (part, its migration table, how many steps it has)
fn services() -> [(Part, &'static str, usize); 4] {
    [
        (
            Part::Identity,
            "identity_migrations",
            tenancy_identity::migration::Migrator::migrations().len(),
        ),
        (
            Part::Account,
            "account_migrations",
            tenancy_account::migration::Migrator::migrations().len(),
        ),
        (
            Part::Contacts,
            "contacts_migrations",
            tenancy_contacts::migration::Migrator::migrations().len(),
        ),
        (
            Part::Support,
            "support_migrations",
            tenancy_support::migration::Migrator::migrations().len(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn six_migrators_of_every_service_at_once_all_succeed_and_apply_each_step_once() {
    // Every service on one database, as small deployments share one.
    let db = TestDatabase::new("migrate").await;
    let config = test_config(&db);
    let mut migrators = JoinSet::new();
    for _ in 0..MIGRATORS {
        for (part, _, _) in services() {
            let config = config.clone();
            migrators.spawn(async move { (part, tenancy::migrate(&config, part).await) });
        }
    }
    let mut failures = Vec::new();
    while let Some(joined) = migrators.join_next().await {
        let (part, result) = joined.unwrap();
        if let Err(error) = result {
            failures.push(format!("{part:?}: {error}"));
        }
    }
    assert!(failures.is_empty(), "migrators failed: {failures:#?}");

    let conn = Database::connect(&db.url).await.unwrap();
    let backend = conn.get_database_backend();
    for (part, table, steps) in services() {
        let rows = conn
            .query_all_raw(Statement::from_string(
                backend,
                format!("SELECT version, COUNT(*) AS n FROM {table} GROUP BY version"),
            ))
            .await
            .unwrap();
        assert_eq!(rows.len(), steps, "{part:?}: every step recorded");
        for row in rows {
            let version: String = row.try_get("", "version").unwrap();
            let n: i64 = row.try_get("", "n").unwrap();
            assert_eq!(n, 1, "{part:?}: {version} applied {n} times");
        }
    }
    // The schema works: a later start finds nothing to do.
    for (part, _, _) in services() {
        tenancy::migrate(&config, part).await.unwrap();
    }
    conn.close().await.unwrap();
}
