//! Secrets in the outbox (issue 17 §2): messages may travel by SMS
//! (`channel`, `to_phone`), and a message that carries a secret (a
//! server's root password, a phone code) keeps it sealed in
//! `outbox_secret`, one row per message, deleted once the message is SENT
//! or FAILED.

use sea_orm::ConnectionTrait as _;
use sea_orm_migration::prelude::*;

/// Adds `channel` and `to_phone` to `outbox_message`, and `outbox_secret`.
pub(super) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261130_000001_secrets"
    }
}

const UP: &[&str] = &[
    "ALTER TABLE outbox_message ADD COLUMN channel INTEGER NOT NULL DEFAULT 1",
    "ALTER TABLE outbox_message ADD COLUMN to_phone TEXT NOT NULL DEFAULT ''",
    "CREATE TABLE outbox_secret (message_id TEXT NOT NULL PRIMARY KEY, sealed TEXT NOT NULL)",
];

const DOWN: &[&str] = &[
    "DROP TABLE outbox_secret",
    "ALTER TABLE outbox_message DROP COLUMN to_phone",
    "ALTER TABLE outbox_message DROP COLUMN channel",
];

#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for statement in UP {
            manager
                .get_connection()
                .execute_unprepared(statement)
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for statement in DOWN {
            manager
                .get_connection()
                .execute_unprepared(statement)
                .await?;
        }
        Ok(())
    }
}
