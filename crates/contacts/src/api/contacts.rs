//! ContactsService: contacts and notification preferences.

use std::collections::BTreeMap;

use tenancy_proto::contacts as pb;
use tenancy_runtime::error::Violations;
use tenancy_runtime::secret::SecretToken;
use tenancy_runtime::server::principal;
use tenancy_runtime::{Error, Reason, Timestamp, ids};
use tonic::{Request, Response, Status};

use super::{Api, page_token_invalid, ts};
use crate::domain::contact as rules;
use crate::domain::routing::{CATEGORIES, Category, Role, member_receives};
use crate::domain::templates::Template;
use crate::outbox::{Address, Email};
use crate::store::contacts::{self as store, Changes, Fields, Verified};
use crate::store::entities::contact;
use crate::store::outbox::EnqueueError;
use crate::store::preferences;

type Reply<T> = Result<Response<T>, Status>;

fn to_proto(c: contact::Model) -> pb::Contact {
    let roles = store::roles_of(&c).into_iter().map(|r| r as i32).collect();
    pb::Contact {
        email_verify_time: ts(c.email_verified_at.filter(|_| c.email_verified)),
        verification_send_time: ts(c.verification_sent_at.filter(|_| !c.email_verified)),
        id: c.id,
        account_id: c.account_id,
        name: c.name,
        email: c.email,
        email_verified: c.email_verified,
        phone: c.phone,
        notes: c.notes,
        roles,
        create_time: ts(Some(c.created_at)),
        update_time: ts(Some(c.updated_at)),
    }
}

fn check_fields(v: &mut Violations, c: &pb::Contact, names: &[&str]) -> (Fields, bool) {
    let mut fields = Fields {
        name: c.name.trim().to_owned(),
        email: c.email.trim().to_owned(),
        phone: c.phone.trim().to_owned(),
        notes: c.notes.clone(),
        roles: Vec::new(),
    };
    let mut wants_primary = false;
    for name in names {
        let result = match *name {
            "name" => rules::validate_name(&fields.name),
            "email" => rules::validate_email(&fields.email),
            "phone" => rules::validate_phone(&fields.phone),
            "notes" => rules::validate_notes(&fields.notes),
            "roles" => match rules::parse_roles(&c.roles) {
                Ok(roles) => {
                    wants_primary = roles.contains(&Role::Primary);
                    fields.roles = roles;
                    Ok(())
                }
                Err(e) => Err(e),
            },
            _ => Ok(()),
        };
        if let Err(e) = result {
            v.add(format!("contact.{name}"), e);
        }
    }
    (fields, wants_primary)
}

const ALL_FIELDS: [&str; 5] = ["name", "email", "phone", "notes", "roles"];

#[derive(serde::Serialize, serde::Deserialize)]
struct ContactCursor {
    o: u64,
    f: String,
}

impl Api {
    fn verification_email(&self, to: &contact::Model, token: &SecretToken) -> Email {
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
            account_id: to.account_id.clone(),
            category: 0,
        }
    }

    /// Queues the verification message of `c` in `txn`.
    async fn queue_verification(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        c: &contact::Model,
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
            Err(EnqueueError::KeyTaken) => Err(Error::new(Reason::RequestInProgress, "retry")),
            Err(EnqueueError::Other(e)) => Err(e),
        }
    }

    pub(super) async fn create_contact_impl(
        &self,
        request: Request<pb::CreateContactRequest>,
    ) -> Reply<pb::CreateContactResponse> {
        let account = principal(&request)?.account()?.to_owned();
        let r = request.into_inner();
        let mut v = Violations::default();
        let c = r.contact.unwrap_or_default();
        let (fields, wants_primary) = check_fields(&mut v, &c, &ALL_FIELDS);
        let request_id = if r.request_id.is_empty() {
            None
        } else {
            v.take(
                "request_id",
                ids::parse_id("request_id", &r.request_id).map_err(|e| e.message),
            )
        };
        v.finish()?;
        let now = self.outbox.clock.now();
        let token = SecretToken::generate("tcv_");
        let txn = store::begin(&self.outbox.db).await?;
        let (model, created) = store::create(
            &txn,
            &account,
            &fields,
            wants_primary,
            request_id.as_deref(),
            &token.hash(),
            now,
        )
        .await?;
        if created {
            self.queue_verification(&txn, &model, &token).await?;
        }
        txn.commit().await.map_err(Error::from)?;
        self.outbox.wake();
        Ok(Response::new(pb::CreateContactResponse {
            contact: Some(to_proto(model)),
        }))
    }

    pub(super) async fn get_contact_impl(
        &self,
        request: Request<pb::GetContactRequest>,
    ) -> Reply<pb::GetContactResponse> {
        let account = principal(&request)?.account()?.to_owned();
        let id = ids::parse_id("id", &request.get_ref().id).map_err(|_| store::not_found())?;
        let c = store::get(&self.outbox.db, &account, &id).await?;
        Ok(Response::new(pb::GetContactResponse {
            contact: Some(to_proto(c)),
        }))
    }

    pub(super) async fn update_contact_impl(
        &self,
        request: Request<pb::UpdateContactRequest>,
    ) -> Reply<pb::UpdateContactResponse> {
        let account = principal(&request)?.account()?.to_owned();
        let r = request.into_inner();
        let c = r.contact.unwrap_or_default();
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let mask_invalid = |why: &str| {
            Error::new(Reason::UpdateMaskInvalid, why.to_owned())
                .with_field("update_mask", why.to_owned())
        };
        if paths.is_empty() {
            return Err(mask_invalid("name at least one field").into());
        }
        let mut names = Vec::new();
        for p in &paths {
            match ALL_FIELDS.iter().find(|f| **f == p.as_str()) {
                Some(f) => names.push(*f),
                None => {
                    return Err(mask_invalid(&format!("unknown or output-only path {p:?}")).into());
                }
            }
        }
        let id = ids::parse_id("contact.id", &c.id).map_err(|_| store::not_found())?;
        let mut v = Violations::default();
        let (fields, _) = check_fields(&mut v, &c, &names);
        v.finish()?;
        let mut roles = None;
        if names.contains(&"roles") {
            roles = Some(fields.roles.clone());
        }
        let changes = Changes {
            name: names.contains(&"name").then(|| fields.name.clone()),
            email: names.contains(&"email").then(|| fields.email.clone()),
            phone: names.contains(&"phone").then(|| fields.phone.clone()),
            notes: names.contains(&"notes").then(|| fields.notes.clone()),
            roles,
        };
        let now = self.outbox.clock.now();
        let token = SecretToken::generate("tcv_");
        let txn = store::begin(&self.outbox.db).await?;
        let (model, email_changed) =
            store::update(&txn, &account, &id, &changes, &token.hash(), now).await?;
        if email_changed {
            self.queue_verification(&txn, &model, &token).await?;
        }
        txn.commit().await.map_err(Error::from)?;
        if email_changed {
            self.outbox.wake();
        }
        Ok(Response::new(pb::UpdateContactResponse {
            contact: Some(to_proto(model)),
        }))
    }

    pub(super) async fn delete_contact_impl(
        &self,
        request: Request<pb::DeleteContactRequest>,
    ) -> Reply<pb::DeleteContactResponse> {
        let account = principal(&request)?.account()?.to_owned();
        let id = ids::parse_id("id", &request.get_ref().id).map_err(|_| store::not_found())?;
        store::delete(&self.outbox.db, &account, &id).await?;
        Ok(Response::new(pb::DeleteContactResponse {}))
    }

    pub(super) async fn list_contacts_impl(
        &self,
        request: Request<pb::ListContactsRequest>,
    ) -> Reply<pb::ListContactsResponse> {
        let account = principal(&request)?.account()?.to_owned();
        let r = request.into_inner();
        let size = ids::page_size(r.page_size)?;
        let role = match r.role {
            0 => None,
            n => Some(
                Role::from_i32(n)
                    .ok_or_else(|| Error::invalid_field("role", "unknown ContactRole"))?,
            ),
        };
        let filter = store::ListFilter {
            role,
            email_verified: r.email_verified,
        };
        let filter_hash = crate::outbox::content_hash(&format!("{account}{filter:?}"));
        let offset = match ids::decode_page_token::<ContactCursor>(&r.page_token)
            .map_err(|_| page_token_invalid())?
        {
            Some(c) if c.f == filter_hash => c.o,
            Some(_) => return Err(page_token_invalid().into()),
            None => 0,
        };
        let (rows, total) = store::list(&self.outbox.db, &account, &filter, offset, size).await?;
        let next = offset + rows.len() as u64;
        let next_page_token = if next < total {
            ids::encode_page_token(&ContactCursor {
                o: next,
                f: filter_hash,
            })
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListContactsResponse {
            contacts: rows.into_iter().map(to_proto).collect(),
            next_page_token,
            total_size: i32::try_from(total).unwrap_or(i32::MAX),
        }))
    }

    pub(super) async fn set_primary_contact_impl(
        &self,
        request: Request<pb::SetPrimaryContactRequest>,
    ) -> Reply<pb::SetPrimaryContactResponse> {
        let account = principal(&request)?.account()?.to_owned();
        let id = ids::parse_id("contact_id", &request.get_ref().contact_id)
            .map_err(|_| store::not_found())?;
        let (c, previous) =
            store::set_primary(&self.outbox.db, &account, &id, self.outbox.clock.now()).await?;
        Ok(Response::new(pb::SetPrimaryContactResponse {
            contact: Some(to_proto(c)),
            previous_primary: previous.map(to_proto),
        }))
    }

    pub(super) async fn resend_contact_verification_impl(
        &self,
        request: Request<pb::ResendContactVerificationRequest>,
    ) -> Reply<pb::ResendContactVerificationResponse> {
        let account = principal(&request)?.account()?.to_owned();
        let id = ids::parse_id("contact_id", &request.get_ref().contact_id)
            .map_err(|_| store::not_found())?;
        let token = SecretToken::generate("tcv_");
        let now = self.outbox.clock.now();
        let txn = store::begin(&self.outbox.db).await?;
        let c = store::renew_verification(&txn, &account, &id, &token.hash(), now).await?;
        self.queue_verification(&txn, &c, &token).await?;
        txn.commit().await.map_err(Error::from)?;
        self.outbox.wake();
        Ok(Response::new(pb::ResendContactVerificationResponse {
            contact: Some(to_proto(c)),
        }))
    }

    pub(super) async fn verify_contact_email_impl(
        &self,
        request: Request<pb::VerifyContactEmailRequest>,
    ) -> Reply<pb::VerifyContactEmailResponse> {
        let token = request.into_inner().token;
        if token.is_empty() || token.len() > 128 {
            return Err(Error::invalid_field("token", "1 to 128 characters").into());
        }
        let hash = SecretToken::from_client(token).hash();
        let (c, already) =
            match store::verify(&self.outbox.db, &hash, self.outbox.clock.now()).await? {
                Verified::Now(c) => (c, false),
                Verified::Already(c) => (c, true),
            };
        Ok(Response::new(pb::VerifyContactEmailResponse {
            email: c.email,
            already_verified: already,
        }))
    }

    /// The member whose preferences a request is about, after the access
    /// rule: oneself, or anyone for an OWNER (who must be a member).
    async fn preference_subject(
        &self,
        p: &tenancy_runtime::Principal,
        user_id: &str,
    ) -> Result<(String, String), Error> {
        let account = p.account()?.to_owned();
        let me = p.user()?.to_owned();
        if user_id.is_empty() || user_id.trim().eq_ignore_ascii_case(&me) {
            return Ok((account, me));
        }
        let user = ids::parse_id("user_id", user_id)?;
        if !p.is_owner() {
            return Err(Error::role_too_low(
                tenancy_proto::auth::Role::Owner,
                "only an OWNER manages another member's preferences",
            ));
        }
        if !self.directory.is_member(&account, &user).await? {
            return Err(Error::new(
                Reason::MemberNotFound,
                "no such member in this account",
            ));
        }
        Ok((account, user))
    }

    async fn preferences_of(
        &self,
        account: &str,
        user: &str,
    ) -> Result<pb::NotificationPreferences, Error> {
        let stored = preferences::get(&self.outbox.db, account, user).await?;
        let update_time = stored.iter().map(|s| s.updated_at).max();
        let preferences = CATEGORIES
            .iter()
            .map(|c| {
                let choice = stored
                    .iter()
                    .find(|s| s.category == *c as i32)
                    .map(|s| s.enabled);
                pb::NotificationPreference {
                    category: *c as i32,
                    enabled: member_receives(*c, choice),
                    locked: c.is_mandatory(),
                }
            })
            .collect();
        Ok(pb::NotificationPreferences {
            account_id: account.to_owned(),
            user_id: user.to_owned(),
            preferences,
            update_time: ts(update_time),
        })
    }

    pub(super) async fn get_notification_preferences_impl(
        &self,
        request: Request<pb::GetNotificationPreferencesRequest>,
    ) -> Reply<pb::GetNotificationPreferencesResponse> {
        let p = principal(&request)?.clone();
        let (account, user) = self
            .preference_subject(&p, &request.get_ref().user_id)
            .await?;
        Ok(Response::new(pb::GetNotificationPreferencesResponse {
            notification_preferences: Some(self.preferences_of(&account, &user).await?),
        }))
    }

    pub(super) async fn update_notification_preferences_impl(
        &self,
        request: Request<pb::UpdateNotificationPreferencesRequest>,
    ) -> Reply<pb::UpdateNotificationPreferencesResponse> {
        let p = principal(&request)?.clone();
        let r = request.into_inner();
        let mut v = Violations::default();
        v.check(
            !r.preferences.is_empty(),
            "preferences",
            "at least one category",
        );
        let mut seen = Vec::new();
        let mut choices = Vec::new();
        let mut locked = None;
        for (i, pref) in r.preferences.iter().enumerate() {
            match Category::from_i32(pref.category) {
                None => v.add(
                    format!("preferences[{i}].category"),
                    "UNSPECIFIED or unknown category",
                ),
                Some(c) if seen.contains(&c) => {
                    v.add(format!("preferences[{i}].category"), "repeated category")
                }
                Some(c) => {
                    seen.push(c);
                    if c.is_mandatory() {
                        if !pref.enabled {
                            locked.get_or_insert(i);
                        }
                    } else {
                        choices.push((c as i32, pref.enabled));
                    }
                }
            }
        }
        v.finish()?;
        if let Some(i) = locked {
            return Err(Error::new(
                Reason::NotificationCategoryLocked,
                "security notices cannot be switched off",
            )
            .with_field(format!("preferences[{i}].enabled"), "SECURITY is mandatory")
            .into());
        }
        let (account, user) = self.preference_subject(&p, &r.user_id).await?;
        if !choices.is_empty() {
            preferences::set(
                &self.outbox.db,
                &account,
                &user,
                &choices,
                self.outbox.clock.now(),
            )
            .await?;
        }
        Ok(Response::new(pb::UpdateNotificationPreferencesResponse {
            notification_preferences: Some(self.preferences_of(&account, &user).await?),
        }))
    }
}
