//! Where messages go: an SMTP relay (lettre) when `smtp_url` is set, else
//! the dev mailer, which writes each message (with its links) to the log.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tenancy_runtime::config::{ConfigError, redact_url};

use crate::store::entities::outbox_message as msg;

/// Concurrent SMTP connections (and deliveries in flight).
pub const SMTP_CONNECTIONS: u32 = 16;

/// How one delivery attempt failed.
#[derive(Debug, Clone)]
pub struct SendError {
    /// A permanent rejection (5xx, malformed address): retrying is useless.
    pub permanent: bool,
    /// What happened, for `last_error` (never contains the message body).
    pub message: String,
}

/// A message transport.
pub enum Mailer {
    /// Logs messages instead of sending them.
    Dev,
    /// Sends through an SMTP relay, with pooled connections.
    Smtp(Box<AsyncSmtpTransport<Tokio1Executor>>),
}

impl Mailer {
    /// The mailer for `smtp_url`: SMTP when set, the dev mailer otherwise.
    ///
    /// URL forms (lettre's): `smtps://user:pass@host:465` (implicit TLS),
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS required),
    /// `smtp://host:25?tls=opportunistic` (STARTTLS when offered),
    /// `smtp://host:25` (plain text, for a local relay). `user:pass` is
    /// optional (percent-encode special characters); when given, the relay
    /// must offer AUTH PLAIN or LOGIN.
    pub fn from_config(smtp_url: Option<&str>) -> Result<Self, ConfigError> {
        let Some(url) = smtp_url.map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(Self::Dev);
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| ConfigError::new("smtp_url", format_args!("{}: {e}", redact_url(url))))?
            .timeout(Some(Duration::from_secs(30)))
            .pool_config(PoolConfig::new().max_size(SMTP_CONNECTIONS))
            .build();
        Ok(Self::Smtp(Box::new(transport)))
    }

    /// Whether this is the dev mailer.
    pub fn is_dev(&self) -> bool {
        matches!(self, Self::Dev)
    }

    /// Delivers one message.
    pub async fn send(&self, m: &msg::Model, from: &Mailbox) -> Result<(), SendError> {
        match self {
            Self::Dev => {
                tracing::info!(
                    target: "tenancy_contacts::dev_mailer",
                    message_id = %m.id,
                    to = %m.to_email,
                    subject = %m.subject,
                    "dev mailer (no smtp_url set): email not sent, here it is:\n\
                     To: {}\nSubject: {}\n\n{}",
                    m.to_email,
                    m.subject,
                    m.body_text
                );
                Ok(())
            }
            Self::Smtp(transport) => {
                let email = build(m, from)?;
                transport
                    .send(email)
                    .await
                    .map(|_| ())
                    .map_err(|e| SendError {
                        permanent: e.is_permanent(),
                        message: format!("smtp: {e}"),
                    })
            }
        }
    }
}

/// The MIME message of an outbox row: plain text and HTML alternatives,
/// the stored Message-ID (so a receiver can drop a rare duplicate).
pub fn build(m: &msg::Model, from: &Mailbox) -> Result<Message, SendError> {
    let permanent = |what: &str, e: &dyn std::fmt::Display| SendError {
        permanent: true,
        message: format!("{what}: {e}"),
    };
    let address = m
        .to_email
        .parse::<lettre::Address>()
        .map_err(|e| permanent("recipient address", &e))?;
    let name = Some(m.to_name.clone()).filter(|n| !n.trim().is_empty());
    Message::builder()
        .from(from.clone())
        .to(Mailbox::new(name, address))
        .subject(m.subject.clone())
        .message_id(Some(m.smtp_message_id.clone()))
        .multipart(MultiPart::alternative_plain_html(
            m.body_text.clone(),
            m.body_html.clone(),
        ))
        .map_err(|e| permanent("message", &e))
}

/// Parses the configured `From:`.
pub fn parse_from(from: &str) -> Result<Mailbox, ConfigError> {
    from.parse::<Mailbox>()
        .map_err(|e| ConfigError::new("mail.from", format_args!("{from:?}: {e}")))
}
