//! The contacts service: contacts by role, notification preferences and routing, and the email outbox.
//!
//! # Layout
//! - `api`: the tonic trait implementations: proto ⇄ domain, nothing else.
//! - `migration`: the schema, as sea-orm-migration steps run at start.

mod api;
pub mod migration;

use sea_orm::DatabaseConnection;
use tenancy_proto::contacts::{
    contacts_internal_service_server::ContactsInternalServiceServer,
    contacts_service_server::ContactsServiceServer,
};
use tenancy_runtime::config::{ConfigError, ServiceName};
use tenancy_runtime::shutdown::Shutdown;
use tenancy_runtime::{Context, Error, TenancyService, server};
use tokio::net::TcpListener;

/// The gRPC service names this server answers.
pub const SERVICE_NAMES: &[&str] = &[
    "tenancy.contacts.v1.ContactsService",
    "tenancy.contacts.v1.ContactsInternalService",
];

/// The contacts service, opened and ready to serve.
pub struct ContactsService {
    context: Context,
    db: DatabaseConnection,
}

impl TenancyService for ContactsService {
    const NAME: ServiceName = ServiceName::Contacts;

    async fn open(context: Context) -> Result<Self, ConfigError> {
        let url = context.config.database_url(Self::NAME);
        let db =
            tenancy_runtime::db::open::<migration::Migrator>(&url, "contacts.database_url").await?;
        Ok(Self { context, db })
    }

    async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
        let limit = self.context.config.max_message_bytes;
        let api = api::Api::new(self.db.clone());
        let routes = tonic::service::Routes::new(
            ContactsServiceServer::new(api.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .add_service(
            ContactsInternalServiceServer::new(api)
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
