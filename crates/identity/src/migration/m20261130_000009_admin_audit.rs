//! The operators' audit (issue 19): one row per operator action on
//! identity (unlock a login, end a user's sessions, grant or revoke staff,
//! rotate the signing key), written in the action's transaction. Nothing
//! secret: who (the calling certificate and the request id), what, whom,
//! when, and counts.

use sea_orm::{ConnectionTrait, DbErr};
use sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager};

pub(super) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261130_000009_admin_audit"
    }
}

#[allow(elided_lifetimes_in_paths)]
#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "CREATE TABLE identity_admin_audit (\
                id TEXT PRIMARY KEY, \
                time BIGINT NOT NULL, \
                caller TEXT NOT NULL, \
                request_id TEXT NOT NULL, \
                action TEXT NOT NULL, \
                user_id TEXT, \
                detail TEXT NOT NULL)",
            "CREATE INDEX identity_admin_audit_user ON identity_admin_audit (user_id, time)",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
