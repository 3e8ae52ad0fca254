//! Test fixtures shared by every crate's integration tests.
//!
//! - [`TestDatabase`]: a fresh database per test: a SQLite file, or — when
//!   `TENANCY_TEST_DATABASE_URL` points at a PostgreSQL server — a new
//!   PostgreSQL database created for the test.
//! - [`start`]: a service opened on that database and served on an ephemeral
//!   loopback port, stopped when the handle drops.
//! - [`Caller`]: signs a principal onto every call of a generated client, as
//!   the gateway would (for the method called, with a fresh call id).
//! - [`TestChannel`]: a channel to a service over mutual TLS, with
//!   certificates of the per-test-run CA ([`test_pki`]): it presents the
//!   certificate of a caller the method allows (the gateway for client
//!   methods), or one chosen with [`TestChannel::as_caller`].
//! - [`refusal`]: the catalogue reason of a refusal, checked against what
//!   the catalogue promises (every test that looks at a reason checks it).
//! - `Peers` (feature `peers`): the real identity, account and contacts
//!   services beside the one under test, each on its own database and
//!   loopback port, on one clock.
//! - [`SmtpServer`]: a real SMTP server on loopback that keeps what it
//!   receives, refuses on demand and can be stopped and restarted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Database};
use tenancy_proto::auth::Audience;
use tenancy_runtime::clock::SharedClock;
use tenancy_runtime::config::{Config, ServiceName, TlsConfig};
use tenancy_runtime::principal::{Call, CallIds, Principal};
use tenancy_runtime::rules::MethodRules;
use tenancy_runtime::shutdown::{self, ShutdownTrigger};
use tenancy_runtime::tls::{Caller as Part, Connector, PartTls, dev::DevPki};
use tenancy_runtime::{Context, ManualClock, PrincipalKey, TenancyService, TlsParts};
use tokio::net::TcpListener;

pub use tenancy_runtime::Reason;
pub use tenancy_runtime::principal::{Role, TokenKind};

pub mod sms;
pub mod smtp;
pub use sms::{SmsRequest, SmsServer};
pub use smtp::{Received, Reply, SmtpServer};

/// The catalogue reason of a refusal, after checking that it keeps every
/// promise of `proto/tenancy/errors/v1/reason.proto`: one
/// `google.rpc.ErrorInfo` of domain `tenancy.dev` whose reason is in the
/// catalogue and whose gRPC code is the catalogue's for it; INVALID_ARGUMENT
/// with at least one field violation, each naming its field and saying
/// specifically what is wrong (not a bare reason or code name, not the
/// field's name again), and a message that names no field twice in a row
/// ("password: password: …"). Panics (failing the test) otherwise.
#[track_caller]
pub fn refusal(status: &tonic::Status) -> Reason {
    use tonic_types::StatusExt as _;
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo on {status:?}"));
    assert_eq!(
        info.domain,
        tenancy_runtime::error::ERROR_DOMAIN,
        "{status:?}"
    );
    let reason = Reason::from_str_name(&info.reason).unwrap_or_else(|| {
        panic!(
            "reason {:?} is not in the catalogue (tenancy.errors.v1.Reason): {status:?}",
            info.reason
        )
    });
    assert_eq!(
        status.code(),
        reason.code(),
        "{reason} must have the catalogue's code: {status:?}"
    );
    let violations = details
        .bad_request()
        .map(|b| b.field_violations.clone())
        .unwrap_or_default();
    if status.code() == tonic::Code::InvalidArgument {
        assert!(
            !violations.is_empty(),
            "INVALID_ARGUMENT without field violations: {status:?}"
        );
    }
    for v in &violations {
        let d = v.description.trim();
        assert!(!v.field.is_empty(), "violation without a field: {status:?}");
        assert!(
            !d.is_empty(),
            "violation of {} says nothing: {status:?}",
            v.field
        );
        assert!(
            !d.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
            "violation of {} only names a reason or code ({d}): {status:?}",
            v.field
        );
        assert!(
            !d.starts_with(&format!("{}:", v.field)),
            "violation of {} repeats its field name: {status:?}",
            v.field
        );
    }
    let words: Vec<&str> = status.message().split_whitespace().collect();
    assert!(
        !words
            .windows(2)
            .any(|w| w[0] == w[1] && w[0].ends_with(':')),
        "message names a field twice: {:?}",
        status.message()
    );
    reason
}

#[cfg(feature = "peers")]
mod acme;
#[cfg(feature = "peers")]
mod peers;
#[cfg(feature = "peers")]
pub use acme::{Acme, PASSWORD, Signed};
#[cfg(feature = "peers")]
pub use peers::Peers;

/// The environment variable naming a PostgreSQL server for tests, e.g.
/// `postgres://tenancy:tenancy@127.0.0.1:5432/postgres`.
pub const POSTGRES_ENV: &str = "TENANCY_TEST_DATABASE_URL";

/// The principal key every test server and test client shares.
pub fn test_key() -> PrincipalKey {
    PrincipalKey::parse(&"11".repeat(32)).unwrap()
}

/// CPU time (user + system, every thread) process `pid` has used so far
/// (`"self"` for this one), from `/proc/PID/stat`; zero when unreadable.
pub fn process_cpu(pid: &str) -> Duration {
    // utime and stime are the 14th and 15th fields, in clock ticks (100 a
    // second on Linux); the command name before them may hold spaces.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let fields: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            let tick = |i: usize| fields.get(i)?.parse::<u64>().ok();
            Some(Duration::from_millis((tick(11)? + tick(12)?) * 10))
        })
        .unwrap_or_default()
}

/// The per-test-run CA and a certificate for every caller, made once per
/// test process in a temporary directory.
pub fn test_pki() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!(
            "tenancy-test-pki-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let pki = DevPki::open(&dir).unwrap();
        pki.issue_all().unwrap();
        dir
    })
}

/// `tls.*` settings naming the per-test-run CA's files.
pub fn test_tls_config() -> TlsConfig {
    let dir = test_pki();
    TlsConfig {
        ca_file: Some(dir.join("ca.pem")),
        cert_file: Some(dir.join("{part}.pem").display().to_string()),
        key_file: Some(dir.join("{part}.key").display().to_string()),
        reload_interval: None,
    }
}

/// The per-test-run certificate of `caller`, loaded once.
pub fn tls_for(caller: Part) -> Arc<PartTls> {
    static LOADED: OnceLock<TlsParts> = OnceLock::new();
    LOADED
        .get_or_init(|| TlsParts::new(&test_tls_config()))
        .part(caller)
        .unwrap()
}

/// A database of one's own for one test.
///
/// On PostgreSQL the database is dropped once this value is dropped and
/// nothing is connected to it any more (the services of a test close their
/// connections when the test's runtime ends, just after): a background
/// thread tries for a few seconds, and PostgreSQL refuses to drop a
/// database in use, so one still in use is never pulled away (it is left,
/// as a test process that exits first leaves its last ones; CI drops
/// leftovers at start). Keep it alive as long as the test uses the database.
pub struct TestDatabase {
    /// The URL services connect to.
    pub url: String,
    /// Where SQLite files (and anything else) of the test live.
    pub dir: PathBuf,
    /// PostgreSQL: the server's admin URL and the database's name.
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    /// Whether tests run against PostgreSQL.
    pub fn is_postgres() -> bool {
        std::env::var(POSTGRES_ENV).is_ok_and(|v| !v.is_empty())
    }

    /// Where `needle` occurs in the database, to prove a secret is kept
    /// nowhere: PostgreSQL: every row of every table of the database, as
    /// text (`"table": row`); SQLite: the bytes of every file in [`Self::dir`]
    /// (the database, its WAL and journal: free pages and old row
    /// versions included, as a backup copy would hold them).
    pub async fn find_text(&self, needle: &str) -> Vec<String> {
        let mut found = Vec::new();
        if self.postgres.is_some() {
            let db = Database::connect(&self.url).await.unwrap();
            let tables = db
                .query_all_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    "SELECT table_name::text AS t FROM information_schema.tables \
                     WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
                ))
                .await
                .unwrap();
            for table in tables {
                let table: String = table.try_get("", "t").unwrap();
                let rows = db
                    .query_all_raw(sea_orm::Statement::from_string(
                        sea_orm::DbBackend::Postgres,
                        format!("SELECT r::text AS row FROM \"{table}\" r"),
                    ))
                    .await
                    .unwrap();
                for row in rows {
                    let text: String = row.try_get("", "row").unwrap();
                    if text.contains(needle) {
                        found.push(format!("{table}: {text}"));
                    }
                }
            }
            db.close().await.unwrap();
        } else {
            for entry in std::fs::read_dir(&self.dir).unwrap().flatten() {
                let Ok(bytes) = std::fs::read(entry.path()) else {
                    continue;
                };
                if bytes
                    .windows(needle.len().max(1))
                    .any(|w| w == needle.as_bytes())
                {
                    found.push(entry.path().display().to_string());
                }
            }
        }
        found
    }

    /// A fresh, empty database named after `label`.
    pub async fn new(label: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("tenancy-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut postgres = None;
        let url = match std::env::var(POSTGRES_ENV) {
            Ok(admin_url) if !admin_url.is_empty() => {
                let name = format!(
                    "t_{label}_{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..12]
                );
                let admin = Database::connect(&admin_url).await.unwrap();
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .unwrap();
                admin.close().await.unwrap();
                let url = replace_database(&admin_url, &name);
                postgres = Some((admin_url, name));
                url
            }
            _ => format!("sqlite://{}/{label}.db?mode=rwc", dir.display()),
        };
        Self { url, dir, postgres }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.postgres.take() else {
            return;
        };
        // Not `WITH (FORCE)`: a database something still uses stays.
        // PostgreSQL waits up to 5 s for its other sessions to end before it
        // refuses; the thread runs on its own runtime, as the test's may be
        // ending.
        let drop_database = move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                for _ in 0..3 {
                    if let Ok(admin) = Database::connect(&admin_url).await {
                        let dropped = admin
                            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\""))
                            .await
                            .is_ok();
                        let _ = admin.close().await;
                        if dropped {
                            return;
                        }
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            });
        };
        let _ = std::thread::Builder::new()
            .name("drop-test-database".to_owned())
            .spawn(drop_database);
    }
}

/// `postgres://u:p@h:5432/db?x` with the database replaced by `name`.
fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_end..].find('/').map(|i| i + authority_end);
    let host = path_start.map_or(base, |i| &base[..i]);
    match query {
        Some(q) => format!("{host}/{name}?{q}"),
        None => format!("{host}/{name}"),
    }
}

/// A configuration for one test: ephemeral ports, `db` for every service,
/// the per-test-run CA.
pub fn test_config(db: &TestDatabase) -> Config {
    let mut config = Config::for_test(&db.dir);
    config.tls = test_tls_config();
    for name in ServiceName::ALL {
        config.service_mut(name).database_url = Some(db.url.clone());
    }
    config
}

/// A context for servers under test, on `clock` ([`start`] makes it the
/// started service's).
pub fn test_context(config: Config, clock: SharedClock) -> Context {
    let tls = Arc::new(TlsParts::new(&config.tls));
    Context {
        config: Arc::new(config),
        key: test_key(),
        clock,
        metrics: tenancy_runtime::Metrics::new(&rules()),
        rules: rules(),
        tls,
        part: Part::Unspecified,
    }
}

fn rules() -> Arc<MethodRules> {
    static RULES: OnceLock<Arc<MethodRules>> = OnceLock::new();
    RULES
        .get_or_init(|| Arc::new(MethodRules::tenancy().unwrap()))
        .clone()
}

/// A service served on an ephemeral port; stops when dropped.
pub struct Running {
    /// Where it listens.
    pub address: SocketAddr,
    /// The clock the service runs on.
    pub clock: ManualClock,
    /// Which service it is.
    pub part: Part,
    _stop: ShutdownTrigger,
}

impl Running {
    /// A channel to the service (see [`TestChannel`]).
    pub async fn channel(&self) -> TestChannel {
        TestChannel::new(self.part, self.address)
    }
}

/// Opens `S` with `context` and serves it on an ephemeral loopback port.
pub async fn start<S: TenancyService>(context: Context, clock: ManualClock) -> Running {
    start_on::<S>(loopback().await, context, clock).await
}

/// An ephemeral loopback listener, bound before anything serves on it, so
/// services that call each other can all be configured with every address
/// before the first one starts (see [`start_on`]).
pub async fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// Opens `S` with `context` and serves it on `listener`.
pub async fn start_on<S: TenancyService>(
    listener: TcpListener,
    context: Context,
    clock: ManualClock,
) -> Running {
    let address = listener.local_addr().unwrap();
    let context = context.for_part(S::NAME.caller());
    let service = S::open(context).await.unwrap();
    let (trigger, stop) = shutdown::channel();
    tokio::spawn(async move {
        if let Err(error) = service.serve(listener, stop).await {
            eprintln!("test server stopped: {error}");
        }
    });
    Running {
        address,
        clock,
        part: S::NAME.caller(),
        _stop: trigger,
    }
}

/// A channel to one service over mutual TLS with the per-test-run CA's
/// certificates. Each call presents the certificate of a caller its method
/// allows: the first one an INTERNAL method's rule names, the gateway for
/// every other method; [`TestChannel::as_caller`] presents one chosen
/// instead (refusal tests). A principal a [`Caller`] attached is signed
/// here, for the method being called, with a fresh call id, as the gateway
/// does.
#[derive(Clone)]
pub struct TestChannel {
    server: Part,
    address: SocketAddr,
    pinned: Option<Part>,
    connections: Arc<parking_lot::Mutex<HashMap<Part, tonic::transport::Channel>>>,
}

impl TestChannel {
    /// A channel to `server` at `address`.
    pub fn new(server: Part, address: SocketAddr) -> Self {
        Self {
            server,
            address,
            pinned: None,
            connections: Arc::default(),
        }
    }

    /// The same service, every call presenting the certificate of `caller`.
    pub fn as_caller(&self, caller: Part) -> Self {
        Self {
            pinned: Some(caller),
            connections: Arc::default(),
            ..self.clone()
        }
    }

    fn caller_for(&self, path: &str) -> Part {
        if let Some(pinned) = self.pinned {
            return pinned;
        }
        match rules().rule(path) {
            Some(rule) if rule.audience() == Audience::Internal => {
                rule.callers().next().unwrap_or(Part::Gateway)
            }
            _ => Part::Gateway,
        }
    }

    fn connection(&self, caller: Part) -> tonic::transport::Channel {
        self.connections
            .lock()
            .entry(caller)
            .or_insert_with(|| {
                tonic::transport::Endpoint::from_shared(format!("https://{}", self.address))
                    .unwrap()
                    .connect_with_connector_lazy(Connector::new(
                        tls_for(caller),
                        self.server,
                        // Generous: a loaded 2-core CI machine running many
                        // suites at once can take seconds to accept.
                        Duration::from_secs(20),
                    ))
            })
            .clone()
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl tower::Service<http::Request<tonic::body::Body>> for TestChannel {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        let path = request.uri().path().to_owned();
        if let Some(sign) = request.extensions_mut().remove::<SignAs>() {
            static IDS: OnceLock<CallIds> = OnceLock::new();
            test_key()
                .sign(
                    &sign.principal,
                    Call {
                        method: &path,
                        id: IDS.get_or_init(CallIds::default).next(),
                    },
                    sign.clock.now(),
                )
                .insert_into(request.headers_mut());
        }
        let connection = self.connection(self.caller_for(&path));
        Box::pin(tower::ServiceExt::oneshot(connection, request))
    }
}

/// A principal to sign onto a call, attached by [`Caller`].
#[derive(Clone)]
struct SignAs {
    principal: Principal,
    clock: SharedClock,
}

/// Signs `principal` onto every call, as the gateway does.
#[derive(Clone)]
pub struct Caller {
    /// Who calls.
    pub principal: Principal,
    clock: SharedClock,
}

impl Caller {
    /// A caller with `principal`, signed against `clock`.
    pub fn new(principal: Principal, clock: SharedClock) -> Self {
        Self { principal, clock }
    }
}

impl tonic::service::Interceptor for Caller {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        // The method is known only to the channel: it signs (see
        // `TestChannel`).
        request.extensions_mut().insert(SignAs {
            principal: self.principal.clone(),
            clock: self.clock.clone(),
        });
        Ok(request)
    }
}

/// A principal for a portal user with `role` in `account_id`.
pub fn member(user_id: &str, account_id: &str, role: Role) -> Principal {
    Principal {
        user_id: Some(user_id.to_owned()),
        account_id: Some(account_id.to_owned()),
        role,
        session_id: Some(format!("session-of-{user_id}")),
        token_kind: TokenKind::Portal,
        amr: vec!["pwd".to_owned()],
        client_ip: Some("203.0.113.7".parse().unwrap()),
        request_id: uuid::Uuid::new_v4().to_string(),
        auth_time: Some(0),
        user_agent: "tenancy-tests".to_owned(),
        ..Principal::default()
    }
}

/// A valid CreateAccount request: a company, "Acme" in the Netherlands.
pub fn new_account() -> tenancy_proto::account::CreateAccountRequest {
    use tenancy_proto::account::{Account, AccountType, CreateAccountRequest};
    CreateAccountRequest {
        account: Some(Account {
            r#type: AccountType::Company as i32,
            name: "Acme".into(),
            legal_name: "Acme B.V.".into(),
            country_code: "NL".into(),
            ..Default::default()
        }),
        request_id: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_urls_get_the_test_database() {
        assert_eq!(
            replace_database("postgres://u:p@h:5432/postgres", "t_x"),
            "postgres://u:p@h:5432/t_x"
        );
        assert_eq!(
            replace_database("postgres://u:p@h/postgres?sslmode=disable", "t_x"),
            "postgres://u:p@h/t_x?sslmode=disable"
        );
        assert_eq!(replace_database("postgres://h", "t_x"), "postgres://h/t_x");
    }
}
