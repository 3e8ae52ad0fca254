//! API members (issue 17 §1): the user behind an API member has no email
//! and is bound to one account (`api_account_id`, empty for people); its
//! `email_key` is `api:<id>`, which no parsed address can equal, so no
//! login, sign-up or reset finds it. API tokens carry their own source
//! allowlist (normalised CIDR blocks separated by spaces; empty: anywhere).

use sea_orm::{ConnectionTrait, DbErr};
use sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager};

pub(super) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261130_000003_api_members"
    }
}

#[allow(elided_lifetimes_in_paths)]
#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "ALTER TABLE identity_users ADD COLUMN api_account_id TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE identity_api_tokens ADD COLUMN source_allowlist TEXT NOT NULL DEFAULT ''",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
