//! The identity rules as plain Rust: no gRPC, no database. Unit-tested here.

pub(crate) mod admin;
pub(crate) mod api_tokens;
pub(crate) mod credentials;
pub(crate) mod error;
pub(crate) mod network;
pub(crate) mod password;
pub(crate) mod phone;
pub(crate) mod profile;
pub(crate) mod sessions;
pub(crate) mod ssh;
pub(crate) mod throttle;
pub(crate) mod totp;
