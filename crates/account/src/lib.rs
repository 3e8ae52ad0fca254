//! The account service: accounts, members, roles and statuses, invitations, security settings, service access and audit.
//!
//! # Layout
//! - `api`: the tonic trait implementations: proto ⇄ domain, nothing else.
//! - `migration`: the schema, as sea-orm-migration steps run at start.

mod api;
pub mod migration;

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
}

impl TenancyService for AccountService {
    const NAME: ServiceName = ServiceName::Account;

    async fn open(context: Context) -> Result<Self, ConfigError> {
        let url = context.config.database_url(Self::NAME);
        let db =
            tenancy_runtime::db::open::<migration::Migrator>(&url, "account.database_url").await?;
        Ok(Self { context, db })
    }

    async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
        let limit = self.context.config.max_message_bytes;
        let api = api::Api::new(self.db.clone());
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
