//! Tickets as customers see them: creating one, the list of those one may
//! see, and its CC users.

use std::collections::BTreeSet;
use std::sync::Arc;

use tenancy_runtime::Error;
use tenancy_runtime::ids::{AccountId, UserId};

use super::{App, Event};
use crate::domain::validate::MAX_CC;
use crate::domain::{SupportError, Visibility};
use crate::store::list::{Cursor, TicketQuery};
use crate::store::{NewTicket, RequestKey, Ticket, TicketMessage};

/// CreateTicket: the creator must see the ticket (the service must be one
/// they reach), and so must every CC user; the first message is notified
/// to the creator as a receipt.
pub(crate) async fn create(
    app: &Arc<App>,
    new: NewTicket,
    key: Option<RequestKey>,
) -> Result<(Ticket, TicketMessage), Error> {
    let visibility = app
        .peers
        .visibility(
            &new.created_by_user_id,
            &new.account_id,
            new.service_id.iter().cloned().collect(),
            false,
        )
        .await?;
    if visibility == Visibility::Nothing {
        return Err(SupportError::NotAMember.into());
    }
    if !visibility.sees(new.service_id.as_deref()) {
        return Err(SupportError::ServiceNotFound.into());
    }
    if let Some(index) = first_unseeing(app, &new.account_id, &new.service_id, &new.cc).await? {
        return Err(SupportError::CcUserNotEligible { index }.into());
    }
    let (ticket, message, notification) =
        app.store.create_ticket(new, key, app.clock.now()).await?;
    app.notify_message(notification);
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

/// UpdateTicketCc: removes `remove`, then adds `add` (each distinct user
/// with the index of its request entry), each added user an active member
/// who may see the ticket; at most [`MAX_CC`] afterwards, refused before
/// any user is looked up. Watchers hear of a change.
pub(crate) async fn update_cc(
    app: &App,
    account: &AccountId,
    ticket: &Ticket,
    add: &[(usize, UserId)],
    remove: &[UserId],
) -> Result<Ticket, Error> {
    let mut after: BTreeSet<&str> = ticket.cc.iter().map(UserId::as_str).collect();
    for r in remove {
        after.remove(r.as_str());
    }
    // Those already CC'd (and kept) need no check.
    let new: Vec<(usize, UserId)> = add
        .iter()
        .filter(|(_, u)| after.insert(u.as_str()))
        .cloned()
        .collect();
    if after.len() > MAX_CC {
        return Err(too_many_cc());
    }
    if let Some(index) = first_unseeing(app, account, &ticket.service_id, &new).await? {
        return Err(SupportError::AddedUserNotEligible { index }.into());
    }
    let add: Vec<UserId> = add.iter().map(|(_, u)| u.clone()).collect();
    let id = ticket.id.clone();
    let (after, changed) = app
        .store
        .update_cc(&id, remove, &add, MAX_CC, app.clock.now())
        .await?
        .map_err(|_| too_many_cc())?;
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

fn too_many_cc() -> Error {
    SupportError::CcLimitExceeded {
        field: "add_user_ids",
    }
    .into()
}

/// The request index of the first of `users` who may not see a ticket of
/// `account` about `service` (not an active member, or without access to
/// it), if any. One access check per user (account answers for one user
/// at a time), all at once: the edge bounds `users` to [`MAX_CC`].
async fn first_unseeing(
    app: &App,
    account: &AccountId,
    service: &Option<String>,
    users: &[(usize, UserId)],
) -> Result<Option<usize>, Error> {
    let services: Vec<String> = service.iter().cloned().collect();
    let checks = users
        .iter()
        .map(|(_, user)| app.peers.visibility(user, account, services.clone(), false));
    let seen = futures::future::try_join_all(checks).await?;
    Ok(users
        .iter()
        .zip(seen)
        .find(|(_, theirs)| !theirs.sees(service.as_deref()))
        .map(|((index, _), _)| *index))
}
