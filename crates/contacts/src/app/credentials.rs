//! DeliverServerCredentials and SendPhoneCode: messages that carry a secret
//! (issue 17 §2). The secret is sealed apart from the message and erased
//! once it is delivered or given up (see `outbox::Outbox::enqueue_secret`).

use std::collections::BTreeMap;

use tenancy_proto::account::ServerCredentialDelivery as Method;
use tenancy_runtime::ids::{AccountId, UserId};
use tenancy_runtime::{Error, Reason};

use super::App;
use crate::domain::contact::Contact;
use crate::domain::outbox::Channel;
use crate::domain::templates::{SECRET_PLACEHOLDER, Template};
use crate::outbox::{self, Queued};
use crate::store::contacts;
use crate::store::outbox::NewMessage;

/// A server's root password to deliver.
pub(crate) struct Credentials<'a> {
    /// The account of the server.
    pub(crate) account: AccountId,
    /// The server (a service id of the account).
    pub(crate) service: String,
    /// The member who deploys it.
    pub(crate) user: UserId,
    /// The method asked for; `None`: the account's setting.
    pub(crate) method: Option<Method>,
    /// The password.
    pub(crate) secret: &'a str,
}

fn unavailable(method: Method, why: &str) -> Error {
    let name = if method == Method::Sms {
        "SMS"
    } else {
        "EMAIL"
    };
    Error::new(Reason::CredentialDestinationUnavailable, why).with_metadata("method", name)
}

/// DeliverServerCredentials: the method used and, unless NONE, the queued
/// message (a retry with `key` answers the first call's).
pub(crate) async fn deliver(
    app: &App,
    key: &str,
    c: Credentials<'_>,
) -> Result<(Method, Option<Queued>), Error> {
    let (active, setting) = app.peers.credential_delivery(&c.account, &c.user).await?;
    let allowed = active
        && app
            .peers
            .service_access(&c.account, &c.user, &c.service)
            .await?;
    if !allowed {
        return Err(Error::new(
            Reason::NotAMember,
            "the user is not an ACTIVE member of the account with access to the service",
        ));
    }
    let method = c
        .method
        .unwrap_or(Method::try_from(setting).unwrap_or(Method::None));
    let (template, message) = match method {
        Method::Email => {
            let primary = contacts::all(&app.outbox.db, &c.account)
                .await?
                .into_iter()
                .find(Contact::is_primary);
            let Some(primary) = primary.filter(|p| p.email_verified) else {
                return Err(unavailable(
                    method,
                    "the account has no PRIMARY contact with a verified email address",
                ));
            };
            (
                Template::ServerCredentials,
                (primary.email, primary.name, String::new()),
            )
        }
        Method::Sms => {
            let phone = app.peers.phone(&c.user).await?;
            if phone.is_empty() {
                return Err(unavailable(
                    method,
                    "the member has no verified phone number",
                ));
            }
            (
                Template::ServerCredentialsSms,
                (String::new(), String::new(), phone),
            )
        }
        Method::None | Method::Unspecified => return Ok((Method::None, None)),
    };
    let (to_email, to_name, to_phone) = message;
    let data = BTreeMap::from([
        ("service_id".to_owned(), c.service.clone()),
        ("secret".to_owned(), SECRET_PLACEHOLDER.to_owned()),
    ]);
    // The hash names what was asked, never the secret (a hash of a
    // password is a way to guess it).
    let hash = outbox::content_hash(&(
        "server_credentials",
        c.account.as_str(),
        &c.service,
        c.user.as_str(),
        method as i32,
    ));
    let message = render(
        template,
        data,
        Some(&c.account),
        (to_email, to_name, to_phone),
    )?;
    let queued = app
        .outbox
        .enqueue_secret(key, &hash, message, c.secret)
        .await?;
    Ok((method, Some(queued)))
}

/// SendPhoneCode: queues `code` for `phone` by SMS.
pub(crate) async fn send_phone_code(
    app: &App,
    key: &str,
    phone: &str,
    code: &str,
    expire_time: String,
    user: &UserId,
) -> Result<Queued, Error> {
    let data = BTreeMap::from([
        ("expire_time".to_owned(), expire_time),
        ("secret".to_owned(), SECRET_PLACEHOLDER.to_owned()),
    ]);
    let hash = outbox::content_hash(&("phone_code", phone, user.as_str(), &data));
    let message = render(
        Template::PhoneVerificationSms,
        data,
        None,
        (String::new(), String::new(), phone.to_owned()),
    )?;
    app.outbox.enqueue_secret(key, &hash, message, code).await
}

/// One message of `template` to (email, name, phone).
fn render(
    template: Template,
    mut data: BTreeMap<String, String>,
    account: Option<&AccountId>,
    (to_email, to_name, to_phone): (String, String, String),
) -> Result<NewMessage, Error> {
    data.insert("recipient_email".to_owned(), to_email.clone());
    data.insert("recipient_name".to_owned(), to_name.clone());
    let rendered = crate::domain::templates::render(template, &data).map_err(Error::internal)?;
    Ok(NewMessage {
        to_email,
        to_name,
        subject: rendered.subject,
        body_text: rendered.text,
        body_html: rendered.html,
        template,
        template_data: serde_json::to_string(&data).map_err(Error::internal)?,
        account_id: account.cloned(),
        category: None,
        channel: if template.is_sms() {
            Channel::Sms
        } else {
            Channel::Email
        },
        to_phone,
    })
}
