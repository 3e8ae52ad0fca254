//! Clients of other services: account (memberships, service access) and
//! identity (users' addresses). A peer's refusal or failure becomes our
//! error through [`Error::from_peer`], the one shared mapping.

use std::collections::HashMap;
use std::time::Duration;

use tenancy_proto::account::account_internal_service_client::AccountInternalServiceClient;
use tenancy_proto::account::{self as apb, watch_policies_response::Event};
use tenancy_proto::identity::BatchGetUsersRequest;
use tenancy_proto::identity::identity_internal_service_client::IdentityInternalServiceClient;
use tenancy_runtime::config::ServiceName;
use tenancy_runtime::ids::{AccountId, UserId};
use tenancy_runtime::principal::ServiceAuth;
use tenancy_runtime::{Channel, Error};
use tonic::service::interceptor::InterceptedService;

use crate::domain::ContactsError;

type Accounts = AccountInternalServiceClient<InterceptedService<Channel, ServiceAuth>>;
type Identity = IdentityInternalServiceClient<InterceptedService<Channel, ServiceAuth>>;

/// How long a membership snapshot may take.
const MEMBERSHIPS_TIMEOUT: Duration = Duration::from_secs(10);

/// How the service reaches identity (users' addresses) and account
/// (memberships, service access).
#[derive(Clone)]
pub(crate) struct Peers {
    accounts: Option<Accounts>,
    identity: Option<Identity>,
}

/// A failed call to `service` as our error (UNAVAILABLE, logged).
fn failed(service: &str, status: &tonic::Status) -> Error {
    Error::from_peer(service, status, &[])
}

impl Peers {
    pub(crate) fn new(context: &tenancy_runtime::Context) -> Self {
        let auth = context.service_auth();
        let accounts = context
            .channel_to(ServiceName::Account)
            .ok()
            .map(|c| AccountInternalServiceClient::with_interceptor(c, auth.clone()));
        let identity = context
            .channel_to(ServiceName::Identity)
            .ok()
            .map(|c| IdentityInternalServiceClient::with_interceptor(c, auth));
        Self { accounts, identity }
    }

    fn accounts(&self) -> Result<Accounts, Error> {
        self.accounts
            .clone()
            .ok_or_else(|| Error::unavailable("the account service is not configured"))
    }

    /// Whether `user` is a member (any status) of `account`.
    pub(crate) async fn is_member(
        &self,
        account: &AccountId,
        user: &UserId,
    ) -> Result<bool, Error> {
        let response = self
            .accounts()?
            .get_principal_state(apb::GetPrincipalStateRequest {
                user_id: user.to_string(),
                account_id: account.to_string(),
            })
            .await;
        match response {
            Ok(r) => Ok(r.into_inner().membership.is_some()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
            Err(s) => Err(failed("account", &s)),
        }
    }

    /// Whether `user` is an ACTIVE member of `account`, and the account's
    /// `server_credential_delivery` setting; ACCOUNT_NOT_FOUND when there
    /// is no such account.
    pub(crate) async fn credential_delivery(
        &self,
        account: &AccountId,
        user: &UserId,
    ) -> Result<(bool, i32), Error> {
        let response = self
            .accounts()?
            .get_principal_state(apb::GetPrincipalStateRequest {
                user_id: user.to_string(),
                account_id: account.to_string(),
            })
            .await;
        match response {
            Ok(r) => {
                let r = r.into_inner();
                let active = r
                    .membership
                    .is_some_and(|m| m.status == apb::MemberStatus::Active as i32);
                let delivery = r
                    .security_settings
                    .map_or(0, |s| s.server_credential_delivery);
                Ok((active, delivery))
            }
            Err(s) if s.code() == tonic::Code::NotFound => {
                Err(ContactsError::AccountNotFound.into())
            }
            Err(s) => Err(failed("account", &s)),
        }
    }

    /// Fails with ACCOUNT_NOT_FOUND unless `account` exists.
    pub(crate) async fn check_account(&self, account: &AccountId) -> Result<(), Error> {
        let response = self
            .accounts()?
            .get_principal_state(apb::GetPrincipalStateRequest {
                user_id: "00000000-0000-0000-0000-000000000000".to_owned(),
                account_id: account.to_string(),
            })
            .await;
        match response {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => {
                Err(ContactsError::AccountNotFound.into())
            }
            Err(s) => Err(failed("account", &s)),
        }
    }

    /// Every member of `account` with whether they are active, from a
    /// snapshot of the account service's policy stream (there is no
    /// internal member list method).
    pub(crate) async fn memberships(
        &self,
        account: &AccountId,
    ) -> Result<HashMap<UserId, bool>, Error> {
        let mut client = self.accounts()?;
        let read = async {
            let mut stream = client
                .watch_policies(apb::WatchPoliciesRequest {
                    from_position: 0,
                    ..Default::default()
                })
                .await
                .map_err(|s| failed("account", &s))?
                .into_inner();
            let mut members = HashMap::new();
            while let Some(item) = stream.message().await.map_err(|s| failed("account", &s))? {
                match item.event {
                    Some(Event::MembershipChanged(m)) if m.account_id == account.as_str() => {
                        let active = m.status == apb::MemberStatus::Active as i32;
                        members.insert(UserId::trusted(m.user_id), active);
                    }
                    Some(Event::MembershipRemoved(m)) if m.account_id == account.as_str() => {
                        members.remove(&UserId::trusted(m.user_id));
                    }
                    Some(Event::CaughtUp(_)) => break,
                    _ => {}
                }
            }
            Ok::<_, Error>(members)
        };
        tokio::time::timeout(MEMBERSHIPS_TIMEOUT, read)
            .await
            .map_err(|_| Error::unavailable("the account service did not answer in time"))?
    }

    /// Whether `user` may view `service` in `account`.
    pub(crate) async fn service_access(
        &self,
        account: &AccountId,
        user: &UserId,
        service: &str,
    ) -> Result<bool, Error> {
        let r = self
            .accounts()?
            .batch_check_access(apb::BatchCheckAccessRequest {
                user_id: user.to_string(),
                account_id: account.to_string(),
                service_ids: vec![service.to_owned()],
                level: apb::AccessLevel::View as i32,
                include_accessible_service_ids: false,
            })
            .await
            .map_err(|s| failed("account", &s))?
            .into_inner();
        Ok(r.results.first().is_some_and(|x| x.allowed))
    }

    /// A user's verified phone number (empty when none).
    pub(crate) async fn phone(&self, user: &UserId) -> Result<String, Error> {
        let mut client = self
            .identity
            .clone()
            .ok_or_else(|| Error::unavailable("the identity service is not configured"))?;
        let r = client
            .batch_get_users(BatchGetUsersRequest {
                user_ids: vec![user.to_string()],
            })
            .await
            .map_err(|s| failed("identity", &s))?
            .into_inner();
        Ok(r.users
            .into_iter()
            .find(|u| u.id == user.as_str())
            .map(|u| u.phone)
            .unwrap_or_default())
    }

    /// Users' (email, name) by id.
    pub(crate) async fn users(
        &self,
        ids: Vec<UserId>,
    ) -> Result<HashMap<UserId, (String, String)>, Error> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut client = self
            .identity
            .clone()
            .ok_or_else(|| Error::unavailable("the identity service is not configured"))?;
        let r = client
            .batch_get_users(BatchGetUsersRequest {
                user_ids: ids.into_iter().map(UserId::into_string).collect(),
            })
            .await
            .map_err(|s| failed("identity", &s))?
            .into_inner();
        Ok(r.users
            .into_iter()
            .map(|u| (UserId::trusted(u.id), (u.email, u.name)))
            .collect())
    }
}
