//! Storage of tickets, messages, CC users and request ids (sea-orm).
//!
//! Every write is one transaction. A write to a ticket first touches the
//! ticket's row (a no-op UPDATE), which takes the row lock on PostgreSQL and
//! the write lock on SQLite, so the status read after it cannot change
//! before commit and message sequences never collide (a unique index on
//! `(ticket_id, sequence)` backs that up). A customer-visible message is
//! written with its notification, in the same transaction, into the outbox
//! of `crate::peer_calls`.

mod entities;
pub(crate) mod list;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use tenancy_runtime::db::stored;
use tenancy_runtime::ids::{self, AccountId, MessageId, TicketId, UserId};
use tenancy_runtime::peer_calls::Enqueued;
use tenancy_runtime::{Error, Timestamp};

use entities::message::Model as MessageRow;
use entities::ticket::Model as TicketRow;
use entities::{cc, message, request, ticket};

use crate::domain::{ActorKind, Category, Priority, Status, SupportError};
pub(crate) use crate::domain::{Ticket, TicketMessage};
use crate::peer_calls::{self, MessageNotice};

/// How long a request id is remembered.
const REQUEST_ID_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// A client request id with the fingerprint of what it asked for.
#[derive(Clone, Debug)]
pub(crate) struct RequestKey {
    /// The caller.
    pub(crate) user_id: UserId,
    /// The client's UUID.
    pub(crate) request_id: String,
    /// SHA-256 of the request's content (kind, ticket, body...).
    pub(crate) fingerprint: String,
}

/// What a new ticket holds.
#[derive(Clone, Debug)]
pub(crate) struct NewTicket {
    /// The account.
    pub(crate) account_id: AccountId,
    /// Trimmed subject.
    pub(crate) subject: String,
    /// The service; `None`: account-general.
    pub(crate) service_id: Option<String>,
    /// Its category.
    pub(crate) category: Category,
    /// Its priority.
    pub(crate) priority: Priority,
    /// The creator.
    pub(crate) created_by_user_id: UserId,
    /// The first message.
    pub(crate) body: String,
    /// Initial CC users (deduplicated, creator removed), each with the
    /// index of its entry in the request (for errors).
    pub(crate) cc: Vec<(usize, UserId)>,
}

/// What a new message holds.
#[derive(Clone, Debug)]
pub(crate) struct NewMessage {
    /// Who writes it.
    pub(crate) author_kind: ActorKind,
    /// The author; `None` for the system.
    pub(crate) author_user_id: Option<UserId>,
    /// Plain text.
    pub(crate) body: String,
    /// Staff-only note.
    pub(crate) internal: bool,
}

/// The outcome of a write that may change the status.
#[derive(Clone, Debug)]
pub(crate) struct Written {
    /// The ticket after the write.
    pub(crate) ticket: Ticket,
    /// The status before, when it changed.
    pub(crate) previous_status: Option<Status>,
    /// Whether this was a replay of an earlier request (nothing written).
    pub(crate) replayed: bool,
    /// The notification written with a customer-visible message, to
    /// deliver after commit.
    pub(crate) notification: Option<Enqueued>,
}

/// The support database.
#[derive(Clone)]
pub(crate) struct Store {
    db: DatabaseConnection,
}

impl Store {
    pub(crate) fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// The connection, for list queries.
    pub(crate) fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// One ticket by id.
    pub(crate) async fn ticket(&self, id: &TicketId) -> Result<Option<Ticket>, Error> {
        load_ticket(&self.db, id.as_str()).await
    }

    /// CC users of many tickets at once.
    async fn cc_of(&self, rows: Vec<TicketRow>) -> Result<Vec<Ticket>, Error> {
        with_cc(&self.db, rows).await
    }

    /// One message by id.
    pub(crate) async fn message(&self, id: &MessageId) -> Result<Option<TicketMessage>, Error> {
        message::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?
            .map(message_of)
            .transpose()
    }

    /// Creates a ticket with its first message (sequence 1) and the
    /// message's notification (returned, to deliver after commit), or
    /// returns the one created before with the same request id (and no
    /// notification: that call wrote it).
    pub(crate) async fn create_ticket(
        &self,
        new: NewTicket,
        key: Option<RequestKey>,
        now: Timestamp,
    ) -> Result<(Ticket, TicketMessage, Option<Enqueued>), Error> {
        let txn = tenancy_runtime::db::begin(&self.db).await?;
        if let Some(key) = &key
            && let Some(earlier) = take_request(&txn, key, "ticket", now).await?
        {
            txn.commit().await?;
            let ticket = load_ticket(&self.db, &earlier.ticket_id)
                .await?
                .ok_or(SupportError::TicketNotFound)?;
            let first = message::Entity::find()
                .filter(message::Column::TicketId.eq(&earlier.ticket_id))
                .filter(message::Column::Sequence.eq(1))
                .one(&self.db)
                .await?
                .ok_or(SupportError::TicketNotFound)?;
            return Ok((ticket, message_of(first)?, None));
        }
        let id = ids::new_id();
        let now = now.millis();
        let row = TicketRow {
            id: id.clone(),
            account_id: new.account_id.into_string(),
            subject: new.subject,
            service_id: new.service_id,
            category: new.category as i32,
            priority: new.priority as i32,
            status: Status::Open as i32,
            created_by_user_id: new.created_by_user_id.to_string(),
            assignee_user_id: None,
            message_count: 1,
            internal_note_count: 0,
            last_message_sequence: 1,
            last_sequence: 1,
            create_time: now,
            update_time: now,
            last_message_time: now,
            status_change_time: now,
        };
        ticket::Entity::insert(ticket_active(&row))
            .exec_without_returning(&txn)
            .await?;
        let first = MessageRow {
            id: ids::new_id(),
            ticket_id: id.clone(),
            sequence: 1,
            author_kind: ActorKind::Customer as i32,
            author_user_id: Some(new.created_by_user_id.into_string()),
            body: new.body,
            internal: false,
            create_time: now,
        };
        message::Entity::insert(message_active(&first))
            .exec_without_returning(&txn)
            .await?;
        let cc: BTreeSet<String> = new.cc.into_iter().map(|(_, id)| id.into_string()).collect();
        for user_id in &cc {
            cc::Entity::insert(cc::ActiveModel {
                ticket_id: Set(id.clone()),
                user_id: Set(user_id.clone()),
            })
            .exec_without_returning(&txn)
            .await?;
        }
        if let Some(key) = &key {
            record_request(&txn, key, "ticket", &id, &id, now).await?;
        }
        let ticket = ticket_of(row, cc.into_iter().collect())?;
        let first = message_of(first)?;
        let notification =
            peer_calls::enqueue(&txn, &MessageNotice::new(&ticket.id, &first.id, true)).await?;
        txn.commit().await?;
        Ok((ticket, first, Some(notification)))
    }

    /// Adds a message or note. `next_status` decides the status after it
    /// from the status before (and may refuse, e.g. TICKET_CLOSED).
    pub(crate) async fn add_message(
        &self,
        ticket_id: &TicketId,
        new: NewMessage,
        next_status: impl FnOnce(Status) -> Result<Status, SupportError> + Send,
        key: Option<RequestKey>,
        now: Timestamp,
    ) -> Result<(Written, TicketMessage), Error> {
        let ticket_id = ticket_id.as_str();
        let txn = tenancy_runtime::db::begin(&self.db).await?;
        let kind = if new.internal { "note" } else { "message" };
        if let Some(key) = &key
            && let Some(earlier) = take_request(&txn, key, kind, now).await?
        {
            txn.commit().await?;
            let ticket = load_ticket(&self.db, &earlier.ticket_id)
                .await?
                .ok_or(SupportError::TicketNotFound)?;
            let written = message::Entity::find_by_id(earlier.target_id)
                .one(&self.db)
                .await?
                .ok_or(SupportError::TicketNotFound)?;
            return Ok((
                Written {
                    ticket,
                    previous_status: None,
                    replayed: true,
                    notification: None,
                },
                message_of(written)?,
            ));
        }
        let mut row = lock_ticket(&txn, ticket_id).await?;
        let before = stored("status", row.status, Status::from_i32)?;
        let after = if new.internal {
            before
        } else {
            next_status(before)?
        };
        let now_ms = now.millis();
        row.last_sequence += 1;
        let entry = MessageRow {
            id: ids::new_id(),
            ticket_id: ticket_id.to_owned(),
            sequence: row.last_sequence,
            author_kind: new.author_kind as i32,
            author_user_id: new.author_user_id.map(UserId::into_string),
            body: new.body,
            internal: new.internal,
            create_time: now_ms,
        };
        message::Entity::insert(message_active(&entry))
            .exec_without_returning(&txn)
            .await?;
        if new.internal {
            row.internal_note_count += 1;
        } else {
            row.message_count += 1;
            row.last_message_sequence = row.last_sequence;
            row.last_message_time = now_ms;
            row.update_time = now_ms;
        }
        if after != before {
            row.status = after as i32;
            row.status_change_time = now_ms;
        }
        ticket::Entity::update(ticket_active(&row))
            .exec(&txn)
            .await?;
        if let Some(key) = &key {
            record_request(&txn, key, kind, ticket_id, &entry.id, now_ms).await?;
        }
        let cc = cc_in(&txn, ticket_id).await?;
        let ticket = ticket_of(row, cc)?;
        let message = message_of(entry)?;
        // Internal notes notify nobody.
        let notification = if message.internal {
            None
        } else {
            let notice = MessageNotice::new(&ticket.id, &message.id, false);
            Some(peer_calls::enqueue(&txn, &notice).await?)
        };
        txn.commit().await?;
        Ok((
            Written {
                ticket,
                previous_status: (after != before).then_some(before),
                replayed: false,
                notification,
            },
            message,
        ))
    }

    /// Changes the status following the transition table.
    pub(crate) async fn change_status(
        &self,
        ticket_id: &TicketId,
        decide: impl FnOnce(Status) -> Result<Option<Status>, SupportError> + Send,
        now: Timestamp,
    ) -> Result<Written, Error> {
        let ticket_id = ticket_id.as_str();
        let txn = tenancy_runtime::db::begin(&self.db).await?;
        let mut row = lock_ticket(&txn, ticket_id).await?;
        let before = stored("status", row.status, Status::from_i32)?;
        let previous_status = match decide(before)? {
            Some(after) => {
                row.status = after as i32;
                row.status_change_time = now.millis();
                row.update_time = now.millis();
                ticket::Entity::update(ticket_active(&row))
                    .exec(&txn)
                    .await?;
                Some(before)
            }
            None => None,
        };
        let cc = cc_in(&txn, ticket_id).await?;
        txn.commit().await?;
        Ok(Written {
            ticket: ticket_of(row, cc)?,
            previous_status,
            replayed: false,
            notification: None,
        })
    }

    /// Sets or clears the assignee; with `only_if_unassigned`, refuses when
    /// someone else holds the ticket (decided by a conditional UPDATE).
    pub(crate) async fn assign(
        &self,
        ticket_id: &TicketId,
        assignee: Option<UserId>,
        only_if_unassigned: bool,
    ) -> Result<Ticket, Error> {
        let ticket_id = ticket_id.as_str();
        let assignee = assignee.map(UserId::into_string);
        let mut update = ticket::Entity::update_many()
            .col_expr(
                ticket::Column::AssigneeUserId,
                Expr::value(assignee.clone()),
            )
            .filter(ticket::Column::Id.eq(ticket_id));
        if only_if_unassigned {
            let mut cond = sea_orm::Condition::any().add(ticket::Column::AssigneeUserId.is_null());
            if let Some(a) = &assignee {
                cond = cond.add(ticket::Column::AssigneeUserId.eq(a.clone()));
            }
            update = update.filter(cond);
        }
        let result = update.exec(&self.db).await?;
        let ticket = load_ticket(&self.db, ticket_id)
            .await?
            .ok_or(SupportError::TicketNotFound)?;
        if result.rows_affected == 0
            && let Some(holder) = ticket.assignee_user_id.clone()
        {
            return Err(SupportError::AlreadyAssigned {
                assignee_user_id: holder,
            }
            .into());
        }
        Ok(ticket)
    }

    /// Removes then adds CC users; at most `max` afterwards (else
    /// `Err(count)` inside `Ok`). Returns whether anything changed.
    pub(crate) async fn update_cc(
        &self,
        ticket_id: &TicketId,
        remove: &[UserId],
        add: &[UserId],
        max: usize,
        now: Timestamp,
    ) -> Result<Result<(Ticket, bool), usize>, Error> {
        let ticket_id = ticket_id.as_str();
        let txn = tenancy_runtime::db::begin(&self.db).await?;
        let mut row = lock_ticket(&txn, ticket_id).await?;
        let before = cc_in(&txn, ticket_id).await?;
        let mut after: BTreeSet<String> = before.iter().cloned().collect();
        for r in remove {
            after.remove(r.as_str());
        }
        for a in add {
            after.insert(a.to_string());
        }
        if after.len() > max {
            return Ok(Err(after.len()));
        }
        let after: Vec<String> = after.into_iter().collect();
        let changed = after != before;
        if changed {
            cc::Entity::delete_many()
                .filter(cc::Column::TicketId.eq(ticket_id))
                .exec(&txn)
                .await?;
            for user_id in &after {
                cc::Entity::insert(cc::ActiveModel {
                    ticket_id: Set(ticket_id.to_owned()),
                    user_id: Set(user_id.clone()),
                })
                .exec_without_returning(&txn)
                .await?;
            }
            row.update_time = now.millis();
            ticket::Entity::update(ticket_active(&row))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(Ok((ticket_of(row, after)?, changed)))
    }

    /// Messages of a ticket after `after` (exclusive) in sequence order.
    pub(crate) async fn messages(
        &self,
        ticket_id: &TicketId,
        after: i64,
        before: Option<i64>,
        include_internal: bool,
        newest_first: bool,
        limit: u64,
    ) -> Result<Vec<TicketMessage>, Error> {
        let ticket_id = ticket_id.as_str();
        let mut query = message::Entity::find()
            .filter(message::Column::TicketId.eq(ticket_id))
            .filter(message::Column::Sequence.gt(after));
        if let Some(before) = before {
            query = query.filter(message::Column::Sequence.lt(before));
        }
        if !include_internal {
            query = query.filter(message::Column::Internal.eq(false));
        }
        query = if newest_first {
            query.order_by_desc(message::Column::Sequence)
        } else {
            query.order_by_asc(message::Column::Sequence)
        };
        query
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(message_of)
            .collect()
    }

    /// Messages of a ticket with sequence after `after`, oldest first,
    /// customer-visible only unless `include_internal` (for WatchTicket).
    pub(crate) async fn messages_after(
        &self,
        ticket_id: &TicketId,
        after: i64,
        include_internal: bool,
    ) -> Result<Vec<TicketMessage>, Error> {
        self.messages(ticket_id, after, None, include_internal, false, 10_000)
            .await
    }
}

/// Touches the ticket's row (taking its lock), then reads it.
async fn lock_ticket(txn: &DatabaseTransaction, ticket_id: &str) -> Result<TicketRow, Error> {
    let touched = ticket::Entity::update_many()
        .col_expr(
            ticket::Column::LastSequence,
            Expr::col(ticket::Column::LastSequence).add(0),
        )
        .filter(ticket::Column::Id.eq(ticket_id))
        .exec(txn)
        .await?;
    if touched.rows_affected == 0 {
        return Err(SupportError::TicketNotFound.into());
    }
    ticket::Entity::find_by_id(ticket_id.to_owned())
        .one(txn)
        .await?
        .ok_or_else(|| SupportError::TicketNotFound.into())
}

async fn load_ticket<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<Ticket>, Error> {
    let Some(row) = ticket::Entity::find_by_id(id.to_owned()).one(db).await? else {
        return Ok(None);
    };
    let cc = cc_in(db, id).await?;
    Ok(Some(ticket_of(row, cc)?))
}

async fn cc_in<C: ConnectionTrait>(db: &C, ticket_id: &str) -> Result<Vec<String>, Error> {
    Ok(cc::Entity::find()
        .filter(cc::Column::TicketId.eq(ticket_id))
        .order_by_asc(cc::Column::UserId)
        .all(db)
        .await?
        .into_iter()
        .map(|c| c.user_id)
        .collect())
}

/// CC users of many tickets in one query.
async fn with_cc<C: ConnectionTrait>(db: &C, rows: Vec<TicketRow>) -> Result<Vec<Ticket>, Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut by_ticket: HashMap<String, Vec<String>> = HashMap::new();
    for c in cc::Entity::find()
        .filter(cc::Column::TicketId.is_in(ids))
        .order_by_asc(cc::Column::UserId)
        .all(db)
        .await?
    {
        by_ticket.entry(c.ticket_id).or_default().push(c.user_id);
    }
    rows.into_iter()
        .map(|row| {
            let cc = by_ticket.remove(&row.id).unwrap_or_default();
            ticket_of(row, cc)
        })
        .collect()
}

/// The earlier request with this id, if still remembered and for the same
/// content; REQUEST_ID_REUSED when for other content. Forgets expired ones.
async fn take_request(
    txn: &DatabaseTransaction,
    key: &RequestKey,
    kind: &str,
    now: Timestamp,
) -> Result<Option<request::Model>, Error> {
    let Some(earlier) =
        request::Entity::find_by_id((key.user_id.to_string(), key.request_id.clone()))
            .one(txn)
            .await?
    else {
        return Ok(None);
    };
    if earlier.create_time < now.minus(REQUEST_ID_WINDOW).millis() {
        request::Entity::delete_by_id((key.user_id.to_string(), key.request_id.clone()))
            .exec(txn)
            .await?;
        return Ok(None);
    }
    let same = earlier.kind == kind
        && tenancy_runtime::secret::constant_time_eq(
            earlier.fingerprint.as_bytes(),
            key.fingerprint.as_bytes(),
        );
    if same {
        Ok(Some(earlier))
    } else {
        Err(SupportError::RequestIdReused.into())
    }
}

async fn record_request(
    txn: &DatabaseTransaction,
    key: &RequestKey,
    kind: &str,
    ticket_id: &str,
    target_id: &str,
    now: i64,
) -> Result<(), Error> {
    request::Entity::insert(request::ActiveModel {
        user_id: Set(key.user_id.to_string()),
        request_id: Set(key.request_id.clone()),
        kind: Set(kind.to_owned()),
        ticket_id: Set(ticket_id.to_owned()),
        target_id: Set(target_id.to_owned()),
        fingerprint: Set(key.fingerprint.clone()),
        create_time: Set(now),
    })
    .exec_without_returning(txn)
    .await
    .map_err(|e| {
        if tenancy_runtime::db::is_unique_violation(&e) {
            // A concurrent call with the same request id won; the client
            // retries and gets its result.
            Error::from(SupportError::RequestInProgress)
        } else {
            e.into()
        }
    })?;
    Ok(())
}

/// A stored ticket with its CC users as the domain sees it.
fn ticket_of(row: TicketRow, cc: Vec<String>) -> Result<Ticket, Error> {
    Ok(Ticket {
        id: TicketId::trusted(row.id),
        account_id: AccountId::trusted(row.account_id),
        subject: row.subject,
        service_id: row.service_id,
        category: stored("category", row.category, Category::from_i32)?,
        priority: stored("priority", row.priority, Priority::from_i32)?,
        status: stored("status", row.status, Status::from_i32)?,
        created_by_user_id: UserId::trusted(row.created_by_user_id),
        assignee_user_id: row.assignee_user_id.map(UserId::trusted),
        message_count: row.message_count,
        internal_note_count: row.internal_note_count,
        last_message_sequence: row.last_message_sequence,
        last_sequence: row.last_sequence,
        create_time: row.create_time,
        update_time: row.update_time,
        last_message_time: row.last_message_time,
        status_change_time: row.status_change_time,
        cc: cc.into_iter().map(UserId::trusted).collect(),
    })
}

/// A stored message as the domain sees it.
fn message_of(row: MessageRow) -> Result<TicketMessage, Error> {
    Ok(TicketMessage {
        id: MessageId::trusted(row.id),
        ticket_id: TicketId::trusted(row.ticket_id),
        sequence: row.sequence,
        author_kind: stored("author_kind", row.author_kind, ActorKind::from_i32)?,
        author_user_id: row.author_user_id.map(UserId::trusted),
        body: row.body,
        internal: row.internal,
        create_time: row.create_time,
    })
}

fn ticket_active(row: &TicketRow) -> ticket::ActiveModel {
    ticket::ActiveModel {
        id: Set(row.id.clone()),
        account_id: Set(row.account_id.clone()),
        subject: Set(row.subject.clone()),
        service_id: Set(row.service_id.clone()),
        category: Set(row.category),
        priority: Set(row.priority),
        status: Set(row.status),
        created_by_user_id: Set(row.created_by_user_id.clone()),
        assignee_user_id: Set(row.assignee_user_id.clone()),
        message_count: Set(row.message_count),
        internal_note_count: Set(row.internal_note_count),
        last_message_sequence: Set(row.last_message_sequence),
        last_sequence: Set(row.last_sequence),
        create_time: Set(row.create_time),
        update_time: Set(row.update_time),
        last_message_time: Set(row.last_message_time),
        status_change_time: Set(row.status_change_time),
    }
}

fn message_active(row: &MessageRow) -> message::ActiveModel {
    message::ActiveModel {
        id: Set(row.id.clone()),
        ticket_id: Set(row.ticket_id.clone()),
        sequence: Set(row.sequence),
        author_kind: Set(row.author_kind),
        author_user_id: Set(row.author_user_id.clone()),
        body: Set(row.body.clone()),
        internal: Set(row.internal),
        create_time: Set(row.create_time),
    }
}

/// For benchmarks: inserts ticket rows directly.
#[doc(hidden)]
pub async fn seed_tickets(db: &DatabaseConnection, rows: Vec<TicketSeed>) -> Result<(), Error> {
    let txn = tenancy_runtime::db::begin(db).await?;
    for chunk in rows.chunks(500) {
        let models: Vec<ticket::ActiveModel> = chunk
            .iter()
            .map(|s| {
                ticket_active(&TicketRow {
                    id: s.id.clone(),
                    account_id: s.account_id.clone(),
                    subject: s.subject.clone(),
                    service_id: s.service_id.clone(),
                    category: 1,
                    priority: s.priority,
                    status: s.status,
                    created_by_user_id: s.created_by_user_id.clone(),
                    assignee_user_id: None,
                    message_count: 1,
                    internal_note_count: 0,
                    last_message_sequence: 1,
                    last_sequence: 1,
                    create_time: s.time,
                    update_time: s.time,
                    last_message_time: s.time,
                    status_change_time: s.time,
                })
            })
            .collect();
        ticket::Entity::insert_many(models)
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// One ticket row for [`seed_tickets`].
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct TicketSeed {
    /// UUID.
    pub id: String,
    /// The account.
    pub account_id: String,
    /// Subject.
    pub subject: String,
    /// The service, or none.
    pub service_id: Option<String>,
    /// Priority value 1–4.
    pub priority: i32,
    /// Status value 1–5.
    pub status: i32,
    /// The creator.
    pub created_by_user_id: String,
    /// Unix ms of create and update.
    pub time: i64,
}

/// For benchmarks: the ListTickets page query of an account, limited to
/// account-general tickets plus `visible` services when given, with
/// `statuses` and `order` (proto `TicketOrder` value) as the handler builds
/// it.
fn bench_query(
    account_id: &str,
    visible: Option<Vec<String>>,
    statuses: Vec<i32>,
    order: i32,
) -> Result<list::TicketQuery, Error> {
    Ok(list::TicketQuery {
        accounts: list::Accounts::One(AccountId::trusted(account_id)),
        visible_services: visible,
        service_id: None,
        general_only: false,
        statuses: statuses.into_iter().filter_map(Status::from_i32).collect(),
        priorities: Vec::new(),
        categories: Vec::new(),
        created_by: None,
        assignee: None,
        unassigned_only: false,
        order: list::Order::from_i32(order)
            .ok_or_else(|| Error::invalid_field("order_by", "unknown order"))?,
        after: None,
        limit: 50,
    })
}

/// For benchmarks: runs one page of [`bench_query`] (with the CC lookup);
/// returns the number of tickets.
#[doc(hidden)]
pub async fn bench_list_page(
    db: &DatabaseConnection,
    account_id: &str,
    visible: Option<Vec<String>>,
    statuses: Vec<i32>,
    order: i32,
) -> Result<usize, Error> {
    let query = bench_query(account_id, visible, statuses, order)?;
    Ok(Store::new(db.clone()).list_tickets(&query).await?.0.len())
}

/// For benchmarks: the database's plan of one page of [`bench_query`]
/// (`EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN` on PostgreSQL), one line per
/// step.
#[doc(hidden)]
pub async fn bench_explain_page(
    db: &DatabaseConnection,
    account_id: &str,
    visible: Option<Vec<String>>,
    statuses: Vec<i32>,
    order: i32,
) -> Result<Vec<String>, Error> {
    use sea_orm::{ConnectionTrait, DbBackend, QueryTrait, Statement};
    let query = bench_query(account_id, visible, statuses, order)?;
    let backend = db.get_database_backend();
    let statement = query.page(51).build(backend);
    let (prefix, column) = match backend {
        DbBackend::Sqlite => ("EXPLAIN QUERY PLAN ", "detail"),
        _ => ("EXPLAIN ", "QUERY PLAN"),
    };
    let explain = Statement {
        sql: format!("{prefix}{}", statement.sql),
        ..statement
    };
    let rows = db.query_all_raw(explain).await?;
    rows.iter()
        .map(|r| r.try_get::<String>("", column).map_err(Error::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_number_we_never_write_is_internal_not_a_default() {
        assert_eq!(
            stored("status", Status::Closed as i32, Status::from_i32).unwrap(),
            Status::Closed
        );
        assert_eq!(
            stored("author_kind", 2, ActorKind::from_i32).unwrap(),
            ActorKind::Staff
        );
        for unknown in [0, 9] {
            let error = stored("category", unknown, Category::from_i32).unwrap_err();
            assert_eq!(error.reason, tenancy_runtime::Reason::InternalError);
        }
    }
}
