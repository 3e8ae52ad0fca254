//! SendEmail and the outbox's read methods.

use tenancy_runtime::Error;

use super::App;
use crate::domain::ContactsError;
use crate::domain::outbox::Message;
use crate::outbox::{Address, Email, Queued};
use crate::store::outbox::{self as store, ListFilter};

/// SendEmail: one message per (distinct) recipient, queued under `key`; a
/// repeat with the same content (`hash`) returns the first call's messages.
pub(crate) async fn send(
    app: &App,
    key: &str,
    hash: &str,
    email: &Email,
    to: &[Address],
) -> Result<Queued, Error> {
    let messages = app.outbox.render(email, to)?;
    app.outbox.enqueue(key, hash, messages).await
}

/// GetOutboxMessage.
pub(crate) async fn get(app: &App, id: &str) -> Result<Message, Error> {
    store::get(&app.outbox.db, id)
        .await?
        .ok_or_else(|| ContactsError::OutboxMessageNotFound.into())
}

/// ListOutboxMessages: newest first, after the keyset cursor
/// `(created_at, id)`, up to `limit`.
pub(crate) async fn list(
    app: &App,
    filter: &ListFilter,
    after: Option<(i64, String)>,
    limit: u64,
) -> Result<Vec<Message>, Error> {
    store::list(&app.outbox.db, filter, after, limit).await
}
