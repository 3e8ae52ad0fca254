//! IN-TEST FAKES of the peer services' internal APIs.
//!
//! The account, identity and contacts services are implemented in parallel
//! with this crate, and their internal methods (BatchCheckAccess,
//! CheckSupportAccess, ListActiveSupportAccessGrants, RecordAuditEvent,
//! CheckAccess; VerifyCodeWord, BatchGetUsers; Notify) had not landed when
//! these tests were written. These fakes implement ONLY those RPCs, with
//! the documented semantics (owners and ALL see every service, SELECTED the
//! selected ones, NONE none; grants expire on the injected clock), and
//! record what they were asked. Replace them with
//! `testkit::start::<tenancy_account::AccountService>` etc. once the real
//! methods exist.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use tenancy_proto::account::{
    self as apb, account_internal_service_server::AccountInternalService,
    account_internal_service_server::AccountInternalServiceServer,
};
use tenancy_proto::contacts::{
    self as cpb, contacts_internal_service_server::ContactsInternalService,
    contacts_internal_service_server::ContactsInternalServiceServer,
};
use tenancy_proto::identity::{
    self as ipb, identity_internal_service_server::IdentityInternalService,
    identity_internal_service_server::IdentityInternalServiceServer,
};
use tenancy_runtime::{Clock, ManualClock, Timestamp};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

/// A member's service access in the fake account service.
#[derive(Clone, Debug)]
pub enum Scope {
    /// Owner: everything.
    Owner,
    /// Manager with ALL.
    All,
    /// Manager with SELECTED services.
    Selected(HashSet<String>),
    /// Manager with NONE.
    None,
}

/// The fake account service's state.
#[derive(Default)]
pub struct AccountState {
    /// (account, user) → scope; absent: not a member.
    pub members: HashMap<(String, String), Scope>,
    /// Suspended members (denied).
    pub suspended: HashSet<(String, String)>,
    /// account → grant expiry (Unix ms); absent: no grant.
    pub grants: HashMap<String, i64>,
    /// Recorded audit events.
    pub audit: Vec<apb::AuditEvent>,
    /// How many BatchCheckAccess calls were made.
    pub batch_calls: usize,
}

/// The fake account service.
#[derive(Clone)]
pub struct FakeAccount {
    pub state: Arc<Mutex<AccountState>>,
    pub clock: ManualClock,
}

impl FakeAccount {
    fn decide(&self, user: &str, account: &str) -> Option<Scope> {
        let s = self.state.lock();
        let key = (account.to_owned(), user.to_owned());
        if s.suspended.contains(&key) {
            return None;
        }
        s.members.get(&key).cloned()
    }

    fn grant_active(&self, account: &str) -> Option<i64> {
        let now = self.clock.now().millis();
        self.state
            .lock()
            .grants
            .get(account)
            .copied()
            .filter(|expiry| *expiry > now)
    }
}

#[tonic::async_trait]
impl AccountInternalService for FakeAccount {
    async fn check_access(
        &self,
        request: Request<apb::CheckAccessRequest>,
    ) -> Result<Response<apb::CheckAccessResponse>, Status> {
        let r = request.into_inner();
        let scope = self.decide(&r.user_id, &r.account_id);
        let (allowed, reason) = match scope {
            None => (false, apb::AccessReason::DeniedNotMember),
            Some(Scope::Owner) => (true, apb::AccessReason::Owner),
            Some(_) => (true, apb::AccessReason::ActiveMember),
        };
        Ok(Response::new(apb::CheckAccessResponse {
            allowed,
            reason: reason as i32,
            ..Default::default()
        }))
    }

    async fn batch_check_access(
        &self,
        request: Request<apb::BatchCheckAccessRequest>,
    ) -> Result<Response<apb::BatchCheckAccessResponse>, Status> {
        let r = request.into_inner();
        self.state.lock().batch_calls += 1;
        let scope = self.decide(&r.user_id, &r.account_id);
        let Some(scope) = scope else {
            return Ok(Response::new(apb::BatchCheckAccessResponse {
                results: r
                    .service_ids
                    .iter()
                    .map(|s| apb::ServiceAccessResult {
                        service_id: s.clone(),
                        allowed: false,
                        reason: apb::AccessReason::DeniedNotMember as i32,
                        effective_level: 0,
                    })
                    .collect(),
                membership_reason: apb::AccessReason::DeniedNotMember as i32,
                ..Default::default()
            }));
        };
        let (all, set, mode, membership) = match &scope {
            Scope::Owner => (
                true,
                HashSet::new(),
                apb::ServiceAccess::All,
                apb::AccessReason::Owner,
            ),
            Scope::All => (
                true,
                HashSet::new(),
                apb::ServiceAccess::All,
                apb::AccessReason::ActiveMember,
            ),
            Scope::Selected(s) => (
                false,
                s.clone(),
                apb::ServiceAccess::Selected,
                apb::AccessReason::ActiveMember,
            ),
            Scope::None => (
                false,
                HashSet::new(),
                apb::ServiceAccess::None,
                apb::AccessReason::ActiveMember,
            ),
        };
        let mut accessible: Vec<String> = set.iter().cloned().collect();
        accessible.sort();
        Ok(Response::new(apb::BatchCheckAccessResponse {
            results: r
                .service_ids
                .iter()
                .map(|s| {
                    let ok = all || set.contains(s);
                    apb::ServiceAccessResult {
                        service_id: s.clone(),
                        allowed: ok,
                        reason: if ok {
                            apb::AccessReason::SelectedService as i32
                        } else {
                            apb::AccessReason::DeniedNoAccess as i32
                        },
                        effective_level: 0,
                    }
                })
                .collect(),
            membership_reason: membership as i32,
            role: 0,
            service_access: mode as i32,
            all_services: all,
            accessible_service_ids: if all || !r.include_accessible_service_ids {
                Vec::new()
            } else {
                accessible
            },
        }))
    }

    async fn check_support_access(
        &self,
        request: Request<apb::CheckSupportAccessRequest>,
    ) -> Result<Response<apb::CheckSupportAccessResponse>, Status> {
        let r = request.into_inner();
        let active = self.grant_active(&r.account_id);
        Ok(Response::new(apb::CheckSupportAccessResponse {
            active: active.is_some(),
            expire_time: active.map(|e| Timestamp(e).to_proto()),
            grant: None,
        }))
    }

    async fn list_active_support_access_grants(
        &self,
        _request: Request<apb::ListActiveSupportAccessGrantsRequest>,
    ) -> Result<Response<apb::ListActiveSupportAccessGrantsResponse>, Status> {
        let now = self.clock.now().millis();
        let mut grants: Vec<apb::SupportAccessGrant> = self
            .state
            .lock()
            .grants
            .iter()
            .filter(|(_, e)| **e > now)
            .map(|(a, e)| apb::SupportAccessGrant {
                account_id: a.clone(),
                active: true,
                expire_time: Some(Timestamp(*e).to_proto()),
                ..Default::default()
            })
            .collect();
        grants.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        Ok(Response::new(apb::ListActiveSupportAccessGrantsResponse {
            grants,
            next_page_token: String::new(),
        }))
    }

    async fn record_audit_event(
        &self,
        request: Request<apb::RecordAuditEventRequest>,
    ) -> Result<Response<apb::RecordAuditEventResponse>, Status> {
        let event = request.into_inner().event.unwrap_or_default();
        self.state.lock().audit.push(event.clone());
        Ok(Response::new(apb::RecordAuditEventResponse {
            event: Some(event),
        }))
    }
}

/// The fake identity service's state.
#[derive(Default)]
pub struct IdentityState {
    /// Users by id.
    pub users: HashMap<String, ipb::User>,
    /// Code words by user id.
    pub code_words: HashMap<String, String>,
    /// Failed checks per user.
    pub failures: HashMap<String, u32>,
    /// Code-word checks seen (user, staff).
    pub checks: Vec<(String, String)>,
}

/// The fake identity service (VerifyCodeWord limited to 5 failures).
#[derive(Clone, Default)]
pub struct FakeIdentity {
    pub state: Arc<Mutex<IdentityState>>,
}

#[tonic::async_trait]
impl IdentityInternalService for FakeIdentity {
    async fn batch_get_users(
        &self,
        request: Request<ipb::BatchGetUsersRequest>,
    ) -> Result<Response<ipb::BatchGetUsersResponse>, Status> {
        let s = self.state.lock();
        let users = request
            .into_inner()
            .user_ids
            .iter()
            .filter_map(|id| s.users.get(id).cloned())
            .collect();
        Ok(Response::new(ipb::BatchGetUsersResponse { users }))
    }

    async fn verify_code_word(
        &self,
        request: Request<ipb::VerifyCodeWordRequest>,
    ) -> Result<Response<ipb::VerifyCodeWordResponse>, Status> {
        let r = request.into_inner();
        let mut s = self.state.lock();
        s.checks.push((r.user_id.clone(), r.staff_user_id.clone()));
        if !s.users.contains_key(&r.user_id) {
            return Err(Status::not_found("USER_NOT_FOUND"));
        }
        let failures = s.failures.get(&r.user_id).copied().unwrap_or(0);
        if failures >= 5 {
            return Err(Status::resource_exhausted("CODE_WORD_ATTEMPTS_EXCEEDED"));
        }
        let Some(word) = s.code_words.get(&r.user_id).cloned() else {
            return Ok(Response::new(ipb::VerifyCodeWordResponse {
                r#match: false,
                code_word_set: false,
                remaining_attempts: 5,
            }));
        };
        let matched = word.eq_ignore_ascii_case(r.code_word.trim());
        if !matched {
            *s.failures.entry(r.user_id.clone()).or_default() += 1;
        }
        Ok(Response::new(ipb::VerifyCodeWordResponse {
            r#match: matched,
            code_word_set: true,
            remaining_attempts: 5 - i32::try_from(failures).unwrap_or(5) - i32::from(!matched),
        }))
    }
}

/// The fake contacts service: records Notify calls.
#[derive(Clone, Default)]
pub struct FakeContacts {
    pub notified: Arc<Mutex<Vec<cpb::NotifyRequest>>>,
}

#[tonic::async_trait]
impl ContactsInternalService for FakeContacts {
    async fn notify(
        &self,
        request: Request<cpb::NotifyRequest>,
    ) -> Result<Response<cpb::NotifyResponse>, Status> {
        self.notified.lock().push(request.into_inner());
        Ok(Response::new(cpb::NotifyResponse::default()))
    }
}

/// Serves the three fakes on loopback; returns their URLs.
pub async fn serve(
    account: FakeAccount,
    identity: FakeIdentity,
    contacts: FakeContacts,
) -> (String, String, String) {
    async fn one<S>(service: S) -> String
    where
        S: tonic::codegen::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        url
    }
    (
        one(AccountInternalServiceServer::new(account)).await,
        one(IdentityInternalServiceServer::new(identity)).await,
        one(ContactsInternalServiceServer::new(contacts)).await,
    )
}
