//! Integration tests of the account service over real gRPC, on SQLite by
//! default and on PostgreSQL with TENANCY_TEST_DATABASE_URL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub
)]

mod access;
mod accounts;
mod cache;
mod e2e;
mod invitations;
mod limits;
mod members;
mod notify;
mod peer_calls;
mod pruning;
mod rules;
mod security;
mod watch;

use std::sync::Arc;

use tenancy_account::AccountService;
use tenancy_proto::account::{
    self as pb, account_internal_service_client::AccountInternalServiceClient,
    account_service_client::AccountServiceClient,
};
use tenancy_proto::contacts::{
    self as cpb, MessageTemplate, contacts_internal_service_client::ContactsInternalServiceClient,
};
use tenancy_proto::identity::{
    self as ipb, identity_internal_service_client::IdentityInternalServiceClient,
    identity_service_client::IdentityServiceClient,
};
use tenancy_runtime::config::{Config, ServiceName};
use tenancy_runtime::{ManualClock, Principal};
use tenancy_testkit::TestChannel as Channel;
use tenancy_testkit::{
    Caller, Peers, Role, Running, TestDatabase, member, start, start_on, test_context,
};
use tonic::service::interceptor::InterceptedService;

pub type Client = AccountServiceClient<InterceptedService<Channel, Caller>>;
pub type Internal = AccountInternalServiceClient<InterceptedService<Channel, Caller>>;
pub type IdentityInternal = IdentityInternalServiceClient<InterceptedService<Channel, Caller>>;

/// The password every test user gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// The account service with the REAL identity and contacts services, each
/// on its own database and loopback port.
pub struct Env {
    pub running: Running,
    pub clock: ManualClock,
    pub peers: Peers,
    /// The account service's database (tests write behind its back).
    pub database_url: String,
    config: Config,
    channel: Channel,
}

/// Another replica of the account service on the same database.
pub struct Replica {
    _running: Running,
    channel: Channel,
    clock: ManualClock,
}

impl Replica {
    pub fn internal(&self) -> Internal {
        AccountInternalServiceClient::with_interceptor(
            self.channel.clone(),
            Caller::new(Principal::service("test"), Arc::new(self.clock.clone())),
        )
    }
}

pub fn reason(status: &tonic::Status) -> tenancy_testkit::Reason {
    tenancy_testkit::refusal(status)
}

pub fn fields(status: &tonic::Status) -> Vec<String> {
    tenancy_runtime::error::violated_fields(status)
}

pub fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

impl Env {
    pub async fn new() -> Self {
        let db = TestDatabase::new("account").await;
        let clock = ManualClock::starting_now();
        let (peers, listener) =
            Peers::start("account", ServiceName::Account, &db, clock.clone(), |_| {}).await;
        let config = peers.config.clone();
        let context = test_context(config.clone(), Arc::new(clock.clone()));
        let running = start_on::<AccountService>(listener, context, clock.clone()).await;
        let channel = running.channel().await;
        Self {
            running,
            clock,
            peers,
            database_url: db.url.clone(),
            config,
            channel,
        }
    }

    /// A second account server on the same database and peers.
    pub async fn replica(&self) -> Replica {
        let context = test_context(self.config.clone(), Arc::new(self.clock.clone()));
        let running = start::<AccountService>(context, self.clock.clone()).await;
        let channel = running.channel().await;
        Replica {
            _running: running,
            channel,
            clock: self.clock.clone(),
        }
    }

    fn service(&self) -> Caller {
        Caller::new(Principal::service("test"), Arc::new(self.clock.clone()))
    }

    /// Identity's internal API.
    pub async fn identity_internal(&self) -> IdentityInternal {
        IdentityInternalServiceClient::with_interceptor(
            self.peers.channel(ServiceName::Identity).await,
            self.service(),
        )
    }

    /// A user of identity, by id.
    pub async fn identity_user(&self, id: &str) -> ipb::User {
        self.identity_internal()
            .await
            .batch_get_users(ipb::BatchGetUsersRequest {
                user_ids: vec![id.to_owned()],
            })
            .await
            .unwrap()
            .into_inner()
            .users
            .pop()
            .expect("a user")
    }

    /// Messages in the real contacts outbox to `email` with `template`,
    /// newest first.
    pub async fn outbox(&self, email: &str, template: MessageTemplate) -> Vec<cpb::OutboxMessage> {
        self.outbox_where(cpb::ListOutboxMessagesRequest {
            to_email: email.into(),
            template: template as i32,
            ..Default::default()
        })
        .await
    }

    /// Messages in the outbox concerning `account`.
    pub async fn outbox_of_account(&self, account: &str) -> Vec<cpb::OutboxMessage> {
        self.outbox_where(cpb::ListOutboxMessagesRequest {
            account_id: account.into(),
            ..Default::default()
        })
        .await
    }

    async fn outbox_where(
        &self,
        filter: cpb::ListOutboxMessagesRequest,
    ) -> Vec<cpb::OutboxMessage> {
        ContactsInternalServiceClient::with_interceptor(
            self.peers.channel(ServiceName::Contacts).await,
            self.service(),
        )
        .list_outbox_messages(cpb::ListOutboxMessagesRequest {
            page_size: 500,
            ..filter
        })
        .await
        .unwrap()
        .into_inner()
        .messages
    }

    /// Turns on TOTP for a user with [`PASSWORD`], through identity's
    /// public API: log in, begin, confirm with the current code.
    /// A client of identity's public API calling as `principal`.
    async fn identity_as(
        &self,
        principal: Principal,
    ) -> IdentityServiceClient<InterceptedService<Channel, Caller>> {
        IdentityServiceClient::with_interceptor(
            self.peers.channel(ServiceName::Identity).await,
            Caller::new(principal, Arc::new(self.clock.clone())),
        )
    }

    /// Logs in with [`PASSWORD`] through identity's public API; returns the
    /// new session's id.
    async fn session_of(&self, email: String) -> String {
        let login = self
            .identity_as(Principal::anonymous(None, "r"))
            .await
            .login(ipb::LoginRequest {
                email,
                password: PASSWORD.into(),
                account_id: String::new(),
                unlock_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let Some(ipb::login_response::Outcome::Session(session)) = login.outcome else {
            panic!("expected a session");
        };
        session.session_id
    }

    pub async fn enrol_totp(&self, user: &str, email: &str) {
        let session_id = self.session_of(email.to_owned()).await;
        let mut c = self
            .identity_as(Principal {
                user_id: Some(user.into()),
                session_id: Some(session_id),
                token_kind: tenancy_testkit::TokenKind::Portal,
                client_ip: Some("198.51.100.7".parse().unwrap()),
                request_id: "r".into(),
                ..Principal::default()
            })
            .await;
        let begun = c
            .begin_totp_enrollment(ipb::BeginTotpEnrollmentRequest {})
            .await
            .unwrap()
            .into_inner();
        let secret = totp_rs::Secret::try_from_base32(&begun.secret).unwrap();
        let totp = totp_rs::Builder::new().with_secret(secret).build().unwrap();
        let now = u64::try_from(self.clock.now_secs()).unwrap();
        c.confirm_totp_enrollment(ipb::ConfirmTotpEnrollmentRequest {
            totp_code: totp.generate(now).to_string(),
        })
        .await
        .unwrap();
    }

    /// A Public API token of `user` (whose password is [`PASSWORD`]) for
    /// `account`, created through identity's public API as they would:
    /// log in, then CreateApiToken in the session. Returns the token's id.
    pub async fn api_token(&self, user: &str, account: &str) -> String {
        self.api_token_with_secret(user, account).await.0
    }

    /// A new API token of `user` for `account`: (id, secret).
    pub async fn api_token_with_secret(&self, user: &str, account: &str) -> (String, String) {
        let email = self
            .identity_internal()
            .await
            .batch_get_users(ipb::BatchGetUsersRequest {
                user_ids: vec![user.to_owned()],
            })
            .await
            .unwrap()
            .into_inner()
            .users
            .remove(0)
            .email;
        let session_id = self.session_of(email).await;
        let created = self
            .identity_as(Principal {
                user_id: Some(user.into()),
                account_id: Some(account.into()),
                role: Role::Manager,
                session_id: Some(session_id),
                token_kind: tenancy_testkit::TokenKind::Portal,
                request_id: "r".into(),
                ..Principal::default()
            })
            .await
            .create_api_token(ipb::CreateApiTokenRequest {
                name: "ci".into(),
                expire_time: None,
                read_only: false,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        (created.api_token.unwrap().id, created.secret)
    }

    /// The (API token, user, account) revocations in identity's revocation
    /// log.
    pub async fn api_token_revocations(&self) -> Vec<(String, String, String)> {
        use ipb::watch_revocations_response::Item;
        let mut stream = self
            .identity_internal()
            .await
            .watch_revocations(ipb::WatchRevocationsRequest {
                from_position: 0,
                watcher: "account-tests".into(),
                batched_catch_up: false,
            })
            .await
            .unwrap()
            .into_inner();
        let mut out = Vec::new();
        while let Some(item) = stream.message().await.unwrap() {
            match item.item {
                Some(Item::Event(e)) => {
                    if let Some(ipb::revocation_event::Kind::ApiToken(r)) = e.kind {
                        out.push((r.api_token_id, r.user_id, r.account_id));
                    }
                }
                Some(Item::CaughtUp(_)) => break,
                _ => {}
            }
        }
        out
    }

    /// AcceptInvitation by an anonymous caller, without name or password
    /// (as an existing user).
    pub async fn try_accept(
        &self,
        token: &str,
    ) -> Result<pb::AcceptInvitationResponse, tonic::Status> {
        self.client(Principal::anonymous(None, "r"))
            .accept_invitation(pb::AcceptInvitationRequest {
                token: token.to_owned(),
                ..Default::default()
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Accepts an invitation as an existing user; returns the user id.
    pub async fn accept(&self, token: &str) -> String {
        self.try_accept(token).await.unwrap().user_id
    }

    pub fn principal(&self, user: &str, account: &str, role: Role) -> Principal {
        let mut p = member(user, account, role);
        p.auth_time = Some(self.clock.now_secs());
        p
    }

    pub fn client(&self, principal: Principal) -> Client {
        AccountServiceClient::with_interceptor(
            self.channel.clone(),
            Caller::new(principal, Arc::new(self.clock.clone())),
        )
    }

    /// A portal caller with `role` in `account`.
    pub fn as_member(&self, user: &str, account: &str, role: Role) -> Client {
        self.client(self.principal(user, account, role))
    }

    /// SuspendMember by the owner `by`: the member afterwards.
    pub async fn suspend(
        &self,
        by: &str,
        account: &str,
        user: &str,
    ) -> Result<pb::Member, tonic::Status> {
        self.as_member(by, account, Role::Owner)
            .suspend_member(pb::SuspendMemberRequest {
                user_id: user.to_owned(),
            })
            .await
            .map(|r| r.into_inner().member.unwrap())
    }

    /// ReactivateMember by the owner `by`: the member afterwards.
    pub async fn reactivate(&self, by: &str, account: &str, user: &str) -> pb::Member {
        self.as_member(by, account, Role::Owner)
            .reactivate_member(pb::ReactivateMemberRequest {
                user_id: user.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .member
            .unwrap()
    }

    /// GetMember by the owner `by`.
    pub async fn member(&self, by: &str, account: &str, user: &str) -> pb::Member {
        self.as_member(by, account, Role::Owner)
            .get_member(pb::GetMemberRequest {
                user_id: user.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .member
            .unwrap()
    }

    /// GetAccount as `user` with `role`: whether they may still read the
    /// account.
    pub async fn get_account_as(
        &self,
        user: &str,
        account: &str,
        role: Role,
    ) -> Result<pb::Account, tonic::Status> {
        self.as_member(user, account, role)
            .get_account(pb::GetAccountRequest {})
            .await
            .map(|r| r.into_inner().account.unwrap())
    }

    /// A logged-in user with no account selected.
    pub fn as_user(&self, user: &str) -> Client {
        self.client(self.principal(user, "", Role::Unspecified))
    }

    pub fn internal(&self) -> Internal {
        AccountInternalServiceClient::with_interceptor(
            self.channel.clone(),
            Caller::new(Principal::service("test"), Arc::new(self.clock.clone())),
        )
    }

    /// A user with [`PASSWORD`] in the real identity service.
    pub async fn user(&self, email: &str) -> String {
        let mut identity = self.identity_internal().await;
        let user = identity
            .ensure_user(ipb::EnsureUserRequest {
                email: email.into(),
                name: email.replace('@', " at "),
            })
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        identity
            .set_initial_password(ipb::SetInitialPasswordRequest {
                user_id: user.id.clone(),
                password: PASSWORD.into(),
                name: String::new(),
            })
            .await
            .unwrap();
        user.id
    }

    /// A new account of a new owner: (account id, owner id).
    pub async fn account(&self) -> (String, String) {
        let owner = self
            .user(&format!(
                "owner-{}@example.com",
                uuid::Uuid::now_v7().simple()
            ))
            .await;
        let account = self
            .as_user(&owner)
            .create_account(pb::CreateAccountRequest {
                account: Some(pb::Account {
                    r#type: pb::AccountType::Company as i32,
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
            .unwrap();
        (account.id, owner)
    }

    /// The token in the newest invitation email to `email`, read from the
    /// real contacts outbox.
    pub async fn invitation_token(&self, email: &str) -> String {
        let messages = self.outbox(email, MessageTemplate::Invitation).await;
        let url = &messages.first().expect("an invitation email").template_data["accept_url"];
        url.split("token=").nth(1).unwrap().to_owned()
    }

    /// Invites an existing user (with a password) and accepts: an ACTIVE
    /// member with portal access.
    pub async fn join(
        &self,
        account: &str,
        owner: &str,
        role: Role,
        scope: pb::AccessScope,
    ) -> String {
        let email = format!("member-{}@example.com", uuid::Uuid::now_v7().simple());
        let user = self.user(&email).await;
        self.as_member(owner, account, Role::Owner)
            .invite_member(pb::InviteMemberRequest {
                email: email.clone(),
                role: role as i32,
                access_scope: Some(scope),
            })
            .await
            .unwrap();
        let token = self.invitation_token(&email).await;
        assert_eq!(self.accept(&token).await, user);
        user
    }

    pub async fn manager(&self, account: &str, owner: &str) -> String {
        self.join(account, owner, Role::Manager, all_services())
            .await
    }

    pub async fn owner(&self, account: &str, owner: &str) -> String {
        self.join(account, owner, Role::Owner, all_services()).await
    }
}

pub fn all_services() -> pb::AccessScope {
    pb::AccessScope {
        service_access: pb::ServiceAccess::All as i32,
        ..Default::default()
    }
}

trait Secs {
    fn now_secs(&self) -> i64;
}

impl Secs for ManualClock {
    fn now_secs(&self) -> i64 {
        tenancy_runtime::Clock::now(self).seconds()
    }
}
