//! Shared fixtures: a contacts server on a fresh database, clients that sign
//! principals like the gateway, and a loopback SMTP server.

use std::time::Duration;

use tenancy_contacts::ContactsService;
use tenancy_proto::contacts::contacts_internal_service_client::ContactsInternalServiceClient;
use tenancy_proto::contacts::contacts_service_client::ContactsServiceClient;
use tenancy_runtime::config::Config;
use tenancy_runtime::{ManualClock, Principal};
use tenancy_testkit::TestChannel as Channel;
use tenancy_testkit::{Caller, Role, Running, TestDatabase};
pub use tenancy_testkit::{Reply, SmtpServer};
use tonic::service::interceptor::InterceptedService;

pub type Internal = ContactsInternalServiceClient<InterceptedService<Channel, Caller>>;
pub type Public = ContactsServiceClient<InterceptedService<Channel, Caller>>;

/// A contacts service under test.
pub struct Env {
    pub db: TestDatabase,
    pub clock: ManualClock,
    pub running: Option<Running>,
    pub config: Config,
}

impl Env {
    /// A contacts service on a fresh database with the dev mailer.
    pub async fn start(label: &str) -> Self {
        Self::start_with(label, |_| {}).await
    }

    /// As [`Env::start`], with the configuration changed by `configure`.
    pub async fn start_with(label: &str, configure: impl FnOnce(&mut Config)) -> Self {
        let db = TestDatabase::new(label).await;
        let mut config = tenancy_testkit::test_config(&db);
        configure(&mut config);
        let mut env = Self {
            db,
            clock: ManualClock::starting_now(),
            running: None,
            config,
        };
        env.restart().await;
        env
    }

    /// A contacts service on `db` with `config` and `clock`, serving on
    /// `listener` (whose address peers know already).
    pub async fn start_on(
        db: TestDatabase,
        config: Config,
        clock: ManualClock,
        listener: tokio::net::TcpListener,
    ) -> Self {
        let mut env = Self {
            db,
            clock,
            running: None,
            config,
        };
        env.running = Some(env.start_running(listener).await);
        env
    }

    async fn start_running(&self, listener: tokio::net::TcpListener) -> Running {
        let context = tenancy_testkit::test_context(
            self.config.clone(),
            std::sync::Arc::new(self.clock.clone()),
        );
        tenancy_testkit::start_on::<ContactsService>(listener, context, self.clock.clone()).await
    }

    /// Stops the service (if running) and starts it again on the same
    /// database and clock.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.running = Some(self.start_running(tenancy_testkit::loopback().await).await);
    }

    /// Stops the service.
    pub async fn stop(&mut self) {
        if self.running.take().is_some() {
            // Let the server and its worker notice the shutdown.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn channel(&self) -> Channel {
        self.running.as_ref().expect("running").channel().await
    }

    /// The internal API, called as another Tenancy service.
    pub async fn internal(&self) -> Internal {
        let caller = Caller::new(
            Principal::service("test-request"),
            std::sync::Arc::new(self.clock.clone()),
        );
        ContactsInternalServiceClient::with_interceptor(self.channel().await, caller)
    }

    /// The internal API, called with the certificate of `caller` (refusal
    /// tests: a caller the method does not allow).
    pub async fn internal_as(&self, caller: tenancy_runtime::tls::Caller) -> Internal {
        let caller_principal = Caller::new(
            Principal::service("test-request"),
            std::sync::Arc::new(self.clock.clone()),
        );
        ContactsInternalServiceClient::with_interceptor(
            self.channel().await.as_caller(caller),
            caller_principal,
        )
    }

    /// The public API as `principal`.
    pub async fn public_as(&self, principal: Principal) -> Public {
        let caller = Caller::new(principal, std::sync::Arc::new(self.clock.clone()));
        ContactsServiceClient::with_interceptor(self.channel().await, caller)
    }

    /// The public API as a member with `role` in `account`.
    pub async fn member(&self, user: &str, account: &str, role: Role) -> Public {
        self.public_as(tenancy_testkit::member(user, account, role))
            .await
    }

    /// The public API without credentials.
    pub async fn anonymous(&self) -> Public {
        let principal = Principal::anonymous(None, "anon");
        // PUBLIC methods need no principal; an unsigned client works too,
        // but signing an anonymous one is what the gateway does.
        self.public_as(principal).await
    }
}

/// A fresh UUID.
pub fn id() -> String {
    tenancy_runtime::ids::new_id()
}

/// The ErrorInfo reason of a status, checked against the catalogue.
pub fn reason(status: &tonic::Status) -> tenancy_testkit::Reason {
    tenancy_testkit::refusal(status)
}

/// The field violations of a status.
pub fn fields(status: &tonic::Status) -> Vec<String> {
    tenancy_runtime::error::violated_fields(status)
}

/// Waits (real time) until `check` holds, or panics after `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if check().await {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The SMTP server the delivery tests send to, refusing recipients whose
/// address starts with `reject` permanently (550), as a relay refuses an
/// unknown mailbox.
pub async fn smtp_server() -> SmtpServer {
    let server = SmtpServer::start().await;
    server.on_rcpt(|to| {
        to.starts_with("reject")
            .then(|| Reply::new(550, "5.1.1 No such user here"))
    });
    server
}
