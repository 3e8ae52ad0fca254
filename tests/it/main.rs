//! End-to-end tests: the suite as `tenancy serve` runs it, on ephemeral
//! ports, called over real gRPC.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod api_members;
mod cluster;
mod connections;
mod decisions;
mod delivery;
mod errors;
mod faults;
mod gateway;
mod load;
mod malformed;
mod metrics;
mod processes;
mod pruning;
mod replicas;
mod security_log;
mod suite;
mod tokens;
mod traces;
mod transport;
mod usage;
