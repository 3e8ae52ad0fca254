//! The operator's 3 a.m. commands (`tenancy admin unlock-login`,
//! `end-sessions`, …), run as the binary against a whole suite on loopback,
//! checked by their effect through the gateway, and refused with one line
//! and a non-zero exit when they name nobody.

use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tenancy::{Part, Running, start};
use tenancy_proto::identity::identity_internal_service_client::IdentityInternalServiceClient;
use tenancy_proto::identity::identity_service_client::IdentityServiceClient;
use tenancy_proto::identity::{
    EnsureUserRequest, GetMeRequest, LoginRequest, RefreshSessionRequest, SessionCredentials,
    SetInitialPasswordRequest, login_response,
};
use tenancy_runtime::config::ServiceName;
use tenancy_runtime::tls::Caller as Peer;
use tenancy_runtime::{ManualClock, Reason};
use tenancy_testkit::{TestChannel, TestDatabase, refusal, test_config, test_pki};
use tonic::transport::Channel;

const PASSWORD: &str = "correct horse battery staple";

/// A whole suite on loopback, as `tenancy serve` runs it.
struct Suite {
    running: Running,
    clock: ManualClock,
    gateway: Channel,
    identity: std::net::SocketAddr,
    _db: TestDatabase,
}

impl Suite {
    async fn start(label: &str) -> Self {
        Self::start_with(label, None).await
    }

    /// A suite sending its email to `smtp_url`, when given.
    async fn start_with(label: &str, smtp_url: Option<String>) -> Self {
        let db = TestDatabase::new(label).await;
        let clock = ManualClock::starting_now();
        let mut config = test_config(&db);
        config.smtp_url = smtp_url;
        let running = start(config, Part::All, Arc::new(clock.clone()))
            .await
            .unwrap();
        let gateway = Channel::from_shared(format!("http://{}", running.gateway.unwrap()))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let identity = running.service(ServiceName::Identity).unwrap();
        Self {
            running,
            clock,
            gateway,
            identity,
            _db: db,
        }
    }

    /// Runs `tenancy admin ARGS` with the operator's certificate against
    /// this suite's identity service (off the runtime's thread, which
    /// serves the suite meanwhile).
    async fn admin(&self, args: &[&str]) -> Output {
        let pki = test_pki();
        let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
        let identity = self.identity;
        let account = self.running.service(ServiceName::Account).unwrap();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_tenancy"))
                .arg("admin")
                .args(args)
                .env("TENANCY_PRINCIPAL_KEY", "11".repeat(32))
                .env("TENANCY_TLS__CA_FILE", pki.join("ca.pem"))
                .env("TENANCY_TLS__CERT_FILE", pki.join("{part}.pem"))
                .env("TENANCY_TLS__KEY_FILE", pki.join("{part}.key"))
                .env("TENANCY_IDENTITY__URL", format!("https://{identity}"))
                .env("TENANCY_ACCOUNT__URL", format!("https://{account}"))
                .env("TENANCY_DATA_DIR", pki.join("no-data-dir"))
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }

    /// Like [`Suite::admin`], and asserts it succeeded; returns stdout.
    async fn admin_ok(&self, args: &[&str]) -> String {
        let output = self.admin(args).await;
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// A user with a verified email and `PASSWORD` (as an accepted
    /// invitation makes one); returns the user's id.
    async fn user(&self, email: &str) -> String {
        let mut identity =
            IdentityInternalServiceClient::new(TestChannel::new(Peer::Identity, self.identity));
        let user = identity
            .ensure_user(EnsureUserRequest {
                email: email.to_owned(),
                name: "Ada".to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        identity
            .set_initial_password(SetInitialPasswordRequest {
                user_id: user.id.clone(),
                password: PASSWORD.to_owned(),
                name: String::new(),
            })
            .await
            .unwrap();
        user.id
    }

    /// Logs in through the gateway.
    async fn login(
        &self,
        email: &str,
        password: &str,
    ) -> Result<SessionCredentials, tonic::Status> {
        let response = IdentityServiceClient::new(self.gateway.clone())
            .login(LoginRequest {
                email: email.to_owned(),
                password: password.to_owned(),
                ..Default::default()
            })
            .await?
            .into_inner();
        match response.outcome {
            Some(login_response::Outcome::Session(session)) => Ok(session),
            other => panic!("no session: {other:?}"),
        }
    }

    /// GetMe through the gateway with `access`.
    async fn get_me(&self, access: &str) -> Result<(), tonic::Status> {
        let mut request = tonic::Request::new(GetMeRequest::default());
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {access}").parse().unwrap());
        IdentityServiceClient::new(self.gateway.clone())
            .get_me(request)
            .await
            .map(drop)
    }

    /// Polls GetMe until it gives `wanted` (Ok or the refusal), for at most
    /// 20 s (the gateway catches up with identity's stream asynchronously).
    async fn until_get_me(&self, access: &str, wanted: Option<Reason>) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.get_me(access).await.map_err(|s| refusal(&s));
            if got.err() == wanted {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "GetMe: {got:?}, wanted {wanted:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The one line a refused command prints, and its exit.
fn refused(output: &Output) -> String {
    assert!(!output.status.success(), "accepted");
    assert!(output.stdout.is_empty(), "printed {:?}", output.stdout);
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    stderr
}

#[tokio::test]
async fn unlock_login_lets_the_right_password_in_at_once() {
    let suite = Suite::start("unlock").await;
    let email = "ada@example.com";
    suite.user(email).await;
    for _ in 0..5 {
        let status = suite
            .login(email, "wrong password, guessed")
            .await
            .unwrap_err();
        assert_eq!(refusal(&status), Reason::CredentialsInvalid, "{status:?}");
    }
    // Throttled: even the right password is refused now (the suite's
    // clock stands still, so the back-off never runs out by itself).
    let status = suite.login(email, PASSWORD).await.unwrap_err();
    assert_eq!(refusal(&status), Reason::AttemptsExceeded, "{status:?}");

    let printed = suite
        .admin_ok(&["unlock-login", "--email", "ADA@example.com"])
        .await;
    assert!(printed.contains("unlocked"), "{printed}");
    suite.login(email, PASSWORD).await.unwrap();

    // Nobody by that email: one line, non-zero exit, nothing changed.
    let stderr = refused(
        &suite
            .admin(&["unlock-login", "--email", "nobody@example.com"])
            .await,
    );
    assert!(stderr.contains("user not found"), "{stderr}");
    let stderr = refused(
        &suite
            .admin(&["unlock-login", "--email", "not an email"])
            .await,
    );
    assert!(stderr.contains("InvalidArgument"), "{stderr}");
    suite.running.stop().await.unwrap();
}

#[tokio::test]
async fn end_sessions_ends_every_session_of_the_user_and_no_one_elses() {
    let suite = Suite::start("end-sessions").await;
    let user = suite.user("ada@example.com").await;
    suite.user("bob@example.com").await;
    let first = suite.login("ada@example.com", PASSWORD).await.unwrap();
    let second = suite.login("ada@example.com", PASSWORD).await.unwrap();
    let other = suite.login("bob@example.com", PASSWORD).await.unwrap();
    let access = |s: &SessionCredentials| s.access_token.as_ref().unwrap().token.clone();
    suite.until_get_me(&access(&first), None).await;

    let printed = suite.admin_ok(&["end-sessions", "--user", &user]).await;
    assert!(printed.contains("2 sessions"), "{printed}");
    // The gateway drops the access tokens, refresh no longer works.
    suite
        .until_get_me(&access(&first), Some(Reason::TokenRevoked))
        .await;
    suite
        .until_get_me(&access(&second), Some(Reason::TokenRevoked))
        .await;
    let mut identity = IdentityServiceClient::new(suite.gateway.clone());
    for session in [&first, &second] {
        let status = identity
            .refresh_session(RefreshSessionRequest {
                refresh_token: session.refresh_token.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    }
    // Bob's session is untouched; by email, a second run ends nothing.
    suite.get_me(&access(&other)).await.unwrap();
    identity
        .refresh_session(RefreshSessionRequest {
            refresh_token: other.refresh_token.clone(),
        })
        .await
        .unwrap();
    let printed = suite
        .admin_ok(&["end-sessions", "--email", "ada@example.com"])
        .await;
    assert!(printed.contains("0 sessions"), "{printed}");

    let stderr = refused(
        &suite
            .admin(&["end-sessions", "--email", "nobody@example.com"])
            .await,
    );
    assert!(stderr.contains("user not found"), "{stderr}");
    let unknown = tenancy_runtime::ids::new_id();
    let stderr = refused(&suite.admin(&["end-sessions", "--user", &unknown]).await);
    assert!(stderr.contains("user not found"), "{stderr}");
    // Exactly one of --user and --email.
    assert!(!suite.admin(&["end-sessions"]).await.status.success());
    assert!(
        !suite
            .admin(&[
                "end-sessions",
                "--user",
                &user,
                "--email",
                "ada@example.com"
            ])
            .await
            .status
            .success()
    );
    suite.running.stop().await.unwrap();
}

#[tokio::test]
async fn show_user_lists_memberships_and_sessions_without_secrets() {
    use tenancy_proto::account::account_service_client::AccountServiceClient;
    use tenancy_testkit::{Caller, Role, member, new_account};
    let suite = Suite::start("show-user").await;
    let user = suite.user("ada@example.com").await;
    let account = AccountServiceClient::with_interceptor(
        TestChannel::new(
            Peer::Account,
            suite.running.service(ServiceName::Account).unwrap(),
        ),
        Caller::new(
            member(&user, "", Role::Unspecified),
            Arc::new(ManualClock::starting_now()),
        ),
    )
    .create_account(new_account())
    .await
    .unwrap()
    .into_inner()
    .account
    .unwrap();
    let session = suite.login("ada@example.com", PASSWORD).await.unwrap();

    for args in [
        ["show-user", "--email", "ada@example.com"],
        ["show-user", "--user", user.as_str()],
    ] {
        let printed = suite.admin_ok(&args).await;
        assert!(
            printed.contains(&format!("user {user} <ada@example.com>")),
            "{printed}"
        );
        assert!(printed.contains("memberships: 1"), "{printed}");
        let line = printed
            .lines()
            .find(|l| l.contains(&account.id))
            .unwrap_or_else(|| panic!("no membership line: {printed}"));
        assert!(
            line.contains("ROLE_OWNER") && line.contains("MEMBER_STATUS_ACTIVE"),
            "{line}"
        );
        assert!(printed.contains("sessions: 1"), "{printed}");
        let line = printed
            .lines()
            .find(|l| l.contains(&session.session_id))
            .unwrap_or_else(|| panic!("no session line: {printed}"));
        assert!(line.contains("from 127.0.0.1"), "{line}");
        assert!(!printed.contains(&session.refresh_token), "{printed}");
        assert!(
            !printed.contains(&session.access_token.clone().unwrap().token),
            "{printed}"
        );
    }
    // An ended session is no longer listed.
    suite.admin_ok(&["end-sessions", "--user", &user]).await;
    let printed = suite.admin_ok(&["show-user", "--user", &user]).await;
    assert!(printed.contains("sessions: 0"), "{printed}");

    let stderr = refused(
        &suite
            .admin(&["show-user", "--email", "nobody@example.com"])
            .await,
    );
    assert!(stderr.contains("user not found"), "{stderr}");
    let stderr = refused(&suite.admin(&["show-user", "--user", "not-a-uuid"]).await);
    assert!(stderr.contains("InvalidArgument"), "{stderr}");
    suite.running.stop().await.unwrap();
}

/// The operator actions on `user` as identity's DescribeUser returns them,
/// asked over gRPC with the operator's certificate.
async fn admin_events(suite: &Suite, user: &str) -> Vec<tenancy_proto::identity::AdminEvent> {
    use tenancy_proto::identity::{DescribeUserRequest, describe_user_request};
    let channel = TestChannel::new(Peer::Identity, suite.identity).as_caller(Peer::Operator);
    IdentityInternalServiceClient::new(channel)
        .describe_user(DescribeUserRequest {
            user: Some(describe_user_request::User::UserId(user.to_owned())),
        })
        .await
        .unwrap()
        .into_inner()
        .admin_events
}

#[tokio::test]
async fn operator_actions_are_audited_with_the_users_record() {
    let suite = Suite::start("admin-audit").await;
    let ada = suite.user("ada@example.com").await;
    let bob = suite.user("bob@example.com").await;
    suite.login("ada@example.com", PASSWORD).await.unwrap();
    assert!(admin_events(&suite, &ada).await.is_empty());

    // Each action one second apart (the suite's clock stands still).
    let step = Duration::from_secs(1);
    suite
        .admin_ok(&["unlock-login", "--email", "ada@example.com"])
        .await;
    suite.clock.advance(step);
    suite.admin_ok(&["end-sessions", "--user", &ada]).await;
    suite.clock.advance(step);
    suite.admin_ok(&["grant-staff", "ada@example.com"]).await;
    suite.clock.advance(step);
    suite.admin_ok(&["revoke-staff", "ada@example.com"]).await;
    suite.clock.advance(step);
    suite.admin_ok(&["rotate-signing-key"]).await;
    // Refused actions write nothing.
    refused(
        &suite
            .admin(&["unlock-login", "--email", "nobody@example.com"])
            .await,
    );
    let unknown = tenancy_runtime::ids::new_id();
    refused(&suite.admin(&["end-sessions", "--user", &unknown]).await);

    let events = admin_events(&suite, &ada).await;
    // How many throttle counters the unlock cleared depends on the login
    // before it; the count is there.
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|e| match e.detail.strip_prefix("cleared=") {
            Some(n) if n.parse::<u64>().is_ok() => (e.action.as_str(), "cleared=N"),
            _ => (e.action.as_str(), e.detail.as_str()),
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("admin.revoke_staff", "changed=true"),
            ("admin.grant_staff", "changed=true"),
            ("admin.end_sessions", "ended=1"),
            ("admin.unlock_login", "cleared=N"),
        ],
        "newest first, the key rotation names no user: {events:?}"
    );
    for e in &events {
        assert_eq!(e.caller, "operator", "{e:?}");
        assert!(!e.request_id.is_empty(), "{e:?}");
    }
    let times: Vec<i64> = events.iter().map(|e| e.time.unwrap().seconds).collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]), "{times:?}");
    // Another user's record stays empty.
    assert!(admin_events(&suite, &bob).await.is_empty());

    // show-user prints them; a second end-sessions adds a row (ended=0).
    suite
        .admin_ok(&["end-sessions", "--email", "ada@example.com"])
        .await;
    let printed = suite.admin_ok(&["show-user", "--user", &ada]).await;
    assert!(printed.contains("operator actions: 5"), "{printed}");
    let line = printed
        .lines()
        .find(|l| l.contains("admin.end_sessions") && l.contains("ended=0"))
        .unwrap_or_else(|| panic!("no audit line: {printed}"));
    assert!(line.contains("by operator (request "), "{line}");
    assert!(!printed.contains(PASSWORD), "{printed}");
    suite.running.stop().await.unwrap();
}

#[tokio::test]
async fn resend_invitation_sends_a_new_link_within_the_owners_limits() {
    use tenancy_proto::account::InviteMemberRequest;
    use tenancy_proto::account::account_service_client::AccountServiceClient;
    use tenancy_testkit::{Caller, Role, SmtpServer, member, new_account};
    let smtp = SmtpServer::start().await;
    let suite = Suite::start_with("resend-invitation", Some(smtp.url())).await;
    let owner = suite.user("ada@example.com").await;
    let channel = TestChannel::new(
        Peer::Account,
        suite.running.service(ServiceName::Account).unwrap(),
    );
    let as_user = |account: &str, role| {
        AccountServiceClient::with_interceptor(
            channel.clone(),
            Caller::new(member(&owner, account, role), Arc::new(suite.clock.clone())),
        )
    };
    let account = as_user("", Role::Unspecified)
        .create_account(new_account())
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    let invitation = as_user(&account.id, Role::Owner)
        .invite_member(InviteMemberRequest {
            email: "bob@example.com".to_owned(),
            role: tenancy_proto::auth::Role::Owner as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .invitation
        .unwrap();
    let emails_to_bob = || {
        smtp.received()
            .into_iter()
            .filter(|m| m.rcpt.iter().any(|r| r.contains("bob@example.com")))
            .count()
    };
    let until = |n: usize| async move {
        let deadline = Instant::now() + Duration::from_secs(20);
        while emails_to_bob() < n {
            assert!(
                Instant::now() < deadline,
                "{} emails to bob, wanted {n}",
                emails_to_bob()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    until(1).await;

    // Within a minute of the last send: refused, as the owner would be.
    let stderr = refused(
        &suite
            .admin(&["resend-invitation", "--invitation", &invitation.id])
            .await,
    );
    assert!(stderr.contains("ResourceExhausted"), "{stderr}");
    suite.clock.advance(Duration::from_secs(61));
    let printed = suite
        .admin_ok(&["resend-invitation", "--invitation", &invitation.id])
        .await;
    assert!(
        printed.contains("sent again to bob@example.com"),
        "{printed}"
    );
    until(2).await;

    let unknown = tenancy_runtime::ids::new_id();
    let stderr = refused(
        &suite
            .admin(&["resend-invitation", "--invitation", &unknown])
            .await,
    );
    assert!(stderr.contains("NotFound"), "{stderr}");
    suite.running.stop().await.unwrap();
}
