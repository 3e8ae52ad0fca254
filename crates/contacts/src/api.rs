//! The gRPC surface of the contacts service: proto ⇄ domain, nothing else.

use std::collections::BTreeMap;

use tenancy_proto::contacts as pb;
use tenancy_proto::contacts::{
    contacts_internal_service_server::ContactsInternalService,
    contacts_service_server::ContactsService,
};
use tenancy_runtime::error::Violations;
use tenancy_runtime::{Error, Reason, Timestamp, ids};
use tonic::{Request, Response, Status};

use crate::domain::{email, templates::Template};
use crate::outbox::{self, Address, Email, Outbox};
use crate::store::entities::outbox_message as msg;
use crate::store::outbox as store;

mod contacts;
mod routing;

pub(crate) use routing::Directory;

/// The handlers; cheap to clone.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) outbox: Outbox,
    pub(crate) directory: Directory,
    pub(crate) portal_url: String,
}

type Reply<T> = Result<Response<T>, Status>;

fn ts(ms: Option<i64>) -> Option<prost_types::Timestamp> {
    ms.map(|m| Timestamp(m).to_proto())
}

pub(crate) fn message_to_proto(m: msg::Model) -> pb::OutboxMessage {
    let template_data = serde_json::from_str(&m.template_data).unwrap_or_default();
    let started = m.attempts > 0;
    pb::OutboxMessage {
        id: m.id,
        request_id: m.idempotency_key,
        to: Some(pb::EmailAddress {
            email: m.to_email,
            name: m.to_name,
        }),
        subject: m.subject,
        template: m.template,
        template_data,
        account_id: m.account_id,
        category: m.category,
        state: m.state,
        attempts: m.attempts,
        next_attempt_time: ts(m
            .next_attempt_at
            .filter(|_| m.state == store::PENDING || m.state == store::SENDING)),
        last_attempt_time: ts(m.last_attempt_at),
        last_error: m.last_error,
        create_time: ts(Some(m.created_at)),
        send_time: ts(m.sent_at.filter(|_| m.state == store::SENT)),
        smtp_message_id: if started {
            m.smtp_message_id
        } else {
            String::new()
        },
    }
}

fn sorted(data: std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    data.into_iter().collect()
}

fn optional_id(v: &mut Violations, field: &str, value: &str) -> String {
    if value.trim().is_empty() {
        return String::new();
    }
    v.take(field, ids::parse_id(field, value).map_err(|e| e.message))
        .unwrap_or_default()
}

fn page_token_invalid() -> Error {
    Error::new(
        Reason::PageTokenInvalid,
        "page_token is not a token this list returned",
    )
    .with_field("page_token", "not a token this list returned")
}

#[derive(serde::Serialize, serde::Deserialize)]
struct OutboxCursor {
    c: i64,
    i: String,
    f: String,
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
        v.check((1..=50).contains(&r.to.len()), "to", "1 to 50 recipients");
        let mut to = Vec::with_capacity(r.to.len());
        for (i, a) in r.to.iter().enumerate() {
            let address = a.email.trim();
            if let Err(e) = email::validate(address) {
                v.add(format!("to[{i}].email"), e);
            }
            v.check(
                a.name.chars().count() <= 200,
                &format!("to[{i}].name"),
                "at most 200 characters",
            );
            to.push(Address {
                email: address.to_owned(),
                name: a.name.trim().to_owned(),
            });
        }
        let template = Template::from_i32(r.template);
        v.check(
            template.is_some(),
            "template",
            "required: a known MessageTemplate",
        );
        let data = sorted(r.template_data);
        let missing = outbox::check_data(&mut v, template, &data);
        let account_id = optional_id(&mut v, "account_id", &r.account_id);
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
            account_id,
            category: 0,
        };
        let messages = self.outbox.render(&email, &to)?;
        let queued = self.outbox.enqueue(&r.request_id, &hash, messages).await?;
        Ok(Response::new(pb::SendEmailResponse {
            messages: queued.messages.into_iter().map(message_to_proto).collect(),
            duplicate: queued.duplicate,
        }))
    }

    async fn get_outbox_message(
        &self,
        request: Request<pb::GetOutboxMessageRequest>,
    ) -> Reply<pb::GetOutboxMessageResponse> {
        let r = request.into_inner();
        let not_found = || Error::new(Reason::OutboxMessageNotFound, "outbox message not found");
        let id = ids::parse_id("id", &r.id)?;
        let m = store::get(&self.outbox.db, &id)
            .await?
            .ok_or_else(not_found)?;
        Ok(Response::new(pb::GetOutboxMessageResponse {
            message: Some(message_to_proto(m)),
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
            s @ 1..=4 => Some(s),
            _ => {
                v.add("state", "unknown OutboxMessageState");
                None
            }
        };
        let template = match r.template {
            0 => None,
            t => {
                v.check(
                    Template::from_i32(t).is_some(),
                    "template",
                    "unknown MessageTemplate",
                );
                Some(t)
            }
        };
        let account_id = optional_id(&mut v, "account_id", &r.account_id);
        v.finish()?;
        let filter = store::ListFilter {
            state,
            idempotency_key: Some(r.request_id).filter(|k| !k.is_empty()),
            to_email_norm: Some(email::normalize(&r.to_email)).filter(|e| !e.is_empty()),
            account_id: Some(account_id).filter(|a| !a.is_empty()),
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
        let mut rows = store::list(&self.outbox.db, &filter, after, size + 1).await?;
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
            messages: rows.into_iter().map(message_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn resolve_recipients(
        &self,
        request: Request<pb::ResolveRecipientsRequest>,
    ) -> Reply<pb::ResolveRecipientsResponse> {
        self.resolve_recipients_impl(request.into_inner()).await
    }

    async fn notify(&self, request: Request<pb::NotifyRequest>) -> Reply<pb::NotifyResponse> {
        self.notify_impl(request.into_inner()).await
    }
}

#[tonic::async_trait]
impl ContactsService for Api {
    async fn create_contact(
        &self,
        request: Request<pb::CreateContactRequest>,
    ) -> Reply<pb::CreateContactResponse> {
        self.create_contact_impl(request).await
    }

    async fn get_contact(
        &self,
        request: Request<pb::GetContactRequest>,
    ) -> Reply<pb::GetContactResponse> {
        self.get_contact_impl(request).await
    }

    async fn update_contact(
        &self,
        request: Request<pb::UpdateContactRequest>,
    ) -> Reply<pb::UpdateContactResponse> {
        self.update_contact_impl(request).await
    }

    async fn delete_contact(
        &self,
        request: Request<pb::DeleteContactRequest>,
    ) -> Reply<pb::DeleteContactResponse> {
        self.delete_contact_impl(request).await
    }

    async fn list_contacts(
        &self,
        request: Request<pb::ListContactsRequest>,
    ) -> Reply<pb::ListContactsResponse> {
        self.list_contacts_impl(request).await
    }

    async fn set_primary_contact(
        &self,
        request: Request<pb::SetPrimaryContactRequest>,
    ) -> Reply<pb::SetPrimaryContactResponse> {
        self.set_primary_contact_impl(request).await
    }

    async fn resend_contact_verification(
        &self,
        request: Request<pb::ResendContactVerificationRequest>,
    ) -> Reply<pb::ResendContactVerificationResponse> {
        self.resend_contact_verification_impl(request).await
    }

    async fn verify_contact_email(
        &self,
        request: Request<pb::VerifyContactEmailRequest>,
    ) -> Reply<pb::VerifyContactEmailResponse> {
        self.verify_contact_email_impl(request).await
    }

    async fn get_notification_preferences(
        &self,
        request: Request<pb::GetNotificationPreferencesRequest>,
    ) -> Reply<pb::GetNotificationPreferencesResponse> {
        self.get_notification_preferences_impl(request).await
    }

    async fn update_notification_preferences(
        &self,
        request: Request<pb::UpdateNotificationPreferencesRequest>,
    ) -> Reply<pb::UpdateNotificationPreferencesResponse> {
        self.update_notification_preferences_impl(request).await
    }
}
