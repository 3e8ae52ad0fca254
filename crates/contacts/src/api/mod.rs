//! The gRPC surface of the contacts service: proto ⇄ domain, validation at
//! the edge, one `app` function per handler, nothing else.
//!
//! - `contacts`: ContactsService (contacts and notification preferences).
//! - `internal`: ContactsInternalService (SendEmail, the outbox, routing).
//! - `convert`: stored rows and domain values → proto messages.

mod contacts;
mod convert;
mod internal;

use std::collections::{BTreeMap, HashMap};

use tenancy_runtime::error::Violations;
use tenancy_runtime::{Error, Reason};
use tonic::{Response, Status};

use crate::app::App;

/// The handlers; cheap to clone.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) app: App,
}

type Reply<T> = Result<Response<T>, Status>;

/// Template data in a stable order (for hashing and storing).
fn sorted(data: HashMap<String, String>) -> BTreeMap<String, String> {
    data.into_iter().collect()
}

/// An optional id field: empty means none; anything else must be a UUID.
fn optional_id<T>(
    v: &mut Violations,
    field: &str,
    value: &str,
    parse: fn(&str, &str) -> Result<T, Error>,
) -> Option<T> {
    if value.trim().is_empty() {
        return None;
    }
    v.take(field, parse(field, value).map_err(|e| e.message))
}

/// PAGE_TOKEN_INVALID: not a token this list (with these filters) returned.
fn page_token_invalid() -> Error {
    Error::new(
        Reason::PageTokenInvalid,
        "page_token is not a token this list returned",
    )
    .with_field("page_token", "not a token this list returned")
}
