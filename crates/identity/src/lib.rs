//! The identity service: users, argon2id logins, TOTP 2FA, sessions, API tokens, SSH keys and login history.
//!
//! # Layout
//! - `api`: the tonic trait implementations: proto ⇄ domain, nothing else.
//! - `migration`: the schema, as sea-orm-migration steps run at start.

mod api;
pub mod migration;

use sea_orm::DatabaseConnection;
use tenancy_proto::identity::{
    identity_internal_service_server::IdentityInternalServiceServer,
    identity_service_server::IdentityServiceServer,
};
use tenancy_runtime::config::{ConfigError, ServiceName};
use tenancy_runtime::shutdown::Shutdown;
use tenancy_runtime::{Context, Error, TenancyService, server};
use tokio::net::TcpListener;

/// The gRPC service names this server answers.
pub const SERVICE_NAMES: &[&str] = &[
    "tenancy.identity.v1.IdentityService",
    "tenancy.identity.v1.IdentityInternalService",
];

/// The identity service, opened and ready to serve.
pub struct IdentityService {
    context: Context,
    db: DatabaseConnection,
}

impl TenancyService for IdentityService {
    const NAME: ServiceName = ServiceName::Identity;

    async fn open(context: Context) -> Result<Self, ConfigError> {
        let url = context.config.database_url(Self::NAME);
        let db =
            tenancy_runtime::db::open::<migration::Migrator>(&url, "identity.database_url").await?;
        Ok(Self { context, db })
    }

    async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
        let limit = self.context.config.max_message_bytes;
        let api = api::Api::new(self.db.clone());
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
        server::serve(
            listener,
            routes,
            SERVICE_NAMES,
            self.context.server_options(),
            shutdown.wait(),
        )
        .await
    }
}
