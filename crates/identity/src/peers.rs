//! Clients of the other services identity calls, behind ports tests and
//! tools may replace:
//! - [`Accounts`] asks the account service whether a user is an ACTIVE
//!   member (or a membership's status), and which account a new token of
//!   theirs selects;
//! - [`Mailer`] queues email in the contacts service's outbox
//!   (`ContactsInternalService.SendEmail`).
//!
//! A peer's failure becomes our error through the one shared mapping,
//! [`Error::from_peer`]: SERVICE_UNAVAILABLE naming the peer, so callers may
//! retry.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tenancy_proto::account::account_internal_service_client::AccountInternalServiceClient;
use tenancy_proto::account::{
    GetDefaultAccountRequest, GetPrincipalStateRequest, GetPrincipalStateResponse, MemberStatus,
    MembershipState,
};
use tenancy_proto::contacts::contacts_internal_service_client::ContactsInternalServiceClient;
use tenancy_proto::contacts::{EmailAddress, MessageTemplate, SendEmailRequest};
use tenancy_runtime::ids::{AccountId, UserId};
use tenancy_runtime::principal::ServiceAuth;
use tenancy_runtime::{Channel, Error};
use tonic::service::interceptor::InterceptedService;

/// How long identity waits for the account service. A login must not hang
/// on it: past this, a login without `account_id` goes on without an
/// account, one with an `account_id` answers UNAVAILABLE.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// The peer names in logs and in the `service` metadata of UNAVAILABLE.
const ACCOUNT: &str = "account";
const CONTACTS: &str = "contacts";

/// Membership questions identity asks the account service.
#[tonic::async_trait]
pub trait Accounts: Send + Sync + 'static {
    /// Whether `user_id` is an ACTIVE member of `account_id` with portal
    /// access (false for unknown accounts).
    async fn is_active_member(
        &self,
        user_id: &UserId,
        account_id: &AccountId,
    ) -> Result<bool, Error>;

    /// The account a new token of `user_id` selects when the client named
    /// none: the first of `preferred` where the user is an ACTIVE member
    /// with portal access, else their earliest-joined such membership, else
    /// none.
    async fn default_account(
        &self,
        user_id: &UserId,
        preferred: &[AccountId],
    ) -> Result<Option<AccountId>, Error>;

    /// The status of `user_id`'s membership of `account_id`: none when
    /// the user is no member (never was, revoked, left; unknown account).
    /// The default knows only ACTIVE members with portal access (from
    /// [`Self::is_active_member`]), for ports that answer nothing else;
    /// [`AccountService`] asks for the status itself.
    async fn member_status(
        &self,
        user_id: &UserId,
        account_id: &AccountId,
    ) -> Result<Option<MemberState>, Error> {
        Ok(self
            .is_active_member(user_id, account_id)
            .await?
            .then_some(MemberState::Active))
    }

    /// The member's 2FA deadline in the account while it enforces 2FA
    /// (none when it does not, or the user is not a member).
    async fn mfa_deadline(
        &self,
        user_id: &UserId,
        account_id: &AccountId,
    ) -> Result<Option<tenancy_runtime::Timestamp>, Error>;
}

/// A membership's status, as the account service reports it (revoked
/// memberships are gone: no status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// ACTIVE.
    Active,
    /// SUSPENDED.
    Suspended,
}

/// Asks `AccountInternalService` (GetPrincipalState, GetDefaultAccount).
pub struct AccountService {
    client: AccountInternalServiceClient<InterceptedService<Channel, ServiceAuth>>,
}

impl AccountService {
    /// A client over a (lazy) channel to the account service.
    pub fn new(channel: Channel, auth: ServiceAuth) -> Self {
        Self {
            client: AccountInternalServiceClient::with_interceptor(channel, auth),
        }
    }

    /// The user's state in the account as GetPrincipalState tells it
    /// (`None`: no such account).
    async fn principal_state(
        &self,
        user_id: &UserId,
        account_id: &AccountId,
    ) -> Result<Option<GetPrincipalStateResponse>, Error> {
        let mut client = self.client.clone();
        ask(
            "GetPrincipalState",
            client.get_principal_state(GetPrincipalStateRequest {
                user_id: user_id.to_string(),
                account_id: account_id.to_string(),
            }),
        )
        .await
    }

    /// The user's membership in the account (`None`: not a member, or no
    /// such account).
    async fn membership(
        &self,
        user_id: &UserId,
        account_id: &AccountId,
    ) -> Result<Option<MembershipState>, Error> {
        Ok(self
            .principal_state(user_id, account_id)
            .await?
            .and_then(|r| r.membership))
    }
}

/// The answer of `call`, or `None` for NOT_FOUND; UNAVAILABLE for any other
/// failure and for no answer within [`ANSWER_WITHIN`].
async fn ask<T>(
    method: &'static str,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<Option<T>, Error> {
    match tokio::time::timeout(ANSWER_WITHIN, call).await {
        Ok(Ok(reply)) => Ok(Some(reply.into_inner())),
        Ok(Err(status)) if status.code() == tonic::Code::NotFound => Ok(None),
        Ok(Err(status)) => Err(Error::from_peer(ACCOUNT, &status, &[])),
        Err(_) => {
            tracing::warn!(method, "account service did not answer in time");
            Err(Error::unavailable(format!("{ACCOUNT} is not available"))
                .with_metadata("service", ACCOUNT))
        }
    }
}

#[tonic::async_trait]
impl Accounts for AccountService {
    async fn is_active_member(
        &self,
        user_id: &UserId,
        account_id: &AccountId,
    ) -> Result<bool, Error> {
        Ok(self
            .membership(user_id, account_id)
            .await?
            .is_some_and(|m| m.status == MemberStatus::Active as i32 && m.portal_access))
    }

    async fn default_account(
        &self,
        user_id: &UserId,
        preferred: &[AccountId],
    ) -> Result<Option<AccountId>, Error> {
        let mut client = self.client.clone();
        let reply = ask(
            "GetDefaultAccount",
            client.get_default_account(GetDefaultAccountRequest {
                user_id: user_id.to_string(),
                preferred_account_ids: preferred.iter().map(ToString::to_string).collect(),
            }),
        )
        .await?;
        Ok(reply
            .map(|r| r.account_id)
            .filter(|id| !id.is_empty())
            .map(AccountId::trusted))
    }

    async fn member_status(
        &self,
        user_id: &UserId,
        account_id: &AccountId,
    ) -> Result<Option<MemberState>, Error> {
        Ok(self.membership(user_id, account_id).await?.and_then(|m| {
            match MemberStatus::try_from(m.status) {
                Ok(MemberStatus::Active) => Some(MemberState::Active),
                Ok(MemberStatus::Suspended) => Some(MemberState::Suspended),
                _ => None,
            }
        }))
    }

    async fn mfa_deadline(
        &self,
        user_id: &UserId,
        account_id: &AccountId,
    ) -> Result<Option<tenancy_runtime::Timestamp>, Error> {
        Ok(self
            .principal_state(user_id, account_id)
            .await?
            .filter(|r| r.membership.is_some())
            .and_then(|r| r.mfa_deadline)
            .map(|t| tenancy_runtime::Timestamp::from_proto(&t)))
    }
}

/// One message to queue.
#[derive(Clone, Debug)]
pub struct OutgoingEmail {
    /// Unique per logical message (`identity:<kind>:<id>`); repeats are
    /// deduplicated by the outbox.
    pub idempotency_key: String,
    /// The recipient's address.
    pub to: String,
    /// The recipient's name (may be empty).
    pub to_name: String,
    /// The template.
    pub template: MessageTemplate,
    /// The template's variables (may contain links with tokens).
    pub data: HashMap<String, String>,
}

/// One phone-verification code to send by SMS.
#[derive(Clone)]
pub struct OutgoingPhoneCode {
    /// Unique per code; repeats are deduplicated by the outbox.
    pub idempotency_key: String,
    /// The user it is for.
    pub user_id: String,
    /// The number (E.164).
    pub phone: String,
    /// The code (a secret: sealed in the outbox, erased once delivered).
    pub code: String,
    /// When it expires.
    pub expire_time: tenancy_runtime::Timestamp,
}

/// Where identity's emails (and SMS codes) go.
#[tonic::async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Queues one message (idempotent by key).
    async fn send(&self, email: OutgoingEmail) -> Result<(), Error>;

    /// Queues one phone-verification code by SMS (idempotent by key).
    async fn send_phone_code(&self, code: OutgoingPhoneCode) -> Result<(), Error>;
}

/// Sends through the contacts service's outbox.
pub struct ContactsMailer {
    client: ContactsInternalServiceClient<InterceptedService<Channel, ServiceAuth>>,
}

impl ContactsMailer {
    /// A mailer over a (lazy) channel to the contacts service.
    pub fn new(channel: Channel, auth: ServiceAuth) -> Self {
        Self {
            client: ContactsInternalServiceClient::with_interceptor(channel, auth),
        }
    }
}

#[tonic::async_trait]
impl Mailer for ContactsMailer {
    async fn send(&self, email: OutgoingEmail) -> Result<(), Error> {
        let request = SendEmailRequest {
            request_id: email.idempotency_key,
            to: vec![EmailAddress {
                email: email.to,
                name: email.to_name,
            }],
            template: email.template as i32,
            template_data: email.data,
            account_id: String::new(),
        };
        self.client
            .clone()
            .send_email(request)
            .await
            .map(|_| ())
            .map_err(|status| Error::from_peer(CONTACTS, &status, &[]))
    }

    async fn send_phone_code(&self, code: OutgoingPhoneCode) -> Result<(), Error> {
        let request = tenancy_proto::contacts::SendPhoneCodeRequest {
            request_id: code.idempotency_key,
            phone: code.phone,
            code: code.code,
            expire_time: Some(code.expire_time.to_proto()),
            user_id: code.user_id,
        };
        self.client
            .clone()
            .send_phone_code(request)
            .await
            .map(|_| ())
            .map_err(|status| Error::from_peer(CONTACTS, &status, &[]))
    }
}
