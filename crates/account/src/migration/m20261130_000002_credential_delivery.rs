//! The account's default delivery of new servers' root passwords
//! (issue 17 §2): a `ServerCredentialDelivery` code, NONE (1) for every
//! account until an owner changes it.

use sea_orm_migration::prelude::*;

/// Adds `server_credential_delivery` to `account_accounts`.
pub(super) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261130_000002_credential_delivery"
    }
}

const UP: &str = r#"
ALTER TABLE account_accounts ADD COLUMN server_credential_delivery INTEGER NOT NULL DEFAULT 1
"#;

const DOWN: &str = r#"
ALTER TABLE account_accounts DROP COLUMN server_credential_delivery
"#;

#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_statements(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_statements(manager, DOWN).await
    }
}
