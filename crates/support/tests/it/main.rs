//! The support service over real gRPC, on SQLite (default) or PostgreSQL
//! (`TENANCY_TEST_DATABASE_URL`), with the real account, identity and
//! contacts services, each on its own database (see `harness`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub,
    missing_docs
)]

mod harness;
mod lifecycle;
mod notifications;
mod peer_calls;
mod rules;
mod staff;
mod visibility;
mod watch;
