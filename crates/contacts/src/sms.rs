//! Where SMS go: an HTTP provider when `sms.url` is set, else the dev
//! sender, which writes each SMS to the log (the one line that exists to
//! be read, like the dev mailer's).
//!
//! The HTTP sender POSTs one request per message (HTTP/1.1 over hyper,
//! TLS with rustls and the webpki roots for `https`), the body made from
//! `sms.body_template`. A 2xx answer is delivered; 408, 429 and 5xx (and
//! connection errors, timeouts) are tried again; any other status is a
//! permanent refusal. Errors name the status only, never the body.

use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tenancy_runtime::config::{ConfigError, SmsConfig, redact_url};
use zeroize::Zeroizing;

use crate::domain::plaintext;
use crate::mailer::SendError;

/// Longest one request may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(30);

/// An SMS transport.
pub enum SmsSender {
    /// Logs messages instead of sending them.
    Dev,
    /// POSTs to a provider.
    Http(Box<HttpSender>),
}

/// A provider's HTTP endpoint and how to talk to it.
pub struct HttpSender {
    uri: hyper::Uri,
    host: String,
    port: u16,
    tls: Option<tokio_rustls::TlsConnector>,
    authorization: Option<String>,
    body_template: String,
    content_type: String,
    from: String,
}

impl SmsSender {
    /// The sender for `config`: HTTP when `sms.url` is set, else the dev
    /// sender.
    pub fn from_config(config: &SmsConfig) -> Result<Self, ConfigError> {
        let Some(url) = config
            .url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        else {
            return Ok(Self::Dev);
        };
        let bad =
            |why: &str| ConfigError::new("sms.url", format_args!("{}: {why}", redact_url(url)));
        let uri: hyper::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("must be http:// or https://")),
        };
        let host = uri.host().ok_or_else(|| bad("no host"))?.to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let roots =
                rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| ConfigError::new("sms.url", e))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(Arc::new(tls)))
        } else {
            None
        };
        let content_type = config.content_type.trim().to_ascii_lowercase();
        if content_type != "application/json" && content_type != "application/x-www-form-urlencoded"
        {
            return Err(ConfigError::new(
                "sms.content_type",
                "application/json or application/x-www-form-urlencoded",
            ));
        }
        if !config.body_template.contains("{text}") || !config.body_template.contains("{to}") {
            return Err(ConfigError::new(
                "sms.body_template",
                "must contain {to} and {text}",
            ));
        }
        Ok(Self::Http(Box::new(HttpSender {
            uri,
            host,
            port,
            tls,
            authorization: config.authorization.clone(),
            body_template: config.body_template.clone(),
            content_type,
            from: config.from.clone(),
        })))
    }

    /// Whether this is the dev sender.
    pub fn is_dev(&self) -> bool {
        matches!(self, Self::Dev)
    }

    /// Delivers `text` to `to`; `message_id` names it in logs.
    pub async fn send(&self, message_id: &str, to: &str, text: &str) -> Result<(), SendError> {
        match self {
            Self::Dev => {
                tracing::info!(
                    target: "tenancy_contacts::dev_sms",
                    message_id,
                    to,
                    "dev SMS sender (no sms.url set): SMS not sent, here it is:\n{text}"
                );
                Ok(())
            }
            Self::Http(sender) => tokio::time::timeout(TIMEOUT, sender.post(to, text))
                .await
                .unwrap_or_else(|_| Err(retry("sms: the provider did not answer in time"))),
        }
    }
}

/// A request body that is wiped when hyper drops it (rather than a
/// `Bytes`, which would give its buffer back as it is).
struct Wiped {
    bytes: Zeroizing<Vec<u8>>,
    at: usize,
}

impl Wiped {
    fn new(mut body: Zeroizing<String>) -> Self {
        // Moves the buffer (no copy); `body` is left empty.
        let bytes = Zeroizing::new(std::mem::take(&mut *body).into_bytes());
        Self { bytes, at: 0 }
    }
}

impl Buf for Wiped {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn chunk(&self) -> &[u8] {
        &self.bytes[self.at..]
    }

    fn advance(&mut self, n: usize) {
        self.at = (self.at + n).min(self.bytes.len());
    }
}

fn retry(message: &str) -> SendError {
    SendError {
        permanent: false,
        message: message.to_owned(),
    }
}

impl HttpSender {
    /// The request body for one message, wiped when dropped (`text` may
    /// hold a secret).
    fn body(&self, to: &str, text: &str) -> Zeroizing<String> {
        let escape = |value: &str| {
            if self.content_type == "application/json" {
                plaintext::escape_json(value)
            } else {
                plaintext::escape_form(value)
            }
        };
        // `{text}` last: only the last buffer holds the text.
        let addressed = self
            .body_template
            .replace("{to}", &escape(to))
            .replace("{from}", &escape(&self.from));
        plaintext::substitute(&addressed, "{text}", &escape(text))
    }

    async fn post(&self, to: &str, text: &str) -> Result<(), SendError> {
        let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| retry(&format!("sms: cannot connect: {e}")))?;
        let _ = stream.set_nodelay(true);
        let status = match &self.tls {
            Some(tls) => {
                let name = ServerName::try_from(self.host.clone())
                    .map_err(|_| retry("sms: the host is not a valid TLS name"))?;
                let stream = tls
                    .connect(name, stream)
                    .await
                    .map_err(|e| retry(&format!("sms: TLS: {e}")))?;
                self.exchange(stream, to, text).await?
            }
            None => self.exchange(stream, to, text).await?,
        };
        match status {
            s if s.is_success() => Ok(()),
            s if s.is_server_error() || s.as_u16() == 408 || s.as_u16() == 429 => {
                Err(retry(&format!("sms: provider answered {s}")))
            }
            s => Err(SendError {
                permanent: true,
                message: format!("sms: provider refused with {s}"),
            }),
        }
    }

    async fn exchange<S>(
        &self,
        stream: S,
        to: &str,
        text: &str,
    ) -> Result<hyper::StatusCode, SendError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| retry(&format!("sms: HTTP: {e}")))?;
        let driver = tokio::spawn(connection);
        let authority = match self.uri.port_u16() {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        };
        let path = self
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let mut request = http::Request::post(path)
            .header(http::header::HOST, authority)
            .header(http::header::CONTENT_TYPE, self.content_type.as_str());
        if let Some(auth) = &self.authorization {
            request = request.header(http::header::AUTHORIZATION, auth.as_str());
        }
        let request = request
            .body(Full::new(Wiped::new(self.body(to, text))))
            .map_err(|e| SendError {
                permanent: true,
                message: format!("sms: cannot build the request: {e}"),
            })?;
        let answer = sender
            .send_request(request)
            .await
            .map_err(|e| retry(&format!("sms: HTTP: {e}")));
        driver.abort();
        Ok(answer?.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(template: &str, content_type: &str) -> HttpSender {
        let config = SmsConfig {
            url: Some("http://127.0.0.1:9/send".into()),
            body_template: template.into(),
            content_type: content_type.into(),
            ..SmsConfig::default()
        };
        match SmsSender::from_config(&config).unwrap() {
            SmsSender::Http(s) => *s,
            SmsSender::Dev => panic!("expected the HTTP sender"),
        }
    }

    #[test]
    fn bodies_escape_values_for_their_content_type() {
        let json = sender(&SmsConfig::default().body_template, "application/json");
        let body = json.body("+358401234567", "a \"quoted\"\nline");
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["text"], "a \"quoted\"\nline");
        assert_eq!(parsed["to"], "+358401234567");
        let form = sender("to={to}&msg={text}", "application/x-www-form-urlencoded");
        assert_eq!(form.body("+1", "a&b=c").as_str(), "to=%2B1&msg=a%26b%3Dc");
    }

    #[test]
    fn bad_settings_are_refused_naming_them() {
        let mut config = SmsConfig {
            url: Some("ftp://example.com".into()),
            ..SmsConfig::default()
        };
        assert_eq!(
            SmsSender::from_config(&config).err().unwrap().setting,
            "sms.url"
        );
        config.url = Some("https://sms.example.com/v1/send".into());
        config.body_template = "{to}".into();
        assert_eq!(
            SmsSender::from_config(&config).err().unwrap().setting,
            "sms.body_template"
        );
    }
}
