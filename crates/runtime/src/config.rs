//! Configuration: typed, with defaults, loaded once.
//!
//! Sources, later ones winning: built-in defaults, then an optional TOML file
//! (`--config` / `TENANCY_CONFIG`), then `TENANCY_*` environment variables.
//! Nested keys use a double underscore: `TENANCY_IDENTITY__DATABASE_URL`
//! sets `[identity] database_url`. Unknown keys in the file are refused, so
//! a typo never silently falls back to a default. The README documents
//! every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

/// Top-level keys that environment variables may set. Other `TENANCY_*`
/// variables (`TENANCY_CONFIG`, `TENANCY_TEST_DATABASE_URL`) are not config.
const ENV_KEYS: &[&str] = &[
    "data_dir",
    "log_format",
    "log_filter",
    "principal_key",
    "principal_keys_accepted",
    "smtp_url",
    "otel",
    "max_message_bytes",
    "request_timeout",
    "metrics_listen",
    "tls",
    "auth",
    "mail",
    "sms",
    "gateway",
    "identity",
    "account",
    "contacts",
    "support",
];

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Which authenticators may register a passkey
/// (`auth.webauthn_attestation`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WebauthnAttestation {
    /// Any authenticator; its attestation is neither asked for nor checked.
    #[default]
    None,
    /// Only authenticators whose attestation chains to one of the CA
    /// certificates in `auth.webauthn_attestation_ca_file` (device-bound
    /// security keys and platform authenticators that attest; synced
    /// passkeys do not).
    Ca,
}

/// The whole configuration of the suite. One struct for every process, so
/// `tenancy serve` and `tenancy serve <service>` read the same file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where `tenancy serve` keeps SQLite files and generated keys.
    pub data_dir: PathBuf,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// A `tracing` filter, e.g. `info,tenancy_identity=debug`.
    pub log_filter: String,
    /// The HMAC key the gateway signs forwarded principals with and services
    /// verify them with: hex or base64, at least 32 bytes. `tenancy serve`
    /// generates one in `data_dir` when unset; a single service requires it.
    pub principal_key: Option<String>,
    /// More keys (comma-separated, each as `principal_key`) services accept
    /// principals signed with, for a rotation without downtime: first every
    /// service accepts the new key here, then the gateways sign with it
    /// (`principal_key`), then every service takes it as `principal_key`
    /// and the old one leaves this list.
    pub principal_keys_accepted: Option<String>,
    /// `smtp://`/`smtps://` URL of the mail relay; unset = log emails.
    pub smtp_url: Option<String>,
    /// Largest accepted gRPC message, in bytes.
    pub max_message_bytes: usize,
    /// Longest a unary call may take before DEADLINE_EXCEEDED.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Where to serve Prometheus metrics (`/metrics`, plain HTTP); unset:
    /// none are served, and calls are not timed.
    pub metrics_listen: Option<SocketAddr>,
    /// Traces (OpenTelemetry, OTLP).
    pub otel: OtelConfig,
    /// Mutual TLS between the parts.
    pub tls: TlsConfig,
    /// Logins, sessions, tokens and passwords (identity and gateway).
    pub auth: AuthConfig,
    /// Email delivery (contacts).
    pub mail: MailConfig,
    /// SMS delivery (contacts).
    pub sms: SmsConfig,
    /// The public entry point.
    pub gateway: GatewayConfig,
    /// The identity service.
    pub identity: ServiceConfig,
    /// The account service.
    pub account: ServiceConfig,
    /// The contacts service.
    pub contacts: ServiceConfig,
    /// The support service.
    pub support: ServiceConfig,
}

/// Traces: every RPC is a span (W3C `traceparent` accepted from clients and
/// passed on between parts), exported over OTLP/gRPC when an endpoint is
/// set.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct OtelConfig {
    /// The OTLP/gRPC collector spans are sent to, e.g.
    /// `http://otel-collector:4317`. Unset: `OTEL_EXPORTER_OTLP_ENDPOINT`;
    /// both unset, nothing is exported (trace ids still propagate and
    /// appear in logs).
    pub endpoint: Option<String>,
}

impl OtelConfig {
    /// Where spans are exported, if anywhere.
    pub fn endpoint(&self) -> Option<String> {
        self.endpoint
            .clone()
            .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
            .filter(|e| !e.trim().is_empty())
    }
}

/// Mutual TLS between the parts: the internal CA and this part's
/// certificate. `tenancy serve` (the whole suite) makes a throw-away CA and
/// certificates in `data_dir/tls` when these are unset; a part run alone,
/// and `tenancy admin`, need them.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate(s) of the internal CA peers are verified against.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain of this part, naming it `<part>.tenancy`;
    /// `{part}` in the path is replaced by the part's name.
    pub cert_file: Option<String>,
    /// PEM private key of that certificate; `{part}` as in `cert_file`.
    pub key_file: Option<String>,
    /// How often the files are read again (a rotated certificate is used
    /// for new connections, open ones go on).
    #[serde(with = "humantime_serde::option")]
    pub reload_interval: Option<Duration>,
}

impl TlsConfig {
    /// How often certificate files are read again (default 10 s).
    pub fn reload_interval(&self) -> Duration {
        self.reload_interval.unwrap_or(Duration::from_secs(10))
    }

    /// The files of `part`, or which setting is missing.
    pub fn files(&self, part: &str) -> Result<crate::tls::TlsFiles, ConfigError> {
        let missing = |setting: &str| {
            ConfigError::new(
                format!("tls.{setting}"),
                "required: the internal CA and this part's certificate (run `tenancy serve` once to make development ones in data_dir/tls)",
            )
        };
        let ca = self.ca_file.clone().ok_or_else(|| missing("ca_file"))?;
        let cert = self
            .cert_file
            .as_deref()
            .ok_or_else(|| missing("cert_file"))?;
        let key = self
            .key_file
            .as_deref()
            .ok_or_else(|| missing("key_file"))?;
        Ok(crate::tls::TlsFiles {
            ca,
            cert: PathBuf::from(cert.replace("{part}", part)),
            key: PathBuf::from(key.replace("{part}", part)),
        })
    }
}

/// Authentication settings, shared by identity (which issues tokens) and the
/// gateway (which verifies them).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// JWT `iss` of access tokens.
    pub issuer: String,
    /// JWT `aud` of access tokens.
    pub audience: String,
    /// Lifetime of an access token.
    #[serde(with = "humantime_serde")]
    pub access_token_lifetime: Duration,
    /// A session ends after this long without a refresh.
    #[serde(with = "humantime_serde")]
    pub session_idle_timeout: Duration,
    /// A session ends this long after login, whatever its activity.
    #[serde(with = "humantime_serde")]
    pub session_lifetime: Duration,
    /// Sensitive operations need an authentication at most this old.
    #[serde(with = "humantime_serde")]
    pub reauth_window: Duration,
    /// Minimum password length in Unicode code points (after NFC).
    pub password_min_chars: usize,
    /// argon2id memory cost in KiB.
    pub argon2_memory_kib: u32,
    /// argon2id iterations.
    pub argon2_iterations: u32,
    /// argon2id lanes.
    pub argon2_parallelism: u32,
    /// Admission control of the password-hashing pool: a password check
    /// (login, sign-up, password change) whose expected wait for a free
    /// core exceeds this is refused at once (RESOURCE_EXHAUSTED
    /// UPSTREAM_BUSY with a retry delay) instead of queueing.
    #[serde(with = "humantime_serde")]
    pub password_hash_max_wait: Duration,
    /// Key encrypting TOTP secrets at rest: hex or base64 of 32 bytes.
    /// `tenancy serve` generates one in `data_dir` when unset.
    pub totp_encryption_key: Option<String>,
    /// The WebAuthn relying-party id passkeys are bound to: the portal's
    /// host name or a registrable suffix of it (`example.com` for
    /// `https://portal.example.com`). Changing it orphans every passkey.
    pub webauthn_rp_id: String,
    /// The origins passkey ceremonies may come from (the portal's pages,
    /// `https://portal.example.com`): each is the rp id or one of its
    /// subdomains; `http://` only for `localhost`.
    pub webauthn_origins: Vec<String>,
    /// Which authenticators may register a passkey: `none` (any, the
    /// attestation is not checked) or `ca` (only those attested by a CA in
    /// `webauthn_attestation_ca_file`).
    pub webauthn_attestation: WebauthnAttestation,
    /// PEM file of the attestation CA certificates trusted when
    /// `webauthn_attestation` is `ca` (e.g. the vendors' roots from the
    /// FIDO Metadata Service); required then, unused otherwise.
    pub webauthn_attestation_ca_file: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: "tenancy".to_owned(),
            audience: "tenancy-portal".to_owned(),
            access_token_lifetime: Duration::from_secs(10 * 60),
            session_idle_timeout: Duration::from_secs(14 * 24 * 3600),
            session_lifetime: Duration::from_secs(30 * 24 * 3600),
            reauth_window: Duration::from_secs(15 * 60),
            password_min_chars: 12,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            password_hash_max_wait: Duration::from_millis(500),
            totp_encryption_key: None,
            webauthn_rp_id: "localhost".to_owned(),
            webauthn_origins: vec!["http://localhost:8080".to_owned()],
            webauthn_attestation: WebauthnAttestation::None,
            webauthn_attestation_ca_file: None,
        }
    }
}

/// Email settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    /// The `From:` of every message.
    pub from: String,
    /// Base URL of the customer portal, for links in messages
    /// (`{portal_url}/verify-email?token=…`).
    pub portal_url: String,
    /// Delivery attempts before a message is marked failed.
    pub max_attempts: u32,
    /// First retry delay; doubles on each attempt.
    #[serde(with = "humantime_serde")]
    pub retry_base_delay: Duration,
    /// SMTP deliveries in flight at once (pooled SMTP connections).
    pub delivery_concurrency: u32,
    /// How long delivered outbox messages are kept before they are pruned.
    #[serde(with = "humantime_serde")]
    pub sent_retention: Duration,
    /// How long failed outbox messages (and expired verification tokens)
    /// are kept before they are pruned.
    #[serde(with = "humantime_serde")]
    pub failed_retention: Duration,
    /// Emails that callers who need not prove anything can make identity
    /// send to one address (verification and password-reset links) per
    /// `recipient_window`; beyond, such requests answer the same and send
    /// nothing.
    pub max_per_recipient: u32,
    /// The window of `max_per_recipient`.
    #[serde(with = "humantime_serde")]
    pub recipient_window: Duration,
    /// Key sealing the secrets outbox messages carry (server passwords,
    /// phone codes) until they are delivered: hex or base64 of 32 bytes.
    /// Unset: derived from the principal key.
    pub secret_key: Option<String>,
}

/// SMS delivery: an HTTP provider when `url` is set, else the dev sender,
/// which writes each SMS to the log.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SmsConfig {
    /// The provider's endpoint (`https://…`, or `http://` on loopback),
    /// POSTed once per message. Unset: the dev sender.
    pub url: Option<String>,
    /// The `Authorization` header value sent with every request (e.g.
    /// `Bearer …` or `Basic …`); unset: none.
    pub authorization: Option<String>,
    /// The request body, with `{to}`, `{from}` and `{text}` replaced by
    /// the values, escaped for `content_type` (JSON string content, or
    /// form-urlencoded).
    pub body_template: String,
    /// `Content-Type` of the body: `application/json` or
    /// `application/x-www-form-urlencoded`.
    pub content_type: String,
    /// The sender name or number (`{from}`).
    pub from: String,
}

impl Default for SmsConfig {
    fn default() -> Self {
        Self {
            url: None,
            authorization: None,
            body_template: r#"{"to":"{to}","from":"{from}","text":"{text}"}"#.to_owned(),
            content_type: "application/json".to_owned(),
            from: "Tenancy".to_owned(),
        }
    }
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            from: "Tenancy <no-reply@tenancy.localhost>".to_owned(),
            portal_url: "http://localhost:8080".to_owned(),
            max_attempts: 8,
            retry_base_delay: Duration::from_secs(5),
            delivery_concurrency: 16,
            sent_retention: Duration::from_secs(30 * 24 * 3600),
            failed_retention: Duration::from_secs(90 * 24 * 3600),
            max_per_recipient: 5,
            recipient_window: Duration::from_secs(3600),
            secret_key: None,
        }
    }
}

/// The gateway's settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// PEM certificate chain of the public port; with `tls_key_file`, the
    /// port serves TLS (1.2 and 1.3, ALPN h2). Read again when it changes.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Serve plaintext on a non-loopback `listen` address (behind a
    /// TLS-terminating load balancer). Without it, that is refused.
    pub allow_plaintext: bool,
    /// Where to serve gRPC health alone, in plaintext, for probes.
    pub health_listen: Option<SocketAddr>,
    /// Proxies whose `x-forwarded-for` is believed (CIDRs).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Rate of rate-limited PUBLIC calls (login, sign-up, password reset)
    /// per client address, per minute.
    pub public_rate_per_minute: u32,
    /// Burst of rate-limited PUBLIC calls per client address.
    pub public_burst: u32,
    /// Failed API-token introspections (unknown tokens) per client address,
    /// per minute, once the burst is spent; beyond, uncached API tokens
    /// from that address are refused without asking identity.
    pub api_token_failures_per_minute: u32,
    /// Burst of failed API-token introspections per client address.
    pub api_token_failure_burst: u32,
    /// Rate of authenticated calls per user, per second.
    pub principal_rate_per_second: u32,
    /// Burst of authenticated calls per user.
    pub principal_burst: u32,
    /// Calls in flight to one service at most; beyond, RESOURCE_EXHAUSTED.
    pub upstream_concurrency: usize,
    /// How often the gateway reports API-token and session use to identity
    /// (`last_used_time`, session activity and idle expiry lag by at most
    /// this much).
    #[serde(with = "humantime_serde")]
    pub usage_report_interval: Duration,
    /// Calls and streams one user may have in flight through the gateway
    /// at once; beyond, RESOURCE_EXHAUSTED `CONCURRENCY_LIMITED`.
    pub max_calls_per_user: u32,
    /// Calls and streams in flight for one account (all its members and
    /// API tokens) at once; below `upstream_concurrency`, so no customer
    /// can take every slot.
    pub max_calls_per_account: u32,
    /// Public connections open at once at most; beyond, new ones are
    /// closed at accept.
    pub max_connections: usize,
    /// Public connections from one client address (IPv6: one /64) at most;
    /// trusted proxies are limited by `max_connections` only.
    pub max_connections_per_address: u32,
    /// Longest a new public connection may take to finish its TLS
    /// handshake and send its first call.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// A public connection with no call in flight for this long is closed
    /// (GOAWAY; clients reconnect on their next call).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How often the gateway pings a public connection (HTTP/2 PING) to
    /// find peers that vanished.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// Most verified portal access tokens the gateway caches, and most API
    /// tokens' introspections: a bound on the caches' memory. A token not
    /// cached costs a signature check (portal) or an introspection (API).
    pub max_cached_tokens: usize,
}

/// One service's settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Where the service listens.
    pub listen: SocketAddr,
    /// `sqlite://…` or `postgres://…`; default: a SQLite file in `data_dir`.
    pub database_url: Option<String>,
    /// How the gateway and other services reach it (one or more
    /// comma-separated `https://host:port`; always mutual TLS, whatever the
    /// scheme); default: its `listen` address.
    pub url: Option<String>,
    /// Where to serve gRPC health alone, in plaintext, for probes that
    /// cannot do mutual TLS (Kubernetes).
    pub health_listen: Option<SocketAddr>,
    /// How long the change log gateways follow keeps an entry: identity's
    /// revocation log, account's policy log (other services have none). A
    /// gateway that was away longer starts again from a full snapshot.
    #[serde(
        default = "ServiceConfig::default_change_log_retention",
        with = "humantime_serde"
    )]
    pub change_log_retention: Duration,
}

impl ServiceConfig {
    /// The shortest [`Self::change_log_retention`] accepted (the protos
    /// promise watchers a day).
    pub const MIN_CHANGE_LOG_RETENTION: Duration = Duration::from_secs(24 * 3600);

    fn on_port(port: u16) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            database_url: None,
            url: None,
            health_listen: None,
            change_log_retention: Self::default_change_log_retention(),
        }
    }

    fn default_change_log_retention() -> Duration {
        Duration::from_secs(7 * 24 * 3600)
    }

    /// [`Self::change_log_retention`] of service `name`, checked: at least
    /// [`Self::MIN_CHANGE_LOG_RETENTION`] and the access-token lifetime.
    pub fn checked_change_log_retention(
        &self,
        name: ServiceName,
        access_token_lifetime: Duration,
    ) -> Result<Duration, ConfigError> {
        let least = Self::MIN_CHANGE_LOG_RETENTION.max(access_token_lifetime);
        if self.change_log_retention < least {
            return Err(ConfigError::new(
                format!("{}.change_log_retention", name.as_str()),
                format_args!(
                    "must be at least {}s (24h, and at least auth.access_token_lifetime)",
                    least.as_secs()
                ),
            ));
        }
        Ok(self.change_log_retention)
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            tls_cert_file: None,
            tls_key_file: None,
            allow_plaintext: false,
            health_listen: None,
            trusted_proxies: Vec::new(),
            public_rate_per_minute: 10,
            public_burst: 20,
            api_token_failures_per_minute: 10,
            api_token_failure_burst: 20,
            principal_rate_per_second: 100,
            principal_burst: 200,
            upstream_concurrency: 1024,
            usage_report_interval: Duration::from_secs(30),
            max_calls_per_user: 64,
            max_calls_per_account: 256,
            max_connections: 4096,
            max_connections_per_address: 64,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            keepalive_interval: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(20),
            max_cached_tokens: 458_752,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./tenancy-data"),
            log_format: LogFormat::Text,
            log_filter: "info,sea_orm_migration=warn".to_owned(),
            principal_key: None,
            principal_keys_accepted: None,
            smtp_url: None,
            max_message_bytes: 4 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            metrics_listen: None,
            otel: OtelConfig::default(),
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            mail: MailConfig::default(),
            sms: SmsConfig::default(),
            gateway: GatewayConfig::default(),
            identity: ServiceConfig::on_port(50061),
            account: ServiceConfig::on_port(50062),
            contacts: ServiceConfig::on_port(50063),
            support: ServiceConfig::on_port(50064),
        }
    }
}

/// The four services, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceName {
    /// Users, logins, sessions, tokens.
    Identity,
    /// Accounts, members, policies.
    Account,
    /// Contacts, notifications, outbox.
    Contacts,
    /// Tickets.
    Support,
}

impl ServiceName {
    /// Every service, in start-up order (dependencies first).
    pub const ALL: [Self; 4] = [Self::Contacts, Self::Identity, Self::Account, Self::Support];

    /// The caller this service is to others (its certificate's name).
    pub fn caller(self) -> crate::tls::Caller {
        match self {
            Self::Identity => crate::tls::Caller::Identity,
            Self::Account => crate::tls::Caller::Account,
            Self::Contacts => crate::tls::Caller::Contacts,
            Self::Support => crate::tls::Caller::Support,
        }
    }

    /// The lower-case name used in config keys, file names and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Account => "account",
            Self::Contacts => "contacts",
            Self::Support => "support",
        }
    }
}

/// A configuration that cannot be used, naming the setting.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct ConfigError {
    /// The setting at fault, e.g. `identity.database_url`.
    pub setting: String,
    /// What is wrong, on one line.
    pub message: String,
}

impl ConfigError {
    /// An error about `setting`.
    pub fn new(setting: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self {
            setting: setting.into(),
            message: message.to_string().replace('\n', " "),
        }
    }
}

impl Config {
    /// Loads defaults, then `file` (when given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        // Defaults first, so a file or variable that sets one key of a
        // section (say `identity.database_url`) keeps the section's other
        // defaults.
        let mut figment =
            Figment::from(figment::providers::Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::new(
                    "config",
                    format_args!("no such file: {}", path.display()),
                ));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("TENANCY_").split("__").filter(|key| {
            let key = key.as_str().to_ascii_lowercase();
            ENV_KEYS.iter().any(|k| key.starts_with(k))
        }));
        figment.extract().map_err(|e| {
            let setting = if e.path.is_empty() {
                "config".to_owned()
            } else {
                e.path.join(".")
            };
            ConfigError::new(setting, e.kind)
        })
    }

    /// A configuration for tests: every server on an ephemeral loopback port,
    /// data in `data_dir`, a fixed principal key.
    pub fn for_test(data_dir: &Path) -> Self {
        let ephemeral = ServiceConfig::on_port(0);
        Self {
            data_dir: data_dir.to_owned(),
            principal_key: Some("11".repeat(32)),
            gateway: GatewayConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                ..GatewayConfig::default()
            },
            identity: ephemeral.clone(),
            account: ephemeral.clone(),
            contacts: ephemeral.clone(),
            support: ephemeral,
            ..Self::default()
        }
    }

    /// The settings of one service.
    pub fn service(&self, name: ServiceName) -> &ServiceConfig {
        match name {
            ServiceName::Identity => &self.identity,
            ServiceName::Account => &self.account,
            ServiceName::Contacts => &self.contacts,
            ServiceName::Support => &self.support,
        }
    }

    /// Mutable settings of one service (the all-in-one process fills in
    /// `url` once it knows the bound ports).
    pub fn service_mut(&mut self, name: ServiceName) -> &mut ServiceConfig {
        match name {
            ServiceName::Identity => &mut self.identity,
            ServiceName::Account => &mut self.account,
            ServiceName::Contacts => &mut self.contacts,
            ServiceName::Support => &mut self.support,
        }
    }

    /// The database URL of a service: its own setting, or a SQLite file
    /// named after it in `data_dir`.
    pub fn database_url(&self, name: ServiceName) -> String {
        self.service(name).database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}/{}.db?mode=rwc",
                self.data_dir.display(),
                name.as_str()
            )
        })
    }

    /// The URLs other servers reach a service at.
    pub fn service_urls(&self, name: ServiceName) -> Vec<String> {
        let service = self.service(name);
        match &service.url {
            Some(urls) => urls
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect(),
            None => vec![format!("https://{}", service.listen)],
        }
    }

    /// The principal key, parsed, accepting [`Self::principal_keys_accepted`]
    /// too. `None` when unset.
    pub fn principal_key(&self) -> Result<Option<crate::PrincipalKey>, ConfigError> {
        let Some(text) = self.principal_key.as_deref() else {
            return Ok(None);
        };
        let key = crate::PrincipalKey::parse(text).ok_or_else(|| {
            ConfigError::new(
                "principal_key",
                "must be hex or base64 of at least 32 bytes",
            )
        })?;
        Ok(Some(key.also_accepting(self.principal_keys_accepted()?)))
    }

    /// The keys of `principal_keys_accepted`, parsed.
    pub fn principal_keys_accepted(&self) -> Result<Vec<crate::PrincipalKey>, ConfigError> {
        self.principal_keys_accepted
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .enumerate()
            .map(|(i, text)| {
                crate::PrincipalKey::parse(text).ok_or_else(|| {
                    ConfigError::new(
                        "principal_keys_accepted",
                        format_args!("key {}: must be hex or base64 of at least 32 bytes", i + 1),
                    )
                })
            })
            .collect()
    }
}

/// A URL with any password replaced, for error messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_put_the_gateway_on_50051_and_data_in_tenancy_data() {
        let config = Config::default();
        assert_eq!(config.gateway.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(
            config.database_url(ServiceName::Identity),
            "sqlite://./tenancy-data/identity.db?mode=rwc"
        );
        assert_eq!(
            config.service_urls(ServiceName::Account),
            ["https://127.0.0.1:50062"]
        );
    }

    /// Loads `toml` as a config file inside a jail: config tests touch the
    /// process environment, which the jail serialises and restores.
    fn load_file(toml: &'static str) -> Result<Config, ConfigError> {
        let mut result = None;
        figment::Jail::expect_with(|jail| {
            jail.create_file("tenancy.toml", toml)?;
            result = Some(Config::load(Some(Path::new("tenancy.toml"))));
            Ok(())
        });
        result.unwrap()
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused_naming_the_key() {
        let error =
            load_file("[identity]\nlisten = \"127.0.0.1:1\"\ndatabse_url = \"x\"\n").unwrap_err();
        assert!(error.to_string().contains("databse_url"), "{error}");
    }

    #[test]
    fn a_bad_address_names_the_setting() {
        let error = load_file("[gateway]\nlisten = \"not an address\"\n").unwrap_err();
        assert_eq!(error.setting, "gateway.listen", "{error}");
    }

    #[test]
    fn file_values_override_defaults_and_durations_parse() {
        let config = load_file(
            "request_timeout = \"5s\"\nlog_format = \"json\"\n[support]\nlisten = \"0.0.0.0:7000\"\nurl = \"http://a:1, http://b:2\"\n",
        )
        .unwrap();
        assert_eq!(config.request_timeout, Duration::from_secs(5));
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(
            config.service_urls(ServiceName::Support),
            ["http://a:1", "http://b:2"]
        );
    }

    #[test]
    fn environment_variables_override_the_file_and_name_the_setting() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("t.toml", "[gateway]\nlisten = \"127.0.0.1:1\"\n")?;
            jail.set_env("TENANCY_GATEWAY__LISTEN", "127.0.0.1:2");
            jail.set_env("TENANCY_SMTP_URL", "smtp://localhost:25");
            jail.set_env("TENANCY_TEST_DATABASE_URL", "postgres://ignored");
            let config = Config::load(Some(Path::new("t.toml"))).unwrap();
            assert_eq!(config.gateway.listen.to_string(), "127.0.0.1:2");
            assert_eq!(config.smtp_url.as_deref(), Some("smtp://localhost:25"));
            jail.set_env("TENANCY_IDENTITY__DATABASE_URL", "postgres://db/identity");
            let config = Config::load(None).unwrap();
            assert_eq!(
                config.identity.listen.to_string(),
                "127.0.0.1:50061",
                "one key keeps the section's defaults"
            );
            assert_eq!(
                config.identity.database_url.as_deref(),
                Some("postgres://db/identity")
            );
            jail.set_env("TENANCY_OTEL__ENDPOINT", "http://collector:4317");
            jail.set_env("TENANCY_PRINCIPAL_KEYS_ACCEPTED", "not a key");
            let config = Config::load(None).unwrap();
            assert_eq!(
                config.otel.endpoint().as_deref(),
                Some("http://collector:4317")
            );
            let Err(error) = config.principal_keys_accepted() else {
                panic!("a bad accepted key was taken");
            };
            assert_eq!(error.setting, "principal_keys_accepted");
            jail.set_env("TENANCY_REQUEST_TIMEOUT", "soon");
            let error = Config::load(None).unwrap_err();
            assert_eq!(error.setting, "request_timeout");
            Ok(())
        });
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://tenancy:hunter2@db:5432/x"),
            "postgres://tenancy:***@db:5432/x"
        );
        assert_eq!(redact_url("sqlite://./x.db"), "sqlite://./x.db");
    }
}
