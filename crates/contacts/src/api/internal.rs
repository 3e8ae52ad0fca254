//! ContactsInternalService: SendEmail and the outbox (read methods) for the
//! suite's services and operators; ResolveRecipients and Notify, which
//! route a notification of an account to its contacts and members.

use tenancy_proto::contacts::{
    self as pb, contacts_internal_service_server::ContactsInternalService,
};
use tenancy_runtime::error::Violations;
use tenancy_runtime::ids::{self, AccountId, UserId};
use tenancy_runtime::{Error, Timestamp};
use tonic::{Request, Response};
use zeroize::Zeroizing;

use super::{Api, Reply, convert, optional_id, page_token_invalid, sorted};
use crate::app::credentials::{self as app_credentials, Credentials};
use crate::app::routing::{ExtraRecipient, Routing};
use crate::app::{outbox as app_outbox, routing as app_routing};
use crate::domain::contact::MAX_NAME_CHARS;
use crate::domain::email;
use crate::domain::outbox::MessageState;
use crate::domain::routing::{Category, MAX_ENUM_ENTRIES, MAX_EXTRA_RECIPIENTS, Role};
use crate::domain::templates::Template;
use crate::outbox::{self, Address, Email};
use crate::store::outbox::ListFilter;

#[derive(serde::Serialize, serde::Deserialize)]
struct OutboxCursor {
    c: i64,
    i: String,
    f: String,
}

/// The most recipients of one SendEmail.
const MAX_TO: usize = 50;

/// The template a caller asks to queue: a known one that carries no secret
/// (those are queued by this service only).
fn client_template(v: &mut Violations, value: i32) -> Option<Template> {
    let template = Template::from_i32(value);
    v.check(
        template.is_some(),
        "template",
        "required: a known MessageTemplate",
    );
    v.check(
        !template.is_some_and(Template::carries_secret),
        "template",
        "queued by the contacts service only (DeliverServerCredentials, SendPhoneCode)",
    );
    template
}

/// A recipient's display name: at most 200 characters. (Not held to the
/// one-line rule: callers pass names stored before it; rendering replaces
/// control characters.)
fn check_name(v: &mut Violations, field: &str, name: &str) {
    v.check(
        name.chars().count() <= MAX_NAME_CHARS,
        field,
        "at most 200 characters",
    );
}

/// The routing part of ResolveRecipients and Notify, checked.
fn check_routing(
    v: &mut Violations,
    account_id: &str,
    category: i32,
    service_id: &str,
    extras: &[pb::ExtraRecipient],
    contact_roles: &[i32],
) -> Option<Routing> {
    let account = v.take("account_id", AccountId::parse("account_id", account_id));
    let category = Category::from_i32(category);
    v.check(
        category.is_some(),
        "category",
        "required: a known NotificationCategory",
    );
    let service = optional_id(v, "service_id", service_id, ids::parse_id);
    let extras = if v.at_most("extra_recipients", extras.len(), MAX_EXTRA_RECIPIENTS) {
        extras
    } else {
        &[]
    };
    let mut named = Vec::with_capacity(extras.len());
    for (i, e) in extras.iter().enumerate() {
        if let Err(why) = email::validate(e.email.trim()) {
            v.add(format!("extra_recipients[{i}].email"), why);
        }
        check_name(v, &format!("extra_recipients[{i}].name"), &e.name);
        let user_id = if e.user_id.is_empty() {
            None
        } else {
            let parsed = UserId::parse("x", &e.user_id).ok();
            if parsed.is_none() {
                v.add(format!("extra_recipients[{i}].user_id"), "must be a UUID");
            }
            parsed
        };
        named.push(ExtraRecipient {
            user_id,
            email: e.email.trim().to_owned(),
            name: e.name.clone(),
        });
    }
    let contact_roles = if v.at_most("contact_roles", contact_roles.len(), MAX_ENUM_ENTRIES) {
        contact_roles
    } else {
        &[]
    };
    let roles: Vec<Role> = contact_roles
        .iter()
        .filter_map(|r| Role::from_i32(*r))
        .collect();
    let mut distinct = roles.clone();
    distinct.sort();
    distinct.dedup();
    v.check(
        roles.len() == contact_roles.len() && distinct.len() == roles.len(),
        "contact_roles",
        "known ContactRole values, each at most once",
    );
    Some(Routing {
        account: account?,
        category: category?,
        service,
        extras: named,
        contact_roles: roles,
    })
}

#[tonic::async_trait]
impl ContactsInternalService for Api {
    async fn send_email(
        &self,
        request: Request<pb::SendEmailRequest>,
    ) -> Reply<pb::SendEmailResponse> {
        let r = request.into_inner();
        let mut v = Violations::default();
        outbox::check_key(&mut v, &r.request_id);
        v.check(!r.to.is_empty(), "to", "at least one recipient");
        let within = v.at_most("to", r.to.len(), MAX_TO);
        let mut to = Vec::with_capacity(r.to.len());
        for (i, a) in r.to.iter().enumerate().filter(|_| within) {
            let address = a.email.trim();
            if let Err(e) = email::validate(address) {
                v.add(format!("to[{i}].email"), e);
            }
            check_name(&mut v, &format!("to[{i}].name"), &a.name);
            to.push(Address {
                email: address.to_owned(),
                name: a.name.trim().to_owned(),
            });
        }
        let template = client_template(&mut v, r.template);
        let data = sorted(r.template_data);
        let missing = outbox::check_data(&mut v, template, &data);
        let account_id =
            optional_id(&mut v, "account_id", &r.account_id, ids::parse_id).unwrap_or_default();
        v.finish()?;
        if let Some(e) = missing {
            return Err(e.into());
        }
        let Some(template) = template else {
            return Err(Error::invalid_field("template", "required").into());
        };
        let to = outbox::distinct(to);
        let hash = outbox::content_hash(&("send_email", &to, template as i32, &data, &account_id));
        let email = Email {
            template,
            data,
            account_id: (!account_id.is_empty()).then(|| AccountId::trusted(account_id)),
            category: None,
        };
        let queued = app_outbox::send(&self.app, &r.request_id, &hash, &email, &to).await?;
        Ok(Response::new(pb::SendEmailResponse {
            messages: queued.messages.into_iter().map(convert::message).collect(),
            duplicate: queued.duplicate,
        }))
    }

    async fn get_outbox_message(
        &self,
        request: Request<pb::GetOutboxMessageRequest>,
    ) -> Reply<pb::GetOutboxMessageResponse> {
        let id = ids::parse_id("id", &request.get_ref().id)?;
        let m = app_outbox::get(&self.app, &id).await?;
        Ok(Response::new(pb::GetOutboxMessageResponse {
            message: Some(convert::message(m)),
        }))
    }

    async fn list_outbox_messages(
        &self,
        request: Request<pb::ListOutboxMessagesRequest>,
    ) -> Reply<pb::ListOutboxMessagesResponse> {
        let r = request.into_inner();
        let mut v = Violations::default();
        let size = v.take(
            "page_size",
            ids::page_size(r.page_size).map_err(|e| e.message),
        );
        let state = match r.state {
            0 => None,
            s => {
                let state = MessageState::from_i32(s);
                if state.is_none() {
                    v.add("state", "unknown OutboxMessageState");
                }
                state
            }
        };
        let template = match r.template {
            0 => None,
            t => {
                let template = Template::from_i32(t);
                v.check(template.is_some(), "template", "unknown MessageTemplate");
                template
            }
        };
        let account_id = optional_id(&mut v, "account_id", &r.account_id, AccountId::parse);
        v.finish()?;
        let filter = ListFilter {
            state,
            idempotency_key: Some(r.request_id).filter(|k| !k.is_empty()),
            to_email_norm: Some(email::normalize(&r.to_email)).filter(|e| !e.is_empty()),
            account_id,
            template,
            created_after: r
                .create_time_after
                .as_ref()
                .map(|t| Timestamp::from_proto(t).millis()),
        };
        let filter_hash = outbox::content_hash(&format!("{filter:?}"));
        let after = ids::decode_page_token::<OutboxCursor>(&r.page_token)
            .map_err(|_| page_token_invalid())?;
        let after = match after {
            Some(c) if c.f == filter_hash => Some((c.c, c.i)),
            Some(_) => return Err(page_token_invalid().into()),
            None => None,
        };
        let size = size.unwrap_or(ids::DEFAULT_PAGE_SIZE);
        let mut rows = app_outbox::list(&self.app, &filter, after, size + 1).await?;
        let more = rows.len() as u64 > size;
        rows.truncate(usize::try_from(size).unwrap_or(usize::MAX));
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => ids::encode_page_token(&OutboxCursor {
                c: last.created_at,
                i: last.id.clone(),
                f: filter_hash,
            }),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListOutboxMessagesResponse {
            messages: rows.into_iter().map(convert::message).collect(),
            next_page_token,
        }))
    }

    async fn resolve_recipients(
        &self,
        request: Request<pb::ResolveRecipientsRequest>,
    ) -> Reply<pb::ResolveRecipientsResponse> {
        let r = request.into_inner();
        let mut v = Violations::default();
        let routing = check_routing(
            &mut v,
            &r.account_id,
            r.category,
            &r.service_id,
            &r.extra_recipients,
            &r.contact_roles,
        );
        v.finish()?;
        let routing = routing.ok_or_else(|| Error::invalid_field("account_id", "required"))?;
        let resolution = app_routing::resolve(&self.app, &routing).await?;
        Ok(Response::new(pb::ResolveRecipientsResponse {
            recipients: resolution
                .recipients
                .into_iter()
                .map(convert::recipient)
                .collect(),
            excluded: resolution
                .excluded
                .into_iter()
                .map(convert::excluded)
                .collect(),
        }))
    }

    async fn notify(&self, request: Request<pb::NotifyRequest>) -> Reply<pb::NotifyResponse> {
        let r = request.into_inner();
        let mut v = Violations::default();
        outbox::check_key(&mut v, &r.request_id);
        let template = client_template(&mut v, r.template);
        let data = sorted(r.template_data);
        let missing = outbox::check_data(&mut v, template, &data);
        let hash = outbox::content_hash(&(
            "notify",
            &r.account_id,
            r.category,
            r.template,
            &data,
            &r.service_id,
            r.extra_recipients
                .iter()
                .map(|e| (&e.user_id, &e.email, &e.name))
                .collect::<Vec<_>>(),
        ));
        // Hashed only when set, so keys of calls made before the field
        // existed still match their retries.
        let hash = if r.contact_roles.is_empty() {
            hash
        } else {
            outbox::content_hash(&(hash, &r.contact_roles))
        };
        let routing = check_routing(
            &mut v,
            &r.account_id,
            r.category,
            &r.service_id,
            &r.extra_recipients,
            &r.contact_roles,
        );
        v.finish()?;
        if let Some(e) = missing {
            return Err(e.into());
        }
        let (Some(routing), Some(template)) = (routing, template) else {
            return Err(Error::invalid_field("template", "required").into());
        };
        let notified =
            app_routing::notify(&self.app, &r.request_id, &hash, &routing, template, data).await?;
        Ok(Response::new(pb::NotifyResponse {
            messages: notified
                .queued
                .messages
                .into_iter()
                .map(convert::message)
                .collect(),
            duplicate: notified.queued.duplicate,
            excluded: notified
                .excluded
                .into_iter()
                .map(convert::excluded)
                .collect(),
        }))
    }

    async fn deliver_server_credentials(
        &self,
        request: Request<pb::DeliverServerCredentialsRequest>,
    ) -> Reply<pb::DeliverServerCredentialsResponse> {
        use tenancy_proto::account::ServerCredentialDelivery as Method;
        let mut r = request.into_inner();
        // Wiped when this call ends, however it ends (sealed by then).
        let secret = Zeroizing::new(std::mem::take(&mut r.secret));
        let mut v = Violations::default();
        outbox::check_key(&mut v, &r.request_id);
        let account = v.take("account_id", AccountId::parse("account_id", &r.account_id));
        let service = v.take("service_id", ids::parse_id("service_id", &r.service_id));
        let user = v.take("user_id", UserId::parse("user_id", &r.user_id));
        let method = match Method::try_from(r.method) {
            Ok(Method::Unspecified) => None,
            Ok(m) => Some(m),
            Err(_) => {
                v.add("method", "a ServerCredentialDelivery value");
                None
            }
        };
        v.check(
            !secret.is_empty()
                && secret.len() <= MAX_SECRET_BYTES
                && !secret.chars().any(char::is_control),
            "secret",
            "1 to 256 bytes, no control characters",
        );
        v.finish()?;
        let (Some(account), Some(service), Some(user)) = (account, service, user) else {
            return Err(Error::invalid_field("account_id", "required").into());
        };
        let credentials = Credentials {
            account,
            service,
            user,
            method,
            secret: &secret,
        };
        let (method, queued) =
            app_credentials::deliver(&self.app, &r.request_id, credentials).await?;
        let (message, duplicate) = match queued {
            Some(q) => (
                q.messages.into_iter().next().map(convert::message),
                q.duplicate,
            ),
            None => (None, false),
        };
        Ok(Response::new(pb::DeliverServerCredentialsResponse {
            method: method as i32,
            message,
            duplicate,
        }))
    }

    async fn send_phone_code(
        &self,
        request: Request<pb::SendPhoneCodeRequest>,
    ) -> Reply<pb::SendPhoneCodeResponse> {
        let mut r = request.into_inner();
        // Wiped when this call ends, however it ends (sealed by then).
        let code = Zeroizing::new(std::mem::take(&mut r.code));
        let mut v = Violations::default();
        outbox::check_key(&mut v, &r.request_id);
        let phone = v.take("phone", tenancy_runtime::text::phone(&r.phone));
        v.check(
            (4..=10).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit()),
            "code",
            "4 to 10 digits",
        );
        v.check(r.expire_time.is_some(), "expire_time", "required");
        let user = v.take("user_id", UserId::parse("user_id", &r.user_id));
        v.finish()?;
        let (Some(phone), Some(user), Some(expire)) = (phone, user, r.expire_time) else {
            return Err(Error::invalid_field("phone", "required").into());
        };
        let expire = Timestamp::from_proto(&expire).rfc3339();
        let queued = app_credentials::send_phone_code(
            &self.app,
            &r.request_id,
            &phone,
            &code,
            expire,
            &user,
        )
        .await?;
        Ok(Response::new(pb::SendPhoneCodeResponse {
            message: queued.messages.into_iter().next().map(convert::message),
        }))
    }
}

/// The longest server password DeliverServerCredentials takes.
const MAX_SECRET_BYTES: usize = 256;
