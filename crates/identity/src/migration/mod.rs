//! The identity service's schema, one step per change, run at start.

use sea_orm_migration::prelude::*;

mod m20261122_000001_initial;
mod m20261124_000001_login_networks;
mod m20261129_000001_totp_last_step;
mod m20261129_000002_pending_sign_ups;
mod m20261130_000003_api_members;
mod m20261130_000004_phone;
mod m20261130_000005_passkeys;
mod m20261130_000007_sign_up_phone;
mod m20261130_000009_admin_audit;

/// Every migration step of the identity service, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_initial::Migration),
            Box::new(m20261124_000001_login_networks::Migration),
            Box::new(m20261129_000001_totp_last_step::Migration),
            Box::new(m20261129_000002_pending_sign_ups::Migration),
            Box::new(m20261130_000003_api_members::Migration),
            Box::new(m20261130_000004_phone::Migration),
            Box::new(m20261130_000005_passkeys::Migration),
            Box::new(m20261130_000007_sign_up_phone::Migration),
            Box::new(m20261130_000009_admin_audit::Migration),
        ]
    }

    /// Each service keeps its own migration history, so services can share
    /// one PostgreSQL database in small deployments without clashing.
    fn migration_table_name() -> DynIden {
        "identity_migrations".into_iden()
    }
}
