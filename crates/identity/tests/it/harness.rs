//! Starts the identity service on a fresh database with a manual clock,
//! with the REAL contacts service on loopback (its own test database)
//! behind identity's real `ContactsMailer`; emails are read back from the
//! contacts outbox (`ContactsInternalService.ListOutboxMessages`); and
//! the REAL account service (own test database) answering identity's
//! membership questions, with accounts and members made through its API.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use tenancy_identity::IdentityService;
use tenancy_identity::peers::{ContactsMailer, Mailer, OutgoingEmail};
use tenancy_proto::account::{self as apb, account_service_client::AccountServiceClient};
use tenancy_proto::contacts::contacts_internal_service_client::ContactsInternalServiceClient;
use tenancy_proto::contacts::{self as cpb, ListOutboxMessagesRequest};
use tenancy_proto::identity::identity_internal_service_client::IdentityInternalServiceClient;
use tenancy_proto::identity::identity_service_client::IdentityServiceClient;
use tenancy_runtime::config::ServiceName;
use tenancy_runtime::principal::ServiceAuth;
use tenancy_runtime::shutdown::{self, ShutdownTrigger};
use tenancy_runtime::{Clock as _, Error, ManualClock, Principal, TenancyService, Timestamp};
use tenancy_testkit::TestChannel as Channel;
use tenancy_testkit::{Caller, Peers, TestDatabase, test_context};
use tonic::service::interceptor::InterceptedService;

/// A gate in front of the real `ContactsMailer`: while shut (`Outbox::hold`),
/// sending waits. Kept only because one test needs an outbox that is slow
/// on purpose (RequestPasswordReset must answer without waiting for it);
/// the real contacts service cannot be made to stall on demand. Messages
/// still go to the real contacts outbox.
#[derive(Clone, Default)]
struct Gate {
    lock: Arc<tokio::sync::RwLock<()>>,
    shut: Arc<Mutex<Option<tokio::sync::OwnedRwLockWriteGuard<()>>>>,
}

struct GatedMailer {
    gate: Gate,
    inner: ContactsMailer,
}

#[tonic::async_trait]
impl Mailer for GatedMailer {
    async fn send(&self, email: OutgoingEmail) -> Result<(), Error> {
        let _open = self.gate.lock.read().await;
        self.inner.send(email).await
    }

    async fn send_phone_code(
        &self,
        code: tenancy_identity::peers::OutgoingPhoneCode,
    ) -> Result<(), Error> {
        self.inner.send_phone_code(code).await
    }
}

/// The contacts outbox, read back through the internal API.
#[derive(Clone)]
pub struct Outbox {
    client: ContactsInternalServiceClient<InterceptedService<Channel, Caller>>,
    /// Set when identity sends through a [`Gate`] (`Env::start_held`).
    gate: Option<Gate>,
}

impl Outbox {
    /// Makes sending wait until `release` (only in `Env::start_held`).
    pub async fn hold(&self) {
        let gate = self.gate.as_ref().expect("started with Env::start_held");
        let guard = gate.lock.clone().write_owned().await;
        *gate.shut.lock() = Some(guard);
    }

    pub fn release(&self) {
        if let Some(gate) = &self.gate {
            gate.shut.lock().take();
        }
    }

    /// Every message to `to` (all messages if empty), newest first.
    async fn to(&self, to: &str) -> Vec<cpb::OutboxMessage> {
        let mut out = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .client
                .clone()
                .list_outbox_messages(ListOutboxMessagesRequest {
                    page_size: 500,
                    page_token,
                    to_email: to.to_owned(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            out.extend(page.messages);
            if page.next_page_token.is_empty() {
                return out;
            }
            page_token = page.next_page_token;
        }
    }

    /// Waits (up to 30 s: a loaded CI machine is slow) for a token under `key` to `to` other than `not`.
    pub async fn wait_token(&self, to: &str, key: &str, not: Option<&str>) -> String {
        for _ in 0..1500 {
            if let Some(t) = self
                .last_token(to, key)
                .await
                .filter(|t| Some(t.as_str()) != not)
            {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no new {key} message to {to}");
    }

    /// The variable `key` of the last message to `to` that has it (security
    /// notices may have followed).
    pub async fn last_value(&self, to: &str, key: &str) -> Option<String> {
        self.to(to)
            .await
            .into_iter()
            .find_map(|m| m.template_data.get(key).cloned())
    }

    /// The token in the last link sent to `to` under `key`.
    pub async fn last_token(&self, to: &str, key: &str) -> Option<String> {
        self.last_value(to, key)
            .await
            .and_then(|url| url.split("token=").nth(1).map(str::to_owned))
    }

    pub async fn count_to(&self, to: &str) -> usize {
        self.to(to).await.len()
    }

    /// The templates of the messages sent to `to`, oldest first.
    pub async fn templates_to(&self, to: &str) -> Vec<cpb::MessageTemplate> {
        self.to(to)
            .await
            .iter()
            .rev()
            .map(|m| m.template())
            .collect()
    }

    /// Every message in the outbox, newest first.
    pub async fn all(&self) -> Vec<cpb::OutboxMessage> {
        self.to("").await
    }

    /// The messages to `to` made from `template`, oldest first.
    pub async fn sent(&self, to: &str, template: cpb::MessageTemplate) -> Vec<cpb::OutboxMessage> {
        let mut messages: Vec<_> = self
            .to(to)
            .await
            .into_iter()
            .filter(|m| m.template() == template)
            .collect();
        messages.reverse();
        messages
    }
}

pub type Internal = IdentityInternalServiceClient<InterceptedService<Channel, ServiceAuth>>;
type AccountClient = AccountServiceClient<InterceptedService<Channel, Caller>>;
pub type Public = IdentityServiceClient<InterceptedService<Channel, Caller>>;

pub struct Env {
    pub clock: ManualClock,
    pub channel: Channel,
    pub outbox: Outbox,
    /// The real contacts and account services.
    peers: Peers,
    pub db: TestDatabase,
    config: tenancy_runtime::config::Config,
    _stop: ShutdownTrigger,
}

/// A second identity server on the same database (another replica).
pub struct Replica {
    pub channel: Channel,
    clock: ManualClock,
    _stop: ShutdownTrigger,
}

impl Replica {
    pub fn internal(&self) -> Internal {
        IdentityInternalServiceClient::with_interceptor(self.channel.clone(), ServiceAuth::new())
    }

    pub fn as_principal(&self, principal: Principal) -> Public {
        IdentityServiceClient::with_interceptor(
            self.channel.clone(),
            Caller::new(principal, Arc::new(self.clock.clone())),
        )
    }
}

pub const PASSWORD: &str = "correct horse battery staple";

impl Env {
    pub async fn start(label: &str) -> Self {
        Self::start_with(label, |_| {}).await
    }

    pub async fn start_with(
        label: &str,
        tweak: impl FnOnce(&mut tenancy_runtime::config::Config),
    ) -> Self {
        Self::open(label, tweak, false).await
    }

    /// Like `start`, with a gate in front of the mailer (`Outbox::hold`).
    pub async fn start_held(label: &str) -> Self {
        Self::open(label, |_| {}, true).await
    }

    async fn open(
        label: &str,
        tweak: impl FnOnce(&mut tenancy_runtime::config::Config),
        held: bool,
    ) -> Self {
        let db = TestDatabase::new(label).await;
        let clock = ManualClock::new(Timestamp(1_700_000_000_000));
        let (peers, listener) =
            Peers::start(label, ServiceName::Identity, &db, clock.clone(), tweak).await;
        let config = peers.config.clone();
        let outbox = Outbox {
            client: ContactsInternalServiceClient::with_interceptor(
                peers.channel(ServiceName::Contacts).await,
                Caller::new(
                    Principal::service("identity-tests"),
                    Arc::new(clock.clone()),
                ),
            ),
            gate: held.then(Gate::default),
        };
        let (channel, trigger) = serve(listener, &config, &clock, &outbox).await;
        Self {
            clock,
            channel,
            outbox,
            peers,
            db,
            config,
            _stop: trigger,
        }
    }

    /// Another replica on the same database, clock and ports.
    pub async fn replica(&self) -> Replica {
        self.replica_with(self.config.clone()).await
    }

    /// A replica whose account service never answers: its address accepts
    /// connections (the kernel does) but nothing ever reads or replies, as
    /// with a hung peer or a network that drops packets.
    pub async fn replica_without_accounts(&self) -> (Replica, tokio::net::TcpListener) {
        let silent = tenancy_testkit::loopback().await;
        let mut config = self.config.clone();
        config.service_mut(ServiceName::Account).url =
            Some(format!("http://{}", silent.local_addr().unwrap()));
        (self.replica_with(config).await, silent)
    }

    /// Why identity refuses to open with this configuration changed by
    /// `tweak`: the error's text.
    pub async fn open_refusal(
        &self,
        tweak: impl FnOnce(&mut tenancy_runtime::config::Config),
    ) -> String {
        let mut config = self.config.clone();
        tweak(&mut config);
        let context = test_context(config, Arc::new(self.clock.clone()))
            .for_part(tenancy_runtime::tls::Caller::Identity);
        let mailer: Arc<dyn Mailer> = Arc::new(ContactsMailer::new(
            context.channel_to(ServiceName::Contacts).unwrap(),
            context.service_auth(),
        ));
        match IdentityService::open_with_mailer(context, mailer).await {
            Ok(_) => panic!("identity opened"),
            Err(e) => e.to_string(),
        }
    }

    async fn replica_with(&self, config: tenancy_runtime::config::Config) -> Replica {
        let (channel, trigger) = serve(
            tenancy_testkit::loopback().await,
            &config,
            &self.clock,
            &self.outbox,
        )
        .await;
        Replica {
            channel,
            clock: self.clock.clone(),
            _stop: trigger,
        }
    }

    pub fn internal(&self) -> Internal {
        IdentityInternalServiceClient::with_interceptor(self.channel.clone(), ServiceAuth::new())
    }

    /// A client calling as `principal` (signed like the gateway does).
    pub fn as_principal(&self, principal: Principal) -> Public {
        IdentityServiceClient::with_interceptor(
            self.channel.clone(),
            Caller::new(principal, Arc::new(self.clock.clone())),
        )
    }

    /// An anonymous client from an address.
    pub fn anonymous(&self, ip: &str) -> Public {
        self.as_principal(Principal {
            client_ip: Some(ip.parse().unwrap()),
            user_agent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0".into(),
            request_id: "r".into(),
            ..Principal::default()
        })
    }

    /// A client calling with a portal session of `user`.
    pub fn in_session(&self, user: &str, session: &str, account: Option<&str>) -> Public {
        self.as_principal(Principal {
            user_id: Some(user.into()),
            account_id: account.map(str::to_owned),
            session_id: Some(session.into()),
            token_kind: tenancy_testkit::TokenKind::Portal,
            client_ip: Some("198.51.100.7".parse().unwrap()),
            user_agent: "tests".into(),
            request_id: "r".into(),
            ..Principal::default()
        })
    }

    /// Logs in (no 2FA) and returns the session.
    pub async fn login(&self, email: &str) -> tenancy_proto::identity::SessionCredentials {
        self.login_from("198.51.100.7", email).await
    }

    /// Logs in (no 2FA) from `ip` and returns the session.
    pub async fn login_from(
        &self,
        ip: &str,
        email: &str,
    ) -> tenancy_proto::identity::SessionCredentials {
        let r = self
            .anonymous(ip)
            .login(tenancy_proto::identity::LoginRequest {
                email: email.into(),
                password: PASSWORD.into(),
                account_id: String::new(),
                unlock_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        match r.outcome.unwrap() {
            tenancy_proto::identity::login_response::Outcome::Session(s) => s,
            other => panic!("{other:?}"),
        }
    }

    /// RefreshSession from the usual address; returns the rotated session.
    pub async fn refresh(
        &self,
        refresh_token: String,
    ) -> tenancy_proto::identity::SessionCredentials {
        self.anonymous("198.51.100.7")
            .refresh_session(tenancy_proto::identity::RefreshSessionRequest { refresh_token })
            .await
            .unwrap()
            .into_inner()
            .session
            .unwrap()
    }

    /// An account service client for `user` (fresh login, no account
    /// selected, or `role` in `account`).
    fn accounts_as(&self, user: &str, account: &str, role: tenancy_testkit::Role) -> AccountClient {
        let mut p = tenancy_testkit::member(user, account, role);
        p.auth_time = Some(self.clock.now().seconds());
        AccountServiceClient::with_interceptor(
            self.account_channel(),
            Caller::new(p, Arc::new(self.clock.clone())),
        )
    }

    fn account_channel(&self) -> Channel {
        Channel::new(
            tenancy_runtime::tls::Caller::Account,
            self.peers.address(ServiceName::Account),
        )
    }

    /// A new account created by `owner` through the real account service
    /// (its ACTIVE owner with portal access); returns its id.
    pub async fn create_account(&self, owner: &str) -> String {
        self.accounts_as(owner, "", tenancy_testkit::Role::Unspecified)
            .create_account(apb::CreateAccountRequest {
                account: Some(apb::Account {
                    r#type: apb::AccountType::Company as i32,
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

    /// Makes the user with `email` an ACTIVE member (manager, portal access)
    /// of `account`: `owner` invites, the user accepts the emailed link.
    pub async fn join(&self, account: &str, owner: &str, email: &str) {
        self.accounts_as(owner, account, tenancy_testkit::Role::Owner)
            .invite_member(apb::InviteMemberRequest {
                email: email.into(),
                role: tenancy_testkit::Role::Manager as i32,
                access_scope: Some(apb::AccessScope {
                    service_access: apb::ServiceAccess::All as i32,
                    portal_access: true,
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
        let token = self.outbox.wait_token(email, "accept_url", None).await;
        AccountServiceClient::with_interceptor(
            self.account_channel(),
            Caller::new(
                Principal::anonymous(None, "r"),
                Arc::new(self.clock.clone()),
            ),
        )
        .accept_invitation(apb::AcceptInvitationRequest {
            token,
            ..Default::default()
        })
        .await
        .unwrap();
    }

    /// `owner` adds the person with `email` to `account` (AddMember: the
    /// account service creates them through identity's EnsureUser when
    /// they have no user yet), typing `name` for them.
    pub async fn add_member(&self, account: &str, owner: &str, email: &str, name: &str) {
        self.accounts_as(owner, account, tenancy_testkit::Role::Owner)
            .add_member(apb::AddMemberRequest {
                email: email.into(),
                name: name.into(),
                role: tenancy_testkit::Role::Manager as i32,
                access_scope: Some(apb::AccessScope {
                    service_access: apb::ServiceAccess::All as i32,
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }

    /// `owner` makes `account` enforce 2FA with no grace period: members
    /// without a second factor are past their deadline at once.
    pub async fn enforce_mfa(&self, account: &str, owner: &str) {
        self.accounts_as(owner, account, tenancy_testkit::Role::Owner)
            .update_security_settings(apb::UpdateSecuritySettingsRequest {
                settings: Some(apb::SecuritySettings {
                    enforce_mfa: true,
                    mfa_grace_period: Some(prost_types::Duration {
                        seconds: 0,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["enforce_mfa".into(), "mfa_grace_period".into()],
                }),
                force: false,
            })
            .await
            .unwrap();
    }

    /// `owner` suspends `user` in `account` through the account service
    /// (which ends the member's access there through identity, as in
    /// production).
    pub async fn suspend(&self, account: &str, owner: &str, user: &str) {
        self.accounts_as(owner, account, tenancy_testkit::Role::Owner)
            .suspend_member(apb::SuspendMemberRequest {
                user_id: user.into(),
            })
            .await
            .unwrap();
    }

    /// `owner` reactivates `user`'s suspended membership of `account`.
    pub async fn reactivate(&self, account: &str, owner: &str, user: &str) {
        self.accounts_as(owner, account, tenancy_testkit::Role::Owner)
            .reactivate_member(apb::ReactivateMemberRequest {
                user_id: user.into(),
            })
            .await
            .unwrap();
    }

    /// `owner` ends `user`'s membership of `account` for good.
    pub async fn revoke(&self, account: &str, owner: &str, user: &str) {
        self.accounts_as(owner, account, tenancy_testkit::Role::Owner)
            .revoke_member(apb::RevokeMemberRequest {
                user_id: user.into(),
            })
            .await
            .unwrap();
    }

    /// Suspends a membership in the account service's database, behind its
    /// back: the account service then answers "not active", but identity is
    /// never told (as when its RevokeAccountAccess call is lost), so the
    /// test sees identity's own membership check rather than the revocation.
    pub async fn suspend_behind_accounts_back(&self, user: &str, account: &str) {
        use sea_orm::ConnectionTrait;
        let db = sea_orm::Database::connect(&self.peers.database(ServiceName::Account).url)
            .await
            .unwrap();
        let n = db
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                db.get_database_backend(),
                "UPDATE account_members SET status = 2 WHERE user_id = $1 AND account_id = $2",
                [user.into(), account.into()],
            ))
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(n, 1);
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Signs up and verifies a user; returns the user id.
    pub async fn verified_user(&self, email: &str) -> String {
        let mut c = self.anonymous("198.51.100.1");
        c.sign_up(tenancy_proto::identity::SignUpRequest {
            email: email.into(),
            password: PASSWORD.into(),
            name: "Test User".into(),
            phone: String::new(),
        })
        .await
        .unwrap();
        let token = self.outbox.wait_token(email, "verify_url", None).await;
        c.verify_email(tenancy_proto::identity::VerifyEmailRequest { token })
            .await
            .unwrap();
        let users = self
            .internal()
            .ensure_user(tenancy_proto::identity::EnsureUserRequest {
                email: email.into(),
                name: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        users.user.unwrap().id
    }
}

/// Opens an identity server and serves it on a loopback port.
async fn serve(
    listener: tokio::net::TcpListener,
    config: &tenancy_runtime::config::Config,
    clock: &ManualClock,
    outbox: &Outbox,
) -> (Channel, ShutdownTrigger) {
    let context = test_context(config.clone(), Arc::new(clock.clone()))
        .for_part(tenancy_runtime::tls::Caller::Identity);
    let contacts = ContactsMailer::new(
        context.channel_to(ServiceName::Contacts).unwrap(),
        context.service_auth(),
    );
    let mailer: Arc<dyn Mailer> = match &outbox.gate {
        Some(gate) => Arc::new(GatedMailer {
            gate: gate.clone(),
            inner: contacts,
        }),
        None => Arc::new(contacts),
    };
    // Membership questions go to the real account service (config).
    let service = IdentityService::open_with_mailer(context, mailer)
        .await
        .unwrap();
    let address = listener.local_addr().unwrap();
    let (trigger, stop) = shutdown::channel();
    tokio::spawn(async move {
        if let Err(error) = service.serve(listener, stop).await {
            eprintln!("identity stopped: {error}");
        }
    });
    let channel = Channel::new(tenancy_runtime::tls::Caller::Identity, address);
    (channel, trigger)
}

/// The ErrorInfo reason of a status, checked against the catalogue.
pub fn reason(status: &tonic::Status) -> tenancy_testkit::Reason {
    tenancy_testkit::refusal(status)
}

#[allow(dead_code)]
pub fn map<K: std::hash::Hash + Eq, V>(pairs: Vec<(K, V)>) -> HashMap<K, V> {
    pairs.into_iter().collect()
}
