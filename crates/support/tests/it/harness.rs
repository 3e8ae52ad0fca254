//! A support server with the REAL account, identity and contacts services
//! (testkit's [`Acme`] fixture: each on its own database and loopback port,
//! all on one injected clock); the Acme account set up through their APIs
//! as a client would (users with passwords, an owner, managers of each
//! scope, two services, a staff user), and clients for members of each
//! scope and for staff.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tenancy_proto::account as apb;
use tenancy_proto::support::{
    self as pb, support_service_client::SupportServiceClient,
    support_staff_service_client::SupportStaffServiceClient,
};
use tenancy_runtime::config::ServiceName;
use tenancy_runtime::{Principal, Reason};
use tenancy_testkit::TestChannel as Channel;
use tenancy_testkit::{Acme, Role, Running, Signed, TestDatabase, TokenKind};

pub type Customer = SupportServiceClient<Signed>;
pub type Staff = SupportStaffServiceClient<Signed>;

/// The Acme account with an owner and managers of each scope, two services
/// (`s1` selected for the SELECTED member, `s2` not), an outsider with no
/// membership, and a staff user; support serving beside its peers.
pub struct World {
    /// Support itself; stops when dropped.
    _support: Running,
    /// Support's database, for what a test reads behind its back (the
    /// outbox of calls).
    pub support_db: TestDatabase,
    /// The peers and the account (dereferenced to: `owner`, `account_id`,
    /// `emails`, `clock`, the peer clients, ...).
    acme: Acme,
    pub channel: Channel,
    /// BatchCheckAccess calls support made to account (see [`count_calls`]).
    pub batch_checks: Arc<AtomicUsize>,
    pub all: String,
    pub selected: String,
    pub none: String,
    pub outsider: String,
    pub staff_user: String,
    pub s1: String,
    pub s2: String,
}

impl Deref for World {
    type Target = Acme;

    fn deref(&self) -> &Acme {
        &self.acme
    }
}

impl DerefMut for World {
    fn deref_mut(&mut self) -> &mut Acme {
        &mut self.acme
    }
}

pub fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn url(listener: &tokio::net::TcpListener) -> String {
    format!("https://{}", listener.local_addr().unwrap())
}

impl World {
    pub async fn new(label: &str) -> Self {
        let support_db = TestDatabase::new(&format!("{label}_s")).await;
        let (mut acme, support_l) =
            Acme::start(label, ServiceName::Support, &support_db, |_| {}).await;
        // Support reaches account through a call counter.
        let mut config = acme.config().clone();
        let batch_checks = Arc::new(AtomicUsize::new(0));
        config.account.url = Some(count_calls(acme.account_channel(), batch_checks.clone()).await);
        let support = tenancy_testkit::start_on::<tenancy_support::SupportService>(
            support_l,
            acme.context(config),
            acme.clock.clone(),
        )
        .await;
        acme.found("owner").await;
        let s1 = acme.register_service("s1").await;
        let s2 = acme.register_service("s2").await;
        let all = acme.user("all").await;
        let selected = acme.user("selected").await;
        let none = acme.user("none").await;
        let outsider = acme.user("outsider").await;
        let staff_user = acme.staff_member("staff").await;
        acme.add_manager(&all, apb::ServiceAccess::All, &[]).await;
        acme.add_manager(
            &selected,
            apb::ServiceAccess::Selected,
            std::slice::from_ref(&s1),
        )
        .await;
        acme.add_manager(&none, apb::ServiceAccess::None, &[]).await;
        Self {
            channel: support.channel().await,
            _support: support,
            support_db,
            acme,
            batch_checks,
            all,
            selected,
            none,
            outsider,
            staff_user,
            s1,
            s2,
        }
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
        self.acme.grant_support(ttl).await;
    }

    /// The owner ends the support team's access.
    pub async fn revoke_grant(&self) {
        self.acme.revoke_support().await;
    }

    /// The staff events of the account's audit log, oldest first.
    pub async fn staff_audit(&self) -> Vec<apb::AuditEvent> {
        self.acme.audit(apb::ActorKind::Staff).await
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
