//! The contacts service's schema, one step per change, run at start.

use sea_orm_migration::prelude::*;

mod m20261122_000001_init;
mod m20261130_000001_secrets;

/// Every migration step of the contacts service, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_init::Migration),
            Box::new(m20261130_000001_secrets::Migration),
        ]
    }

    /// Each service keeps its own migration history, so services can share
    /// one PostgreSQL database in small deployments without clashing.
    fn migration_table_name() -> DynIden {
        "contacts_migrations".into_iden()
    }
}
