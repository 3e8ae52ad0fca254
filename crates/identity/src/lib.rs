//! The identity service: users, argon2id logins, TOTP 2FA, passkeys, sessions, API tokens, SSH keys and login history.
//!
//! # Layout
//! A request is a walk `api/` (parse) → `app/` (one transaction) →
//! `domain/` (decide) and `store/` (read, write) → `api/` (render).
//! - `api/`: the tonic trait implementations, one file per resource
//!   (`users`, `sessions`, `login_events`, `mfa`, `tokens`, `ssh_keys`,
//!   `internal`, `admin`): request fields parsed into typed ids at the edge,
//!   one use case called, its answer rendered. `mod.rs` only dispatches.
//! - `app/`: the use cases, one transaction each; security notices and the
//!   revocation log written here.
//! - `domain/`: the rules as plain Rust (passwords, emails, names, TOTP,
//!   throttling, login networks, SSH keys, token formats), unit-tested, and
//!   the crate's one error type, `IdentityError`, mapped to
//!   `tenancy_runtime::Error` in one tested place (`domain/error.rs`).
//! - `store/`: SQL, through the one portable query helper
//!   (`tenancy_runtime::db`), and the write-transaction opener.
//! - [`peers`]: the ports to the account service (membership, default
//!   account) and the contacts outbox (email), with their gRPC adapters.
//! - `metrics`: logins and second factors by outcome.
//! - `migration`: the schema, as sea-orm-migration steps run at start.
//!
//! # Secrets at rest
//! TOTP secrets are encrypted with `auth.totp_encryption_key` (32 bytes, hex
//! or base64). When it is unset, a key is derived from the principal key
//! (HMAC-SHA256 with a fixed label), so a deployment works out of the box;
//! set it explicitly to rotate the principal key independently.

mod api;
mod app;
mod domain;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod metrics;
pub mod migration;
pub mod peers;
mod store;

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tenancy_proto::identity::{
    identity_internal_service_server::IdentityInternalServiceServer,
    identity_service_server::IdentityServiceServer,
};
use tenancy_runtime::config::{ConfigError, ServiceName};
use tenancy_runtime::shutdown::Shutdown;
use tenancy_runtime::{Context, Error, TenancyService, server};
use tokio::net::TcpListener;

use crate::domain::password::{HashParams, Hasher};
use crate::domain::totp::SecretBox;
use crate::peers::{AccountService, Accounts, ContactsMailer, Mailer};

/// The gRPC service names this server answers.
pub const SERVICE_NAMES: &[&str] = &[
    "tenancy.identity.v1.IdentityService",
    "tenancy.identity.v1.IdentityInternalService",
];

/// The identity service, opened and ready to serve.
pub struct IdentityService {
    context: Context,
    app: Arc<app::App>,
}

impl TenancyService for IdentityService {
    const NAME: ServiceName = ServiceName::Identity;

    async fn open(context: Context) -> Result<Self, ConfigError> {
        let channel = context.channel_to(ServiceName::Contacts)?;
        let mailer = Arc::new(ContactsMailer::new(channel, context.service_auth()));
        Self::open_with_mailer(context, mailer).await
    }

    async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
        let limit = self.context.config.max_message_bytes;
        // Pruned before serving, so a watcher that fell behind while this
        // replica was down gets its reset at once; then every minute.
        let retention = self.context.config.identity.change_log_retention;
        prune_revocations(&self.app, retention).await;
        let app = self.app.clone();
        let pruner = tokio::spawn(async move {
            loop {
                tokio::time::sleep(PRUNE_PERIOD).await;
                prune_revocations(&app, retention).await;
            }
        });
        let log_listener = tenancy_runtime::db::wake_on_notify(
            &self.app.db,
            store::revocations::CHANNEL,
            self.app.signal.clone(),
        );
        let api = api::Api::new(self.app.clone(), shutdown.clone());
        let routes = tonic::service::Routes::new(
            IdentityServiceServer::new(api.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .add_service(
            IdentityInternalServiceServer::new(api)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        );
        let served = server::serve(
            listener,
            routes,
            SERVICE_NAMES,
            self.context.server_options()?,
            shutdown.wait(),
        )
        .await;
        pruner.abort();
        if let Some(log_listener) = log_listener {
            log_listener.abort();
        }
        served
    }
}

/// How often the revocation log is pruned.
const PRUNE_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);

/// Drops revocation log entries older than `retention` that refuse no
/// token any more (a failure is logged; the next round tries again).
async fn prune_revocations(app: &app::App, retention: std::time::Duration) {
    let now = app.clock.now().millis();
    let retention = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    match store::prune::revocations(&app.db, now.saturating_sub(retention), now).await {
        Ok(0) => {}
        Ok(pruned) => tracing::info!(pruned, "revocation log pruned"),
        Err(error) => tracing::warn!(%error, "pruning the revocation log failed"),
    }
}

impl IdentityService {
    /// Opens the service with another way of sending email (the contacts
    /// outbox is the default; tests and tools may pass their own).
    pub async fn open_with_mailer(
        context: Context,
        mailer: Arc<dyn Mailer>,
    ) -> Result<Self, ConfigError> {
        let channel = context.channel_to(ServiceName::Account)?;
        let accounts = Arc::new(AccountService::new(channel, context.service_auth()));
        Self::open_with(context, mailer, accounts).await
    }

    /// Opens the service with explicit ports for email and membership.
    pub async fn open_with(
        context: Context,
        mailer: Arc<dyn Mailer>,
        accounts: Arc<dyn Accounts>,
    ) -> Result<Self, ConfigError> {
        context
            .config
            .identity
            .checked_change_log_retention(Self::NAME, context.config.auth.access_token_lifetime)?;
        let db: DatabaseConnection = context
            .open_database::<migration::Migrator>(Self::NAME)
            .await?;
        let auth = context.config.auth.clone();
        let hasher = Hasher::new(
            HashParams {
                memory_kib: auth.argon2_memory_kib,
                iterations: auth.argon2_iterations,
                parallelism: auth.argon2_parallelism,
            },
            auth.password_hash_max_wait,
        )
        .map_err(|e| ConfigError::new("auth.argon2_memory_kib", e))?
        .measured(&context.metrics);
        let secrets = SecretBox::new(totp_key(&context)?);
        let webauthn = app::passkeys::relying_party(&auth)?;
        let attestation_cas = app::passkeys::attestation_cas(&auth)?;
        let app = app::App {
            db,
            clock: context.clock.clone(),
            auth,
            mail: context.config.mail.clone(),
            hasher,
            secrets,
            mailer,
            accounts,
            signal: Arc::new(tokio::sync::Notify::new()),
            outcomes: metrics::Outcomes::new(&context.metrics),
            webauthn,
            attestation_cas,
        };
        app.ensure_signing_key()
            .await
            .map_err(|e| ConfigError::new("identity.database_url", e))?;
        let rekeyed = app
            .rekey_recovery_codes()
            .await
            .map_err(|e| ConfigError::new("identity.database_url", e))?;
        if rekeyed > 0 {
            tracing::info!(rekeyed, "recovery codes stored unkeyed re-keyed");
        }
        Ok(Self {
            context,
            app: Arc::new(app),
        })
    }
}

fn totp_key(context: &Context) -> Result<[u8; 32], ConfigError> {
    tenancy_runtime::secret::key_setting(
        "auth.totp_encryption_key",
        context.config.auth.totp_encryption_key.as_deref(),
        &context.key.to_hex(),
        b"tenancy identity totp encryption key v1",
    )
}
