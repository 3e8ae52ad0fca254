//! Users, credentials, sessions, login history, signing keys, the
//! revocation log, API tokens and SSH keys. Times are BIGINT Unix ms. The
//! DDL is portable between SQLite and PostgreSQL.

use sea_orm_migration::prelude::*;

pub(super) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000001_initial"
    }
}

const UP: &[&str] = &[
    "CREATE TABLE identity_users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        email_key TEXT NOT NULL,
        email_verified BOOLEAN NOT NULL DEFAULT FALSE,
        pending_email TEXT NOT NULL DEFAULT '',
        name TEXT NOT NULL DEFAULT '',
        password_hash TEXT,
        password_update_time BIGINT,
        totp_secret TEXT,
        code_word_hash TEXT,
        staff BOOLEAN NOT NULL DEFAULT FALSE,
        last_account_id TEXT,
        last_verification_sent BIGINT NOT NULL DEFAULT 0,
        create_time BIGINT NOT NULL,
        update_time BIGINT NOT NULL,
        last_login_time BIGINT
    )",
    "CREATE UNIQUE INDEX identity_users_email_key ON identity_users (email_key)",
    // Single-use tokens sent by email (verification, password reset).
    "CREATE TABLE identity_email_tokens (
        token_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        purpose TEXT NOT NULL,
        email TEXT NOT NULL,
        create_time BIGINT NOT NULL,
        expire_time BIGINT NOT NULL,
        used_time BIGINT
    )",
    "CREATE INDEX identity_email_tokens_user ON identity_email_tokens (user_id, purpose)",
    "CREATE TABLE identity_sessions (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        account_id TEXT,
        user_agent TEXT NOT NULL,
        create_ip TEXT NOT NULL,
        last_ip TEXT NOT NULL,
        amr TEXT NOT NULL,
        create_time BIGINT NOT NULL,
        last_seen_time BIGINT NOT NULL,
        auth_time BIGINT NOT NULL,
        expire_time BIGINT NOT NULL,
        end_time BIGINT NOT NULL,
        revoke_time BIGINT
    )",
    "CREATE INDEX identity_sessions_user ON identity_sessions (user_id, revoke_time)",
    // Every refresh token a session ever had: the current one has no
    // rotate_time; presenting a rotated one is reuse.
    "CREATE TABLE identity_refresh_tokens (
        token_hash TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        create_time BIGINT NOT NULL,
        rotate_time BIGINT
    )",
    "CREATE INDEX identity_refresh_tokens_session ON identity_refresh_tokens (session_id)",
    "CREATE TABLE identity_login_events (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        account_id TEXT NOT NULL DEFAULT '',
        session_id TEXT NOT NULL DEFAULT '',
        time BIGINT NOT NULL,
        ip TEXT NOT NULL,
        user_agent TEXT NOT NULL,
        method INTEGER NOT NULL,
        outcome INTEGER NOT NULL
    )",
    "CREATE INDEX identity_login_events_user ON identity_login_events (user_id, time)",
    "CREATE TABLE identity_throttle (
        key TEXT PRIMARY KEY,
        failures BIGINT NOT NULL,
        window_start BIGINT NOT NULL,
        last_failure BIGINT NOT NULL
    )",
    "CREATE TABLE identity_mfa_challenges (
        token_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        account_id TEXT NOT NULL DEFAULT '',
        create_time BIGINT NOT NULL,
        expire_time BIGINT NOT NULL,
        failures INTEGER NOT NULL DEFAULT 0,
        used_time BIGINT
    )",
    "CREATE TABLE identity_totp_pending (
        user_id TEXT PRIMARY KEY,
        secret TEXT NOT NULL,
        expire_time BIGINT NOT NULL
    )",
    // Replay prevention: a (user, time step) is accepted once; the primary
    // key makes concurrent submissions of one code succeed exactly once.
    "CREATE TABLE identity_totp_used_steps (
        user_id TEXT NOT NULL,
        step BIGINT NOT NULL,
        use_time BIGINT NOT NULL,
        PRIMARY KEY (user_id, step)
    )",
    "CREATE TABLE identity_recovery_codes (
        code_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        used_time BIGINT
    )",
    "CREATE INDEX identity_recovery_codes_user ON identity_recovery_codes (user_id)",
    "CREATE TABLE identity_signing_keys (
        kid TEXT PRIMARY KEY,
        private_key TEXT NOT NULL,
        public_x TEXT NOT NULL,
        create_time BIGINT NOT NULL,
        activate_time BIGINT NOT NULL,
        retire_time BIGINT,
        withdrawn BOOLEAN NOT NULL DEFAULT FALSE
    )",
    // The revocation log. Positions come from the one-row head table, whose
    // row lock (UPDATE) serialises appends, so positions commit in order
    // even with several replicas on one PostgreSQL.
    "CREATE TABLE identity_revocation_head (
        id INTEGER PRIMARY KEY,
        position BIGINT NOT NULL
    )",
    "INSERT INTO identity_revocation_head (id, position) VALUES (1, 0)",
    "CREATE TABLE identity_revocations (
        position BIGINT PRIMARY KEY,
        create_time BIGINT NOT NULL,
        expire_time BIGINT,
        reason INTEGER NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        user_id TEXT NOT NULL DEFAULT '',
        account_id TEXT NOT NULL DEFAULT '',
        cutoff BIGINT,
        kids TEXT NOT NULL DEFAULT ''
    )",
    "CREATE TABLE identity_api_tokens (
        id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL,
        user_id TEXT NOT NULL,
        account_id TEXT NOT NULL,
        name TEXT NOT NULL,
        last_four TEXT NOT NULL,
        read_only BOOLEAN NOT NULL,
        create_time BIGINT NOT NULL,
        expire_time BIGINT,
        last_used_time BIGINT,
        last_used_ip TEXT NOT NULL DEFAULT '',
        revoke_time BIGINT,
        revoked_by TEXT NOT NULL DEFAULT ''
    )",
    "CREATE UNIQUE INDEX identity_api_tokens_hash ON identity_api_tokens (token_hash)",
    "CREATE INDEX identity_api_tokens_account ON identity_api_tokens (account_id, user_id)",
    "CREATE TABLE identity_ssh_keys (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        name TEXT NOT NULL,
        public_key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        algorithm INTEGER NOT NULL,
        bits INTEGER NOT NULL,
        comment TEXT NOT NULL,
        create_time BIGINT NOT NULL,
        created_by TEXT NOT NULL
    )",
    "CREATE UNIQUE INDEX identity_ssh_keys_fingerprint ON identity_ssh_keys (account_id, fingerprint)",
    "CREATE TABLE identity_code_word_checks (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        staff_user_id TEXT NOT NULL,
        account_id TEXT NOT NULL,
        time BIGINT NOT NULL,
        matched BOOLEAN NOT NULL
    )",
    "CREATE INDEX identity_code_word_checks_user ON identity_code_word_checks (user_id, time)",
];

#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for statement in UP {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}
