//! The support rules as plain Rust: no tonic, no database.
//!
//! - [`status`]: the ticket lifecycle (which status changes are allowed).
//! - [`visibility`]: which tickets a member may see.
//! - [`validate`]: subjects and bodies.
//! - [`error`]: the one error type of the crate.

pub mod error;
pub mod status;
pub mod ticket;
pub mod validate;
pub mod visibility;

pub use error::SupportError;
pub use status::{ActorKind, Category, Priority, Status};
pub use ticket::{Ticket, TicketMessage};
pub use visibility::Visibility;
