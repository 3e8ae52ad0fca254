//! The port to the account service: is a user an ACTIVE member, and which
//! account does a new token of theirs select?

use std::future::Future;
use std::time::Duration;

use tenancy_proto::account::account_internal_service_client::AccountInternalServiceClient;
use tenancy_proto::account::{GetDefaultAccountRequest, GetPrincipalStateRequest, MemberStatus};
use tenancy_runtime::Channel;
use tenancy_runtime::Error;
use tenancy_runtime::principal::ServiceAuth;
use tonic::service::interceptor::InterceptedService;

/// How long identity waits for the account service. A login must not hang
/// on it: past this, a login without `account_id` goes on without an
/// account, one with an `account_id` answers UNAVAILABLE.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// Membership questions identity asks the account service.
#[tonic::async_trait]
pub trait Accounts: Send + Sync + 'static {
    /// Whether `user_id` is an ACTIVE member of `account_id` with portal
    /// access (false for unknown accounts).
    async fn is_active_member(&self, user_id: &str, account_id: &str) -> Result<bool, Error>;

    /// The account a new token of `user_id` selects when the client named
    /// none: the first of `preferred` where the user is an ACTIVE member
    /// with portal access, else their earliest-joined such membership, else
    /// none.
    async fn default_account(
        &self,
        user_id: &str,
        preferred: &[String],
    ) -> Result<Option<String>, Error>;
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
}

/// The answer of `call`, or `None` for NOT_FOUND; UNAVAILABLE for any other
/// failure and for no answer within [`ANSWER_WITHIN`].
async fn ask<T>(
    method: &'static str,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<Option<T>, Error> {
    let code = match tokio::time::timeout(ANSWER_WITHIN, call).await {
        Ok(Ok(reply)) => return Ok(Some(reply.into_inner())),
        Ok(Err(status)) if status.code() == tonic::Code::NotFound => return Ok(None),
        Ok(Err(status)) => status.code(),
        Err(_) => tonic::Code::DeadlineExceeded,
    };
    tracing::warn!(?code, method, "account service call failed");
    Err(Error::unavailable(
        "the account service is unavailable; retry",
    ))
}

#[tonic::async_trait]
impl Accounts for AccountService {
    async fn is_active_member(&self, user_id: &str, account_id: &str) -> Result<bool, Error> {
        let mut client = self.client.clone();
        let reply = ask(
            "GetPrincipalState",
            client.get_principal_state(GetPrincipalStateRequest {
                user_id: user_id.to_owned(),
                account_id: account_id.to_owned(),
            }),
        )
        .await?;
        Ok(reply
            .and_then(|r| r.membership)
            .is_some_and(|m| m.status == MemberStatus::Active as i32 && m.portal_access))
    }

    async fn default_account(
        &self,
        user_id: &str,
        preferred: &[String],
    ) -> Result<Option<String>, Error> {
        let mut client = self.client.clone();
        let reply = ask(
            "GetDefaultAccount",
            client.get_default_account(GetDefaultAccountRequest {
                user_id: user_id.to_owned(),
                preferred_account_ids: preferred.to_vec(),
            }),
        )
        .await?;
        Ok(reply.map(|r| r.account_id).filter(|id| !id.is_empty()))
    }
}
