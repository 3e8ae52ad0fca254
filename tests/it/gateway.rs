//! The gateway against the real suite: every refusal of issue 6 that needs
//! live identity and account state, over real gRPC.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tenancy::{Part, Running, start};
use tenancy_proto::account::account_service_client::AccountServiceClient;
use tenancy_proto::account::{
    AcceptInvitationRequest, AccessScope, Account, AccountType, CreateAccountRequest,
    GetAccountRequest, GrantSupportAccessRequest, InviteMemberRequest, PostalAddress,
    RevokeSupportAccessRequest, SecuritySettings, ServiceAccess, SuspendMemberRequest,
    UpdateAccountRequest, UpdateSecuritySettingsRequest, grant_support_access_request,
};
use tenancy_proto::auth::Role;
use tenancy_proto::contacts::ListOutboxMessagesRequest;
use tenancy_proto::contacts::contacts_internal_service_client::ContactsInternalServiceClient;
use tenancy_proto::identity::identity_service_client::IdentityServiceClient;
use tenancy_proto::identity::login_response::Outcome;
use tenancy_proto::identity::{
    CreateApiTokenRequest, GetMeRequest, LoginRequest, LogoutRequest, SessionCredentials,
    SignUpRequest, SwitchAccountRequest, VerifyEmailRequest,
};
use tenancy_runtime::clock::SharedClock;
use tenancy_runtime::config::{Config, ServiceName};
use tenancy_runtime::{Principal, Reason, SystemClock};
use tenancy_testkit::{Caller, TestChannel, TestDatabase, test_config};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// The whole suite in one process, and a channel to its gateway.
pub(crate) struct Suite {
    pub(crate) running: Running,
    pub(crate) gateway: Channel,
    /// The configuration it was started with.
    pub(crate) config: Config,
    /// Its database, dropped (on PostgreSQL) once the test is done with it.
    pub(crate) database: Arc<TestDatabase>,
}

/// A `Bearer` token on every call.
#[derive(Clone)]
pub(crate) struct Bearer(String, Vec<(&'static str, String)>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let value: MetadataValue<_> = format!("Bearer {}", self.0).parse().map_err(|_| {
            tenancy_runtime::Error::invalid_field("authorization", "not a header value")
        })?;
        request.metadata_mut().insert("authorization", value);
        for (key, value) in &self.1 {
            if let Ok(v) = value.parse() {
                request.metadata_mut().insert(*key, v);
            }
        }
        Ok(request)
    }
}

pub(crate) fn bearer(token: &str) -> Bearer {
    Bearer(token.to_owned(), Vec::new())
}

/// A `Bearer` token and other metadata on every call.
pub(crate) fn bearer_with(token: &str, metadata: Vec<(&'static str, String)>) -> Bearer {
    Bearer(token.to_owned(), metadata)
}

pub(crate) async fn channel(address: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

impl Suite {
    pub(crate) async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_with_clock(Arc::new(SystemClock), tweak).await
    }

    /// The suite on `clock` (every part shares it).
    pub(crate) async fn start_with_clock(
        clock: SharedClock,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        log_errors();
        let database = Arc::new(TestDatabase::new("gateway").await);
        let mut config = test_config(&database);
        // Cheap hashing: these tests are about the gateway.
        config.auth.argon2_memory_kib = 1024;
        config.auth.argon2_iterations = 1;
        config.gateway.public_rate_per_minute = 600;
        config.gateway.public_burst = 200;
        tweak(&mut config);
        Self::start_on(config, database, clock).await
    }

    /// The suite with `config` as it is, on `database` (e.g. again, after
    /// a suite on it was stopped).
    pub(crate) async fn start_on(
        config: Config,
        database: Arc<TestDatabase>,
        clock: SharedClock,
    ) -> Self {
        let running = start(config.clone(), Part::All, clock).await.unwrap();
        let gateway = channel(running.gateway.unwrap()).await;
        let suite = Self {
            running,
            gateway,
            config,
            database,
        };
        suite.wait_ready().await;
        suite
    }

    pub(crate) async fn wait_ready(&self) {
        use tonic_health::pb::{
            HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = HealthClient::new(self.gateway.clone())
                .check(HealthCheckRequest::default())
                .await
                .map(|r| r.into_inner().status());
            if status.ok() == Some(ServingStatus::Serving) {
                return;
            }
            assert!(Instant::now() < deadline, "gateway never became ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn identity(
        &self,
        token: &str,
    ) -> IdentityServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>
    {
        IdentityServiceClient::with_interceptor(self.gateway.clone(), bearer(token))
    }

    pub(crate) fn account(
        &self,
        token: &str,
    ) -> AccountServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>
    {
        AccountServiceClient::with_interceptor(self.gateway.clone(), bearer(token))
    }

    /// The `token=` of the last link sent to `email` under `key`.
    pub(crate) async fn emailed_token(&self, email: &str, key: &str) -> String {
        let contacts = self.running.service(ServiceName::Contacts).unwrap();
        let mut client = ContactsInternalServiceClient::with_interceptor(
            TestChannel::new(tenancy_runtime::tls::Caller::Contacts, contacts),
            Caller::new(Principal::service("test"), Arc::new(SystemClock)),
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let messages = client
                .list_outbox_messages(ListOutboxMessagesRequest {
                    to_email: email.to_owned(),
                    page_size: 100,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .messages;
            if let Some(url) = messages.iter().rev().find_map(|m| m.template_data.get(key)) {
                return url.split("token=").nth(1).unwrap().to_owned();
            }
            assert!(Instant::now() < deadline, "no {key} emailed to {email}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Signs up, verifies and logs in through the gateway (each again after
    /// the delay asked while the hashing pool sheds it); returns the access
    /// token.
    pub(crate) async fn user(&self, email: &str) -> String {
        let mut anonymous = IdentityServiceClient::new(self.gateway.clone());
        unshed(|| {
            let mut anonymous = anonymous.clone();
            async move {
                anonymous
                    .sign_up(SignUpRequest {
                        email: email.into(),
                        password: PASSWORD.into(),
                        name: "Gateway Test".into(),
                        phone: String::new(),
                    })
                    .await
            }
        })
        .await
        .unwrap();
        let token = self.emailed_token(email, "verify_url").await;
        anonymous
            .verify_email(VerifyEmailRequest { token })
            .await
            .unwrap();
        self.login(email).await
    }

    pub(crate) async fn login(&self, email: &str) -> String {
        self.session(email, PASSWORD, "")
            .await
            .access_token
            .unwrap()
            .token
    }

    /// Logs in through the gateway (selecting `account_id`, if not empty);
    /// returns the session's credentials.
    pub(crate) async fn session(
        &self,
        email: &str,
        password: &str,
        account_id: &str,
    ) -> SessionCredentials {
        let response = unshed(|| {
            let mut client = IdentityServiceClient::new(self.gateway.clone());
            async move {
                client
                    .login(LoginRequest {
                        email: email.into(),
                        password: password.into(),
                        account_id: account_id.into(),
                        unlock_token: String::new(),
                    })
                    .await
            }
        })
        .await
        .unwrap()
        .into_inner();
        match response.outcome.unwrap() {
            Outcome::Session(s) => s,
            other => panic!("{other:?}"),
        }
    }

    /// Polls GetAccount with `token` until the gateway refuses it (within
    /// a second); returns the refusal.
    pub(crate) async fn account_refusal(&self, token: &str) -> tonic::Status {
        let (_, status) = refused_within(Duration::from_secs(1), None, || {
            let mut client = self.account(token);
            async move { client.get_account(GetAccountRequest::default()).await }
        })
        .await;
        status
    }

    /// Creates an account as the holder of `token` and returns the account
    /// id and a token selecting it.
    pub(crate) async fn account_of(&self, token: &str) -> (String, String) {
        let account = self
            .account(token)
            .create_account(CreateAccountRequest {
                account: Some(Account {
                    r#type: AccountType::Individual as i32,
                    name: "Ada Lovelace".into(),
                    legal_name: "Ada Lovelace".into(),
                    country_code: "GB".into(),
                    address: Some(PostalAddress {
                        lines: vec!["12 St James's Square".into()],
                        city: "London".into(),
                        postal_code: "SW1Y 4JH".into(),
                        region: String::new(),
                        country_code: "GB".into(),
                    }),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .account
            .unwrap();
        let switched = self.switch(token, &account.id).await;
        (account.id, switched)
    }

    pub(crate) async fn switch(&self, token: &str, account_id: &str) -> String {
        let token = self
            .identity(token)
            .switch_account(SwitchAccountRequest {
                account_id: account_id.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .access_token
            .unwrap()
            .token;
        // Wait until the membership has reached the gateway.
        let deadline = Instant::now() + Duration::from_secs(2);
        while self
            .account(&token)
            .get_account(GetAccountRequest::default())
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "membership never reached the gateway"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        token
    }

    /// Creates an API token ("ci", read-write, no expiry) as the holder of
    /// `token` (selecting an account); returns its secret.
    pub(crate) async fn api_token(&self, token: &str) -> String {
        self.identity(token)
            .create_api_token(CreateApiTokenRequest {
                name: "ci".into(),
                expire_time: None,
                read_only: false,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .secret
    }

    /// Opens a ticket ("Disk full") as the holder of `token`, through the
    /// gateway.
    pub(crate) async fn ticket(&self, token: &str) -> tenancy_proto::support::Ticket {
        use tenancy_proto::support::support_service_client::SupportServiceClient;
        use tenancy_proto::support::{CreateTicketRequest, TicketCategory, TicketPriority};
        SupportServiceClient::with_interceptor(self.gateway.clone(), bearer(token))
            .create_ticket(CreateTicketRequest {
                subject: "Disk full".into(),
                body: "The disk of my server is full.".into(),
                priority: TicketPriority::Normal as i32,
                category: TicketCategory::General as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .ticket
            .unwrap()
    }

    /// Invites `email` with `role` into the account of `owner_token`; the
    /// invitee (already a user) accepts; returns their account token.
    pub(crate) async fn member(
        &self,
        owner_token: &str,
        account_id: &str,
        email: &str,
        role: Role,
    ) -> String {
        member_across(self, self, owner_token, account_id, email, role).await
    }
}

/// `email` (signed up, verified and logged in through `invitee`) invited
/// with `role` into `account_id` by its owner through `inviter`, accepting
/// through `invitee` (another gateway in the multi-gateway tests); returns
/// the member's token selecting the account.
pub(crate) async fn member_across(
    inviter: &Suite,
    invitee: &Suite,
    owner: &str,
    account_id: &str,
    email: &str,
    role: Role,
) -> String {
    let token = invitee.user(email).await;
    inviter
        .account(owner)
        .invite_member(InviteMemberRequest {
            email: email.into(),
            role: role as i32,
            access_scope: Some(AccessScope {
                portal_access: true,
                service_access: ServiceAccess::All as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let invitation = invitee.emailed_token(email, "accept_url").await;
    AccountServiceClient::new(invitee.gateway.clone())
        .accept_invitation(AcceptInvitationRequest {
            token: invitation,
            name: String::new(),
            password: String::new(),
        })
        .await
        .unwrap();
    invitee.switch(&token, account_id).await
}

pub(crate) fn reason(status: &tonic::Status) -> Reason {
    tenancy_testkit::refusal(status)
}

/// Polls `call` until it fails (with `code`, when given); returns how long
/// that took and the refusal.
/// Prints what the parts log at ERROR (an INTERNAL answer's cause) with
/// the test's output, shown when it fails.
pub(crate) fn log_errors() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("error")
        .with_test_writer()
        .try_init();
}

pub(crate) async fn refused_within<F, Fut, T>(
    limit: Duration,
    code: impl Into<Option<tonic::Code>>,
    mut call: F,
) -> (Duration, tonic::Status)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let code = code.into();
    let started = Instant::now();
    loop {
        if let Err(status) = call().await
            && code.is_none_or(|c| status.code() == c)
        {
            return (started.elapsed(), status);
        }
        assert!(started.elapsed() < limit, "not refused within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn missing_and_garbled_credentials_are_unauthenticated() {
    let suite = Suite::start(|_| {}).await;
    let status = IdentityServiceClient::new(suite.gateway.clone())
        .get_me(GetMeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status)),
        (tonic::Code::Unauthenticated, Reason::CredentialsMissing)
    );
    let status = suite
        .identity("garbage")
        .get_me(GetMeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status)),
        (tonic::Code::Unauthenticated, Reason::TokenMalformed)
    );
    let status = suite
        .identity("tny_notarealtoken")
        .get_me(GetMeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
}

#[tokio::test]
async fn a_member_token_reaches_the_service_with_its_live_role() {
    let suite = Suite::start(|_| {}).await;
    let token = suite.user("owner@example.com").await;
    let me = suite
        .identity(&token)
        .get_me(GetMeRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.user.unwrap().email, "owner@example.com");
    let (_, account_token) = suite.account_of(&token).await;
    let account = suite
        .account(&account_token)
        .get_account(GetAccountRequest::default())
        .await
        .unwrap();
    assert_eq!(account.into_inner().account.unwrap().name, "Ada Lovelace");
    // A token without a selected account cannot call ACCOUNT methods.
    let status = suite
        .account(&token)
        .get_account(GetAccountRequest::default())
        .await
        .unwrap_err();
    assert_eq!(reason(&status), Reason::AccountRequired);
}

#[tokio::test]
async fn a_revoked_session_is_refused_within_a_second() {
    let suite = Suite::start(|_| {}).await;
    let token = suite.user("leaver@example.com").await;
    suite
        .identity(&token)
        .get_me(GetMeRequest::default())
        .await
        .unwrap();
    suite
        .identity(&token)
        .logout(LogoutRequest::default())
        .await
        .unwrap();
    let (took, status) =
        refused_within(Duration::from_secs(1), tonic::Code::Unauthenticated, || {
            let mut client = suite.identity(&token);
            async move { client.get_me(GetMeRequest::default()).await }
        })
        .await;
    assert_eq!(
        reason(&status),
        Reason::TokenRevoked,
        "refused after {took:?}"
    );
}

#[tokio::test]
async fn a_suspended_member_is_refused_within_a_second_and_roles_are_enforced() {
    let suite = Suite::start(|_| {}).await;
    let owner = suite.user("boss@example.com").await;
    let (account_id, owner) = suite.account_of(&owner).await;
    let manager = suite
        .member(&owner, &account_id, "manager@example.com", Role::Manager)
        .await;

    // A MANAGER may read the account but not change security settings.
    suite
        .account(&manager)
        .get_account(GetAccountRequest::default())
        .await
        .unwrap();
    let status = suite
        .account(&manager)
        .update_security_settings(UpdateSecuritySettingsRequest {
            settings: Some(SecuritySettings::default()),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["enforce_mfa".into()],
            }),
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status)),
        (tonic::Code::PermissionDenied, Reason::RoleTooLow)
    );

    let me = suite
        .identity(&manager)
        .get_me(GetMeRequest::default())
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    suite
        .account(&owner)
        .suspend_member(SuspendMemberRequest { user_id: me.id })
        .await
        .unwrap();
    // The membership change refuses, saying so (the session is not ended).
    let status = suite.account_refusal(&manager).await;
    assert_eq!(
        (status.code(), reason(&status)),
        (tonic::Code::PermissionDenied, Reason::MemberSuspended),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_manager_updates_the_account_profile_but_not_users_security_or_support_access() {
    let suite = Suite::start(|_| {}).await;
    let owner = suite.user("chief@example.com").await;
    let (account_id, owner) = suite.account_of(&owner).await;
    let manager = suite
        .member(&owner, &account_id, "deputy@example.com", Role::Manager)
        .await;

    // Seed 004: "full access to account without the ability to invite and
    // edit users": the profile is the manager's to change.
    let updated = suite
        .account(&manager)
        .update_account(UpdateAccountRequest {
            account: Some(Account {
                name: "Lovelace Analytical Engines".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["name".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(updated.name, "Lovelace Analytical Engines");
    let seen = suite
        .account(&owner)
        .get_account(GetAccountRequest::default())
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(seen.name, "Lovelace Analytical Engines");

    // Users, security settings and support-team access stay with owners.
    let denied = |status: tonic::Status| {
        assert_eq!(
            (status.code(), reason(&status)),
            (tonic::Code::PermissionDenied, Reason::RoleTooLow),
            "{status:?}"
        );
    };
    denied(
        suite
            .account(&manager)
            .invite_member(InviteMemberRequest {
                email: "friend@example.com".into(),
                role: Role::Manager as i32,
                access_scope: None,
            })
            .await
            .unwrap_err(),
    );
    denied(
        suite
            .account(&manager)
            .update_security_settings(UpdateSecuritySettingsRequest {
                settings: Some(SecuritySettings {
                    enforce_mfa: true,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["enforce_mfa".into()],
                }),
                force: false,
            })
            .await
            .unwrap_err(),
    );
    denied(
        suite
            .account(&manager)
            .grant_support_access(GrantSupportAccessRequest {
                expiration: Some(grant_support_access_request::Expiration::Ttl(
                    prost_types::Duration {
                        seconds: 3600,
                        nanos: 0,
                    },
                )),
                note: String::new(),
            })
            .await
            .unwrap_err(),
    );
    denied(
        suite
            .account(&manager)
            .revoke_support_access(RevokeSupportAccessRequest::default())
            .await
            .unwrap_err(),
    );
}

#[tokio::test]
async fn the_allowlist_refuses_portal_tokens_from_outside_but_not_api_tokens() {
    let suite = Suite::start(|_| {}).await;
    let owner = suite.user("allow@example.com").await;
    let (_, owner) = suite.account_of(&owner).await;
    let api = suite.api_token(&owner).await;

    // The test connects from 127.0.0.1: an allowlist without it locks the
    // portal session out (forced past the self-lock-out guard).
    suite
        .account(&owner)
        .update_security_settings(UpdateSecuritySettingsRequest {
            settings: Some(SecuritySettings {
                ip_allowlist: vec!["198.51.100.0/24".into()],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["ip_allowlist".into()],
            }),
            force: true,
        })
        .await
        .unwrap();
    let (_, status) = refused_within(
        Duration::from_secs(1),
        tonic::Code::PermissionDenied,
        || {
            let mut client = suite.account(&owner);
            async move { client.get_account(GetAccountRequest::default()).await }
        },
    )
    .await;
    assert_eq!(reason(&status), Reason::IpNotAllowed);

    // A spoofed x-forwarded-for from an untrusted peer changes nothing.
    let spoofed = Bearer(
        owner.clone(),
        vec![("x-forwarded-for", "198.51.100.7".into())],
    );
    let status = AccountServiceClient::with_interceptor(suite.gateway.clone(), spoofed)
        .get_account(GetAccountRequest::default())
        .await
        .unwrap_err();
    assert_eq!(reason(&status), Reason::IpNotAllowed);

    // The Public API token is not restricted by the allowlist (seed 000).
    let services = suite
        .account(&api)
        .list_services(tenancy_proto::account::ListServicesRequest::default())
        .await;
    assert!(services.is_ok(), "{services:?}");
}

#[tokio::test]
async fn rate_limited_public_methods_answer_resource_exhausted_with_retry_info() {
    let suite = Suite::start(|config| {
        config.gateway.public_rate_per_minute = 1;
        config.gateway.public_burst = 3;
    })
    .await;
    let mut anonymous = IdentityServiceClient::new(suite.gateway.clone());
    let login = || LoginRequest {
        email: "nobody@example.com".into(),
        password: "wrong password entirely".into(),
        account_id: String::new(),
        unlock_token: String::new(),
    };
    for _ in 0..3 {
        let status = anonymous.login(login()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }
    let status = anonymous.login(login()).await.unwrap_err();
    assert_eq!(
        (status.code(), reason(&status)),
        (tonic::Code::ResourceExhausted, Reason::RateLimited)
    );
    use tonic_types::StatusExt as _;
    assert!(status.get_details_retry_info().is_some());
}

/// The suite started part by part, so parts can be stopped and restarted.
pub(crate) struct Parts {
    pub(crate) config: Config,
    pub(crate) services: Vec<(ServiceName, Running)>,
    pub(crate) gateway: Option<Running>,
    database: Arc<TestDatabase>,
}

impl Parts {
    pub(crate) async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub(crate) async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        log_errors();
        let database = Arc::new(TestDatabase::new("restart").await);
        let mut config = test_config(&database);
        config.auth.argon2_memory_kib = 1024;
        config.auth.argon2_iterations = 1;
        tweak(&mut config);
        let mut parts = Self {
            config,
            services: Vec::new(),
            gateway: None,
            database,
        };
        let parts_in_order = [
            (ServiceName::Contacts, Part::Contacts),
            (ServiceName::Identity, Part::Identity),
            (ServiceName::Account, Part::Account),
            (ServiceName::Support, Part::Support),
        ];
        // Every part's address is known before any starts (identity and
        // account call each other); restarts come back on the same address.
        for (name, _) in parts_in_order {
            let address = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap();
            parts.config.service_mut(name).listen = address;
            parts.config.service_mut(name).url = Some(format!("https://{address}"));
        }
        for (name, part) in parts_in_order {
            let running = start(parts.config.clone(), part, Arc::new(SystemClock))
                .await
                .unwrap();
            parts.services.push((name, running));
        }
        parts.start_gateway().await;
        parts
    }

    pub(crate) async fn start_gateway(&mut self) {
        let running = start(self.config.clone(), Part::Gateway, Arc::new(SystemClock))
            .await
            .unwrap();
        self.config.gateway.listen = running.gateway.unwrap();
        self.gateway = Some(running);
    }

    pub(crate) async fn suite(&self) -> Suite {
        // A Suite view for the helpers: contacts lookups go to the real part.
        let gateway = channel(self.config.gateway.listen).await;
        let running = start_view(&self.services);
        let suite = Suite {
            running,
            gateway,
            config: self.config.clone(),
            database: self.database.clone(),
        };
        suite.wait_ready().await;
        suite
    }
}

/// A `Running` stand-in listing where the parts listen (only `service()` is
/// used by the helpers).
fn start_view(services: &[(ServiceName, Running)]) -> Running {
    Running::listing(
        services
            .iter()
            .map(|(n, r)| (*n, r.service(*n).unwrap()))
            .collect(),
    )
}

#[tokio::test]
async fn while_identity_restarts_nothing_is_allowed_and_the_stream_resumes() {
    let mut parts = Parts::start().await;
    let suite = parts.suite().await;
    let token = suite.user("restart@example.com").await;
    suite
        .identity(&token)
        .get_me(GetMeRequest::default())
        .await
        .unwrap();

    // Identity stops: the gateway cannot learn of revocations, so it refuses
    // authenticated calls (fail closed) instead of trusting stale state.
    let index = parts
        .services
        .iter()
        .position(|(n, _)| *n == ServiceName::Identity)
        .unwrap();
    let (_, identity) = parts.services.remove(index);
    identity.stop().await.unwrap();
    let (_, status) = refused_within(Duration::from_secs(2), tonic::Code::Unavailable, || {
        let mut client = suite.account(&token);
        async move {
            client
                .list_my_accounts(tenancy_proto::account::ListMyAccountsRequest::default())
                .await
        }
    })
    .await;
    assert!(
        [Reason::GatewayNotReady, Reason::ServiceUnavailable].contains(&reason(&status)),
        "{status:?}"
    );

    // Identity is back: the gateway resumes from its position and the same
    // token works again; a logout after the restart is honoured.
    let running = start(parts.config.clone(), Part::Identity, Arc::new(SystemClock))
        .await
        .unwrap();
    parts.services.push((ServiceName::Identity, running));
    suite.wait_ready().await;
    suite
        .identity(&token)
        .get_me(GetMeRequest::default())
        .await
        .unwrap();
    suite
        .identity(&token)
        .logout(LogoutRequest::default())
        .await
        .unwrap();
    let (_, status) = refused_within(Duration::from_secs(1), tonic::Code::Unauthenticated, || {
        let mut client = suite.identity(&token);
        async move { client.get_me(GetMeRequest::default()).await }
    })
    .await;
    assert_eq!(reason(&status), Reason::TokenRevoked);
}

#[tokio::test]
async fn a_restarted_gateway_replays_revocations_made_while_it_was_down() {
    let mut parts = Parts::start().await;
    let suite = parts.suite().await;
    let kept = suite.user("kept@example.com").await;
    let revoked = suite.user("revoked@example.com").await;

    parts.gateway.take().unwrap().stop().await.unwrap();
    // Revoke the session behind the gateway's back, straight at identity.
    let identity = parts
        .services
        .iter()
        .find(|(n, _)| *n == ServiceName::Identity)
        .unwrap()
        .1
        .service(ServiceName::Identity)
        .unwrap();
    let claims_sid = session_of(&revoked);
    let user = user_of(&revoked);
    let mut as_user = IdentityServiceClient::with_interceptor(
        TestChannel::new(tenancy_runtime::tls::Caller::Identity, identity),
        Caller::new(
            Principal {
                user_id: Some(user),
                session_id: Some(claims_sid),
                token_kind: tenancy_proto::auth::TokenKind::Portal,
                amr: vec!["pwd".into()],
                request_id: "t".into(),
                ..Principal::default()
            },
            Arc::new(SystemClock),
        ),
    );
    as_user.logout(LogoutRequest::default()).await.unwrap();

    parts.start_gateway().await;
    let suite = parts.suite().await;
    suite
        .identity(&kept)
        .get_me(GetMeRequest::default())
        .await
        .unwrap();
    let status = suite
        .identity(&revoked)
        .get_me(GetMeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(reason(&status), Reason::TokenRevoked);
}

/// The `sid` claim of an access token (read without verification: the test
/// only needs to know which session to revoke).
pub(crate) fn session_of(token: &str) -> String {
    claim(token, "sid")
}

pub(crate) fn user_of(token: &str) -> String {
    claim(token, "sub")
}

pub(crate) fn claim(token: &str, name: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    json[name].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_open_stream_ends_within_a_second_when_its_session_is_revoked() {
    use tenancy_proto::support::WatchTicketRequest;
    use tenancy_proto::support::support_service_client::SupportServiceClient;
    let suite = Suite::start(|_| {}).await;
    let owner = suite.user("watcher@example.com").await;
    let (_account_id, owner) = suite.account_of(&owner).await;
    let mut support = SupportServiceClient::with_interceptor(suite.gateway.clone(), bearer(&owner));
    let ticket = suite.ticket(&owner).await;
    let mut stream = support
        .watch_ticket(WatchTicketRequest {
            ticket_id: ticket.id.clone(),
            after_message_sequence: 0,
        })
        .await
        .unwrap()
        .into_inner();
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the snapshot in time")
        .unwrap()
        .expect("a snapshot");
    suite
        .identity(&owner)
        .logout(LogoutRequest::default())
        .await
        .unwrap();
    let revoked_at = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without a refusal"),
                Err(status) => break status,
            }
        }
    })
    .await
    .expect("the stream ended");
    let took = revoked_at.elapsed();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert_eq!(reason(&status), Reason::TokenRevoked);
    assert!(took < Duration::from_secs(1), "ended after {took:?}");
}

/// `call`, made again while identity's hashing pool sheds it
/// (RESOURCE_EXHAUSTED `UPSTREAM_BUSY`, after the delay it asks), as a
/// well-behaved client does: on a machine loaded by other builds, a
/// sign-up or login a test only needs as a step can meet a full pool
/// (overload is tested on its own in identity and `replicas`).
pub(crate) async fn unshed<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match call().await {
            Err(status)
                if status.code() == tonic::Code::ResourceExhausted
                    && tenancy_runtime::error::reason_of(&status) == Some(Reason::UpstreamBusy)
                    && Instant::now() < deadline =>
            {
                let delay = tonic_types::StatusExt::get_details_retry_info(&status)
                    .and_then(|r| r.retry_delay)
                    .unwrap_or(Duration::from_millis(200));
                tokio::time::sleep(delay).await;
            }
            answered => return answered,
        }
    }
}
