//! Integration tests of the identity service over real gRPC, on SQLite (or
//! PostgreSQL with TENANCY_TEST_DATABASE_URL).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub,
    dead_code
)]

mod harness;
mod limits;
mod mail;
mod mfa;
mod notices;
mod notify;
mod passkeys;
mod selection;
mod sessions;
mod ssh_keys;
mod tokens;
mod users;
