//! The support service over real gRPC, on SQLite (default) or PostgreSQL
//! (`TENANCY_TEST_DATABASE_URL`). Peer services are in-test fakes (see
//! `fakes`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub,
    missing_docs
)]

mod fakes;
mod harness;
mod lifecycle;
mod notifications;
mod staff;
mod visibility;
mod watch;
