//! The gRPC surface of the support service: proto ⇄ domain, access
//! decisions through [`App`], nothing else.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use serde::{Deserialize, Serialize};
use tenancy_proto::support::{
    self as pb, support_service_server::SupportService,
    support_staff_service_server::SupportStaffService,
};
use tenancy_runtime::error::Violations;
use tenancy_runtime::secret::sha256_hex;
use tenancy_runtime::server::principal;
use tenancy_runtime::{Error, Principal, Reason, ids};
use tokio::sync::{broadcast, mpsc};
use tonic::{Request, Response, Status as GrpcStatus};

use crate::app::{App, Event, Side, ticket_id};
use crate::convert;
use crate::domain::validate::{self, MAX_CC};
use crate::domain::{ActorKind, Category, Priority, Status, SupportError, Visibility};
use crate::peers::CodeWordOutcome;
use crate::store::list::{Accounts, Cursor, Order, TicketQuery};
use crate::store::{NewMessage, NewTicket, RequestKey, Ticket, Written};

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

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchTicketResponse, GrpcStatus>> + Send>>;

#[tonic::async_trait]
impl SupportService for Api {
    async fn create_ticket(
        &self,
        request: Request<pb::CreateTicketRequest>,
    ) -> Reply<pb::CreateTicketResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let user = p.user()?.to_owned();
        let account = p.account()?.to_owned();
        let mut v = Violations::default();
        let subject = v.take("subject", validate::subject(&r.subject));
        if let Err(e) = validate::body(&r.body) {
            v.add("body", e);
        }
        v.check(
            Priority::from_i32(r.priority).is_some(),
            "priority",
            "required: LOW, NORMAL, HIGH or URGENT",
        );
        v.check(
            Category::from_i32(r.category).is_some(),
            "category",
            "required: GENERAL, TECHNICAL or BILLING",
        );
        let service_id = optional_id("service_id", &r.service_id, &mut v);
        let mut cc: BTreeSet<String> = BTreeSet::new();
        for (i, raw) in r.cc_user_ids.iter().enumerate() {
            if let Some(id) = v.take(
                &format!("cc_user_ids[{i}]"),
                ids::parse_id("cc_user_ids", raw).map_err(|_| "must be a UUID"),
            ) && id != user
            {
                cc.insert(id);
            }
        }
        if cc.len() > MAX_CC {
            return Err(Error::new(Reason::CcLimitExceeded, "at most 20 CC users")
                .with_field("cc_user_ids", "at most 20 CC users")
                .into());
        }
        let key = request_key(
            &user,
            &r.request_id,
            &["ticket", &r.subject, &r.body],
            &mut v,
        );
        v.finish()?;
        let subject = subject.unwrap_or_default();
        // The creator must see the ticket: the service must be one they reach.
        let visibility = self
            .app
            .peers
            .visibility(&user, &account, service_id.iter().cloned().collect(), false)
            .await?;
        if visibility == Visibility::Nothing {
            return Err(
                Error::new(Reason::NotAMember, "not an active member of the account").into(),
            );
        }
        if !visibility.sees(service_id.as_deref()) {
            return Err(Error::from(SupportError::ServiceNotFound).into());
        }
        for (i, cc_user) in cc.iter().enumerate() {
            let theirs = self
                .app
                .peers
                .visibility(
                    cc_user,
                    &account,
                    service_id.iter().cloned().collect(),
                    false,
                )
                .await?;
            if !theirs.sees(service_id.as_deref()) {
                return Err(Error::new(
                    Reason::CcUserNotEligible,
                    "a CC user is not an active member who may see the ticket",
                )
                .with_field(
                    format!("cc_user_ids[{i}]"),
                    "not an active member who may see the ticket",
                )
                .into());
            }
        }
        let (ticket, message) = self
            .app
            .store
            .create_ticket(
                NewTicket {
                    account_id: account,
                    subject,
                    service_id,
                    category: r.category,
                    priority: r.priority,
                    created_by_user_id: user,
                    body: r.body,
                    cc: cc.into_iter().collect(),
                },
                key,
                self.app.clock.now(),
            )
            .await?;
        self.app.notify_message(&ticket, &message, true);
        ok(pb::CreateTicketResponse {
            ticket: Some(convert::ticket(&ticket, Side::Customer)),
            message: Some(convert::message(&message, Side::Customer)),
        })
    }

    async fn get_ticket(
        &self,
        request: Request<pb::GetTicketRequest>,
    ) -> Reply<pb::GetTicketResponse> {
        let p = caller(&request)?;
        let (side, ticket) = self.shared_ticket(&p, &request.get_ref().ticket_id).await?;
        self.audit_if_staff(&p, side, &ticket, "ticket.read", None)
            .await?;
        ok(pb::GetTicketResponse {
            ticket: Some(convert::ticket(&ticket, Side::Customer)),
        })
    }

    async fn list_tickets(
        &self,
        request: Request<pb::ListTicketsRequest>,
    ) -> Reply<pb::ListTicketsResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let user = p.user()?.to_owned();
        let account = p.account()?.to_owned();
        let mut v = Violations::default();
        let statuses = enum_list("statuses", &r.statuses, Status::from_i32, &mut v);
        let priorities = enum_list("priorities", &r.priorities, Priority::from_i32, &mut v);
        let categories = enum_list("categories", &r.categories, Category::from_i32, &mut v);
        let service_id = optional_id("service_id", &r.service_id, &mut v);
        let created_by = optional_id("created_by_user_id", &r.created_by_user_id, &mut v);
        v.check(
            !(service_id.is_some() && r.account_general_only),
            "account_general_only",
            "cannot be combined with service_id",
        );
        let order = match r.order_by {
            0 => Some(Order::UpdateDesc),
            n => Order::from_i32(n),
        };
        v.check(order.is_some(), "order_by", "unknown order");
        let limit = v.take(
            "page_size",
            ids::page_size(r.page_size).map_err(|e| e.message),
        );
        v.finish()?;
        let order = order.unwrap_or(Order::UpdateDesc);
        let hash = filter_hash(&[
            format!("{statuses:?}{priorities:?}{categories:?}"),
            format!("{service_id:?}{created_by:?}{}", r.account_general_only),
            (order as i32).to_string(),
        ]);
        let after = ids::decode_page_token_for::<Cursor>(&r.page_token, |c| c.f == hash)?;
        // ONE access decision for the whole list.
        let visibility = self.app.list_visibility(&user, &account).await?;
        if visibility == Visibility::Nothing {
            return ok(pb::ListTicketsResponse::default());
        }
        let query = TicketQuery {
            accounts: Accounts::One(account),
            visible_services: visibility.service_filter(),
            service_id,
            general_only: r.account_general_only,
            statuses,
            priorities,
            categories,
            created_by,
            assignee: None,
            unassigned_only: false,
            order,
            after,
            limit: limit.unwrap_or(ids::DEFAULT_PAGE_SIZE),
        };
        let (tickets, next) = self.app.store.list_tickets(&query).await?;
        ok(pb::ListTicketsResponse {
            tickets: tickets
                .iter()
                .map(|t| convert::ticket(t, Side::Customer))
                .collect(),
            next_page_token: next
                .map(|mut c| {
                    c.f = hash.clone();
                    ids::encode_page_token(&c)
                })
                .unwrap_or_default(),
        })
    }

    async fn add_message(
        &self,
        request: Request<pb::AddMessageRequest>,
    ) -> Reply<pb::AddMessageResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let (side, ticket) = self.shared_ticket(&p, &r.ticket_id).await?;
        let (written, message) = self
            .add_message_as(&p, &ticket, side, r.body, None, false, &r.request_id)
            .await?;
        self.audit_if_staff(
            &p,
            side,
            &ticket,
            "ticket.message_add",
            Some(message.id.clone()),
        )
        .await?;
        ok(pb::AddMessageResponse {
            message: Some(convert::message(&message, Side::Customer)),
            ticket: Some(convert::ticket(&written.ticket, Side::Customer)),
        })
    }

    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Reply<pb::ListMessagesResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let (side, ticket) = self.shared_ticket(&p, &r.ticket_id).await?;
        let (messages, next_page_token) = list_messages(
            &self.app,
            &ticket.row.id,
            r.after_message_sequence,
            false,
            r.newest_first,
            r.page_size,
            &r.page_token,
            Side::Customer,
        )
        .await?;
        self.audit_if_staff(&p, side, &ticket, "ticket.messages_read", None)
            .await?;
        ok(pb::ListMessagesResponse {
            messages,
            next_page_token,
        })
    }

    async fn close_ticket(
        &self,
        request: Request<pb::CloseTicketRequest>,
    ) -> Reply<pb::CloseTicketResponse> {
        let p = caller(&request)?;
        let (side, ticket) = self.shared_ticket(&p, &request.get_ref().ticket_id).await?;
        let written = self
            .change_status_as(&p, &ticket, side, |from| from.change_to(Status::Closed))
            .await?;
        self.audit_if_staff(&p, side, &ticket, "ticket.close", None)
            .await?;
        ok(pb::CloseTicketResponse {
            ticket: Some(convert::ticket(&written.ticket, Side::Customer)),
        })
    }

    async fn reopen_ticket(
        &self,
        request: Request<pb::ReopenTicketRequest>,
    ) -> Reply<pb::ReopenTicketResponse> {
        let p = caller(&request)?;
        let (side, ticket) = self.shared_ticket(&p, &request.get_ref().ticket_id).await?;
        let written = self
            .change_status_as(&p, &ticket, side, |from| from.change_to(Status::Open))
            .await?;
        self.audit_if_staff(&p, side, &ticket, "ticket.reopen", None)
            .await?;
        ok(pb::ReopenTicketResponse {
            ticket: Some(convert::ticket(&written.ticket, Side::Customer)),
        })
    }

    async fn watch_ticket(&self, request: Request<pb::WatchTicketRequest>) -> Reply<WatchStream> {
        let p = caller(&request)?;
        let r = request.into_inner();
        if r.after_message_sequence < 0 {
            return Err(
                Error::invalid_field("after_message_sequence", "must not be negative").into(),
            );
        }
        // Subscribe before the snapshot so nothing falls in between.
        let events = self.app.events.subscribe();
        let (side, ticket) = self.shared_ticket(&p, &r.ticket_id).await?;
        self.audit_if_staff(&p, side, &ticket, "ticket.watch", None)
            .await?;
        let replay = if r.after_message_sequence > 0 {
            self.app
                .store
                .messages_after(&ticket.row.id, r.after_message_sequence, false)
                .await?
        } else {
            Vec::new()
        };
        let (tx, rx) = mpsc::channel(64);
        let app = self.app.clone();
        tokio::spawn(watch(app, p, side, ticket, replay, events, tx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn update_ticket_cc(
        &self,
        request: Request<pb::UpdateTicketCcRequest>,
    ) -> Reply<pb::UpdateTicketCcResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let id = ticket_id(&r.ticket_id)?;
        let ticket = self.app.customer_ticket(&p, &id).await?;
        let account = p.account()?.to_owned();
        let mut v = Violations::default();
        let parse = |field: &str, list: &[String], v: &mut Violations| -> Vec<String> {
            list.iter()
                .enumerate()
                .filter_map(|(i, raw)| {
                    v.take(
                        &format!("{field}[{i}]"),
                        ids::parse_id(field, raw).map_err(|_| "must be a UUID"),
                    )
                })
                .collect()
        };
        let add = parse("add_user_ids", &r.add_user_ids, &mut v);
        let remove = parse("remove_user_ids", &r.remove_user_ids, &mut v);
        v.finish()?;
        for (i, user) in add.iter().enumerate() {
            if ticket.cc.contains(user) && !remove.contains(user) {
                continue;
            }
            let theirs = self
                .app
                .peers
                .visibility(
                    user,
                    &account,
                    ticket.row.service_id.iter().cloned().collect(),
                    false,
                )
                .await?;
            if !theirs.sees(ticket.row.service_id.as_deref()) {
                return Err(Error::new(
                    Reason::CcUserNotEligible,
                    "a user is not an active member who may see the ticket",
                )
                .with_field(
                    format!("add_user_ids[{i}]"),
                    "not an active member who may see the ticket",
                )
                .into());
            }
        }
        let outcome = self
            .app
            .store
            .update_cc(&id, &remove, &add, MAX_CC, self.app.clock.now())
            .await?;
        let (after, changed) = match outcome {
            Ok(done) => done,
            Err(_) => {
                return Err(Error::new(Reason::CcLimitExceeded, "at most 20 CC users")
                    .with_field("add_user_ids", "at most 20 CC users")
                    .into());
            }
        };
        if changed {
            self.app.publish(
                &id,
                Event::Updated {
                    ticket: Box::new(after.clone()),
                    fields: vec!["cc_user_ids".to_owned()],
                },
            );
        }
        ok(pb::UpdateTicketCcResponse {
            ticket: Some(convert::ticket(&after, Side::Customer)),
        })
    }
}

/// One WatchTicket stream: snapshot, replay, then live events, with access
/// re-checked on every event and every second; ends with NOT_FOUND
/// (customers) or SUPPORT_ACCESS_NOT_GRANTED (staff) when access is lost,
/// UNAVAILABLE at shutdown.
async fn watch(
    app: Arc<App>,
    p: Principal,
    side: Side,
    ticket: Ticket,
    replay: Vec<crate::store::MessageRow>,
    mut events: broadcast::Receiver<(String, Event)>,
    tx: mpsc::Sender<Result<pb::WatchTicketResponse, GrpcStatus>>,
) {
    use pb::watch_ticket_response::Event as E;
    let send = |e: E| pb::WatchTicketResponse { event: Some(e) };
    let id = ticket.row.id.clone();
    let mut last_sent = ticket.row.last_message_sequence;
    if tx
        .send(Ok(send(E::Snapshot(convert::ticket(
            &ticket,
            Side::Customer,
        )))))
        .await
        .is_err()
    {
        return;
    }
    last_sent = last_sent.max(0);
    for m in replay.iter().filter(|m| !m.internal) {
        if tx
            .send(Ok(send(E::MessageAdded(convert::message(
                m,
                Side::Customer,
            )))))
            .await
            .is_err()
        {
            return;
        }
        last_sent = last_sent.max(m.sequence);
    }
    let still_allowed = |app: Arc<App>, p: Principal, ticket: Ticket| async move {
        match side {
            Side::Customer => {
                let (Ok(user), Ok(account)) = (p.user(), p.account()) else {
                    return Err(Error::from(SupportError::TicketNotFound));
                };
                if app.customer_sees(user, account, &ticket).await? {
                    Ok(())
                } else {
                    Err(SupportError::TicketNotFound.into())
                }
            }
            Side::Staff => app.require_grant(&ticket.row.account_id).await,
        }
    };
    let mut shutdown = app.shutdown.clone();
    let stop = async move {
        shutdown.clone().wait().await;
        let _ = &mut shutdown;
    };
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let event = tokio::select! {
            _ = &mut stop => {
                let farewell = Error::new(Reason::ServerShuttingDown, "server shutting down; reconnect");
                let _ = tx.send(Err(farewell.into())).await;
                return;
            }
            _ = tx.closed() => return,
            _ = tick.tick() => None,
            received = events.recv() => match received {
                Ok((ticket_id, event)) if ticket_id == id => Some(event),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Too slow: re-read what we may have missed.
                    match app.store.messages_after(&id, last_sent, false).await {
                        Ok(missed) => {
                            for m in missed {
                                last_sent = last_sent.max(m.sequence);
                                if tx.send(Ok(send(E::MessageAdded(convert::message(&m, Side::Customer))))).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.into())).await;
                            return;
                        }
                    }
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if let Err(e) = still_allowed(app.clone(), p.clone(), ticket.clone()).await {
            let _ = tx.send(Err(e.into())).await;
            return;
        }
        let out = match event {
            None => continue,
            Some(Event::Message(m)) if m.internal || m.sequence <= last_sent => continue,
            Some(Event::Message(m)) => {
                last_sent = m.sequence;
                E::MessageAdded(convert::message(&m, Side::Customer))
            }
            Some(Event::Status {
                previous,
                by_kind,
                by_user,
                ticket,
            }) => E::StatusChanged(pb::TicketStatusChanged {
                change: Some(pb::TicketStatusChange {
                    previous_status: previous as i32,
                    status: ticket.row.status,
                    changed_by_kind: by_kind as i32,
                    changed_by_user_id: if by_kind == ActorKind::Customer {
                        by_user.unwrap_or_default()
                    } else {
                        String::new()
                    },
                    change_time: Some(
                        tenancy_runtime::Timestamp(ticket.row.status_change_time).to_proto(),
                    ),
                }),
                ticket: Some(convert::ticket(&ticket, Side::Customer)),
            }),
            Some(Event::Updated { ticket, fields }) => E::TicketUpdated(pb::TicketUpdated {
                ticket: Some(convert::ticket(&ticket, Side::Customer)),
                changed_fields: Some(prost_types::FieldMask { paths: fields }),
            }),
        };
        if tx.send(Ok(send(out))).await.is_err() {
            return;
        }
    }
}

#[tonic::async_trait]
impl SupportStaffService for Api {
    async fn list_queue(
        &self,
        request: Request<pb::ListQueueRequest>,
    ) -> Reply<pb::ListQueueResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let mut v = Violations::default();
        let statuses = enum_list("statuses", &r.statuses, Status::from_i32, &mut v);
        let priorities = enum_list("priorities", &r.priorities, Priority::from_i32, &mut v);
        let categories = enum_list("categories", &r.categories, Category::from_i32, &mut v);
        let account = optional_id("account_id", &r.account_id, &mut v);
        let assignee = optional_id("assignee_user_id", &r.assignee_user_id, &mut v);
        v.check(
            !(assignee.is_some() && r.unassigned_only),
            "unassigned_only",
            "cannot be combined with assignee_user_id",
        );
        let order = match r.order_by {
            0 => Some(Order::PriorityDesc),
            n => Order::from_i32(n),
        };
        v.check(order.is_some(), "order_by", "unknown order");
        let limit = v.take(
            "page_size",
            ids::page_size(r.page_size).map_err(|e| e.message),
        );
        v.finish()?;
        let order = order.unwrap_or(Order::PriorityDesc);
        let hash = filter_hash(&[
            format!("{statuses:?}{priorities:?}{categories:?}"),
            format!("{account:?}{assignee:?}{}", r.unassigned_only),
            (order as i32).to_string(),
        ]);
        let after = ids::decode_page_token_for::<Cursor>(&r.page_token, |c| c.f == hash)?;
        let accounts = match &account {
            Some(a) => {
                self.app.require_grant(a).await?;
                Accounts::One(a.clone())
            }
            None => Accounts::Many(self.app.peers.granted_accounts().await?),
        };
        if matches!(&accounts, Accounts::Many(a) if a.is_empty()) {
            return ok(pb::ListQueueResponse::default());
        }
        let query = TicketQuery {
            accounts,
            visible_services: None,
            service_id: None,
            general_only: false,
            statuses,
            priorities,
            categories,
            created_by: None,
            assignee,
            unassigned_only: r.unassigned_only,
            order,
            after,
            limit: limit.unwrap_or(ids::DEFAULT_PAGE_SIZE),
        };
        let (tickets, next) = self.app.store.list_tickets(&query).await?;
        // Audit the read once per account whose tickets were shown.
        let shown: BTreeSet<&str> = tickets.iter().map(|t| t.row.account_id.as_str()).collect();
        for account_id in shown {
            self.app
                .audit_staff(&p, account_id, "ticket.list", "", None)
                .await?;
        }
        ok(pb::ListQueueResponse {
            tickets: tickets
                .iter()
                .map(|t| convert::ticket(t, Side::Staff))
                .collect(),
            next_page_token: next
                .map(|mut c| {
                    c.f = hash.clone();
                    ids::encode_page_token(&c)
                })
                .unwrap_or_default(),
        })
    }

    async fn get_ticket(
        &self,
        request: Request<pb::SupportStaffServiceGetTicketRequest>,
    ) -> Reply<pb::SupportStaffServiceGetTicketResponse> {
        let p = caller(&request)?;
        let ticket = self
            .app
            .staff_ticket(None, &ticket_id(&request.get_ref().ticket_id)?)
            .await?;
        self.app
            .audit_staff(
                &p,
                &ticket.row.account_id,
                "ticket.read",
                &ticket.row.id,
                None,
            )
            .await?;
        ok(pb::SupportStaffServiceGetTicketResponse {
            ticket: Some(convert::ticket(&ticket, Side::Staff)),
        })
    }

    async fn list_messages(
        &self,
        request: Request<pb::SupportStaffServiceListMessagesRequest>,
    ) -> Reply<pb::SupportStaffServiceListMessagesResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let ticket = self
            .app
            .staff_ticket(None, &ticket_id(&r.ticket_id)?)
            .await?;
        let (messages, next_page_token) = list_messages(
            &self.app,
            &ticket.row.id,
            r.after_message_sequence,
            !r.exclude_internal,
            r.newest_first,
            r.page_size,
            &r.page_token,
            Side::Staff,
        )
        .await?;
        self.app
            .audit_staff(
                &p,
                &ticket.row.account_id,
                "ticket.messages_read",
                &ticket.row.id,
                None,
            )
            .await?;
        ok(pb::SupportStaffServiceListMessagesResponse {
            messages,
            next_page_token,
        })
    }

    async fn add_message(
        &self,
        request: Request<pb::SupportStaffServiceAddMessageRequest>,
    ) -> Reply<pb::SupportStaffServiceAddMessageResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let status_after = match r.status_after {
            None => None,
            Some(raw) => match Status::from_i32(raw) {
                Some(s) if Status::is_staff_reply_target(s) => Some(s),
                _ => {
                    return Err(Error::invalid_field(
                        "status_after",
                        "must be AWAITING_CUSTOMER, AWAITING_SUPPORT or RESOLVED",
                    )
                    .into());
                }
            },
        };
        let ticket = self
            .app
            .staff_ticket(None, &ticket_id(&r.ticket_id)?)
            .await?;
        let (written, message) = self
            .add_message_as(
                &p,
                &ticket,
                Side::Staff,
                r.body,
                status_after,
                false,
                &r.request_id,
            )
            .await?;
        self.app
            .audit_staff(
                &p,
                &ticket.row.account_id,
                "ticket.message_add",
                &ticket.row.id,
                Some(message.id.clone()),
            )
            .await?;
        ok(pb::SupportStaffServiceAddMessageResponse {
            message: Some(convert::message(&message, Side::Staff)),
            ticket: Some(convert::ticket(&written.ticket, Side::Staff)),
        })
    }

    async fn add_internal_note(
        &self,
        request: Request<pb::AddInternalNoteRequest>,
    ) -> Reply<pb::AddInternalNoteResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let ticket = self
            .app
            .staff_ticket(None, &ticket_id(&r.ticket_id)?)
            .await?;
        let (written, note) = self
            .add_message_as(&p, &ticket, Side::Staff, r.body, None, true, &r.request_id)
            .await?;
        self.app
            .audit_staff(
                &p,
                &ticket.row.account_id,
                "ticket.note_add",
                &ticket.row.id,
                Some(note.id.clone()),
            )
            .await?;
        ok(pb::AddInternalNoteResponse {
            note: Some(convert::message(&note, Side::Staff)),
            ticket: Some(convert::ticket(&written.ticket, Side::Staff)),
        })
    }

    async fn assign_ticket(
        &self,
        request: Request<pb::AssignTicketRequest>,
    ) -> Reply<pb::AssignTicketResponse> {
        use pb::assign_ticket_request::Assignee;
        let p = caller(&request)?;
        let r = request.into_inner();
        let me = p.user()?.to_owned();
        let assignee = match r.assignee {
            Some(Assignee::AssigneeUserId(raw)) => {
                let id = ids::parse_id("assignee_user_id", &raw)?;
                Some(id)
            }
            Some(Assignee::AssignToSelf(true)) => Some(me.clone()),
            Some(Assignee::Unassign(true)) => None,
            _ => {
                return Err(Error::invalid_field(
                    "assignee",
                    "set exactly one of assignee_user_id, assign_to_self or unassign (true)",
                )
                .into());
            }
        };
        let ticket = self
            .app
            .staff_ticket(None, &ticket_id(&r.ticket_id)?)
            .await?;
        if let Some(a) = assignee.as_ref().filter(|a| **a != me) {
            let users = self.app.peers.users(vec![a.clone()]).await?;
            if !users.iter().any(|u| u.staff) {
                return Err(Error::new(
                    Reason::AssigneeNotStaff,
                    "the user is not on the support team",
                )
                .with_field("assignee_user_id", "not on the support team")
                .into());
            }
        }
        let after = self
            .app
            .store
            .assign(&ticket.row.id, assignee, r.only_if_unassigned)
            .await?;
        self.app
            .audit_staff(
                &p,
                &ticket.row.account_id,
                "ticket.assign",
                &ticket.row.id,
                None,
            )
            .await?;
        ok(pb::AssignTicketResponse {
            ticket: Some(convert::ticket(&after, Side::Staff)),
        })
    }

    async fn set_ticket_status(
        &self,
        request: Request<pb::SetTicketStatusRequest>,
    ) -> Reply<pb::SetTicketStatusResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let to = Status::from_i32(r.status)
            .ok_or_else(|| Error::invalid_field("status", "required: a TicketStatus"))?;
        let ticket = self
            .app
            .staff_ticket(None, &ticket_id(&r.ticket_id)?)
            .await?;
        let written = self
            .change_status_as(&p, &ticket, Side::Staff, move |from| from.change_to(to))
            .await?;
        self.app
            .audit_staff(
                &p,
                &ticket.row.account_id,
                "ticket.set_status",
                &ticket.row.id,
                None,
            )
            .await?;
        ok(pb::SetTicketStatusResponse {
            ticket: Some(convert::ticket(&written.ticket, Side::Staff)),
        })
    }

    async fn verify_caller(
        &self,
        request: Request<pb::VerifyCallerRequest>,
    ) -> Reply<pb::VerifyCallerResponse> {
        let p = caller(&request)?;
        let r = request.into_inner();
        let staff = p.user()?.to_owned();
        let mut v = Violations::default();
        let account = v.take(
            "account_id",
            ids::parse_id("account_id", &r.account_id).map_err(|_| "must be a UUID"),
        );
        let user = v.take(
            "user_id",
            ids::parse_id("user_id", &r.user_id).map_err(|_| "must be a UUID"),
        );
        v.check(!r.code_word.trim().is_empty(), "code_word", "required");
        v.finish()?;
        let (account, user) = (account.unwrap_or_default(), user.unwrap_or_default());
        let ticket = if r.ticket_id.is_empty() {
            None
        } else {
            let t = self
                .app
                .store
                .ticket(&ticket_id(&r.ticket_id)?)
                .await?
                .ok_or_else(|| Error::from(SupportError::TicketNotFound))?;
            if t.row.account_id != account {
                return Err(Error::new(
                    Reason::TicketAccountMismatch,
                    "the ticket belongs to another account",
                )
                .with_field("ticket_id", "belongs to another account")
                .into());
            }
            self.app.require_grant(&account).await?;
            Some(t)
        };
        if !self.app.peers.is_member(&user, &account).await? {
            return Err(Error::new(Reason::MemberNotFound, "no such member of the account").into());
        }
        let outcome = self
            .app
            .peers
            .verify_code_word(&user, r.code_word, &staff, &account)
            .await?;
        let (label, proto) = match outcome {
            CodeWordOutcome::Verified => ("VERIFIED", pb::VerifyCallerOutcome::Verified),
            CodeWordOutcome::Mismatch => ("MISMATCH", pb::VerifyCallerOutcome::Mismatch),
            CodeWordOutcome::NoCodeWord => ("NO_CODE_WORD", pb::VerifyCallerOutcome::NoCodeWord),
        };
        self.app
            .peers
            .audit(crate::peers::Audit {
                principal: &p,
                account_id: &account,
                action: "member.verify_caller",
                target_type: "member",
                target_id: &user,
                after: vec![
                    ("outcome", label.to_owned()),
                    ("ticket_id", r.ticket_id.clone()),
                ],
                idempotency_key: None,
            })
            .await?;
        if let Some(t) = ticket {
            self.app
                .store
                .add_message(
                    &t.row.id,
                    NewMessage {
                        author_kind: ActorKind::System,
                        author_user_id: None,
                        body: format!(
                            "Caller verification for user {user} by staff {staff}: {label}"
                        ),
                        internal: true,
                    },
                    Ok,
                    None,
                    self.app.clock.now(),
                )
                .await?;
        }
        ok(pb::VerifyCallerResponse {
            verified: outcome == CodeWordOutcome::Verified,
            outcome: proto as i32,
        })
    }
}
