//! Tickets as customers see them: creating one, the list of those one may
//! see, and its CC users.

use std::sync::Arc;

use tenancy_runtime::Error;
use tenancy_runtime::ids::{AccountId, UserId};

use super::{App, Event};
use crate::domain::validate::MAX_CC;
use crate::domain::{SupportError, Visibility};
use crate::store::list::{Cursor, TicketQuery};
use crate::store::{MessageRow, NewTicket, RequestKey, Ticket};

/// CreateTicket: the creator must see the ticket (the service must be one
/// they reach), and so must every CC user; the first message is notified
/// to the creator as a receipt.
pub(crate) async fn create(
    app: &Arc<App>,
    new: NewTicket,
    key: Option<RequestKey>,
) -> Result<(Ticket, MessageRow), Error> {
    let services: Vec<String> = new.service_id.iter().cloned().collect();
    let visibility = app
        .peers
        .visibility(
            &new.created_by_user_id,
            &new.account_id,
            services.clone(),
            false,
        )
        .await?;
    if visibility == Visibility::Nothing {
        return Err(SupportError::NotAMember.into());
    }
    if !visibility.sees(new.service_id.as_deref()) {
        return Err(SupportError::ServiceNotFound.into());
    }
    for (index, cc_user) in new.cc.iter().enumerate() {
        let theirs = app
            .peers
            .visibility(cc_user, &new.account_id, services.clone(), false)
            .await?;
        if !theirs.sees(new.service_id.as_deref()) {
            return Err(SupportError::CcUserNotEligible { index }.into());
        }
    }
    let (ticket, message) = app.store.create_ticket(new, key, app.clock.now()).await?;
    app.notify_message(&ticket, &message, true);
    Ok((ticket, message))
}

/// ListTickets: the tickets of `account` that `user` may see, decided by
/// ONE access check for the whole list; `query` without the visibility.
pub(crate) async fn list(
    app: &App,
    user: &UserId,
    account: &AccountId,
    mut query: TicketQuery,
) -> Result<(Vec<Ticket>, Option<Cursor>), Error> {
    let visibility = app.list_visibility(user, account).await?;
    if visibility == Visibility::Nothing {
        return Ok((Vec::new(), None));
    }
    query.visible_services = visibility.service_filter();
    app.store.list_tickets(&query).await
}

/// UpdateTicketCc: removes `remove`, then adds `add`, each added user an
/// active member who may see the ticket; at most [`MAX_CC`] afterwards.
/// Watchers hear of a change.
pub(crate) async fn update_cc(
    app: &App,
    account: &AccountId,
    ticket: &Ticket,
    add: &[UserId],
    remove: &[UserId],
) -> Result<Ticket, Error> {
    for (index, user) in add.iter().enumerate() {
        if ticket.cc.iter().any(|c| c == user.as_str()) && !remove.contains(user) {
            continue;
        }
        let theirs = app
            .peers
            .visibility(
                user,
                account,
                ticket.row.service_id.iter().cloned().collect(),
                false,
            )
            .await?;
        if !theirs.sees(ticket.row.service_id.as_deref()) {
            return Err(SupportError::AddedUserNotEligible { index }.into());
        }
    }
    let id = ticket.id();
    let (after, changed) = app
        .store
        .update_cc(&id, remove, add, MAX_CC, app.clock.now())
        .await?
        .map_err(|_| SupportError::CcLimitExceeded {
            field: "add_user_ids",
        })?;
    if changed {
        app.publish(
            &id,
            Event::Updated {
                ticket: Box::new(after.clone()),
                fields: vec!["cc_user_ids".to_owned()],
            },
        );
    }
    Ok(after)
}
