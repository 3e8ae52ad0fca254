//! The outbox of calls to other services (`support_peer_calls`): ticket
//! notifications through contacts' Notify, written in the same transaction
//! as the ticket or message that needs them and delivered by
//! `tenancy_runtime::peer_calls` until acknowledged. The same shape as
//! account's `account_peer_calls`.

use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;

/// Creates `support_peer_calls`.
pub(super) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261130_000001_peer_calls"
    }
}

/// `due_time` and `lease_until` are wall-clock Unix milliseconds (delivery
/// is operational, not business time); `lease_until` is set while one
/// replica delivers the call, so two replicas never both hold it.
const STATEMENTS: [&str; 2] = [
    r#"
CREATE TABLE support_peer_calls (
    id TEXT PRIMARY KEY,
    call_kind INTEGER NOT NULL,
    payload TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    attempts INTEGER NOT NULL,
    due_time BIGINT NOT NULL,
    lease_until BIGINT NULL,
    last_error TEXT NOT NULL
)"#,
    "CREATE INDEX support_peer_calls_by_due ON support_peer_calls (due_time, id)",
];

#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for statement in STATEMENTS {
            manager
                .get_connection()
                .execute_unprepared(statement)
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE IF EXISTS support_peer_calls")
            .await?;
        Ok(())
    }
}
