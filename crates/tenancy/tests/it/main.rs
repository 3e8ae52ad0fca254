//! Tests of the `tenancy` binary and launcher: migrations under
//! concurrency, operator commands, and the README as the manual of every
//! setting.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod admin;
mod gateway_status;
mod migrate;
mod operator;
mod readme;
