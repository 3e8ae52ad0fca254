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
use tenancy_runtime::ids::{self, TicketId, UserId};
use tenancy_runtime::secret::sha256_hex;
use tenancy_runtime::server::principal;
use tenancy_runtime::{Error, Principal};
use tonic::{Request, Response, Status as GrpcStatus};

use crate::app::{App, Side, messages};
use crate::domain::validate;
use crate::domain::{Category, Priority, Status, SupportError};
use crate::store::list::{Cursor, Order};
use crate::store::{RequestKey, Ticket, Written};

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
    user: &UserId,
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
        user_id: user.clone(),
        request_id,
        fingerprint: sha256_hex(content.as_bytes()),
    })
}

/// A repeated enum filter: its distinct proto values in order (what page
/// tokens hash) and the parsed values; unknown ones are violations, and so
/// is a list longer than [`validate::MAX_FILTER_VALUES`].
fn enum_list<T>(
    field: &str,
    values: &[i32],
    parse: fn(i32) -> Option<T>,
    violations: &mut Violations,
) -> (Vec<i32>, Vec<T>) {
    if !violations.at_most(field, values.len(), validate::MAX_FILTER_VALUES) {
        return (Vec::new(), Vec::new());
    }
    for (i, v) in values.iter().enumerate() {
        if parse(*v).is_none() {
            violations.add(format!("{field}[{i}]"), "unknown or UNSPECIFIED value");
        }
    }
    let set: BTreeSet<i32> = values.iter().copied().collect();
    let parsed = set.iter().filter_map(|v| parse(*v)).collect();
    (set.into_iter().collect(), parsed)
}

/// An optional id field: empty means none; anything else must be a UUID.
fn optional_id<T>(
    field: &str,
    raw: &str,
    parse: fn(&str, &str) -> Result<T, Error>,
    violations: &mut Violations,
) -> Option<T> {
    if raw.is_empty() {
        None
    } else {
        violations.take(field, parse(field, raw).map_err(|_| "must be a UUID"))
    }
}

/// The enum filters ListTickets and ListQueue share.
struct EnumFilters {
    /// Their proto values, as page tokens hash them.
    key: String,
    statuses: Vec<Status>,
    priorities: Vec<Priority>,
    categories: Vec<Category>,
}

/// Checks the status, priority and category filters of a ticket list.
fn enum_filters(
    statuses: &[i32],
    priorities: &[i32],
    categories: &[i32],
    v: &mut Violations,
) -> EnumFilters {
    let (status_values, statuses) = enum_list("statuses", statuses, Status::from_i32, v);
    let (priority_values, priorities) = enum_list("priorities", priorities, Priority::from_i32, v);
    let (category_values, categories) = enum_list("categories", categories, Category::from_i32, v);
    EnumFilters {
        key: format!("{status_values:?}{priority_values:?}{category_values:?}"),
        statuses,
        priorities,
        categories,
    }
}

/// The order (`default` for UNSPECIFIED) and page size of a ticket list.
fn order_and_size(
    order_by: i32,
    default: Order,
    page_size: i32,
    v: &mut Violations,
) -> (Order, u64) {
    let order = match order_by {
        0 => Some(default),
        n => Order::from_i32(n),
    };
    v.check(order.is_some(), "order_by", "unknown order");
    let limit = v.take(
        "page_size",
        ids::page_size(page_size).map_err(|e| e.message),
    );
    (
        order.unwrap_or(default),
        limit.unwrap_or(ids::DEFAULT_PAGE_SIZE),
    )
}

/// Where a ticket list continues: the hash of its filters (`enums`, the
/// others as `rest`, the order) and the cursor of `page_token`, refused if
/// issued for other filters.
fn ticket_page(
    enums: &EnumFilters,
    rest: String,
    order: Order,
    page_token: &str,
) -> Result<(String, Option<Cursor>), Error> {
    let hash = filter_hash(&[enums.key.clone(), rest, (order as i32).to_string()]);
    let after = ids::decode_page_token_for::<Cursor>(page_token, |c| c.f == hash)?;
    Ok((hash, after))
}

/// The next page token of a ticket list.
fn next_ticket_token(next: Option<Cursor>, hash: &str) -> String {
    next.map(|mut c| {
        c.f = hash.to_owned();
        ids::encode_page_token(&c)
    })
    .unwrap_or_default()
}

/// A repeated user id field of at most [`validate::MAX_CC`] entries: each
/// must be a UUID (violation `field[i]`); repeats are collapsed, each user
/// kept with the index of its first entry.
fn user_list(field: &str, raw: &[String], v: &mut Violations) -> Vec<(usize, UserId)> {
    if !v.at_most(field, raw.len(), validate::MAX_CC) {
        return Vec::new();
    }
    let mut seen = BTreeSet::new();
    raw.iter()
        .enumerate()
        .filter_map(|(i, raw)| {
            v.take(
                &format!("{field}[{i}]"),
                UserId::parse(field, raw).map_err(|_| "must be a UUID"),
            )
            .map(|id| (i, id))
        })
        .filter(|(_, id)| seen.insert(id.clone()))
        .collect()
}

/// Parses a ticket id; a malformed one is simply not found.
fn ticket_id(raw: &str) -> Result<TicketId, Error> {
    TicketId::parse("ticket_id", raw).map_err(|_| SupportError::TicketNotFound.into())
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
    ticket_id: &TicketId,
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
        ticket_id.to_string(),
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
    let mut rows = messages::page(
        app,
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

fn caller(request: &Request<impl Sized>) -> Result<Principal, Error> {
    principal(request).cloned()
}

/// Adds a message as the caller on `side`, after checking the body and
/// the request id (once the ticket is known to be reachable).
#[allow(clippy::too_many_arguments)]
async fn add_message(
    app: &Arc<App>,
    p: &Principal,
    ticket: &Ticket,
    side: Side,
    body: String,
    status_after: Option<Status>,
    internal: bool,
    raw_request_id: &str,
) -> Result<(Written, crate::domain::TicketMessage), Error> {
    let user = UserId::trusted(p.user()?);
    let mut v = Violations::default();
    if let Err(e) = validate::body(&body) {
        v.add("body", e);
    }
    let kind = if internal { "note" } else { "message" };
    let key = request_key(
        &user,
        raw_request_id,
        &[kind, ticket.id.as_str(), &body],
        &mut v,
    );
    v.finish()?;
    messages::add(app, p, ticket, side, body, status_after, internal, key).await
}
