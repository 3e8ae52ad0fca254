//! TOTP codes are accepted only for a time step after the last one the
//! user had accepted (RFC 6238 §5.2), not merely once per step: one row per
//! user with that step replaces the set of spent steps, keeping each user's
//! latest.

use sea_orm::{ConnectionTrait, DbErr};
use sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager};

pub(super) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261129_000001_totp_last_step"
    }
}

#[allow(elided_lifetimes_in_paths)]
#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "CREATE TABLE identity_totp_last_step (
                user_id TEXT PRIMARY KEY,
                step BIGINT NOT NULL,
                use_time BIGINT NOT NULL
            )",
            "INSERT INTO identity_totp_last_step (user_id, step, use_time) \
             SELECT user_id, MAX(step), MAX(use_time) FROM identity_totp_used_steps GROUP BY user_id",
            "DROP TABLE identity_totp_used_steps",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
