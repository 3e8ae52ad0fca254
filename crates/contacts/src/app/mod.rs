//! The use cases: one function each, one transaction each, domain types in
//! and out (no proto). The handlers in `api/` parse, call one of these, and
//! render.
//!
//! - `contacts`: contacts of an account and their email verification.
//! - `preferences`: members' notification choices.
//! - `outbox`: SendEmail and the outbox's read methods.
//! - `routing`: who receives a notification (ResolveRecipients, Notify).

pub(crate) mod contacts;
pub(crate) mod credentials;
pub(crate) mod outbox;
pub(crate) mod preferences;
pub(crate) mod routing;

use crate::outbox::Outbox;
use crate::peers::Peers;

/// What every use case needs; cheap to clone.
#[derive(Clone)]
pub(crate) struct App {
    /// The database, the clock and the delivery worker's wake-up.
    pub(crate) outbox: Outbox,
    /// Account and identity.
    pub(crate) peers: Peers,
    /// The portal's base URL (no trailing slash), for links in emails.
    pub(crate) portal_url: String,
}
