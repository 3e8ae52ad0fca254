//! IN-TEST FAKES of the two peer RPC sets the account service calls:
//! identity's IdentityInternalService (EnsureUser, BatchGetUsers,
//! SetInitialPassword, RevokeAccountAccess) and contacts'
//! ContactsInternalService (SendEmail, ListOutboxMessages).
//!
//! The real identity and contacts services were being written in parallel
//! and were not committed when these tests were written; the fakes speak
//! the real gRPC contract over loopback, so the account service's real
//! clients are exercised. Swap in `testkit::start::<tenancy_identity::...>`
//! once those land.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tenancy_proto::contacts::{
    self as cpb, contacts_internal_service_server::ContactsInternalService,
    contacts_internal_service_server::ContactsInternalServiceServer,
};
use tenancy_proto::identity::{
    self as ipb, identity_internal_service_server::IdentityInternalService,
    identity_internal_service_server::IdentityInternalServiceServer,
};
use tonic::{Request, Response, Status};

/// Users by id, and calls seen.
#[derive(Default)]
pub struct IdentityState {
    pub users: Mutex<HashMap<String, ipb::User>>,
    pub batch_calls: AtomicUsize,
    pub revocations: Mutex<Vec<(String, String)>>,
}

#[derive(Clone, Default)]
pub struct FakeIdentity(pub Arc<IdentityState>);

impl FakeIdentity {
    /// Adds a user with a password.
    pub fn add_user(&self, email: &str, name: &str) -> String {
        let id = uuid::Uuid::now_v7().to_string();
        self.0.users.lock().insert(
            id.clone(),
            ipb::User {
                id: id.clone(),
                email: email.to_owned(),
                name: name.to_owned(),
                password_set: true,
                email_verified: true,
                ..Default::default()
            },
        );
        id
    }

    pub fn user(&self, id: &str) -> Option<ipb::User> {
        self.0.users.lock().get(id).cloned()
    }

    pub fn set_totp(&self, id: &str, on: bool) {
        if let Some(u) = self.0.users.lock().get_mut(id) {
            u.totp_enabled = on;
        }
    }
}

#[tonic::async_trait]
impl IdentityInternalService for FakeIdentity {
    async fn ensure_user(
        &self,
        r: Request<ipb::EnsureUserRequest>,
    ) -> Result<Response<ipb::EnsureUserResponse>, Status> {
        let r = r.into_inner();
        let email = r.email.trim().to_lowercase();
        let mut users = self.0.users.lock();
        if let Some(u) = users.values().find(|u| u.email == email) {
            return Ok(Response::new(ipb::EnsureUserResponse {
                user: Some(u.clone()),
                created: false,
            }));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let user = ipb::User {
            id: id.clone(),
            email,
            name: r.name,
            ..Default::default()
        };
        users.insert(id, user.clone());
        Ok(Response::new(ipb::EnsureUserResponse {
            user: Some(user),
            created: true,
        }))
    }

    async fn batch_get_users(
        &self,
        r: Request<ipb::BatchGetUsersRequest>,
    ) -> Result<Response<ipb::BatchGetUsersResponse>, Status> {
        self.0.batch_calls.fetch_add(1, Ordering::SeqCst);
        let users = self.0.users.lock();
        let out = r
            .into_inner()
            .user_ids
            .iter()
            .filter_map(|id| users.get(id).cloned())
            .collect();
        Ok(Response::new(ipb::BatchGetUsersResponse { users: out }))
    }

    async fn set_initial_password(
        &self,
        r: Request<ipb::SetInitialPasswordRequest>,
    ) -> Result<Response<ipb::SetInitialPasswordResponse>, Status> {
        let r = r.into_inner();
        if r.password.chars().count() < 12 {
            return Err(Status::invalid_argument("password too short"));
        }
        let mut users = self.0.users.lock();
        let u = users
            .get_mut(&r.user_id)
            .ok_or_else(|| Status::not_found("no user"))?;
        if u.password_set {
            return Err(Status::failed_precondition("password already set"));
        }
        u.password_set = true;
        u.email_verified = true;
        if !r.name.is_empty() {
            u.name = r.name;
        }
        Ok(Response::new(ipb::SetInitialPasswordResponse {
            user: Some(u.clone()),
        }))
    }

    async fn revoke_account_access(
        &self,
        r: Request<ipb::RevokeAccountAccessRequest>,
    ) -> Result<Response<ipb::RevokeAccountAccessResponse>, Status> {
        let r = r.into_inner();
        self.0.revocations.lock().push((r.user_id, r.account_id));
        Ok(Response::new(ipb::RevokeAccountAccessResponse::default()))
    }
}

#[derive(Clone, Default)]
pub struct FakeContacts(pub Arc<Mutex<Vec<cpb::OutboxMessage>>>);

impl FakeContacts {
    /// Messages to `email` with `template`, oldest first.
    pub fn to(&self, email: &str, template: cpb::MessageTemplate) -> Vec<cpb::OutboxMessage> {
        self.0
            .lock()
            .iter()
            .filter(|m| {
                m.to.as_ref().is_some_and(|t| t.email == email) && m.template == template as i32
            })
            .cloned()
            .collect()
    }

    pub fn count(&self) -> usize {
        self.0.lock().len()
    }
}

#[tonic::async_trait]
impl ContactsInternalService for FakeContacts {
    async fn send_email(
        &self,
        r: Request<cpb::SendEmailRequest>,
    ) -> Result<Response<cpb::SendEmailResponse>, Status> {
        let r = r.into_inner();
        let mut outbox = self.0.lock();
        if outbox
            .iter()
            .any(|m| m.idempotency_key == r.idempotency_key)
        {
            return Ok(Response::new(cpb::SendEmailResponse {
                messages: vec![],
                duplicate: true,
            }));
        }
        let mut messages = Vec::new();
        for to in r.to {
            let m = cpb::OutboxMessage {
                id: uuid::Uuid::now_v7().to_string(),
                idempotency_key: r.idempotency_key.clone(),
                to: Some(to),
                template: r.template,
                template_data: r.template_data.clone(),
                account_id: r.account_id.clone(),
                ..Default::default()
            };
            outbox.push(m.clone());
            messages.push(m);
        }
        Ok(Response::new(cpb::SendEmailResponse {
            messages,
            duplicate: false,
        }))
    }
}

/// Serves both fakes on one loopback port.
pub async fn start() -> (SocketAddr, FakeIdentity, FakeContacts) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let identity = FakeIdentity::default();
    let contacts = FakeContacts::default();
    let (i, c) = (identity.clone(), contacts.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(IdentityInternalServiceServer::new(i))
            .add_service(ContactsInternalServiceServer::new(c))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (address, identity, contacts)
}
