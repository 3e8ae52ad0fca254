//! The support service: support tickets scoped by service access, and the support team's staff access.
//!
//! # Layout
//! A request is read as a walk: `api/` (parse) → `app/` (the use case) →
//! `domain/` (decide) and `store/` (read, write) or `peers` (ask) → back
//! to `api/` (render).
//! - `api/`: the tonic trait implementations, proto ⇄ domain and
//!   validation at the edge: `customer.rs` (SupportService), `watch.rs`
//!   (WatchTicket's live stream), `staff.rs` (SupportStaffService),
//!   `convert.rs` (rows → proto, per side).
//! - `app/`: shared handler state and the access decisions (customer
//!   visibility through account's BatchCheckAccess, staff grants through
//!   CheckSupportAccess, staff audit through RecordAuditEvent); one
//!   function per use case in `tickets`, `messages`, `staff`; `notify`.
//! - `domain/`: the rules (status transitions, visibility, validation) and
//!   `SupportError`, the crate's one error type, mapped in one place.
//! - `store/`: tickets, messages, CC users, request ids (sea-orm); typed
//!   ids in, rows out; `list` builds the keyset-paginated ticket queries.
//! - `peers`: clients of account, identity and contacts.
//! - `peer_calls`: support's calls to contacts that a rule depends on
//!   (ticket notifications), through the one outbox of
//!   `tenancy_runtime::peer_calls`: written with the message, delivered
//!   until acknowledged.
//! - `migration`: the schema, as sea-orm-migration steps run at start.

mod api;
mod app;
pub mod domain;
pub mod migration;
mod peer_calls;
mod peers;
pub mod store;

use sea_orm::DatabaseConnection;
use tenancy_proto::support::{
    support_service_server::SupportServiceServer,
    support_staff_service_server::SupportStaffServiceServer,
};
use tenancy_runtime::config::{ConfigError, ServiceName};
use tenancy_runtime::shutdown::Shutdown;
use tenancy_runtime::{Context, Error, TenancyService, server};
use tokio::net::TcpListener;

/// The gRPC service names this server answers.
pub const SERVICE_NAMES: &[&str] = &[
    "tenancy.support.v1.SupportService",
    "tenancy.support.v1.SupportStaffService",
];

/// The support service, opened and ready to serve.
pub struct SupportService {
    context: Context,
    db: DatabaseConnection,
}

impl TenancyService for SupportService {
    const NAME: ServiceName = ServiceName::Support;

    async fn open(context: Context) -> Result<Self, ConfigError> {
        let db = context
            .open_database::<migration::Migrator>(Self::NAME)
            .await?;
        Ok(Self { context, db })
    }

    async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
        let limit = self.context.config.max_message_bytes;
        let options = self.context.server_options()?;
        let peers = peers::Peers::new(&self.context)
            .map_err(|e| Error::internal(format_args!("peer services: {e}")))?;
        let (events, _) = tokio::sync::broadcast::channel(1024);
        let store = store::Store::new(self.db.clone());
        let peer_calls = app::notify::outbox(
            self.db.clone(),
            store.clone(),
            peers.clone(),
            self.context.config.mail.portal_url.clone(),
            &self.context.metrics,
        );
        let deliverer = tokio::spawn(peer_calls.clone().run());
        let api = api::Api::new(app::App {
            store,
            peers,
            peer_calls,
            clock: self.context.clock.clone(),
            events,
            shutdown: shutdown.clone(),
        });
        let routes = tonic::service::Routes::new(
            SupportServiceServer::new(api.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .add_service(
            SupportStaffServiceServer::new(api)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        );
        let result = server::serve(listener, routes, SERVICE_NAMES, options, shutdown.wait()).await;
        deliverer.abort();
        result
    }
}
