//! Queueing email: validation, rendering and idempotent insertion into the
//! outbox, shared by SendEmail, Notify and the service's own messages.

use std::collections::BTreeMap;
use std::sync::Arc;

use sea_orm::{ConnectionTrait, DatabaseConnection};
use tenancy_runtime::clock::SharedClock;
use tenancy_runtime::error::Violations;
use tenancy_runtime::ids::AccountId;
use tenancy_runtime::{Error, Reason};
use tokio::sync::Notify;
use zeroize::{Zeroize as _, Zeroizing};

use crate::domain::outbox::{Channel, Message};
use crate::domain::routing::Category;
use crate::domain::{ContactsError, email, templates};
use crate::store::outbox::{self, EnqueueError, NewMessage};

/// One recipient.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Address {
    /// The address as given (trimmed).
    pub email: String,
    /// The display name (may be empty).
    pub name: String,
}

/// What to render and for whom.
#[derive(Debug, Clone)]
pub struct Email {
    /// The template.
    pub template: templates::Template,
    /// Its variables.
    pub data: BTreeMap<String, String>,
    /// The account concerned, if any.
    pub account_id: Option<AccountId>,
    /// The category for Notify; `None` for SendEmail.
    pub category: Option<Category>,
}

/// The outbox handle held by the API and the worker.
#[derive(Clone)]
pub struct Outbox {
    pub(crate) db: DatabaseConnection,
    pub(crate) clock: SharedClock,
    pub(crate) wake: Arc<Notify>,
    pub(crate) message_id_domain: String,
    /// Seals secrets carried by messages (`mail.secret_key`).
    pub(crate) secrets: tenancy_runtime::secret::SecretBox,
}

/// Checks an idempotency key: 1 to 128 printable ASCII characters.
pub fn check_key(v: &mut Violations, key: &str) {
    v.check(
        !key.is_empty() && key.len() <= 128 && key.bytes().all(|b| (0x20..=0x7e).contains(&b)),
        "request_id",
        "1 to 128 printable ASCII characters",
    );
}

/// Validates template data, adding limit violations to `v`; returns the
/// TEMPLATE_DATA_INVALID error to raise when `v` is otherwise clean.
pub fn check_data(
    v: &mut Violations,
    template: Option<templates::Template>,
    data: &BTreeMap<String, String>,
) -> Option<Error> {
    let template = template?;
    let mut missing = Error::new(
        Reason::TemplateDataInvalid,
        "a required template variable is missing",
    );
    let mut any_missing = false;
    for e in templates::check_data(template, data) {
        if e.missing {
            any_missing = true;
            missing = missing.with_field(e.field, e.description);
        } else {
            v.add(e.field, e.description);
        }
    }
    any_missing.then_some(missing)
}

/// A stable hash of a request's content, to tell a retry from a reuse.
pub fn content_hash<T: serde::Serialize>(content: &T) -> String {
    let bytes = serde_json::to_vec(content).unwrap_or_default();
    tenancy_runtime::secret::sha256_hex(&bytes)
}

/// The result of queueing.
pub struct Queued {
    /// The messages.
    pub messages: Vec<Message>,
    /// Whether an earlier call with the key queued them.
    pub duplicate: bool,
}

impl Outbox {
    /// Renders one message per recipient (`recipient_*` filled in).
    pub fn render(&self, email: &Email, to: &[Address]) -> Result<Vec<NewMessage>, Error> {
        to.iter()
            .map(|address| {
                let mut data = email.data.clone();
                data.insert("recipient_email".to_owned(), address.email.clone());
                data.insert("recipient_name".to_owned(), address.name.clone());
                let rendered = templates::render(email.template, &data).map_err(Error::internal)?;
                Ok(NewMessage {
                    to_email: address.email.clone(),
                    to_name: address.name.clone(),
                    subject: rendered.subject,
                    body_text: rendered.text,
                    body_html: rendered.html,
                    template: email.template,
                    template_data: serde_json::to_string(&data).map_err(Error::internal)?,
                    account_id: email.account_id.clone(),
                    category: email.category,
                    channel: Channel::Email,
                    to_phone: String::new(),
                })
            })
            .collect()
    }

    /// The earlier call with `key`, if any: its messages when `hash`
    /// matches, REQUEST_ID_REUSED otherwise.
    pub async fn earlier(&self, key: &str, hash: &str) -> Result<Option<Queued>, Error> {
        match outbox::earlier_call(&self.db, key).await? {
            None => Ok(None),
            Some((stored, messages)) => {
                if tenancy_runtime::secret::constant_time_eq(stored.as_bytes(), hash.as_bytes()) {
                    Ok(Some(Queued {
                        messages,
                        duplicate: true,
                    }))
                } else {
                    Err(ContactsError::RequestIdReused.into())
                }
            }
        }
    }

    /// Queues `messages` under `key` in the caller's transaction.
    pub async fn enqueue_in<C: ConnectionTrait>(
        &self,
        txn: &C,
        key: &str,
        hash: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Message>, EnqueueError> {
        outbox::enqueue(
            txn,
            key,
            hash,
            messages,
            &self.message_id_domain,
            self.clock.now(),
        )
        .await
    }

    /// Queues `messages` under `key` in a transaction of its own; a repeat
    /// of an earlier call returns that call's messages.
    pub async fn enqueue(
        &self,
        key: &str,
        hash: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Queued, Error> {
        self.enqueue_carrying(key, hash, messages, None).await
    }

    /// Queues one message carrying `secret` (its template data holds
    /// [`templates::SECRET_PLACEHOLDER`] in its place): the secret is kept
    /// sealed, bound to the message id, in the same transaction, and the
    /// worker erases it once the message is delivered or given up. A repeat
    /// of an earlier call returns that call's message and keeps nothing.
    pub async fn enqueue_secret(
        &self,
        key: &str,
        hash: &str,
        message: NewMessage,
        secret: &str,
    ) -> Result<Queued, Error> {
        self.enqueue_carrying(key, hash, vec![message], Some(secret))
            .await
    }

    async fn enqueue_carrying(
        &self,
        key: &str,
        hash: &str,
        messages: Vec<NewMessage>,
        secret: Option<&str>,
    ) -> Result<Queued, Error> {
        if let Some(earlier) = self.earlier(key, hash).await? {
            return Ok(earlier);
        }
        let txn = tenancy_runtime::db::begin(&self.db).await?;
        let queued = match self.enqueue_in(&txn, key, hash, messages).await {
            Ok(models) => match secret {
                None => Ok(models),
                Some(secret) => self.keep_secrets(&txn, models, secret).await,
            },
            Err(e) => Err(e),
        };
        match queued {
            Ok(models) => {
                txn.commit().await?;
                self.wake.notify_one();
                Ok(Queued {
                    messages: models,
                    duplicate: false,
                })
            }
            Err(EnqueueError::KeyTaken) => {
                drop(txn);
                self.earlier(key, hash)
                    .await?
                    .ok_or_else(|| ContactsError::RequestInProgress.into())
            }
            Err(EnqueueError::Other(e)) => Err(e),
        }
    }

    async fn keep_secrets<C: ConnectionTrait>(
        &self,
        txn: &C,
        models: Vec<Message>,
        secret: &str,
    ) -> Result<Vec<Message>, EnqueueError> {
        for m in &models {
            let sealed = self
                .secrets
                .seal(secret.as_bytes(), &m.id)
                .map_err(|e| EnqueueError::Other(Error::internal(e)))?;
            outbox::insert_secret(txn, &m.id, sealed)
                .await
                .map_err(EnqueueError::Other)?;
        }
        Ok(models)
    }

    /// Wakes the worker after a commit that queued messages.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// De-duplicates recipients by normalised address, keeping the first.
pub fn distinct(to: Vec<Address>) -> Vec<Address> {
    let mut seen = std::collections::HashSet::new();
    to.into_iter()
        .filter(|a| seen.insert(email::normalize(&a.email)))
        .collect()
}

/// The secret of message `m`, opened for its delivery (wiped when
/// dropped); `None` when it carries none.
pub(crate) async fn open_secret(
    db: &DatabaseConnection,
    secrets: &tenancy_runtime::secret::SecretBox,
    m: &Message,
) -> Result<Option<Zeroizing<String>>, String> {
    let carries = m.template.carries_secret();
    if !carries {
        return Ok(None);
    }
    let sealed = outbox::sealed_secret(db, &m.id)
        .await
        .map_err(|e| format!("cannot read the sealed secret: {e}"))?
        .ok_or("the secret is gone (already delivered or given up)")?;
    let plain = secrets.open(&sealed, &m.id)?;
    // `from_utf8` keeps the buffer (no copy); a refusal hands it back.
    match String::from_utf8(plain) {
        Ok(secret) => Ok(Some(Zeroizing::new(secret))),
        Err(e) => {
            e.into_bytes().zeroize();
            Err("the secret is not UTF-8".to_owned())
        }
    }
}
