//! The rules of the contacts service as plain Rust: no tonic, no sea-orm.

pub mod backoff;
pub mod contact;
pub mod email;
pub mod error;
pub mod outbox;
pub mod plaintext;
pub mod retention;
pub mod routing;
pub mod templates;

pub use error::ContactsError;
