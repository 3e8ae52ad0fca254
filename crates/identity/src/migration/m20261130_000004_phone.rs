//! Phone numbers (issue 17 §2): a user's verified number (`phone`, E.164,
//! empty when none) and one pending verification per user: the keyed hash
//! of the code sent, for which number, until when, how many wrong guesses,
//! and how many codes were sent in the current hour.

use sea_orm::{ConnectionTrait, DbErr};
use sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager};

pub(super) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261130_000004_phone"
    }
}

#[allow(elided_lifetimes_in_paths)]
#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in [
            "ALTER TABLE identity_users ADD COLUMN phone TEXT NOT NULL DEFAULT ''",
            "CREATE TABLE identity_phone_codes (
                user_id TEXT PRIMARY KEY,
                phone TEXT NOT NULL,
                code_hash TEXT NOT NULL,
                expire_time BIGINT NOT NULL,
                failures INTEGER NOT NULL,
                window_start BIGINT NOT NULL,
                sent_in_window INTEGER NOT NULL
            )",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
