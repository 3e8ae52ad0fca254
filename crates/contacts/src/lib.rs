//! The contacts service: contacts by role, notification preferences and routing, and the email outbox.
//!
//! # Layout
//! A request is read as a walk: `api/` (parse) → `app/` (one use case, one
//! transaction) → `domain/` (decide) and `store/` (read, write) → back to
//! `api/` (render).
//! - `api/`: the tonic trait implementations, proto ⇄ domain and
//!   validation at the edge: `contacts.rs` (ContactsService: contacts and
//!   preferences), `internal.rs` (ContactsInternalService: SendEmail, the
//!   outbox, ResolveRecipients, Notify), `convert.rs` (rows → proto).
//! - `app/`: one function per use case (`contacts`, `preferences`,
//!   `outbox`, `routing`), typed ids and domain values in and out.
//! - `domain/`: the rules as plain Rust, unit-tested: contact fields and
//!   the primary-contact, limit and resend rules (`contact`), routing,
//!   templates, back-off, retention, outbox states, and `ContactsError`,
//!   the crate's one error type, mapped to a gRPC status in one place.
//! - `store/`: sea-orm entities, queries and transactions (raw SQL through
//!   `tenancy_runtime::db`).
//! - `peers`: the account and identity clients (`Error::from_peer`).
//! - `outbox`: queueing email (validation, rendering, idempotency).
//! - `mailer` and `worker`: delivery by SMTP or the dev mailer, with
//!   retries, leases and back-off.
//! - `retention`: the periodic removal of old messages, keys and tokens.
//! - `migration`: the schema, as sea-orm-migration steps run at start.

mod api;
mod app;
pub mod domain;
pub mod mailer;
pub mod migration;
pub mod outbox;
mod peers;
pub mod retention;
pub mod sms;
pub mod store;
pub mod worker;

use std::sync::Arc;

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
    mailer: Arc<mailer::Mailer>,
    sms: Arc<sms::SmsSender>,
    secrets: tenancy_runtime::secret::SecretBox,
    from: lettre::message::Mailbox,
}

impl TenancyService for ContactsService {
    const NAME: ServiceName = ServiceName::Contacts;

    async fn open(context: Context) -> Result<Self, ConfigError> {
        let db = context
            .open_database::<migration::Migrator>(Self::NAME)
            .await?;
        let mailer = Arc::new(mailer::Mailer::from_config(
            context.config.smtp_url.as_deref(),
            context.config.mail.delivery_concurrency,
        )?);
        let from = mailer::parse_from(&context.config.mail.from)?;
        if mailer.is_dev() {
            tracing::info!("no smtp_url set: emails are written to the log (dev mailer)");
        }
        let sms = Arc::new(sms::SmsSender::from_config(&context.config.sms)?);
        if sms.is_dev() {
            tracing::info!("no sms.url set: SMS are written to the log (dev sender)");
        }
        let secrets =
            tenancy_runtime::secret::SecretBox::new(tenancy_runtime::secret::key_setting(
                "mail.secret_key",
                context.config.mail.secret_key.as_deref(),
                &context.key.to_hex(),
                b"tenancy contacts outbox secret key v1",
            )?);
        Ok(Self {
            context,
            db,
            mailer,
            sms,
            secrets,
            from,
        })
    }

    async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
        let limit = self.context.config.max_message_bytes;
        let wake = Arc::new(tokio::sync::Notify::new());
        let message_id_domain = self.from.email.domain().to_owned();
        let outbox = outbox::Outbox {
            db: self.db.clone(),
            clock: self.context.clock.clone(),
            wake: wake.clone(),
            message_id_domain,
            secrets: self.secrets.clone(),
        };
        let worker = worker::Worker {
            db: self.db.clone(),
            clock: self.context.clock.clone(),
            mailer: self.mailer.clone(),
            sms: self.sms.clone(),
            secrets: self.secrets.clone(),
            from: self.from.clone(),
            max_attempts: self.context.config.mail.max_attempts,
            retry_base_delay: self.context.config.mail.retry_base_delay,
            concurrency: self.context.config.mail.delivery_concurrency.max(1) as usize,
            wake,
            deliveries: worker::Deliveries::new(&self.context.metrics),
        };
        worker::measure_backlog(
            &self.context.metrics,
            self.db.clone(),
            self.context.clock.clone(),
        );
        let worker = tokio::spawn(worker.run(shutdown.clone()));
        let retention = retention::Retention {
            db: self.db.clone(),
            clock: self.context.clock.clone(),
            sent: self.context.config.mail.sent_retention,
            failed: self.context.config.mail.failed_retention,
        };
        let retention = tokio::spawn(retention.run(shutdown.clone()));
        let api = api::Api {
            app: app::App {
                outbox,
                peers: peers::Peers::new(&self.context),
                portal_url: self
                    .context
                    .config
                    .mail
                    .portal_url
                    .trim_end_matches('/')
                    .to_owned(),
            },
        };
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
        let served = server::serve(
            listener,
            routes,
            SERVICE_NAMES,
            self.context.server_options()?,
            shutdown.wait(),
        )
        .await;
        let _ = worker.await;
        let _ = retention.await;
        served
    }
}
