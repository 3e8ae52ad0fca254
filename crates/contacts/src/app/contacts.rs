//! Contacts of an account: create, read, change, delete, the primary
//! contact, and the verification of their addresses. A change that sends a
//! verification message queues it in the change's transaction.

use std::collections::BTreeMap;

use tenancy_runtime::ids::{AccountId, ContactId};
use tenancy_runtime::secret::SecretToken;
use tenancy_runtime::{Error, Timestamp};

use super::App;
use crate::domain::ContactsError;
use crate::domain::contact::Contact;
use crate::domain::templates::Template;
use crate::outbox::{Address, Email};
use crate::store::contacts::{self as store, Changes, Fields, ListFilter, Verified};
use crate::store::outbox::EnqueueError;

/// The prefix of contact verification tokens.
const TOKEN_PREFIX: &str = "tcv_";

impl App {
    fn verification_email(&self, to: &Contact, token: &SecretToken) -> Email {
        let expire = Timestamp(to.verification_expires_at.unwrap_or_default());
        let expire = expire.to_proto().to_string();
        Email {
            template: Template::ContactVerification,
            data: BTreeMap::from([
                // The account service offers no internal name look-up yet.
                ("account_name".to_owned(), "your hosting account".to_owned()),
                (
                    "verify_url".to_owned(),
                    format!(
                        "{}/verify-contact-email?token={}",
                        self.portal_url,
                        token.expose()
                    ),
                ),
                ("expire_time".to_owned(), expire),
            ]),
            account_id: Some(to.account_id.clone()),
            category: None,
        }
    }

    /// Queues the verification message of `c` in `txn`.
    async fn queue_verification(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        c: &Contact,
        token: &SecretToken,
    ) -> Result<(), Error> {
        let email = self.verification_email(c, token);
        let to = [Address {
            email: c.email.clone(),
            name: c.name.clone(),
        }];
        let messages = self.outbox.render(&email, &to)?;
        let hash = token.hash();
        let key = format!("contacts:verify:{}:{}", c.id, &hash[..16]);
        match self.outbox.enqueue_in(txn, &key, &hash, messages).await {
            Ok(_) => Ok(()),
            Err(EnqueueError::KeyTaken) => Err(ContactsError::RequestInProgress.into()),
            Err(EnqueueError::Other(e)) => Err(e),
        }
    }
}

/// CreateContact: a new contact of `account` (the first becomes primary),
/// its verification message queued with it. A repeat of `request_id`
/// returns the contact created first.
pub(crate) async fn create(
    app: &App,
    account: &AccountId,
    fields: &Fields,
    wants_primary: bool,
    request_id: Option<&str>,
) -> Result<Contact, Error> {
    let now = app.outbox.clock.now();
    let token = SecretToken::generate(TOKEN_PREFIX);
    let txn = store::begin(&app.outbox.db).await?;
    let (model, created) = store::create(
        &txn,
        account,
        fields,
        wants_primary,
        request_id,
        &token.hash(),
        now,
    )
    .await?;
    if created {
        app.queue_verification(&txn, &model, &token).await?;
    }
    txn.commit().await.map_err(Error::from)?;
    app.outbox.wake();
    Ok(model)
}

/// GetContact.
pub(crate) async fn get(app: &App, account: &AccountId, id: &ContactId) -> Result<Contact, Error> {
    store::get(&app.outbox.db, account, id).await
}

/// UpdateContact: applies `changes`; a new address is unverified and gets
/// a verification message in the same transaction.
pub(crate) async fn update(
    app: &App,
    account: &AccountId,
    id: &ContactId,
    changes: &Changes,
) -> Result<Contact, Error> {
    let now = app.outbox.clock.now();
    let token = SecretToken::generate(TOKEN_PREFIX);
    let txn = store::begin(&app.outbox.db).await?;
    let (model, email_changed) =
        store::update(&txn, account, id, changes, &token.hash(), now).await?;
    if email_changed {
        app.queue_verification(&txn, &model, &token).await?;
    }
    txn.commit().await.map_err(Error::from)?;
    if email_changed {
        app.outbox.wake();
    }
    Ok(model)
}

/// DeleteContact: the primary only when it is the last.
pub(crate) async fn delete(app: &App, account: &AccountId, id: &ContactId) -> Result<(), Error> {
    store::delete(&app.outbox.db, account, id).await
}

/// ListContacts: a page (primary first) and the total.
pub(crate) async fn list(
    app: &App,
    account: &AccountId,
    filter: &ListFilter,
    offset: u64,
    size: u64,
) -> Result<(Vec<Contact>, u64), Error> {
    store::list(&app.outbox.db, account, filter, offset, size).await
}

/// SetPrimaryContact: the contact and the previous primary (if it changed).
pub(crate) async fn set_primary(
    app: &App,
    account: &AccountId,
    id: &ContactId,
) -> Result<(Contact, Option<Contact>), Error> {
    store::set_primary(&app.outbox.db, account, id, app.outbox.clock.now()).await
}

/// ResendContactVerification: a new link (the old one stops working),
/// within the resend limits.
pub(crate) async fn resend_verification(
    app: &App,
    account: &AccountId,
    id: &ContactId,
) -> Result<Contact, Error> {
    let token = SecretToken::generate(TOKEN_PREFIX);
    let now = app.outbox.clock.now();
    let txn = store::begin(&app.outbox.db).await?;
    let c = store::renew_verification(&txn, account, id, &token.hash(), now).await?;
    app.queue_verification(&txn, &c, &token).await?;
    txn.commit().await.map_err(Error::from)?;
    app.outbox.wake();
    Ok(c)
}

/// VerifyContactEmail: the contact whose link this is, and whether it was
/// verified already.
pub(crate) async fn verify_email(app: &App, token: String) -> Result<(Contact, bool), Error> {
    let hash = SecretToken::from_client(token).hash();
    Ok(
        match store::verify(&app.outbox.db, &hash, app.outbox.clock.now()).await? {
            Verified::Now(c) => (c, false),
            Verified::Already(c) => (c, true),
        },
    )
}
