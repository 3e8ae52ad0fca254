//! Integration tests of the contacts service over real gRPC, on SQLite (or
//! PostgreSQL when TENANCY_TEST_DATABASE_URL is set).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub,
    dead_code
)]

mod contacts;
mod credentials;
mod delivery;
mod outbox;
mod retention;
mod routing;
mod support;
mod world;
