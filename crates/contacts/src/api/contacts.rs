//! ContactsService: the contacts of the caller's account and members'
//! notification preferences.

use tenancy_proto::contacts::{self as pb, contacts_service_server::ContactsService};
use tenancy_runtime::error::Violations;
use tenancy_runtime::ids::{self, AccountId, ContactId, UserId};
use tenancy_runtime::server::principal;
use tenancy_runtime::{Error, Principal, Reason};
use tonic::{Request, Response};

use super::{Api, Reply, convert, page_token_invalid};
use crate::app::contacts as app;
use crate::app::preferences::{self, Caller};
use crate::domain::ContactsError;
use crate::domain::contact as rules;
use crate::domain::routing::{Category, MAX_ENUM_ENTRIES, Role};
use crate::store::contacts::{Changes, Fields, ListFilter};

const ALL_FIELDS: [&str; 5] = ["name", "email", "phone", "notes", "roles"];

/// The fields of `c` named in `names`, checked; and whether its roles ask
/// for PRIMARY.
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
            "roles" if !v.at_most("contact.roles", c.roles.len(), MAX_ENUM_ENTRIES) => continue,
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

/// The caller's selected account.
fn account_of(request: &Request<impl Sized>) -> Result<AccountId, Error> {
    Ok(AccountId::trusted(principal(request)?.account()?))
}

/// A contact id from the request; a malformed one is simply not found.
fn contact_id(field: &str, raw: &str) -> Result<ContactId, Error> {
    ContactId::parse(field, raw).map_err(|_| ContactsError::ContactNotFound.into())
}

/// Who asks about preferences, and about whom: `None` for oneself (an
/// empty `user_id` or the caller's own).
fn preference_request(p: &Principal, user_id: &str) -> Result<(Caller, Option<UserId>), Error> {
    let caller = Caller {
        account: AccountId::trusted(p.account()?),
        user: UserId::trusted(p.user()?),
        is_owner: p.is_owner(),
    };
    let other = if user_id.is_empty() || user_id.trim().eq_ignore_ascii_case(caller.user.as_str()) {
        None
    } else {
        Some(UserId::parse("user_id", user_id)?)
    };
    Ok((caller, other))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContactCursor {
    o: u64,
    f: String,
}

#[tonic::async_trait]
impl ContactsService for Api {
    async fn create_contact(
        &self,
        request: Request<pb::CreateContactRequest>,
    ) -> Reply<pb::CreateContactResponse> {
        let account = account_of(&request)?;
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
        let model = app::create(
            &self.app,
            &account,
            &fields,
            wants_primary,
            request_id.as_deref(),
        )
        .await?;
        Ok(Response::new(pb::CreateContactResponse {
            contact: Some(convert::contact(model)),
        }))
    }

    async fn get_contact(
        &self,
        request: Request<pb::GetContactRequest>,
    ) -> Reply<pb::GetContactResponse> {
        let account = account_of(&request)?;
        let id = contact_id("id", &request.get_ref().id)?;
        let c = app::get(&self.app, &account, &id).await?;
        Ok(Response::new(pb::GetContactResponse {
            contact: Some(convert::contact(c)),
        }))
    }

    async fn update_contact(
        &self,
        request: Request<pb::UpdateContactRequest>,
    ) -> Reply<pb::UpdateContactResponse> {
        let account = account_of(&request)?;
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
        let id = contact_id("contact.id", &c.id)?;
        let mut v = Violations::default();
        let (fields, _) = check_fields(&mut v, &c, &names);
        v.finish()?;
        let changes = Changes {
            name: names.contains(&"name").then(|| fields.name.clone()),
            email: names.contains(&"email").then(|| fields.email.clone()),
            phone: names.contains(&"phone").then(|| fields.phone.clone()),
            notes: names.contains(&"notes").then(|| fields.notes.clone()),
            roles: names.contains(&"roles").then(|| fields.roles.clone()),
        };
        let model = app::update(&self.app, &account, &id, &changes).await?;
        Ok(Response::new(pb::UpdateContactResponse {
            contact: Some(convert::contact(model)),
        }))
    }

    async fn delete_contact(
        &self,
        request: Request<pb::DeleteContactRequest>,
    ) -> Reply<pb::DeleteContactResponse> {
        let account = account_of(&request)?;
        let id = contact_id("id", &request.get_ref().id)?;
        app::delete(&self.app, &account, &id).await?;
        Ok(Response::new(pb::DeleteContactResponse {}))
    }

    async fn list_contacts(
        &self,
        request: Request<pb::ListContactsRequest>,
    ) -> Reply<pb::ListContactsResponse> {
        let account = account_of(&request)?;
        let r = request.into_inner();
        let size = ids::page_size(r.page_size)?;
        let role = match r.role {
            0 => None,
            n => Some(
                Role::from_i32(n)
                    .ok_or_else(|| Error::invalid_field("role", "unknown ContactRole"))?,
            ),
        };
        let filter = ListFilter {
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
        let (rows, total) = app::list(&self.app, &account, &filter, offset, size).await?;
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
            contacts: rows.into_iter().map(convert::contact).collect(),
            next_page_token,
            total_size: i32::try_from(total).unwrap_or(i32::MAX),
        }))
    }

    async fn set_primary_contact(
        &self,
        request: Request<pb::SetPrimaryContactRequest>,
    ) -> Reply<pb::SetPrimaryContactResponse> {
        let account = account_of(&request)?;
        let id = contact_id("contact_id", &request.get_ref().contact_id)?;
        let (c, previous) = app::set_primary(&self.app, &account, &id).await?;
        Ok(Response::new(pb::SetPrimaryContactResponse {
            contact: Some(convert::contact(c)),
            previous_primary: previous.map(convert::contact),
        }))
    }

    async fn resend_contact_verification(
        &self,
        request: Request<pb::ResendContactVerificationRequest>,
    ) -> Reply<pb::ResendContactVerificationResponse> {
        let account = account_of(&request)?;
        let id = contact_id("contact_id", &request.get_ref().contact_id)?;
        let c = app::resend_verification(&self.app, &account, &id).await?;
        Ok(Response::new(pb::ResendContactVerificationResponse {
            contact: Some(convert::contact(c)),
        }))
    }

    async fn verify_contact_email(
        &self,
        request: Request<pb::VerifyContactEmailRequest>,
    ) -> Reply<pb::VerifyContactEmailResponse> {
        let token = request.into_inner().token;
        if token.is_empty() || token.len() > 128 {
            return Err(Error::invalid_field("token", "1 to 128 characters").into());
        }
        let (c, already_verified) = app::verify_email(&self.app, token).await?;
        Ok(Response::new(pb::VerifyContactEmailResponse {
            email: c.email,
            already_verified,
        }))
    }

    async fn get_notification_preferences(
        &self,
        request: Request<pb::GetNotificationPreferencesRequest>,
    ) -> Reply<pb::GetNotificationPreferencesResponse> {
        let (caller, other) = preference_request(principal(&request)?, &request.get_ref().user_id)?;
        let found = preferences::get(&self.app, &caller, other).await?;
        Ok(Response::new(pb::GetNotificationPreferencesResponse {
            notification_preferences: Some(convert::preferences(found)),
        }))
    }

    async fn update_notification_preferences(
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
        let within = v.at_most("preferences", r.preferences.len(), MAX_ENUM_ENTRIES);
        for (i, pref) in r.preferences.iter().enumerate().filter(|_| within) {
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
                        choices.push((c, pref.enabled));
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
        let (caller, other) = preference_request(&p, &r.user_id)?;
        let stored = preferences::update(&self.app, &caller, other, &choices).await?;
        Ok(Response::new(pb::UpdateNotificationPreferencesResponse {
            notification_preferences: Some(convert::preferences(stored)),
        }))
    }
}
