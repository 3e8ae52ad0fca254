//! Passkeys (WebAuthn credentials) and the pending ceremonies that issue
//! their challenges. A passkey row holds the relying party's view of the
//! credential (webauthn-rs `Passkey` as JSON: credential id, COSE public
//! key, signature counter), never a private key. A ceremony row holds the
//! server-side state of one registration or assertion (its challenge),
//! single use and expiring.

use sea_orm::{ConnectionTrait, DbErr};
use sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager};

pub(super) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261130_000005_passkeys"
    }
}

#[allow(elided_lifetimes_in_paths)]
#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in [
            "CREATE TABLE identity_passkeys (\
                id TEXT PRIMARY KEY, \
                user_id TEXT NOT NULL, \
                name TEXT NOT NULL, \
                credential_id TEXT NOT NULL UNIQUE, \
                credential TEXT NOT NULL, \
                backup_eligible BOOLEAN NOT NULL, \
                suspect BOOLEAN NOT NULL DEFAULT FALSE, \
                create_time BIGINT NOT NULL, \
                last_use_time BIGINT)",
            "CREATE INDEX identity_passkeys_user ON identity_passkeys (user_id)",
            "CREATE TABLE identity_passkey_ceremonies (\
                ceremony_key TEXT PRIMARY KEY, \
                user_id TEXT NOT NULL, \
                session_id TEXT NOT NULL, \
                ip TEXT NOT NULL, \
                state TEXT NOT NULL, \
                expire_time BIGINT NOT NULL)",
            "CREATE INDEX identity_passkey_ceremonies_ip ON identity_passkey_ceremonies (ip, expire_time)",
        ] {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}
