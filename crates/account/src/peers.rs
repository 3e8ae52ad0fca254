//! The other services the account service calls: identity (users, token
//! revocation) and contacts (email).

use std::collections::HashMap;

use tenancy_proto::contacts::{
    self as cpb, contacts_internal_service_client::ContactsInternalServiceClient,
};
use tenancy_proto::identity::{
    self as ipb, identity_internal_service_client::IdentityInternalServiceClient,
};
use tenancy_runtime::Channel;
use tenancy_runtime::Error;
use tenancy_runtime::ids::{AccountId, UserId};
use tenancy_runtime::principal::ServiceAuth;
use tonic::service::interceptor::InterceptedService;

type Identity = IdentityInternalServiceClient<InterceptedService<Channel, ServiceAuth>>;
type Contacts = ContactsInternalServiceClient<InterceptedService<Channel, ServiceAuth>>;

/// What the account service needs to know about a user.
#[derive(Clone, Debug)]
pub(crate) struct UserInfo {
    /// Id.
    pub(crate) id: UserId,
    /// Email.
    pub(crate) email: String,
    /// Display name.
    pub(crate) name: String,
    /// 2FA enrolled: TOTP or a passkey.
    pub(crate) totp_enabled: bool,
    /// Whether the user has a password.
    pub(crate) password_set: bool,
    /// Last login (Unix ms).
    pub(crate) last_login_time: Option<i64>,
}

impl From<ipb::User> for UserInfo {
    fn from(u: ipb::User) -> Self {
        Self {
            id: UserId::trusted(u.id),
            email: u.email,
            name: u.name,
            // A passkey is a second factor as much as TOTP is.
            totp_enabled: u.totp_enabled || u.passkey_count > 0,
            password_set: u.password_set,
            last_login_time: u
                .last_login_time
                .as_ref()
                .map(|t| tenancy_runtime::Timestamp::from_proto(t).millis()),
        }
    }
}

/// Clients of identity and contacts; cheap to clone.
#[derive(Clone)]
pub(crate) struct Peers {
    identity: Identity,
    contacts: Contacts,
}

impl Peers {
    /// Clients over the given channels.
    pub(crate) fn new(identity: Channel, contacts: Channel, auth: ServiceAuth) -> Self {
        Self {
            identity: IdentityInternalServiceClient::with_interceptor(identity, auth.clone()),
            contacts: ContactsInternalServiceClient::with_interceptor(contacts, auth),
        }
    }

    /// A new user for an API member of `account_id` (no email, no
    /// password; see identity's CreateApiUser).
    pub(crate) async fn create_api_user(
        &self,
        account_id: &AccountId,
        name: &str,
    ) -> Result<UserInfo, Error> {
        let response = self
            .identity
            .clone()
            .create_api_user(ipb::CreateApiUserRequest {
                account_id: account_id.to_string(),
                name: name.to_owned(),
            })
            .await
            .map_err(|status| {
                Error::from_peer("identity", &status, &[tonic::Code::InvalidArgument])
            })?
            .into_inner();
        let user = response
            .user
            .ok_or_else(|| Error::internal("CreateApiUser returned no user"))?;
        Ok(user.into())
    }

    /// The user with `email`, created (without password) if none exists.
    pub(crate) async fn ensure_user(
        &self,
        email: &str,
        name: &str,
    ) -> Result<(UserInfo, bool), Error> {
        let response = self
            .identity
            .clone()
            .ensure_user(ipb::EnsureUserRequest {
                email: email.to_owned(),
                name: name.to_owned(),
            })
            .await
            .map_err(|status| {
                Error::from_peer("identity", &status, &[tonic::Code::InvalidArgument])
            })?
            .into_inner();
        let user = response
            .user
            .ok_or_else(|| Error::internal("EnsureUser returned no user"))?;
        Ok((user.into(), response.created))
    }

    /// Users by id (unknown ids left out), in one call per 500 ids.
    pub(crate) async fn users(&self, ids: &[UserId]) -> Result<HashMap<UserId, UserInfo>, Error> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let users = self
                .identity
                .clone()
                .batch_get_users(ipb::BatchGetUsersRequest {
                    user_ids: chunk.iter().map(ToString::to_string).collect(),
                })
                .await
                .map_err(|s| Error::from_peer("identity", &s, &[]))?
                .into_inner()
                .users;
            for user in users {
                let user = UserInfo::from(user);
                out.insert(user.id.clone(), user);
            }
        }
        Ok(out)
    }

    /// Sets a new user's first password (and name).
    pub(crate) async fn set_initial_password(
        &self,
        user_id: &str,
        password: &str,
        name: &str,
    ) -> Result<(), Error> {
        self.identity
            .clone()
            .set_initial_password(ipb::SetInitialPasswordRequest {
                user_id: user_id.to_owned(),
                password: password.to_owned(),
                name: name.to_owned(),
            })
            .await
            .map_err(|status| {
                let codes = [
                    tonic::Code::InvalidArgument,
                    tonic::Code::FailedPrecondition,
                ];
                Error::from_peer("identity", &status, &codes)
            })?;
        Ok(())
    }

    /// Revokes the member's API tokens for the account created at or before
    /// `change_time` (for good). Idempotent on identity's side; made through
    /// the outbox of `crate::peer_calls`, which retries until acknowledged.
    pub(crate) async fn revoke_account_access(
        &self,
        user_id: &str,
        account_id: &str,
        reason: ipb::RevocationReason,
        change_time: i64,
    ) -> Result<(), tonic::Status> {
        self.identity
            .clone()
            .revoke_account_access(ipb::RevokeAccountAccessRequest {
                user_id: user_id.to_owned(),
                account_id: account_id.to_owned(),
                reason: reason as i32,
                change_time: Some(tenancy_runtime::Timestamp(change_time).to_proto()),
            })
            .await?;
        Ok(())
    }

    /// Queues one email from a template.
    pub(crate) async fn send_email(
        &self,
        idempotency_key: String,
        to: (&str, &str),
        template: cpb::MessageTemplate,
        data: HashMap<String, String>,
        account_id: &str,
    ) -> Result<(), Error> {
        self.contacts
            .clone()
            .send_email(cpb::SendEmailRequest {
                request_id: idempotency_key,
                to: vec![cpb::EmailAddress {
                    email: to.0.to_owned(),
                    name: to.1.to_owned(),
                }],
                template: template as i32,
                template_data: data,
                account_id: account_id.to_owned(),
            })
            .await
            .map_err(|s| Error::from_peer("contacts", &s, &[]))?;
        Ok(())
    }
}
