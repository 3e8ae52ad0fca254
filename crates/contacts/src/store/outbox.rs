//! The transactional outbox: queueing (idempotent by key), reading, and the
//! delivery worker's claims.
#![allow(missing_docs)]

use sea_orm::sea_query::{Condition, Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
};
use tenancy_runtime::db::{self, stored};
use tenancy_runtime::ids::AccountId;
use tenancy_runtime::{Error, Timestamp};

use super::entities::{outbox_message as msg, outbox_request as req, outbox_secret as sec};
use crate::domain::outbox::{Channel, Message, MessageState};
use crate::domain::routing::Category;
use crate::domain::templates::Template;

const PENDING: i32 = MessageState::Pending as i32;
const SENDING: i32 = MessageState::Sending as i32;
const SENT: i32 = MessageState::Sent as i32;
const FAILED: i32 = MessageState::Failed as i32;

/// The `last_error` of a row [`claim_due`] could not read.
const UNREADABLE_ROW: &str =
    "unreadable row: a template, channel or category number we never write (see the log)";

/// A stored message as the domain sees it. The state column only ever
/// holds the four known states; anything else reads as FAILED (no attempt
/// is made of it). An unknown template or channel, or a category other
/// than 0 (none) we do not know, is a damaged row: INTERNAL.
fn message_of(m: msg::Model) -> Result<Message, Error> {
    Ok(Message {
        id: m.id,
        idempotency_key: m.idempotency_key,
        to_email: m.to_email,
        to_name: m.to_name,
        subject: m.subject,
        body_text: m.body_text,
        body_html: m.body_html,
        template: stored("template", m.template, Template::from_i32)?,
        template_data: m.template_data,
        account_id: (!m.account_id.is_empty()).then(|| AccountId::trusted(m.account_id)),
        category: match m.category {
            0 => None,
            n => Some(stored("category", n, Category::from_i32)?),
        },
        state: MessageState::from_i32(m.state).unwrap_or(MessageState::Failed),
        attempts: m.attempts,
        next_attempt_at: m.next_attempt_at,
        last_attempt_at: m.last_attempt_at,
        last_error: m.last_error,
        created_at: m.created_at,
        sent_at: m.sent_at,
        smtp_message_id: m.smtp_message_id,
        channel: stored("channel", m.channel, Channel::from_i32)?,
        to_phone: m.to_phone,
    })
}

/// A message to queue.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub to_email: String,
    pub to_name: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    pub template: Template,
    /// JSON object of the template variables.
    pub template_data: String,
    pub account_id: Option<AccountId>,
    /// The notification category; `None`: not a routed notification.
    pub category: Option<Category>,
    pub channel: Channel,
    /// The SMS recipient; empty for email.
    pub to_phone: String,
}

/// Why queueing did not happen.
#[derive(Debug)]
pub enum EnqueueError {
    /// The key is taken: look the earlier call up with [`earlier_call`].
    KeyTaken,
    /// Anything else.
    Other(Error),
}

impl From<sea_orm::DbErr> for EnqueueError {
    fn from(e: sea_orm::DbErr) -> Self {
        if tenancy_runtime::db::is_unique_violation(&e) {
            Self::KeyTaken
        } else {
            Self::Other(e.into())
        }
    }
}

/// Queues `messages` under `key` in the caller's transaction `txn`.
pub async fn enqueue<C: ConnectionTrait>(
    txn: &C,
    key: &str,
    request_hash: &str,
    messages: Vec<NewMessage>,
    message_id_domain: &str,
    now: Timestamp,
) -> Result<Vec<Message>, EnqueueError> {
    req::Entity::insert(req::ActiveModel {
        idempotency_key: Set(key.to_owned()),
        request_hash: Set(request_hash.to_owned()),
        created_at: Set(now.millis()),
    })
    .exec_without_returning(txn)
    .await?;
    let rows: Vec<msg::Model> = messages
        .into_iter()
        .enumerate()
        .map(|(position, m)| {
            let id = tenancy_runtime::ids::new_id();
            msg::Model {
                smtp_message_id: format!("<{id}@{message_id_domain}>"),
                id,
                idempotency_key: key.to_owned(),
                position: i32::try_from(position).unwrap_or(i32::MAX),
                to_email_norm: crate::domain::email::normalize(&m.to_email),
                to_email: m.to_email,
                to_name: m.to_name,
                subject: m.subject,
                body_text: m.body_text,
                body_html: m.body_html,
                template: m.template as i32,
                template_data: m.template_data,
                account_id: m.account_id.map(String::from).unwrap_or_default(),
                category: m.category.map_or(0, |c| c as i32),
                state: PENDING,
                attempts: 0,
                next_attempt_at: Some(now.millis()),
                lease_until: None,
                last_attempt_at: None,
                last_error: String::new(),
                created_at: now.millis(),
                sent_at: None,
                channel: m.channel as i32,
                to_phone: m.to_phone,
            }
        })
        .collect();
    if !rows.is_empty() {
        msg::Entity::insert_many(rows.iter().cloned().map(IntoActiveModel::into_active_model))
            .exec_without_returning(txn)
            .await?;
    }
    // The rows as queued, read back through the one row -> domain mapping.
    rows.into_iter()
        .map(message_of)
        .collect::<Result<_, _>>()
        .map_err(EnqueueError::Other)
}

/// Keeps the sealed secret of message `id` until it is delivered or given
/// up, in the caller's transaction.
pub async fn insert_secret<C: ConnectionTrait>(
    c: &C,
    id: &str,
    sealed: String,
) -> Result<(), Error> {
    sec::Entity::insert(sec::ActiveModel {
        message_id: Set(id.to_owned()),
        sealed: Set(sealed),
    })
    .exec_without_returning(c)
    .await?;
    Ok(())
}

/// The sealed secret of message `id`, while it is kept.
pub async fn sealed_secret(db: &DatabaseConnection, id: &str) -> Result<Option<String>, Error> {
    Ok(sec::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .map(|s| s.sealed))
}

/// The earlier call with `key`: its request hash and its messages, or
/// `None` if it is gone.
pub async fn earlier_call(
    db: &DatabaseConnection,
    key: &str,
) -> Result<Option<(String, Vec<Message>)>, Error> {
    let Some(request) = req::Entity::find_by_id(key.to_owned()).one(db).await? else {
        return Ok(None);
    };
    let messages = msg::Entity::find()
        .filter(msg::Column::IdempotencyKey.eq(key))
        .order_by_asc(msg::Column::Position)
        .all(db)
        .await?;
    let messages = messages
        .into_iter()
        .map(message_of)
        .collect::<Result<_, _>>()?;
    Ok(Some((request.request_hash, messages)))
}

/// One message.
pub async fn get(db: &DatabaseConnection, id: &str) -> Result<Option<Message>, Error> {
    msg::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(message_of)
        .transpose()
}

/// Filters of [`list`]; all combine with AND.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub state: Option<MessageState>,
    pub idempotency_key: Option<String>,
    pub to_email_norm: Option<String>,
    pub account_id: Option<AccountId>,
    pub template: Option<Template>,
    pub created_after: Option<i64>,
}

/// Messages newest first, after the keyset cursor `(created_at, id)`.
pub async fn list(
    db: &DatabaseConnection,
    filter: &ListFilter,
    after: Option<(i64, String)>,
    limit: u64,
) -> Result<Vec<Message>, Error> {
    let mut cond = Condition::all();
    if let Some(s) = filter.state {
        cond = cond.add(msg::Column::State.eq(s as i32));
    }
    if let Some(k) = &filter.idempotency_key {
        cond = cond.add(msg::Column::IdempotencyKey.eq(k.as_str()));
    }
    if let Some(e) = &filter.to_email_norm {
        cond = cond.add(msg::Column::ToEmailNorm.eq(e.as_str()));
    }
    if let Some(a) = &filter.account_id {
        cond = cond.add(msg::Column::AccountId.eq(a.as_str()));
    }
    if let Some(t) = filter.template {
        cond = cond.add(msg::Column::Template.eq(t as i32));
    }
    if let Some(t) = filter.created_after {
        cond = cond.add(msg::Column::CreatedAt.gte(t));
    }
    if let Some((created, id)) = after {
        cond = cond.add(
            Condition::any()
                .add(msg::Column::CreatedAt.lt(created))
                .add(
                    Condition::all()
                        .add(msg::Column::CreatedAt.eq(created))
                        .add(msg::Column::Id.lt(id)),
                ),
        );
    }
    msg::Entity::find()
        .filter(cond)
        .order_by_desc(msg::Column::CreatedAt)
        .order_by_desc(msg::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(message_of)
        .collect()
}

fn due(now: i64) -> Condition {
    Condition::any()
        .add(
            Condition::all()
                .add(msg::Column::State.eq(PENDING))
                .add(msg::Column::NextAttemptAt.lte(now)),
        )
        .add(
            Condition::all()
                .add(msg::Column::State.eq(SENDING))
                .add(msg::Column::LeaseUntil.lte(now)),
        )
}

/// Claims up to `limit` due messages for delivery in one statement: an
/// UPDATE … WHERE id IN (the oldest due ids) AND still due … RETURNING.
/// The repeated "still due" condition is what makes a claim exclusive: a
/// concurrent worker that picked the same ids finds them SENDING with a
/// live lease (PostgreSQL re-checks the condition on the locked row, SQLite
/// has one writer) and skips them. An expired lease (a worker that died
/// mid-send) makes a message due again. Returns the claimed messages,
/// `attempts` already counting this attempt.
pub async fn claim_due(
    db: &DatabaseConnection,
    now: Timestamp,
    lease: std::time::Duration,
    limit: u64,
) -> Result<Vec<Message>, Error> {
    let now_ms = now.millis();
    let oldest_due = msg::Entity::find()
        .select_only()
        .column(msg::Column::Id)
        .filter(due(now_ms))
        .order_by_asc(msg::Column::NextAttemptAt)
        .order_by_asc(msg::Column::Id)
        .limit(limit)
        .into_query();
    let rows = msg::Entity::update_many()
        .col_expr(msg::Column::State, Expr::value(SENDING))
        .col_expr(
            msg::Column::LeaseUntil,
            Expr::value(now.plus(lease).millis()),
        )
        .col_expr(msg::Column::LastAttemptAt, Expr::value(now_ms))
        .col_expr(
            msg::Column::Attempts,
            Expr::col(msg::Column::Attempts).add(1),
        )
        .filter(msg::Column::Id.in_subquery(oldest_due))
        .filter(due(now_ms))
        .exec_with_returning(db)
        .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let id = row.id.clone();
        match message_of(row) {
            Ok(message) => claimed.push(message),
            // A damaged row must not stop the rows behind it: it fails for
            // good and the others are delivered (`message_of` logged which
            // column holds what).
            Err(_) => {
                tracing::error!(message_id = %id, "unreadable outbox row marked FAILED");
                msg::Entity::update_many()
                    .col_expr(msg::Column::State, Expr::value(FAILED))
                    .col_expr(msg::Column::LastError, Expr::value(UNREADABLE_ROW))
                    .filter(msg::Column::Id.eq(id))
                    .exec(db)
                    .await?;
            }
        }
    }
    claimed.sort_by(|a, b| (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id)));
    Ok(claimed)
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Accepted.
    Sent,
    /// Failed; retry at this time.
    Retry { at: Timestamp, error: String },
    /// Failed for good.
    Failed { error: String },
}

/// The outcome of one attempt: attempt number `attempts` of message `id`.
#[derive(Debug, Clone)]
pub struct Finished {
    pub id: String,
    pub attempts: i32,
    pub outcome: Outcome,
}

/// Records the outcomes of a batch of attempts in one transaction (one
/// UPDATE for all the sent ones of the same attempt number, the usual
/// case). An outcome whose claim was lost meanwhile (lease expired and the
/// message claimed again) changes nothing. Returns how many were recorded.
pub async fn finish_all(
    db: &DatabaseConnection,
    finished: &[Finished],
    now: Timestamp,
) -> Result<u64, Error> {
    let mut sent: std::collections::BTreeMap<i32, Vec<&str>> = std::collections::BTreeMap::new();
    let mut others = Vec::new();
    for f in finished {
        match f.outcome {
            Outcome::Sent => sent.entry(f.attempts).or_default().push(&f.id),
            _ => others.push(f),
        }
    }
    let txn = tenancy_runtime::db::begin(db).await?;
    let mut recorded = 0;
    for (attempts, ids) in sent {
        recorded += msg::Entity::update_many()
            .col_expr(msg::Column::LeaseUntil, Expr::value(Option::<i64>::None))
            .col_expr(msg::Column::State, Expr::value(SENT))
            .col_expr(msg::Column::SentAt, Expr::value(now.millis()))
            .col_expr(msg::Column::NextAttemptAt, Expr::value(Option::<i64>::None))
            .filter(msg::Column::Id.is_in(ids))
            .filter(msg::Column::State.eq(SENDING))
            .filter(msg::Column::Attempts.eq(attempts))
            .exec(&txn)
            .await?
            .rows_affected;
    }
    for f in others {
        let update = msg::Entity::update_many()
            .col_expr(msg::Column::LeaseUntil, Expr::value(Option::<i64>::None));
        let update = match &f.outcome {
            Outcome::Sent => continue,
            Outcome::Retry { at, error } => update
                .col_expr(msg::Column::State, Expr::value(PENDING))
                .col_expr(msg::Column::NextAttemptAt, Expr::value(at.millis()))
                .col_expr(msg::Column::LastError, Expr::value(truncate(error))),
            Outcome::Failed { error } => update
                .col_expr(msg::Column::State, Expr::value(FAILED))
                .col_expr(msg::Column::NextAttemptAt, Expr::value(Option::<i64>::None))
                .col_expr(msg::Column::LastError, Expr::value(truncate(error))),
        };
        recorded += update
            .filter(msg::Column::Id.eq(f.id.as_str()))
            .filter(msg::Column::State.eq(SENDING))
            .filter(msg::Column::Attempts.eq(f.attempts))
            .exec(&txn)
            .await?
            .rows_affected;
    }
    // Secrets of messages now SENT or FAILED are erased with the outcome:
    // the row is deleted, not marked.
    let finished_ids: Vec<&str> = finished.iter().map(|f| f.id.as_str()).collect();
    let done = msg::Entity::find()
        .select_only()
        .column(msg::Column::Id)
        .filter(msg::Column::Id.is_in(finished_ids))
        .filter(msg::Column::State.is_in([SENT, FAILED]))
        .into_query();
    sec::Entity::delete_many()
        .filter(sec::Column::MessageId.in_subquery(done))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(recorded)
}

/// Counts messages in `state`, for tests and benchmarks.
pub async fn count_in_state(db: &DatabaseConnection, state: MessageState) -> Result<u64, Error> {
    Ok(msg::Entity::find()
        .filter(msg::Column::State.eq(state as i32))
        .count(db)
        .await?)
}

fn truncate(error: &str) -> String {
    error.chars().take(1000).collect()
}

/// What a retention run removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub sent: u64,
    pub failed: u64,
    pub keys: u64,
}

/// Deletes delivered and failed messages past their retention, then the
/// idempotency keys past theirs that no message refers to any more (a
/// repeat of such a call queues again), in one transaction.
pub async fn prune(
    db: &DatabaseConnection,
    cutoffs: &crate::domain::retention::Cutoffs,
) -> Result<Pruned, Error> {
    let txn = tenancy_runtime::db::begin(db).await?;
    let sent = msg::Entity::delete_many()
        .filter(msg::Column::State.eq(SENT))
        .filter(msg::Column::SentAt.lt(cutoffs.sent_before.millis()))
        .exec(&txn)
        .await?
        .rows_affected;
    let failed = msg::Entity::delete_many()
        .filter(msg::Column::State.eq(FAILED))
        .filter(msg::Column::LastAttemptAt.lt(cutoffs.failed_before.millis()))
        .exec(&txn)
        .await?
        .rows_affected;
    let in_use = msg::Entity::find()
        .select_only()
        .column(msg::Column::IdempotencyKey)
        .into_query();
    let keys = req::Entity::delete_many()
        .filter(req::Column::CreatedAt.lt(cutoffs.keys_before.millis()))
        .filter(req::Column::IdempotencyKey.not_in_subquery(in_use))
        .exec(&txn)
        .await?
        .rows_affected;
    txn.commit().await?;
    Ok(Pruned { sent, failed, keys })
}

/// What the outbox holds that is not delivered yet: messages PENDING and
/// SENDING, and when the oldest of them was queued (Unix ms).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub pending: i64,
    pub sending: i64,
    pub oldest_created_at: Option<i64>,
}

/// The outbox's [`Backlog`] (one query over the `(state, next_attempt_at)`
/// index).
pub async fn backlog(db: &DatabaseConnection) -> Result<Backlog, Error> {
    let rows = db::all(
        db,
        "SELECT state, COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox_message \
         WHERE state IN ($1, $2) GROUP BY state",
        vec![PENDING.into(), SENDING.into()],
    )
    .await?;
    let mut backlog = Backlog::default();
    for row in rows {
        let state: i32 = db::get(&row, "state")?;
        let n: i64 = db::get(&row, "n")?;
        let oldest: Option<i64> = db::get(&row, "oldest")?;
        match state {
            PENDING => backlog.pending = n,
            _ => backlog.sending = n,
        }
        backlog.oldest_created_at = match (backlog.oldest_created_at, oldest) {
            (Some(a), Some(b)) => Some(Ord::min(a, b)),
            (a, b) => a.or(b),
        };
    }
    Ok(backlog)
}
