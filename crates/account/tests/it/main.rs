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
mod e2e;
mod fakes;
mod invitations;
mod members;
mod security;
mod watch;

use std::sync::Arc;

use tenancy_account::AccountService;
use tenancy_proto::account::{
    self as pb, account_internal_service_client::AccountInternalServiceClient,
    account_service_client::AccountServiceClient,
};
use tenancy_proto::contacts::MessageTemplate;
use tenancy_runtime::{ManualClock, Principal};
use tenancy_testkit::{
    Caller, Role, Running, TestDatabase, member, start, test_config, test_context,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub type Client = AccountServiceClient<InterceptedService<Channel, Caller>>;
pub type Internal = AccountInternalServiceClient<InterceptedService<Channel, Caller>>;

pub struct Env {
    pub running: Running,
    pub clock: ManualClock,
    pub identity: fakes::FakeIdentity,
    pub contacts: fakes::FakeContacts,
    channel: Channel,
}

pub fn reason(status: &tonic::Status) -> String {
    tenancy_runtime::error::reason_of(status).unwrap_or_default()
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
        let mut config = test_config(&db);
        let (peer, identity, contacts) = fakes::start().await;
        config.identity.url = Some(format!("http://{peer}"));
        config.contacts.url = Some(format!("http://{peer}"));
        let clock = ManualClock::starting_now();
        let context = test_context(config, Arc::new(clock.clone()));
        let running = start::<AccountService>(context, clock.clone()).await;
        let channel = running.channel().await;
        Self {
            running,
            clock,
            identity,
            contacts,
            channel,
        }
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

    pub fn user(&self, email: &str) -> String {
        self.identity.add_user(email, &email.replace('@', " at "))
    }

    /// A new account of a new owner: (account id, owner id).
    pub async fn account(&self) -> (String, String) {
        let owner = self.user(&format!(
            "owner-{}@example.com",
            uuid::Uuid::now_v7().simple()
        ));
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
                idempotency_key: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .account
            .unwrap();
        (account.id, owner)
    }

    /// The token in the newest invitation email to `email`.
    pub fn invitation_token(&self, email: &str) -> String {
        let messages = self.contacts.to(email, MessageTemplate::Invitation);
        let url = messages.last().expect("an invitation email").template_data["accept_url"].clone();
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
        let user = self.user(&email);
        self.as_member(owner, account, Role::Owner)
            .invite_member(pb::InviteMemberRequest {
                email: email.clone(),
                role: role as i32,
                access_scope: Some(scope),
            })
            .await
            .unwrap();
        let token = self.invitation_token(&email);
        let accepted = self
            .client(Principal::anonymous(None, "r"))
            .accept_invitation(pb::AcceptInvitationRequest {
                token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(accepted.user_id, user);
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
