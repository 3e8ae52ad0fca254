//! [`Acme`]: a service under test among its REAL peers, with an account
//! set up through their APIs as a client would (feature `peers`).
//!
//! In the style of kanidm's server-per-test fixture: every test starts its
//! own suite (each service on a fresh database and loopback port, all on
//! one injected clock) and builds what it needs with the calls a portal
//! would make: users with passwords, the "Acme" account with its owner,
//! services, managers of each access scope, and signed clients for each.
//!
//! ```ignore
//! let (mut acme, listener) = Acme::start("label", ServiceName::Support, &db, |_| {}).await;
//! let support = start_on::<SupportService>(listener, acme.context(), acme.clock.clone()).await;
//! acme.found("owner").await;          // owner + account
//! let s1 = acme.register_service("s1").await;
//! let selected = acme.user("selected").await;
//! acme.add_manager(&selected, ServiceAccess::Selected, &[s1]).await;
//! ```

use std::collections::HashMap;
use std::sync::Arc;
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
use tenancy_runtime::config::{Config, ServiceName};
use tenancy_runtime::{Clock as _, Context, ManualClock, Principal};
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;

use crate::{Caller, Peers, Role, TestChannel, TestDatabase};

/// A client that signs its principal onto every call.
pub type Signed = InterceptedService<TestChannel, Caller>;

/// The password of every user the fixture creates.
pub const PASSWORD: &str = "correct horse battery staple";

/// The peers of a service under test and the "Acme" account built on them.
pub struct Acme {
    /// The real identity, account and contacts services (but the one under
    /// test); they stop when dropped.
    pub peers: Peers,
    /// The clock every service runs on.
    pub clock: ManualClock,
    /// Identity, when it is a peer.
    identity: Option<TestChannel>,
    /// Account, when it is a peer.
    account: Option<TestChannel>,
    /// Contacts, when it is a peer.
    contacts: Option<TestChannel>,
    /// Who signs as "another service" in internal calls.
    service_name: String,
    /// The account, once [`Acme::found`] created it.
    pub account_id: String,
    /// Its owner.
    pub owner: String,
    /// Every user's email, by id.
    pub emails: HashMap<String, String>,
    /// Every user's name, by id.
    pub names: HashMap<String, String>,
}

impl Acme {
    /// Starts the peers of `under_test` (which uses `db`) on a fresh clock;
    /// `configure` changes the configuration before anything starts.
    /// Returns the fixture and the listener the service under test is to
    /// serve on (its address is in [`Acme::config`] already).
    pub async fn start(
        label: &str,
        under_test: ServiceName,
        db: &TestDatabase,
        configure: impl FnOnce(&mut Config),
    ) -> (Self, TcpListener) {
        let clock = ManualClock::starting_now();
        let (peers, listener) = Peers::start(label, under_test, db, clock.clone(), configure).await;
        let mut channels = HashMap::new();
        for name in [
            ServiceName::Identity,
            ServiceName::Account,
            ServiceName::Contacts,
        ] {
            if name != under_test {
                channels.insert(name, peers.channel(name).await);
            }
        }
        let acme = Self {
            identity: channels.remove(&ServiceName::Identity),
            account: channels.remove(&ServiceName::Account),
            contacts: channels.remove(&ServiceName::Contacts),
            service_name: format!("{}-tests", under_test.as_str()),
            peers,
            clock,
            account_id: String::new(),
            owner: String::new(),
            emails: HashMap::new(),
            names: HashMap::new(),
        };
        (acme, listener)
    }

    /// The configuration to run the service under test with.
    pub fn config(&self) -> &Config {
        &self.peers.config
    }

    /// A context for the service under test, on the fixture's clock.
    pub fn context(&self, config: Config) -> Context {
        crate::test_context(config, Arc::new(self.clock.clone()))
    }

    /// `principal`, signed against the fixture's clock.
    pub fn signed(&self, principal: Principal) -> Caller {
        Caller::new(principal, Arc::new(self.clock.clone()))
    }

    /// Another Tenancy service, for internal methods.
    pub fn as_service(&self) -> Caller {
        self.signed(Principal::service(&self.service_name))
    }

    /// A member principal of `user` in `account` with `role`, freshly
    /// authenticated.
    pub fn member_principal(&self, user: &str, account: &str, role: Role) -> Principal {
        let mut p = crate::member(user, account, role);
        p.auth_time = Some(self.clock.now().seconds());
        p
    }

    fn peer(channel: &Option<TestChannel>, name: &str) -> TestChannel {
        channel
            .clone()
            .unwrap_or_else(|| panic!("{name} is the service under test"))
    }

    /// The channel to identity.
    pub fn identity_channel(&self) -> TestChannel {
        Self::peer(&self.identity, "identity")
    }

    /// The channel to account.
    pub fn account_channel(&self) -> TestChannel {
        Self::peer(&self.account, "account")
    }

    /// The channel to contacts.
    pub fn contacts_channel(&self) -> TestChannel {
        Self::peer(&self.contacts, "contacts")
    }

    /// IdentityInternalService as another service.
    pub fn identity_internal(&self) -> IdentityInternalServiceClient<Signed> {
        IdentityInternalServiceClient::with_interceptor(self.identity_channel(), self.as_service())
    }

    /// AccountInternalService as another service.
    pub fn account_internal(&self) -> AccountInternalServiceClient<Signed> {
        AccountInternalServiceClient::with_interceptor(self.account_channel(), self.as_service())
    }

    /// ContactsInternalService as another service.
    pub fn contacts_internal(&self) -> ContactsInternalServiceClient<Signed> {
        ContactsInternalServiceClient::with_interceptor(self.contacts_channel(), self.as_service())
    }

    /// AccountService as the owner of `account` (Acme if `None`).
    pub fn owner_account(&self, account: Option<&str>) -> AccountServiceClient<Signed> {
        let account = account.unwrap_or(&self.account_id);
        AccountServiceClient::with_interceptor(
            self.account_channel(),
            self.signed(self.member_principal(&self.owner, account, Role::Owner)),
        )
    }

    /// ContactsService as the owner.
    pub fn owner_contacts(&self) -> ContactsServiceClient<Signed> {
        ContactsServiceClient::with_interceptor(
            self.contacts_channel(),
            self.signed(self.member_principal(&self.owner, &self.account_id, Role::Owner)),
        )
    }

    /// ContactsService without credentials (its public methods).
    pub fn public_contacts(&self) -> ContactsServiceClient<Signed> {
        ContactsServiceClient::with_interceptor(
            self.contacts_channel(),
            self.signed(Principal::anonymous(None, uuid::Uuid::now_v7().to_string())),
        )
    }

    /// A user with `email` and `name`, created through identity's internal
    /// API (no password).
    pub async fn ensure_user(&mut self, email: &str, name: &str) -> String {
        let user = self
            .identity_internal()
            .ensure_user(ipb::EnsureUserRequest {
                email: email.to_owned(),
                name: name.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        self.emails.insert(user.id.clone(), email.to_owned());
        self.names.insert(user.id.clone(), name.to_owned());
        user.id
    }

    /// A user named `name` with a unique address and [`PASSWORD`].
    pub async fn user(&mut self, name: &str) -> String {
        let email = format!("{name}-{}@example.com", uuid::Uuid::new_v4().simple());
        let user = self.ensure_user(&email, name).await;
        self.identity_internal()
            .set_initial_password(ipb::SetInitialPasswordRequest {
                user_id: user.clone(),
                password: PASSWORD.to_owned(),
                name: String::new(),
            })
            .await
            .unwrap();
        user
    }

    /// A user made a member of the support team (`tenancy admin
    /// grant-staff`).
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

    /// A new "Acme" account owned by `owner`.
    pub async fn create_account(&self, owner: &str) -> String {
        AccountServiceClient::with_interceptor(
            self.account_channel(),
            self.signed(self.member_principal(owner, "", Role::Unspecified)),
        )
        .create_account(crate::new_account())
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap()
        .id
    }

    /// Makes `owner` (a user already) the owner of a new Acme account, the
    /// one every other method of the fixture works on.
    pub async fn found_by(&mut self, owner: &str) {
        self.owner = owner.to_owned();
        self.account_id = self.create_account(owner).await;
    }

    /// A user `name` with a password, owner of a new Acme account.
    pub async fn found(&mut self, name: &str) {
        let owner = self.user(name).await;
        self.found_by(&owner).await;
    }

    /// A service of Acme, registered as billing would.
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

    /// A scope with portal access and `mode` (`selected`: the SELECTED
    /// services).
    pub fn scope(mode: apb::ServiceAccess, selected: &[String]) -> apb::AccessScope {
        apb::AccessScope {
            portal_access: true,
            service_access: mode as i32,
            selected_service_ids: selected.to_vec(),
            ..Default::default()
        }
    }

    /// Adds `user` to Acme as a MANAGER with `mode`, as the owner would in
    /// the portal (AddMember only); the member as the reply shows it (until
    /// `user` accepts an invitation, under a stand-in id).
    pub async fn add_member(
        &self,
        user: &str,
        mode: apb::ServiceAccess,
        selected: &[String],
    ) -> apb::Member {
        self.owner_account(None)
            .add_member(apb::AddMemberRequest {
                email: self.emails[user].clone(),
                name: self.names[user].clone(),
                role: Role::Manager as i32,
                access_scope: Some(Self::scope(mode, selected)),
            })
            .await
            .unwrap()
            .into_inner()
            .member
            .unwrap()
    }

    /// As [`Acme::add_member`], then grants portal access (SetMemberAccess),
    /// which emails `user` an invitation, and accepts it as `user`: an
    /// ACTIVE MANAGER who may sign in, shown under their user id.
    pub async fn add_manager(&self, user: &str, mode: apb::ServiceAccess, selected: &[String]) {
        let added = self.add_member(user, mode, selected).await;
        let invitation = self
            .owner_account(None)
            .set_member_access(apb::SetMemberAccessRequest {
                user_id: added.user_id,
                access_scope: Some(Self::scope(mode, selected)),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["portal_access".into()],
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .invitation
            .expect("portal access for an added member goes through an invitation");
        let mail = self
            .outbox_at_least(&format!("account:invitation:{}:", invitation.id), 1)
            .await;
        let url = &mail.first().expect("the invitation email").template_data["accept_url"];
        let token = url.split("token=").nth(1).unwrap_or_default().to_owned();
        AccountServiceClient::with_interceptor(
            self.account_channel(),
            self.signed(Principal::anonymous(None, uuid::Uuid::now_v7().to_string())),
        )
        .accept_invitation(apb::AcceptInvitationRequest {
            token,
            name: String::new(),
            password: PASSWORD.to_owned(),
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

    /// The owner grants the support team access for `ttl`.
    pub async fn grant_support(&self, ttl: Duration) {
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
    pub async fn revoke_support(&self) {
        self.owner_account(None)
            .revoke_support_access(apb::RevokeSupportAccessRequest {})
            .await
            .unwrap();
    }

    /// Logs `user` in to Acme with [`PASSWORD`]; returns the session id.
    pub async fn login(&self, user: &str) -> String {
        let response = IdentityServiceClient::with_interceptor(
            self.identity_channel(),
            self.signed(Principal::anonymous(None, uuid::Uuid::now_v7().to_string())),
        )
        .login(ipb::LoginRequest {
            email: self.emails[user].clone(),
            password: PASSWORD.to_owned(),
            account_id: self.account_id.clone(),
            unlock_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
        match response.outcome.unwrap() {
            ipb::login_response::Outcome::Session(s) => s.session_id,
            other => panic!("{other:?}"),
        }
    }

    /// `user` sets their code word as they would in the portal (logged in,
    /// recently authenticated).
    pub async fn set_code_word(&self, user: &str, word: &str) {
        let session = self.login(user).await;
        let mut p = self.member_principal(user, &self.account_id, Role::Owner);
        p.session_id = Some(session);
        IdentityServiceClient::with_interceptor(self.identity_channel(), self.signed(p))
            .set_code_word(ipb::SetCodeWordRequest {
                code_word: word.to_owned(),
            })
            .await
            .unwrap();
    }

    /// The events of Acme's audit log by `actor`, oldest first.
    pub async fn audit(&self, actor: apb::ActorKind) -> Vec<apb::AuditEvent> {
        let mut events = self
            .owner_account(None)
            .list_audit_events(apb::ListAuditEventsRequest {
                page_size: 500,
                actor_kind: actor as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .events;
        events.reverse();
        events
    }

    /// Acme's outbox messages whose request id starts with `prefix`.
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

    /// Waits (up to 30 s: a loaded CI machine is slow) until at least `n`
    /// outbox messages match `prefix`; returns them.
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

    /// The users `messages` went to (sorted); unknown addresses as is.
    pub fn recipients(&self, messages: &[cpb::OutboxMessage]) -> Vec<String> {
        let by_email: HashMap<&str, &str> = self
            .emails
            .iter()
            .map(|(u, e)| (e.as_str(), u.as_str()))
            .collect();
        let mut to: Vec<String> = messages
            .iter()
            .map(|m| {
                let email = m.to.as_ref().map(|t| t.email.as_str()).unwrap_or_default();
                by_email.get(email).copied().unwrap_or(email).to_owned()
            })
            .collect();
        to.sort();
        to
    }
}
