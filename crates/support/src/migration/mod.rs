//! The support service's schema, one step per change, run at start.

use sea_orm_migration::prelude::*;

mod m20261122_000001_create_tickets;
mod m20261123_000001_priority_order_indexes;
mod m20261130_000001_peer_calls;

/// Every migration step of the support service, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_tickets::Migration),
            Box::new(m20261123_000001_priority_order_indexes::Migration),
            Box::new(m20261130_000001_peer_calls::Migration),
        ]
    }

    /// Each service keeps its own migration history, so services can share
    /// one PostgreSQL database in small deployments without clashing.
    fn migration_table_name() -> DynIden {
        "support_migrations".into_iden()
    }
}
