//! In-test stand-ins for the identity and account services, implementing
//! only the internal RPCs the contacts service calls (BatchGetUsers;
//! GetPrincipalState, WatchPolicies, BatchCheckAccess). Clearly fakes: the
//! real services were being written in parallel; swap in
//! `testkit::start::<tenancy_identity::IdentityService>` and the account
//! service once their internal methods work.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;

use tenancy_proto::account::account_internal_service_server::{
    AccountInternalService, AccountInternalServiceServer,
};
use tenancy_proto::account::{self as apb, watch_policies_response::Event};
use tenancy_proto::identity::identity_internal_service_server::{
    IdentityInternalService, IdentityInternalServiceServer,
};
use tenancy_proto::identity::{self as ipb};
use tonic::{Request, Response, Status};

/// What the fake directory knows.
#[derive(Default)]
pub struct Directory {
    pub accounts: HashSet<String>,
    /// (account, user) -> active
    pub members: HashMap<(String, String), bool>,
    /// user -> (email, name)
    pub users: HashMap<String, (String, String)>,
    /// (user, service) pairs WITHOUT access.
    pub no_access: HashSet<(String, String)>,
}

#[derive(Clone, Default)]
pub struct Fake(pub Arc<Mutex<Directory>>);

impl Fake {
    pub fn add_account(&self, account: &str) {
        self.0.lock().accounts.insert(account.to_owned());
    }
    pub fn add_member(&self, account: &str, user: &str, email: &str, active: bool) {
        let mut d = self.0.lock();
        d.members
            .insert((account.to_owned(), user.to_owned()), active);
        d.users.insert(
            user.to_owned(),
            (email.to_owned(), format!("Name of {email}")),
        );
    }
    pub fn add_user(&self, user: &str, email: &str) {
        self.0.lock().users.insert(
            user.to_owned(),
            (email.to_owned(), format!("Name of {email}")),
        );
    }
    pub fn deny_service(&self, user: &str, service: &str) {
        self.0
            .lock()
            .no_access
            .insert((user.to_owned(), service.to_owned()));
    }

    /// Serves both fakes on one loopback port.
    pub async fn serve(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let router = tonic::transport::Server::builder()
            .add_service(AccountInternalServiceServer::new(self.clone()))
            .add_service(IdentityInternalServiceServer::new(self.clone()));
        tokio::spawn(router.serve_with_incoming(incoming));
        address
    }
}

#[tonic::async_trait]
impl AccountInternalService for Fake {
    async fn get_principal_state(
        &self,
        request: Request<apb::GetPrincipalStateRequest>,
    ) -> Result<Response<apb::GetPrincipalStateResponse>, Status> {
        let r = request.into_inner();
        let d = self.0.lock();
        if !d.accounts.contains(&r.account_id) {
            return Err(Status::not_found("ACCOUNT_NOT_FOUND"));
        }
        let membership = d
            .members
            .get(&(r.account_id.clone(), r.user_id.clone()))
            .map(|active| apb::MembershipState {
                account_id: r.account_id.clone(),
                user_id: r.user_id.clone(),
                status: if *active {
                    apb::MemberStatus::Active as i32
                } else {
                    apb::MemberStatus::Suspended as i32
                },
                ..Default::default()
            });
        Ok(Response::new(apb::GetPrincipalStateResponse {
            membership,
            ..Default::default()
        }))
    }

    async fn watch_policies(
        &self,
        _request: Request<apb::WatchPoliciesRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<apb::WatchPoliciesResponse>>, Status> {
        let d = self.0.lock();
        let mut events = vec![Event::Reset(apb::PolicyReset::default())];
        for ((account, user), active) in &d.members {
            events.push(Event::MembershipChanged(apb::MembershipState {
                account_id: account.clone(),
                user_id: user.clone(),
                status: if *active {
                    apb::MemberStatus::Active as i32
                } else {
                    apb::MemberStatus::Suspended as i32
                },
                portal_access: true,
                ..Default::default()
            }));
        }
        events.push(Event::CaughtUp(apb::CaughtUp { snapshot: true }));
        let items: Vec<Result<apb::WatchPoliciesResponse, Status>> = events
            .into_iter()
            .map(|e| {
                Ok(apb::WatchPoliciesResponse {
                    position: 1,
                    event: Some(e),
                    ..Default::default()
                })
            })
            .collect();
        // Keep the stream open after caught_up, as the real one does.
        let stream =
            tokio_stream::StreamExt::chain(tokio_stream::iter(items), tokio_stream::pending());
        Ok(Response::new(Box::pin(stream)))
    }

    async fn batch_check_access(
        &self,
        request: Request<apb::BatchCheckAccessRequest>,
    ) -> Result<Response<apb::BatchCheckAccessResponse>, Status> {
        let r = request.into_inner();
        let d = self.0.lock();
        let results = r
            .service_ids
            .iter()
            .map(|s| apb::ServiceAccessResult {
                service_id: s.clone(),
                allowed: !d.no_access.contains(&(r.user_id.clone(), s.clone())),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(apb::BatchCheckAccessResponse {
            results,
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl IdentityInternalService for Fake {
    async fn batch_get_users(
        &self,
        request: Request<ipb::BatchGetUsersRequest>,
    ) -> Result<Response<ipb::BatchGetUsersResponse>, Status> {
        let d = self.0.lock();
        let users = request
            .into_inner()
            .user_ids
            .iter()
            .filter_map(|id| {
                d.users.get(id).map(|(email, name)| ipb::User {
                    id: id.clone(),
                    email: email.clone(),
                    name: name.clone(),
                    ..Default::default()
                })
            })
            .collect();
        Ok(Response::new(ipb::BatchGetUsersResponse { users }))
    }
}
