//! A support server with the REAL account, identity and contacts services,
//! each on its own database and loopback port, all on one injected clock;
//! an account set up through their APIs as a client would (users with
//! passwords, an owner, managers of each scope, two services, a staff
//! user), and clients for members of each scope and for staff.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tenancy_proto::account::{
    self as apb, account_internal_service_client::AccountInternalServiceClient,
    account_service_client::AccountServiceClient,
};
use tenancy_proto::contacts::{
    self as cpb, contacts_internal_service_client::ContactsInternalServiceClient,
    contacts_service_client::ContactsServiceClient,
};
use tenancy_proto::identity::{
    self as ipb, identity_internal_service_client::IdentityInternalServiceClient,
    identity_service_client::IdentityServiceClient,
};
use tenancy_proto::support::{
    self as pb, support_service_client::SupportServiceClient,
    support_staff_service_client::SupportStaffServiceClient,
};
use tenancy_runtime::config::ServiceName;
use tenancy_runtime::{Clock as _, ManualClock, Principal, Reason};
use tenancy_testkit::TestChannel as Channel;
use tenancy_testkit::{Caller, Peers, Role, Running, TestDatabase, TokenKind};
use tonic::service::interceptor::InterceptedService;

type Signed = InterceptedService<Channel, Caller>;
pub type Customer = SupportServiceClient<Signed>;
pub type Staff = SupportStaffServiceClient<Signed>;

const PASSWORD: &str = "correct horse battery staple";

/// An account with an owner and managers of each scope, two services
/// (`s1` selected for the SELECTED member, `s2` not), an outsider with no
/// membership, and a staff user.
pub struct World {
    /// Support itself; stops when dropped.
    _support: Running,
    /// The real account, identity and contacts services.
    _peers: Peers,
    pub channel: Channel,
    account_channel: Channel,
    identity_channel: Channel,
    contacts_channel: Channel,
    pub clock: ManualClock,
    /// BatchCheckAccess calls support made to account (see [`count_calls`]).
    pub batch_checks: Arc<AtomicUsize>,
    pub account_id: String,
    pub owner: String,
    pub all: String,
    pub selected: String,
    pub none: String,
    pub outsider: String,
    pub staff_user: String,
    pub s1: String,
    pub s2: String,
    /// Every user's email, by id.
    pub emails: HashMap<String, String>,
}

pub fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn url(listener: &tokio::net::TcpListener) -> String {
    format!("https://{}", listener.local_addr().unwrap())
}

impl World {
    pub async fn new(label: &str) -> Self {
        let clock = ManualClock::starting_now();
        let support_db = TestDatabase::new(&format!("{label}_s")).await;
        let (peers, support_l) = Peers::start(
            label,
            ServiceName::Support,
            &support_db,
            clock.clone(),
            |_| {},
        )
        .await;
        // Support reaches account through a call counter.
        let mut config = peers.config.clone();
        let account_channel = peers.channel(ServiceName::Account).await;
        let batch_checks = Arc::new(AtomicUsize::new(0));
        config.account.url = Some(count_calls(account_channel.clone(), batch_checks.clone()).await);
        let support = tenancy_testkit::start_on::<tenancy_support::SupportService>(
            support_l,
            tenancy_testkit::test_context(config, Arc::new(clock.clone())),
            clock.clone(),
        )
        .await;
        let mut w = Self {
            channel: support.channel().await,
            identity_channel: peers.channel(ServiceName::Identity).await,
            contacts_channel: peers.channel(ServiceName::Contacts).await,
            account_channel,
            _support: support,
            _peers: peers,
            clock,
            batch_checks,
            account_id: String::new(),
            owner: String::new(),
            all: String::new(),
            selected: String::new(),
            none: String::new(),
            outsider: String::new(),
            staff_user: String::new(),
            s1: String::new(),
            s2: String::new(),
            emails: HashMap::new(),
        };
        w.owner = w.user("owner").await;
        w.account_id = w.create_account(&w.owner.clone()).await;
        w.s1 = w.register_service("s1").await;
        w.s2 = w.register_service("s2").await;
        w.all = w.user("all").await;
        w.selected = w.user("selected").await;
        w.none = w.user("none").await;
        w.outsider = w.user("outsider").await;
        w.staff_user = w.staff_member("staff").await;
        let (all, selected, none, s1) = (
            w.all.clone(),
            w.selected.clone(),
            w.none.clone(),
            w.s1.clone(),
        );
        w.add_member(&all, apb::ServiceAccess::All, &[]).await;
        w.add_member(&selected, apb::ServiceAccess::Selected, &[s1])
            .await;
        w.add_member(&none, apb::ServiceAccess::None, &[]).await;
        w
    }

    fn signed(&self, principal: Principal) -> Caller {
        Caller::new(principal, Arc::new(self.clock.clone()))
    }

    fn as_service(&self) -> Caller {
        self.signed(Principal::service("support-tests"))
    }

    /// A member principal with a fresh authentication.
    fn member_principal(&self, user: &str, account: &str, role: Role) -> Principal {
        let mut p = tenancy_testkit::member(user, account, role);
        p.auth_time = Some(self.clock.now().seconds());
        p
    }

    pub fn identity_internal(&self) -> IdentityInternalServiceClient<Signed> {
        IdentityInternalServiceClient::with_interceptor(
            self.identity_channel.clone(),
            self.as_service(),
        )
    }

    pub fn account_internal(&self) -> AccountInternalServiceClient<Signed> {
        AccountInternalServiceClient::with_interceptor(
            self.account_channel.clone(),
            self.as_service(),
        )
    }

    pub fn contacts_internal(&self) -> ContactsInternalServiceClient<Signed> {
        ContactsInternalServiceClient::with_interceptor(
            self.contacts_channel.clone(),
            self.as_service(),
        )
    }

    /// AccountService as the owner of `account` (the test account if None).
    pub fn owner_account(&self, account: Option<&str>) -> AccountServiceClient<Signed> {
        let account = account.unwrap_or(&self.account_id);
        AccountServiceClient::with_interceptor(
            self.account_channel.clone(),
            self.signed(self.member_principal(&self.owner, account, Role::Owner)),
        )
    }

    /// ContactsService as the owner.
    pub fn owner_contacts(&self) -> ContactsServiceClient<Signed> {
        ContactsServiceClient::with_interceptor(
            self.contacts_channel.clone(),
            self.signed(self.member_principal(&self.owner, &self.account_id, Role::Owner)),
        )
    }

    /// ContactsService without credentials (public methods).
    pub fn public_contacts(&self) -> ContactsServiceClient<Signed> {
        ContactsServiceClient::with_interceptor(
            self.contacts_channel.clone(),
            self.signed(Principal::anonymous(None, id())),
        )
    }

    /// A user with a password, created through identity's internal API.
    pub async fn user(&mut self, name: &str) -> String {
        let email = format!("{name}-{}@example.com", uuid::Uuid::new_v4().simple());
        let mut identity = self.identity_internal();
        let user = identity
            .ensure_user(ipb::EnsureUserRequest {
                email: email.clone(),
                name: name.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        identity
            .set_initial_password(ipb::SetInitialPasswordRequest {
                user_id: user.id.clone(),
                password: PASSWORD.to_owned(),
                name: String::new(),
            })
            .await
            .unwrap();
        self.emails.insert(user.id.clone(), email);
        user.id
    }

    /// A user made a member of the support team (`tenancy admin grant-staff`).
    pub async fn staff_member(&mut self, name: &str) -> String {
        let user = self.user(name).await;
        self.identity_internal()
            .grant_staff(ipb::GrantStaffRequest {
                email: self.emails[&user].clone(),
            })
            .await
            .unwrap();
        user
    }

    /// A new account owned by `owner`.
    pub async fn create_account(&self, owner: &str) -> String {
        AccountServiceClient::with_interceptor(
            self.account_channel.clone(),
            self.signed(self.member_principal(owner, "", Role::Unspecified)),
        )
        .create_account(apb::CreateAccountRequest {
            account: Some(apb::Account {
                r#type: 2,
                name: "Acme".into(),
                legal_name: "Acme B.V.".into(),
                country_code: "NL".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap()
        .id
    }

    /// A service of the account, registered as billing would.
    async fn register_service(&self, name: &str) -> String {
        self.account_internal()
            .register_service(apb::RegisterServiceRequest {
                service: Some(apb::Service {
                    account_id: self.account_id.clone(),
                    kind: "vps".into(),
                    name: name.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .service
            .unwrap()
            .id
    }

    fn scope(mode: apb::ServiceAccess, selected: &[String]) -> apb::AccessScope {
        apb::AccessScope {
            portal_access: true,
            service_access: mode as i32,
            selected_service_ids: selected.to_vec(),
            ..Default::default()
        }
    }

    /// Adds `user` as a MANAGER with `mode` and portal access.
    async fn add_member(&self, user: &str, mode: apb::ServiceAccess, selected: &[String]) {
        let mut owner = self.owner_account(None);
        owner
            .add_member(apb::AddMemberRequest {
                email: self.emails[user].clone(),
                name: "Member".into(),
                role: Role::Manager as i32,
                access_scope: Some(Self::scope(mode, selected)),
            })
            .await
            .unwrap();
        owner
            .set_member_access(apb::SetMemberAccessRequest {
                user_id: user.to_owned(),
                access_scope: Some(Self::scope(mode, selected)),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["portal_access".into()],
                }),
            })
            .await
            .unwrap();
    }

    /// Changes a member's service access, as the owner.
    pub async fn set_scope(&self, user: &str, mode: apb::ServiceAccess, selected: &[String]) {
        self.owner_account(None)
            .set_member_access(apb::SetMemberAccessRequest {
                user_id: user.to_owned(),
                access_scope: Some(Self::scope(mode, selected)),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["service_access".into(), "selected_service_ids".into()],
                }),
            })
            .await
            .unwrap();
    }

    /// Suspends a member, as the owner.
    pub async fn suspend(&self, user: &str) {
        self.owner_account(None)
            .suspend_member(apb::SuspendMemberRequest {
                user_id: user.to_owned(),
            })
            .await
            .unwrap();
    }

    /// Ends a membership for good, as the owner.
    pub async fn revoke(&self, user: &str) {
        self.owner_account(None)
            .revoke_member(apb::RevokeMemberRequest {
                user_id: user.to_owned(),
            })
            .await
            .unwrap();
    }

    /// Logs `user` in; returns the session id.
    pub async fn login(&self, user: &str) -> String {
        let response = IdentityServiceClient::with_interceptor(
            self.identity_channel.clone(),
            self.signed(Principal::anonymous(None, id())),
        )
        .login(ipb::LoginRequest {
            email: self.emails[user].clone(),
            password: PASSWORD.to_owned(),
            account_id: self.account_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
        match response.outcome.unwrap() {
            ipb::login_response::Outcome::Session(s) => s.session_id,
            other => panic!("{other:?}"),
        }
    }

    /// The owner sets `user`'s code word as they would in the portal
    /// (user is logged in, recently authenticated).
    pub async fn set_code_word(&self, user: &str, word: &str) {
        let session = self.login(user).await;
        let mut p = self.member_principal(user, &self.account_id, Role::Owner);
        p.session_id = Some(session);
        IdentityServiceClient::with_interceptor(self.identity_channel.clone(), self.signed(p))
            .set_code_word(ipb::SetCodeWordRequest {
                code_word: word.to_owned(),
            })
            .await
            .unwrap();
    }

    /// A SupportService client for `user` in the account as MANAGER (OWNER
    /// for the owner).
    pub fn customer(&self, user: &str) -> Customer {
        let role = if user == self.owner {
            Role::Owner
        } else {
            Role::Manager
        };
        SupportServiceClient::with_interceptor(
            self.channel.clone(),
            self.signed(self.member_principal(user, &self.account_id, role)),
        )
    }

    /// A SupportService client for `user` as OWNER of `account`.
    pub fn customer_of(&self, user: &str, account: &str) -> Customer {
        SupportServiceClient::with_interceptor(
            self.channel.clone(),
            self.signed(self.member_principal(user, account, Role::Owner)),
        )
    }

    fn staff_principal(&self, account: Option<&str>) -> Principal {
        Principal {
            user_id: Some(self.staff_user.clone()),
            account_id: account.map(str::to_owned),
            staff: true,
            token_kind: TokenKind::Portal,
            session_id: Some("staff-session".to_owned()),
            request_id: id(),
            ..Principal::default()
        }
    }

    /// A SupportStaffService client for the staff user.
    pub fn staff(&self) -> Staff {
        SupportStaffServiceClient::with_interceptor(
            self.channel.clone(),
            self.signed(self.staff_principal(None)),
        )
    }

    /// A SupportService client for the staff user with the account
    /// selected (the "or staff" methods).
    pub fn staff_as_customer_api(&self) -> Customer {
        SupportServiceClient::with_interceptor(
            self.channel.clone(),
            self.signed(self.staff_principal(Some(&self.account_id))),
        )
    }

    /// The owner grants the support team access for `ttl`.
    pub async fn grant(&self, ttl: Duration) {
        self.owner_account(None)
            .grant_support_access(apb::GrantSupportAccessRequest {
                expiration: Some(apb::grant_support_access_request::Expiration::Ttl(
                    prost_types::Duration {
                        seconds: i64::try_from(ttl.as_secs()).unwrap(),
                        nanos: 0,
                    },
                )),
                note: "ticket".into(),
            })
            .await
            .unwrap();
    }

    /// The owner ends the support team's access.
    pub async fn revoke_grant(&self) {
        self.owner_account(None)
            .revoke_support_access(apb::RevokeSupportAccessRequest {})
            .await
            .unwrap();
    }

    /// The staff events of the account's audit log, oldest first.
    pub async fn staff_audit(&self) -> Vec<apb::AuditEvent> {
        let mut events = self
            .owner_account(None)
            .list_audit_events(apb::ListAuditEventsRequest {
                page_size: 500,
                actor_kind: apb::ActorKind::Staff as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .events;
        events.reverse();
        events
    }

    /// Outbox messages of the account whose idempotency key starts with
    /// `prefix`.
    pub async fn outbox(&self, prefix: &str) -> Vec<cpb::OutboxMessage> {
        self.contacts_internal()
            .list_outbox_messages(cpb::ListOutboxMessagesRequest {
                page_size: 500,
                account_id: self.account_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .messages
            .into_iter()
            .filter(|m| m.request_id.starts_with(prefix))
            .collect()
    }

    /// Waits (up to 30 s: a loaded CI machine is slow) until at least `n` outbox messages match `prefix`
    /// (notifications are sent after the reply commits); returns them.
    pub async fn outbox_at_least(&self, prefix: &str, n: usize) -> Vec<cpb::OutboxMessage> {
        for _ in 0..1500 {
            let seen = self.outbox(prefix).await;
            if seen.len() >= n {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.outbox(prefix).await
    }

    /// The users the messages went to (sorted); unknown addresses as is.
    pub fn recipients(&self, messages: &[cpb::OutboxMessage]) -> Vec<String> {
        let by_email: HashMap<&str, &str> = self
            .emails
            .iter()
            .map(|(u, e)| (e.as_str(), u.as_str()))
            .collect();
        let mut to: Vec<String> = messages
            .iter()
            .map(|m| {
                let email = m.to.as_ref().unwrap().email.as_str();
                by_email.get(email).copied().unwrap_or(email).to_owned()
            })
            .collect();
        to.sort();
        to
    }

    /// Creates a ticket as `user` about `service` (None: general).
    pub async fn ticket(&self, user: &str, service: Option<&str>) -> pb::Ticket {
        self.customer(user)
            .create_ticket(create(service))
            .await
            .unwrap()
            .into_inner()
            .ticket
            .unwrap()
    }
}

/// A loopback pass-through to the real account service that counts the
/// BatchCheckAccess calls going through it: the only way to observe from
/// outside that a list costs one access check, not one per ticket.
async fn count_calls(account: Channel, batch_checks: Arc<AtomicUsize>) -> String {
    #[derive(Clone)]
    struct Counter {
        account: Channel,
        batch_checks: Arc<AtomicUsize>,
    }
    impl tonic::server::NamedService for Counter {
        const NAME: &'static str = "tenancy.account.v1.AccountInternalService";
    }
    impl tonic::codegen::Service<http::Request<tonic::body::Body>> for Counter {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

        fn poll_ready(
            &mut self,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
            if request.uri().path().ends_with("/BatchCheckAccess") {
                self.batch_checks.fetch_add(1, Ordering::SeqCst);
            }
            let mut account = self.account.clone();
            Box::pin(async move {
                if let Err(e) = futures::future::poll_fn(|cx| account.poll_ready(cx)).await {
                    return Ok(tonic::Status::from(tenancy_runtime::Error::unavailable(
                        e.to_string(),
                    ))
                    .into_http());
                }
                Ok(match account.call(request).await {
                    Ok(response) => response.map(tonic::body::Body::new),
                    Err(e) => {
                        tonic::Status::from(tenancy_runtime::Error::unavailable(e.to_string()))
                            .into_http()
                    }
                })
            })
        }
    }
    let listener = tenancy_testkit::loopback().await;
    let address = url(&listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(Counter {
                account,
                batch_checks,
            })
            // Support dials it as the account service: mutual TLS with
            // account's certificate.
            .serve_with_incoming(
                tenancy_testkit::tls_for(tenancy_runtime::tls::Caller::Account).incoming(listener),
            ),
    );
    address
}

pub fn create(service: Option<&str>) -> pb::CreateTicketRequest {
    pb::CreateTicketRequest {
        subject: "Server does not boot".to_owned(),
        body: "It hangs at <b>GRUB</b>.".to_owned(),
        service_id: service.unwrap_or_default().to_owned(),
        priority: pb::TicketPriority::High as i32,
        category: pb::TicketCategory::Technical as i32,
        ..Default::default()
    }
}

/// Asserts a gRPC code and ErrorInfo reason.
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    reason: Reason,
) {
    let status = result.expect_err("must be refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(tenancy_testkit::refusal(&status), reason, "{status:?}");
}
