//! What every Tenancy server needs, in one small crate.
//!
//! # Layout
//! - [`config`]: typed configuration from a TOML file and `TENANCY_*`
//!   environment variables, with documented defaults.
//! - [`db`]: sea-orm connections to `sqlite://` or `postgres://` and
//!   migrations at start.
//! - [`server`]: a gRPC server with health, reflection, limits, timeouts,
//!   principal verification and graceful shutdown.
//! - [`principal`]: the verified caller the gateway forwards, signed with
//!   HMAC-SHA256, and its verification.
//! - [`rules`]: the `tenancy.auth.v1.access` rule of every method, read from
//!   the descriptor set.
//! - [`error`]: the one mapping from domain errors to `tonic::Status` with
//!   rich error details.
//! - [`metrics`]: Prometheus metrics, the standard gRPC ones from a tower
//!   layer on every server and every [`Channel`], served on `metrics_listen`.
//! - [`peer_calls`]: the outbox of calls to other services that a rule
//!   depends on (written with the change, delivered until acknowledged),
//!   shared by every service that has one.
//! - [`ids`]: UUIDv7 ids, page sizes and opaque keyset page tokens.
//! - [`api_token`] and [`access_token`]: the form of Public API tokens
//!   (prefix, checksum) and what marks a JWT as an access token.
//! - [`secret`]: random tokens, SHA-256 storage hashes, constant-time
//!   comparison.
//! - [`text`]: the one rule for one-line names (no control or bidi
//!   formatting characters) and email address syntax.
//! - [`clock`]: injectable time.
//! - [`tls`]: TLS on the public port, mutual TLS between parts, the
//!   development CA.
//! - [`service`], [`replicas`] and [`upstream`]: what a part is started
//!   with, and how it calls other parts: HTTP/2 connections to every
//!   replica, health-checked, calls retried on another replica when safe.
//! - [`telemetry`] and [`shutdown`]: logs and signals.

pub mod access_token;
pub mod allowlist;
pub mod api_token;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod ids;
pub mod metrics;
pub mod peer_calls;
pub mod principal;
pub mod replicas;
pub mod rules;
pub mod secret;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod telemetry;
pub mod text;
pub mod tls;
pub mod upstream;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use error::{Error, FieldViolation, Reason};
pub use metrics::Metrics;
pub use principal::{Principal, PrincipalKey};
pub use service::{Channel, Context, TenancyService, TlsParts};
