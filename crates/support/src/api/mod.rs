//! The gRPC surface of the support service: proto ⇄ domain, access
//! decisions through [`App`], nothing else.
//!
//! - `customer`: SupportService (members; staff on a selected account).
//! - `watch`: WatchTicket's live stream.
//! - `staff`: SupportStaffService (the support team, under grants).
//! - `convert`: stored rows → proto messages, per side.

mod convert;
mod customer;
mod staff;
mod watch;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tenancy_proto::support as pb;
use tenancy_runtime::error::Violations;
use tenancy_runtime::secret::sha256_hex;
use tenancy_runtime::server::principal;
use tenancy_runtime::{Error, Principal, ids};
use tonic::{Request, Response, Status as GrpcStatus};

use crate::app::{App, Event, Side, ticket_id};
use crate::domain::validate;
use crate::domain::{ActorKind, Status, SupportError};
use crate::store::{NewMessage, RequestKey, Ticket, Written};

/// The handlers; cheap to clone.
#[derive(Clone)]
pub(crate) struct Api {
    app: Arc<App>,
}

impl Api {
    pub(crate) fn new(app: App) -> Self {
        Self { app: Arc::new(app) }
    }
}

type Reply<T> = Result<Response<T>, GrpcStatus>;

fn ok<T>(value: T) -> Reply<T> {
    Ok(Response::new(value))
}

/// The request id of a retry-safe call, with the fingerprint of its
/// content.
fn request_key(
    user: &str,
    raw: &str,
    parts: &[&str],
    violations: &mut Violations,
) -> Option<RequestKey> {
    if raw.is_empty() {
        return None;
    }
    let request_id = violations.take(
        "request_id",
        ids::parse_id("request_id", raw).map_err(|_| "must be a UUID"),
    )?;
    let mut content = String::new();
    for p in parts {
        content.push_str(&p.len().to_string());
        content.push(':');
        content.push_str(p);
    }
    Some(RequestKey {
        user_id: user.to_owned(),
        request_id,
        fingerprint: sha256_hex(content.as_bytes()),
    })
}

fn enum_list<T>(
    field: &str,
    values: &[i32],
    parse: fn(i32) -> Option<T>,
    violations: &mut Violations,
) -> Vec<i32> {
    for (i, v) in values.iter().enumerate() {
        if parse(*v).is_none() {
            violations.add(format!("{field}[{i}]"), "unknown or UNSPECIFIED value");
        }
    }
    let set: BTreeSet<i32> = values.iter().copied().collect();
    set.into_iter().collect()
}

fn optional_id(field: &str, raw: &str, violations: &mut Violations) -> Option<String> {
    if raw.is_empty() {
        None
    } else {
        violations.take(
            field,
            ids::parse_id(field, raw).map_err(|_| "must be a UUID"),
        )
    }
}

/// Page tokens carry a hash of the filters they were issued for.
fn filter_hash(parts: &[String]) -> String {
    sha256_hex(parts.join("\u{1f}").as_bytes())[..16].to_owned()
}

#[derive(Serialize, Deserialize)]
struct MessageCursor {
    f: String,
    s: i64,
}

/// Message pages (shared by both services).
#[allow(clippy::too_many_arguments)]
async fn list_messages(
    app: &App,
    ticket_id: &str,
    after: i64,
    include_internal: bool,
    newest_first: bool,
    page_size: i32,
    page_token: &str,
    side: Side,
) -> Result<(Vec<pb::TicketMessage>, String), Error> {
    if after < 0 {
        return Err(Error::invalid_field(
            "after_message_sequence",
            "must not be negative",
        ));
    }
    let limit = ids::page_size(page_size)?;
    let hash = filter_hash(&[
        ticket_id.to_owned(),
        after.to_string(),
        include_internal.to_string(),
        newest_first.to_string(),
    ]);
    let cursor = ids::decode_page_token_for::<MessageCursor>(page_token, |c| c.f == hash)?;
    let (from, before) = match (&cursor, newest_first) {
        (Some(c), false) => (c.s.max(after), None),
        (Some(c), true) => (after, Some(c.s)),
        (None, _) => (after, None),
    };
    let mut rows = app
        .store
        .messages(
            ticket_id,
            from,
            before,
            include_internal,
            newest_first,
            limit + 1,
        )
        .await?;
    let next = if rows.len() as u64 > limit {
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        rows.last()
            .map(|m| {
                ids::encode_page_token(&MessageCursor {
                    f: hash.clone(),
                    s: m.sequence,
                })
            })
            .unwrap_or_default()
    } else {
        String::new()
    };
    Ok((
        rows.iter().map(|m| convert::message(m, side)).collect(),
        next,
    ))
}

/// The customer-visible events of a write, published to watchers.
fn publish_written(app: &App, written: &Written, by_kind: ActorKind, by_user: Option<String>) {
    if let Some(previous) = written.previous_status {
        app.publish(
            &written.ticket.row.id,
            Event::Status {
                previous,
                by_kind,
                by_user,
                ticket: Box::new(written.ticket.clone()),
            },
        );
    }
}

fn caller(request: &Request<impl Sized>) -> Result<Principal, Error> {
    principal(request).cloned()
}

impl Api {
    /// Loads the ticket for the caller's side: customers need visibility,
    /// staff the account's grant (and every staff call is audited by the
    /// caller of this).
    async fn shared_ticket(&self, p: &Principal, raw_id: &str) -> Result<(Side, Ticket), Error> {
        let id = ticket_id(raw_id)?;
        match App::side(p) {
            Side::Customer => Ok((Side::Customer, self.app.customer_ticket(p, &id).await?)),
            Side::Staff => Ok((
                Side::Staff,
                self.app.staff_ticket(Some(p.account()?), &id).await?,
            )),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn add_message_as(
        &self,
        p: &Principal,
        ticket: &Ticket,
        side: Side,
        body: String,
        status_after: Option<Status>,
        internal: bool,
        raw_request_id: &str,
    ) -> Result<(Written, crate::store::MessageRow), Error> {
        let user = p.user()?.to_owned();
        let mut v = Violations::default();
        if let Err(e) = validate::body(&body) {
            v.add("body", e);
        }
        let kind = if internal { "note" } else { "message" };
        let key = request_key(
            &user,
            raw_request_id,
            &[kind, &ticket.row.id, &body],
            &mut v,
        );
        v.finish()?;
        let author_kind = match side {
            Side::Customer => ActorKind::Customer,
            Side::Staff => ActorKind::Staff,
        };
        let (written, message) = self
            .app
            .store
            .add_message(
                &ticket.row.id,
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
                self.app.clock.now(),
            )
            .await?;
        if !written.replayed {
            self.app
                .publish(&ticket.row.id, Event::Message(message.clone()));
            publish_written(&self.app, &written, author_kind, Some(user));
            self.app.notify_message(&written.ticket, &message, false);
        }
        Ok((written, message))
    }

    async fn change_status_as(
        &self,
        p: &Principal,
        ticket: &Ticket,
        side: Side,
        decide: impl FnOnce(Status) -> Result<Option<Status>, SupportError> + Send,
    ) -> Result<Written, Error> {
        let written = self
            .app
            .store
            .change_status(&ticket.row.id, decide, self.app.clock.now())
            .await?;
        let kind = match side {
            Side::Customer => ActorKind::Customer,
            Side::Staff => ActorKind::Staff,
        };
        publish_written(&self.app, &written, kind, p.user_id.clone());
        Ok(written)
    }

    async fn audit_if_staff(
        &self,
        p: &Principal,
        side: Side,
        ticket: &Ticket,
        action: &str,
        key: Option<String>,
    ) -> Result<(), Error> {
        if side == Side::Staff {
            self.app
                .audit_staff(p, &ticket.row.account_id, action, &ticket.row.id, key)
                .await?;
        }
        Ok(())
    }
}
