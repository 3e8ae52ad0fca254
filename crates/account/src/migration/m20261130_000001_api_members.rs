//! API members (issue 17 §1): a membership's `kind` (1 person, 2 API
//! member), an API member's `description` and `source_allowlist`
//! (normalised CIDR blocks separated by spaces; empty: anywhere). Existing
//! rows are people. And (§3) the resource kind of a service
//! (`ResourceKind`: 1 server, 2 storage, 3 other); existing services are
//! "other" until billing says more.

use sea_orm_migration::prelude::*;

/// Adds `kind`, `description` and `source_allowlist` to `account_members`,
/// `resource_kind` to `account_services`.
pub(super) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261130_000001_api_members"
    }
}

const UP: &str = r#"
ALTER TABLE account_members ADD COLUMN kind INTEGER NOT NULL DEFAULT 1;
ALTER TABLE account_members ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE account_members ADD COLUMN source_allowlist TEXT NOT NULL DEFAULT '';
ALTER TABLE account_services ADD COLUMN resource_kind INTEGER NOT NULL DEFAULT 3
"#;

const DOWN: &str = r#"
ALTER TABLE account_services DROP COLUMN resource_kind;
ALTER TABLE account_members DROP COLUMN source_allowlist;
ALTER TABLE account_members DROP COLUMN description;
ALTER TABLE account_members DROP COLUMN kind
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
