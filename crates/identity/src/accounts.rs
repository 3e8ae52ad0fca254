//! The port to the account service: is a user an ACTIVE member?

use tenancy_proto::account::account_internal_service_client::AccountInternalServiceClient;
use tenancy_proto::account::{GetPrincipalStateRequest, MemberStatus};
use tenancy_runtime::Error;
use tenancy_runtime::principal::ServiceAuth;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Membership questions identity asks the account service.
#[tonic::async_trait]
pub trait Accounts: Send + Sync + 'static {
    /// Whether `user_id` is an ACTIVE member of `account_id` (false for
    /// unknown accounts).
    async fn is_active_member(&self, user_id: &str, account_id: &str) -> Result<bool, Error>;
}

/// Asks `AccountInternalService.GetPrincipalState`.
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

#[tonic::async_trait]
impl Accounts for AccountService {
    async fn is_active_member(&self, user_id: &str, account_id: &str) -> Result<bool, Error> {
        let reply = self
            .client
            .clone()
            .get_principal_state(GetPrincipalStateRequest {
                user_id: user_id.to_owned(),
                account_id: account_id.to_owned(),
            })
            .await;
        match reply {
            Ok(r) => Ok(r
                .into_inner()
                .membership
                .is_some_and(|m| m.status == MemberStatus::Active as i32 && m.portal_access)),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(false),
            Err(status) => {
                tracing::warn!(code = ?status.code(), "account GetPrincipalState failed");
                Err(Error::unavailable(
                    "the account service is unavailable; retry",
                ))
            }
        }
    }
}
