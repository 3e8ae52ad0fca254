//! Where messages go: an SMTP relay when `smtp_url` is set, else the dev
//! mailer, which writes each message (with its links) to the log.
//!
//! SMTP uses lettre's connection and commands, with our own small pool
//! instead of lettre's `AsyncSmtpTransport`, for two reasons measured by
//! the outbox benchmark: lettre writes the message body and the closing
//! `.` in two writes on a socket without TCP_NODELAY, so Nagle's algorithm
//! holds the `.` until the relay's delayed ACK (≈ 40 ms per message on
//! Linux); and its pool sends a NOOP before every reuse. Here the body and
//! its terminator go out in one write, and a pooled connection is only
//! probed after it sat idle.

use std::fmt;
use std::time::{Duration, Instant};

use lettre::Message;
use lettre::address::Envelope;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Tls, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use tenancy_runtime::config::{ConfigError, redact_url};
use tokio::sync::Mutex;

use crate::domain::outbox::Message as Queued;

/// Longest a connection or one delivery may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// A pooled connection idle longer than this is probed (NOOP) before use.
const PROBE_AFTER_IDLE: Duration = Duration::from_secs(15);

/// How one delivery attempt failed.
#[derive(Debug, Clone)]
pub struct SendError {
    /// A permanent rejection (5xx, malformed address): retrying is useless.
    pub permanent: bool,
    /// What happened, for `last_error` (never contains the message body).
    pub message: String,
}

impl SendError {
    fn smtp(e: &lettre::transport::smtp::Error) -> Self {
        Self {
            permanent: e.is_permanent(),
            message: format!("smtp: {e}"),
        }
    }
}

/// A message transport.
pub enum Mailer {
    /// Logs messages instead of sending them.
    Dev,
    /// Sends through an SMTP relay, with pooled connections.
    Smtp(Box<Relay>),
}

impl Mailer {
    /// The mailer for `smtp_url`: SMTP when set, the dev mailer otherwise;
    /// up to `connections` SMTP connections are kept open and reused.
    ///
    /// URL forms (lettre's): `smtps://user:pass@host:465` (implicit TLS),
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS required),
    /// `smtp://host:25?tls=opportunistic` (STARTTLS when offered),
    /// `smtp://host:25` (plain text, for a local relay). `user:pass` is
    /// optional (percent-encode special characters); when given, the relay
    /// must offer AUTH PLAIN or LOGIN. A path names the EHLO host
    /// (`smtp://relay:25/mail.example.com`).
    pub fn from_config(smtp_url: Option<&str>, connections: u32) -> Result<Self, ConfigError> {
        let Some(url) = smtp_url.map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(Self::Dev);
        };
        let relay = Relay::from_url(url, connections)
            .map_err(|e| ConfigError::new("smtp_url", format_args!("{}: {e}", redact_url(url))))?;
        Ok(Self::Smtp(Box::new(relay)))
    }

    /// Whether this is the dev mailer.
    pub fn is_dev(&self) -> bool {
        matches!(self, Self::Dev)
    }

    /// Delivers one message.
    pub async fn send(&self, m: &Queued, from: &Mailbox) -> Result<(), SendError> {
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
            Self::Smtp(relay) => relay.send(&build(m, from)?).await,
        }
    }
}

/// An SMTP relay and the connections open to it.
pub struct Relay {
    host: String,
    port: u16,
    tls: Tls,
    hello: ClientId,
    credentials: Option<Credentials>,
    /// Idle connections with when they were last used, most recent last.
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    /// Most idle connections kept.
    max_idle: usize,
}

impl Relay {
    /// Parses an `smtp_url` (the forms of [`Mailer::from_config`]).
    fn from_url(url: &str, connections: u32) -> Result<Self, String> {
        let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls_mode = parsed
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let params = || TlsParameters::new(host.clone()).map_err(|e| e.to_string());
        let (tls, default_port) = match (parsed.scheme(), tls_mode.as_deref()) {
            ("smtp", None) => (Tls::None, 25),
            ("smtp", Some("required")) => (Tls::Required(params()?), 587),
            ("smtp", Some("opportunistic")) => (Tls::Opportunistic(params()?), 587),
            ("smtps", None) => (Tls::Wrapper(params()?), 465),
            (scheme, tls) => {
                return Err(format!(
                    "unknown scheme {scheme:?} or tls parameter {tls:?} (smtp, smtp?tls=required, \
                     smtp?tls=opportunistic, smtps)"
                ));
            }
        };
        let hello = match parsed.path().trim_matches('/') {
            "" => ClientId::default(),
            name => ClientId::Domain(name.to_owned()),
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|e| format!("credentials: {e}"))
        };
        let credentials = match parsed.password() {
            Some(password) => Some(Credentials::new(
                decode(parsed.username())?,
                decode(password)?,
            )),
            None => None,
        };
        Ok(Self {
            port: parsed.port().unwrap_or(default_port),
            host,
            tls,
            hello,
            credentials,
            idle: Mutex::new(Vec::new()),
            max_idle: connections.max(1) as usize,
        })
    }

    /// Sends `email`, on a pooled connection when one is idle. A failure
    /// on a reused connection (the relay may have closed it) is tried once
    /// more on a fresh one.
    async fn send(&self, email: &Message) -> Result<(), SendError> {
        let envelope = email.envelope();
        // Wiped once sent: it may hold a secret (see worker::WithSecret).
        let body = zeroize::Zeroizing::new(email.formatted());
        let fresh = async {
            tokio::time::timeout(TIMEOUT, self.connect())
                .await
                .map_err(|_| timed_out("connecting"))?
                .map_err(|e| SendError::smtp(&e))
        };
        let (mut conn, reused) = match self.checkout().await {
            Some(conn) => (conn, true),
            None => (fresh.await?, false),
        };
        let mut result = transfer(&mut conn, envelope, &body).await;
        if reused && result.as_ref().is_err_and(|e| !e.permanent) {
            conn.abort().await;
            conn = self.connect().await.map_err(|e| SendError::smtp(&e))?;
            result = transfer(&mut conn, envelope, &body).await;
        }
        match result {
            Ok(()) => self.checkin(conn).await,
            Err(_) => conn.abort().await,
        }
        result
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, lettre::transport::smtp::Error> {
        let implicit = match &self.tls {
            Tls::Wrapper(params) => Some(params.clone()),
            _ => None,
        };
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (self.host.as_str(), self.port),
            Some(TIMEOUT),
            &self.hello,
            implicit,
            None,
        )
        .await?;
        match &self.tls {
            Tls::Required(params) => conn.starttls(params.clone(), &self.hello).await?,
            Tls::Opportunistic(params) if conn.can_starttls() => {
                conn.starttls(params.clone(), &self.hello).await?;
            }
            _ => {}
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(DEFAULT_MECHANISMS, credentials).await?;
        }
        Ok(conn)
    }

    /// The most recently used idle connection, probed if it sat long.
    async fn checkout(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let (mut conn, used) = self.idle.lock().await.pop()?;
            if used.elapsed() < PROBE_AFTER_IDLE || conn.test_connected().await {
                return Some(conn);
            }
            conn.abort().await;
        }
    }

    async fn checkin(&self, mut conn: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().await;
        if idle.len() < self.max_idle && !conn.has_broken() {
            idle.push((conn, Instant::now()));
        } else {
            drop(idle);
            let _ = conn.quit().await;
        }
    }
}

fn timed_out(what: &str) -> SendError {
    SendError {
        permanent: false,
        message: format!("smtp: timed out {what}"),
    }
}

/// One SMTP transaction: MAIL, RCPT, DATA, then the dot-stuffed message
/// and its terminator in one write.
async fn transfer(
    conn: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    body: &[u8],
) -> Result<(), SendError> {
    let exchange = async {
        let mut options = Vec::new();
        let non_ascii = |a: &lettre::Address| !AsRef::<str>::as_ref(a).is_ascii();
        if envelope.from().is_some_and(non_ascii) || envelope.to().iter().any(non_ascii) {
            options.push(MailParameter::SmtpUtfEight);
        }
        if !body.is_ascii() {
            if !conn.server_info().supports_feature(Extension::EightBitMime) {
                return Err(SendError {
                    permanent: true,
                    message: "smtp: the relay does not accept 8-bit messages".to_owned(),
                });
            }
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let smtp = |e: lettre::transport::smtp::Error| SendError::smtp(&e);
        conn.command(Mail::new(envelope.from().cloned(), options))
            .await
            .map_err(smtp)?;
        for to in envelope.to() {
            conn.command(Rcpt::new(to.clone(), Vec::new()))
                .await
                .map_err(smtp)?;
        }
        conn.command(Data).await.map_err(smtp)?;
        let content = std::str::from_utf8(body).map_err(|e| SendError {
            permanent: true,
            message: format!("message: {e}"),
        })?;
        conn.command(DotStuffed(content)).await.map_err(smtp)?;
        Ok(())
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| timed_out("sending"))?
}

/// A message as sent after DATA: every line that starts with `.` gets
/// another, and `CRLF . CRLF` ends it (RFC 5321 §4.5.2).
struct DotStuffed<'a>(&'a str);

impl fmt::Display for DotStuffed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.0.split_inclusive('\n') {
            if line.starts_with('.') {
                f.write_str(".")?;
            }
            f.write_str(line)?;
        }
        if !self.0.is_empty() && !self.0.ends_with("\r\n") {
            f.write_str("\r\n")?;
        }
        f.write_str(".\r\n")
    }
}

/// The MIME message of an outbox row: plain text and HTML alternatives,
/// the stored Message-ID (so a receiver can drop a rare duplicate).
pub fn build(m: &Queued, from: &Mailbox) -> Result<Message, SendError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing_doubles_leading_dots_and_terminates() {
        let s = DotStuffed("a\r\n.b\r\n..c\r\nd.\r\n").to_string();
        assert_eq!(s, "a\r\n..b\r\n...c\r\nd.\r\n.\r\n");
        assert_eq!(DotStuffed("x").to_string(), "x\r\n.\r\n");
        assert_eq!(DotStuffed(".").to_string(), "..\r\n.\r\n");
    }

    #[test]
    fn smtp_urls_of_every_form_parse_and_others_are_refused() {
        let r = Relay::from_url("smtp://127.0.0.1:2525", 4).unwrap();
        assert_eq!((r.host.as_str(), r.port), ("127.0.0.1", 2525));
        assert!(matches!(r.tls, Tls::None));
        assert!(r.credentials.is_none());
        let r = Relay::from_url("smtp://u%40x:p%3Aw@relay.example?tls=required", 4).unwrap();
        assert_eq!(r.port, 587);
        assert!(matches!(r.tls, Tls::Required(_)));
        assert!(r.credentials.is_some());
        let r = Relay::from_url("smtps://relay.example", 4).unwrap();
        assert_eq!(r.port, 465);
        assert!(matches!(r.tls, Tls::Wrapper(_)));
        let r = Relay::from_url("smtp://relay.example?tls=opportunistic", 4).unwrap();
        assert!(matches!(r.tls, Tls::Opportunistic(_)));
        assert!(Relay::from_url("http://relay.example", 4).is_err());
        assert!(Relay::from_url("smtp://relay.example?tls=sometimes", 4).is_err());
        assert!(Mailer::from_config(Some("smtp://"), 4).is_err());
    }
}
