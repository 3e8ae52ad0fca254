//! Messages of a ticket, for both sides: adding one (with the status change
//! it implies, published to watchers and notified), and reading pages.

use std::sync::Arc;

use tenancy_runtime::ids::{TicketId, UserId};
use tenancy_runtime::{Error, Principal};

use super::{App, Event, Side};
use crate::domain::{Status, SupportError};
use crate::store::{NewMessage, RequestKey, Ticket, TicketMessage, Written};

/// Adds a message (or, for staff, an internal note) to `ticket` as the
/// caller on `side`; the status follows (a customer message reopens a
/// waiting ticket, a staff reply may set `status_after`). A repeat of `key`
/// writes nothing and returns the first call's message.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn add(
    app: &Arc<App>,
    p: &Principal,
    ticket: &Ticket,
    side: Side,
    body: String,
    status_after: Option<Status>,
    internal: bool,
    key: Option<RequestKey>,
) -> Result<(Written, TicketMessage), Error> {
    let user = UserId::trusted(p.user()?);
    let author_kind = side.actor();
    let ticket_id = ticket.id.clone();
    let (written, message) = app
        .store
        .add_message(
            &ticket_id,
            NewMessage {
                author_kind,
                author_user_id: Some(user.clone()),
                body,
                internal,
            },
            move |before| match side {
                Side::Customer => before.after_customer_message(),
                Side::Staff => before.after_staff_reply(status_after),
            },
            key,
            app.clock.now(),
        )
        .await?;
    if !written.replayed {
        app.publish(&ticket_id, Event::Message(message.clone()));
        app.publish_written(&written, author_kind, Some(user));
        app.notify_message(written.notification.clone());
    }
    Ok((written, message))
}

/// Changes the status of `ticket` as `decide` says (from the status
/// before), published to watchers.
pub(crate) async fn change_status(
    app: &App,
    p: &Principal,
    ticket: &Ticket,
    side: Side,
    decide: impl FnOnce(Status) -> Result<Option<Status>, SupportError> + Send,
) -> Result<Written, Error> {
    let written = app
        .store
        .change_status(&ticket.id, decide, app.clock.now())
        .await?;
    app.publish_written(
        &written,
        side.actor(),
        p.user_id.clone().map(UserId::trusted),
    );
    Ok(written)
}

/// One page of messages of `ticket_id`: sequences after `from` (and
/// before `before`), oldest or newest first, notes only if
/// `include_internal`.
pub(crate) async fn page(
    app: &App,
    ticket_id: &TicketId,
    from: i64,
    before: Option<i64>,
    include_internal: bool,
    newest_first: bool,
    limit: u64,
) -> Result<Vec<TicketMessage>, Error> {
    app.store
        .messages(
            ticket_id,
            from,
            before,
            include_internal,
            newest_first,
            limit,
        )
        .await
}
