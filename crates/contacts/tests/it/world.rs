//! The contacts service with the REAL identity and account services beside
//! it, each on its own database and loopback port, on one clock; users,
//! an account and its members are created through their APIs as a client
//! would.

use std::collections::HashMap;
use std::sync::Arc;

use tenancy_proto::account::{
    self as apb, account_internal_service_client::AccountInternalServiceClient,
    account_service_client::AccountServiceClient,
};
use tenancy_proto::identity::{
    self as ipb, identity_internal_service_client::IdentityInternalServiceClient,
};
use tenancy_runtime::config::ServiceName;
use tenancy_runtime::{Clock as _, ManualClock, Principal};
use tenancy_testkit::TestChannel as Channel;
use tenancy_testkit::{Caller, Peers, Role, TestDatabase};
use tonic::service::interceptor::InterceptedService;

use crate::support::{Env, Public};

type Signed = InterceptedService<Channel, Caller>;

/// Contacts with identity and account, and one account owned by `owner`.
pub struct World {
    pub env: Env,
    pub account_id: String,
    pub owner: String,
    /// Every user's (email, name), by id.
    pub users: HashMap<String, (String, String)>,
    identity_channel: Channel,
    account_channel: Channel,
    /// The real identity and account services.
    _peers: Peers,
}

impl World {
    /// Starts the three services and creates an account owned by a user
    /// with `owner_email`.
    pub async fn start(label: &str, owner_email: &str) -> Self {
        let db = TestDatabase::new(label).await;
        let clock = ManualClock::starting_now();
        let (peers, listener) =
            Peers::start(label, ServiceName::Contacts, &db, clock.clone(), |_| {}).await;
        let env = Env::start_on(db, peers.config.clone(), clock, listener).await;
        let mut world = Self {
            identity_channel: peers.channel(ServiceName::Identity).await,
            account_channel: peers.channel(ServiceName::Account).await,
            _peers: peers,
            env,
            account_id: String::new(),
            owner: String::new(),
            users: HashMap::new(),
        };
        world.owner = world.user(owner_email).await;
        world.account_id = world.create_account(&world.owner.clone()).await;
        world
    }

    fn signed(&self, principal: Principal) -> Caller {
        Caller::new(principal, Arc::new(self.env.clock.clone()))
    }

    /// A member principal with a fresh authentication.
    fn member_principal(&self, user: &str, account: &str, role: Role) -> Principal {
        let mut p = tenancy_testkit::member(user, account, role);
        p.auth_time = Some(self.env.clock.now().seconds());
        p
    }

    fn identity_internal(&self) -> IdentityInternalServiceClient<Signed> {
        IdentityInternalServiceClient::with_interceptor(
            self.identity_channel.clone(),
            self.signed(Principal::service("contacts-tests")),
        )
    }

    /// AccountService as the owner.
    fn as_owner(&self) -> AccountServiceClient<Signed> {
        AccountServiceClient::with_interceptor(
            self.account_channel.clone(),
            self.signed(self.member_principal(&self.owner, &self.account_id, Role::Owner)),
        )
    }

    /// AccountInternalService as another Tenancy service.
    pub fn account_internal(&self) -> AccountInternalServiceClient<Signed> {
        AccountInternalServiceClient::with_interceptor(
            self.account_channel.clone(),
            self.signed(Principal::service("contacts-tests")),
        )
    }

    /// A user, created through identity's internal API (named after the
    /// part of `email` before the `@`).
    pub async fn user(&mut self, email: &str) -> String {
        let name = email.split('@').next().unwrap_or_default().to_owned();
        let user = self
            .identity_internal()
            .ensure_user(ipb::EnsureUserRequest {
                email: email.to_owned(),
                name: name.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        self.users.insert(user.id.clone(), (email.to_owned(), name));
        user.id
    }

    async fn create_account(&self, owner: &str) -> String {
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

    /// A new user made a MANAGER of the account with `service_access`, as
    /// the owner would in the portal.
    pub async fn member(&mut self, email: &str, service_access: apb::ServiceAccess) -> String {
        let user = self.user(email).await;
        let name = self.users[&user].1.clone();
        self.as_owner()
            .add_member(apb::AddMemberRequest {
                email: email.to_owned(),
                name,
                role: Role::Manager as i32,
                access_scope: Some(apb::AccessScope {
                    portal_access: true,
                    service_access: service_access as i32,
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
        user
    }

    /// Suspends a member, as the owner.
    pub async fn suspend(&self, user: &str) {
        self.as_owner()
            .suspend_member(apb::SuspendMemberRequest {
                user_id: user.to_owned(),
            })
            .await
            .unwrap();
    }

    /// A service of the account, registered as billing would.
    pub async fn register_service(&self, name: &str) -> String {
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

    /// ContactsService as `user` with `role` in the account.
    pub async fn contacts_as(&self, user: &str, role: Role) -> Public {
        self.env.member(user, &self.account_id, role).await
    }
}
