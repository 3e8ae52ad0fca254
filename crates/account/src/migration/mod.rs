//! The account service's schema, one step per change, run at start.

use sea_orm_migration::prelude::*;

use sea_orm::ConnectionTrait;

mod m20261122_000001_init;
mod m20261129_000001_peer_calls;
mod m20261129_000002_member_consent;
mod m20261130_000001_api_members;
mod m20261130_000002_credential_delivery;

/// Every migration step of the account service, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_init::Migration),
            Box::new(m20261129_000001_peer_calls::Migration),
            Box::new(m20261129_000002_member_consent::Migration),
            Box::new(m20261130_000001_api_members::Migration),
            Box::new(m20261130_000002_credential_delivery::Migration),
        ]
    }

    /// Each service keeps its own migration history, so services can share
    /// one PostgreSQL database in small deployments without clashing.
    fn migration_table_name() -> DynIden {
        "account_migrations".into_iden()
    }
}

/// Runs `sql`, statements separated by `;`, one statement at a time:
/// PostgreSQL's extended protocol refuses several statements in one
/// prepared query.
async fn run_statements(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for statement in sql.split(';') {
        let statement = statement.trim();
        if !statement.is_empty() {
            db.execute_unprepared(statement).await?;
        }
    }
    Ok(())
}
