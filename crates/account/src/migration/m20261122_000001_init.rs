//! The first schema: accounts (with their security settings), members and
//! their grants, invitations, the service catalogue, support grants, the
//! audit log, the policy change log and idempotency keys.
//!
//! Every table is prefixed `account_` so the service can share a database
//! with the others. Times are BIGINT Unix milliseconds.

use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;

/// Creates every table of the first version.
pub(super) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000001_init"
    }
}

const TABLES: &str = r#"
CREATE TABLE account_accounts (
    id TEXT PRIMARY KEY,
    account_type INTEGER NOT NULL,
    name TEXT NOT NULL,
    legal_name TEXT NOT NULL,
    country_code TEXT NOT NULL,
    vat_number TEXT NOT NULL,
    registration_number TEXT NOT NULL,
    address_json TEXT NOT NULL,
    created_by TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    lock_version BIGINT NOT NULL,
    enforce_mfa BOOLEAN NOT NULL,
    mfa_grace_ms BIGINT NOT NULL,
    enforce_mfa_time BIGINT NULL,
    ip_allowlist_json TEXT NOT NULL,
    security_update_time BIGINT NULL,
    security_update_user TEXT NOT NULL
);
CREATE INDEX account_accounts_created_by ON account_accounts (created_by);
CREATE TABLE account_members (
    account_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    role INTEGER NOT NULL,
    status INTEGER NOT NULL,
    portal_access BOOLEAN NOT NULL,
    password_pending BOOLEAN NOT NULL,
    service_access INTEGER NOT NULL,
    join_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    name_key TEXT NOT NULL,
    email TEXT NOT NULL,
    mfa_deadline BIGINT NULL,
    mfa_reminded_deadline BIGINT NULL,
    PRIMARY KEY (account_id, user_id)
);
CREATE INDEX account_members_by_join ON account_members (account_id, join_time, user_id);
CREATE INDEX account_members_by_name ON account_members (account_id, name_key, user_id);
CREATE INDEX account_members_by_email ON account_members (account_id, email, user_id);
CREATE INDEX account_members_by_user ON account_members (user_id);
CREATE INDEX account_members_by_deadline ON account_members (mfa_deadline);
CREATE TABLE account_member_grants (
    account_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    grant_kind INTEGER NOT NULL,
    grant_key TEXT NOT NULL,
    level INTEGER NOT NULL,
    PRIMARY KEY (account_id, user_id, grant_kind, grant_key)
);
CREATE INDEX account_member_grants_by_key ON account_member_grants (account_id, grant_key);
CREATE TABLE account_services (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    tags_json TEXT NOT NULL,
    external_id TEXT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL
);
CREATE INDEX account_services_by_name ON account_services (account_id, name, id);
CREATE UNIQUE INDEX account_services_external ON account_services (account_id, external_id);
CREATE TABLE account_service_tags (
    service_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    PRIMARY KEY (service_id, tag)
);
CREATE INDEX account_service_tags_by_tag ON account_service_tags (account_id, tag);
CREATE TABLE account_invitations (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    email TEXT NOT NULL,
    role INTEGER NOT NULL,
    scope_json TEXT NOT NULL,
    state INTEGER NOT NULL,
    token_hash TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    expire_time BIGINT NOT NULL,
    invited_by TEXT NOT NULL,
    send_time BIGINT NOT NULL,
    send_count INTEGER NOT NULL,
    close_time BIGINT NULL,
    user_id TEXT NULL,
    for_existing_member BOOLEAN NOT NULL
);
CREATE UNIQUE INDEX account_invitations_token ON account_invitations (token_hash);
CREATE UNIQUE INDEX account_invitations_one_pending ON account_invitations (account_id, email) WHERE state = 1;
CREATE INDEX account_invitations_by_account ON account_invitations (account_id, create_time, id);
CREATE TABLE account_support_grants (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    expire_time BIGINT NOT NULL,
    note TEXT NOT NULL,
    revoke_time BIGINT NULL,
    revoked_by TEXT NOT NULL
);
CREATE INDEX account_support_grants_by_account ON account_support_grants (account_id, create_time, id);
CREATE TABLE account_audit_events (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    event_time BIGINT NOT NULL,
    actor_kind INTEGER NOT NULL,
    actor_id TEXT NOT NULL,
    actor_display_name TEXT NOT NULL,
    token_kind INTEGER NOT NULL,
    client_ip TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    action TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL,
    before_json TEXT NULL,
    after_json TEXT NULL,
    request_id TEXT NOT NULL
);
CREATE INDEX account_audit_events_by_time ON account_audit_events (account_id, event_time, id);
CREATE TABLE account_policy_head (
    id INTEGER PRIMARY KEY,
    position BIGINT NOT NULL
);
INSERT INTO account_policy_head (id, position) VALUES (1, 0);
CREATE TABLE account_policy_log (
    position BIGINT PRIMARY KEY,
    event_time BIGINT NOT NULL,
    account_id TEXT NOT NULL,
    event_kind INTEGER NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE account_idempotency (
    scope TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    result_id TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    PRIMARY KEY (scope, idem_key)
)
"#;

const DROP: &str = "account_idempotency account_policy_log account_policy_head \
    account_audit_events account_support_grants account_invitations account_service_tags \
    account_services account_member_grants account_members account_accounts";

#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_statements(manager, TABLES).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for table in DROP.split_whitespace() {
            db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}"))
                .await?;
        }
        Ok(())
    }
}
