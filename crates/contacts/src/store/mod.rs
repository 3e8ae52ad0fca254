//! Persistence: sea-orm entities, queries and transactions.

pub mod contacts;
pub mod entities;
pub mod outbox;
pub mod preferences;
