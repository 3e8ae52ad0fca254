//! The port through which identity sends email, and its adapter to the
//! contacts service's outbox (`ContactsInternalService.SendEmail`).

use std::collections::HashMap;

use tenancy_proto::contacts::contacts_internal_service_client::ContactsInternalServiceClient;
use tenancy_proto::contacts::{EmailAddress, MessageTemplate, SendEmailRequest};
use tenancy_runtime::Channel;
use tenancy_runtime::Error;
use tenancy_runtime::principal::ServiceAuth;
use tonic::service::interceptor::InterceptedService;

/// One message to queue.
#[derive(Clone, Debug)]
pub struct OutgoingEmail {
    /// Unique per logical message (`identity:<kind>:<id>`); repeats are
    /// deduplicated by the outbox.
    pub idempotency_key: String,
    /// The recipient's address.
    pub to: String,
    /// The recipient's name (may be empty).
    pub to_name: String,
    /// The template.
    pub template: MessageTemplate,
    /// The template's variables (may contain links with tokens).
    pub data: HashMap<String, String>,
}

/// Where identity's emails go.
#[tonic::async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Queues one message (idempotent by key).
    async fn send(&self, email: OutgoingEmail) -> Result<(), Error>;
}

/// Sends through the contacts service's outbox.
pub struct ContactsMailer {
    client: ContactsInternalServiceClient<InterceptedService<Channel, ServiceAuth>>,
}

impl ContactsMailer {
    /// A mailer over a (lazy) channel to the contacts service.
    pub fn new(channel: Channel, auth: ServiceAuth) -> Self {
        Self {
            client: ContactsInternalServiceClient::with_interceptor(channel, auth),
        }
    }
}

#[tonic::async_trait]
impl Mailer for ContactsMailer {
    async fn send(&self, email: OutgoingEmail) -> Result<(), Error> {
        let request = SendEmailRequest {
            request_id: email.idempotency_key,
            to: vec![EmailAddress {
                email: email.to,
                name: email.to_name,
            }],
            template: email.template as i32,
            template_data: email.data,
            account_id: String::new(),
        };
        self.client
            .clone()
            .send_email(request)
            .await
            .map(|_| ())
            .map_err(|status| {
                tracing::warn!(code = ?status.code(), "contacts SendEmail failed");
                Error::unavailable("email could not be queued; retry")
            })
    }
}
