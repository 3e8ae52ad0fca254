//! Persistence: sea-orm entities, queries and transactions.

pub mod entities;
pub mod outbox;
