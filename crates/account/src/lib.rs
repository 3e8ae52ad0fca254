//! The account service: accounts, members, roles and statuses, invitations,
//! security settings, service access and audit.
//!
//! # Layout
//! A request reads as a walk: `api/<resource>.rs` (parse, validate at the
//! edge) → `app/<resource>.rs` (one transaction) → `domain/` (decide) and
//! `store/` (read, write) → back to `api/` (render). SuspendMember:
//! `api/members.rs` → `app::members::change_member` → `domain::members`,
//! `domain::owners` and `store`.
//! - `api/`: the tonic trait implementations (`mod.rs` forwards each method
//!   to its resource file: accounts, members, invitations, security,
//!   services, audit, internal, watch); proto ⇄ domain conversion.
//! - `app/`: use cases, each one transaction, domain and store types in and
//!   out; audit and policy-log entries written with the change
//!   (`app::policy` builds them): members (with AddMember,
//!   CreateApiMember, UpdateApiMember), invitations, accounts, security and
//!   support access, services, audit. Read-only lists and gets are `api/`
//!   over `store/` reads.
//! - `domain/`: every rule once, as plain Rust over typed ids and enums
//!   (`Role`, `MemberStatus`, `ServiceAccess`, `Level`, `GrantKind`):
//!   access decisions and which services a member reaches, the last-owner
//!   invariant, member changes, 2FA deadlines, validation; and
//!   `AccountError`, the refusals, mapped to gRPC in one tested place.
//! - `store/`: all SQL (none is left in `api/`), through
//!   `tenancy_runtime::db`; row types to domain values; locking
//!   (`lock_account`) and the policy log's positions. Where SQL
//!   pre-computes a domain rule for speed (ListServices' reach, active
//!   owners, 2FA deadlines) `tests/it/rules.rs` proves the two agree.
//! - `cache`: the in-memory access cache of CheckAccess, kept correct by
//!   invalidation after local commits and by following the policy log.
//! - `peers`: clients of identity and contacts (`Error::from_peer`).
//! - `peer_calls`: account's calls to identity that a rule depends on
//!   (RevokeAccountAccess), through the one outbox of
//!   `tenancy_runtime::peer_calls`: written with the change, delivered
//!   until acknowledged.
//! - `reminders`: the background job emailing 2FA deadline reminders and
//!   pruning the policy log.
//! - `migration`: the schema, as sea-orm-migration steps run at start.

mod api;
mod app;
mod cache;
pub mod domain;
pub mod migration;
mod peer_calls;
mod peers;
mod reminders;
pub mod store;

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tenancy_proto::account::{
    account_internal_service_server::AccountInternalServiceServer,
    account_service_server::AccountServiceServer,
};
use tenancy_runtime::config::{ConfigError, ServiceName};
use tenancy_runtime::shutdown::Shutdown;
use tenancy_runtime::{Context, Error, TenancyService, server};
use tokio::net::TcpListener;

/// The gRPC service names this server answers.
pub const SERVICE_NAMES: &[&str] = &[
    "tenancy.account.v1.AccountService",
    "tenancy.account.v1.AccountInternalService",
];

/// The account service, opened and ready to serve.
pub struct AccountService {
    context: Context,
    db: DatabaseConnection,
    peers: peers::Peers,
}

impl AccountService {
    /// The database handle (benchmarks seed rows directly).
    pub fn database(&self) -> &DatabaseConnection {
        &self.db
    }
}

impl TenancyService for AccountService {
    const NAME: ServiceName = ServiceName::Account;

    async fn open(context: Context) -> Result<Self, ConfigError> {
        context
            .config
            .account
            .checked_change_log_retention(Self::NAME, context.config.auth.access_token_lifetime)?;
        let db = context
            .open_database::<migration::Migrator>(Self::NAME)
            .await?;
        let peers = peers::Peers::new(
            context.channel_to(ServiceName::Identity)?,
            context.channel_to(ServiceName::Contacts)?,
            context.service_auth(),
        );
        Ok(Self { context, db, peers })
    }

    async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
        let limit = self.context.config.max_message_bytes;
        let notify = Arc::new(tokio::sync::Notify::new());
        let log_listener =
            tenancy_runtime::db::wake_on_notify(&self.db, store::POLICY_CHANNEL, notify.clone());
        let cache = Arc::new(cache::AccessCache::default());
        let follower = cache.start(self.db.clone()).await?;
        let peer_calls =
            peer_calls::outbox(self.db.clone(), self.peers.clone(), &self.context.metrics);
        let app = app::App {
            db: self.db.clone(),
            clock: self.context.clock.clone(),
            peers: self.peers.clone(),
            peer_calls: peer_calls.clone(),
            config: self.context.config.clone(),
            policy_changed: notify,
            cache,
        };
        let api = api::Api::new(app, shutdown.clone());
        let job = tokio::spawn(reminders::run(
            self.db.clone(),
            self.context.clock.clone(),
            self.peers.clone(),
            self.context.config.clone(),
        ));
        let deliverer = tokio::spawn(peer_calls.run());
        let routes = tonic::service::Routes::new(
            AccountServiceServer::new(api.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .add_service(
            AccountInternalServiceServer::new(api)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        );
        let result = server::serve(
            listener,
            routes,
            SERVICE_NAMES,
            self.context.server_options()?,
            shutdown.wait(),
        )
        .await;
        job.abort();
        deliverer.abort();
        follower.abort();
        if let Some(log_listener) = log_listener {
            log_listener.abort();
        }
        result
    }
}
