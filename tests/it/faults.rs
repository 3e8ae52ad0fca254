//! The fault suite (issue 20 §2): every part as processes of their own
//! ([`crate::processes`]) — two replicas of identity and of account, one of
//! contacts, support and the gateway — on one database, mail through
//! contacts' outbox to a real SMTP server, under a steady mixed load
//! (logins, GetMe, invitations — a member change that sends mail —, ticket
//! writes, and calls with the tokens of suspended members). Faults, one
//! after another:
//!
//! - kill -9 of each replica in turn (one of two for identity and account,
//!   the only one for contacts, support and the gateway), restarted after
//!   [`Phases::down`];
//! - kill -9 of PostgreSQL itself (a private cluster started by the test:
//!   the shared one serves other tests), restarted;
//! - the SMTP server stopped, then started again;
//! - the ports of identity#1 and support blocked (a TCP proxy in front of
//!   them stops forwarding: connections hang, they are not refused).
//!
//! During each fault a member is suspended (retried until acknowledged).
//! Checked, and asserted once the table is printed:
//! - every acknowledged write is there afterwards (tickets, invitations);
//! - no half-applied change: a suspended member's session and API token
//!   are refused from [`GRACE`] after the suspension was acknowledged, the
//!   API token is revoked for good (TOKEN_REVOKED, still refused after the
//!   member is reactivated), and every acknowledged invitation's email
//!   arrives;
//! - no duplicate email beyond at-least-once (the same message twice has
//!   the same Message-ID);
//! - the gateway fails closed (nothing a suspension refuses is accepted,
//!   whatever is down);
//! - every call ends by its deadline, with an error if it fails (never a
//!   hang past it);
//! - everything recovers without help within [`RECOVERY_BOUND`] of the
//!   fault's end, and no call fails once recovered.
//!
//! On SQLite (the embedded default) the same run is the kill -9 check of
//! the embedded database: processes writing to it are killed -9 under load,
//! then `PRAGMA integrity_check` must be `ok` and every acknowledged write
//! present. PostgreSQL is killed only when a private cluster can be started
//! (root, the server's binaries under /usr/lib/postgresql); otherwise that
//! fault is skipped with a line saying why.
//!
//! `tests/faults/run` runs the same test with longer phases and more rounds
//! (`TENANCY_FAULTS_DOWN`, `TENANCY_FAULTS_SETTLE`, `TENANCY_FAULTS_ROUNDS`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tenancy::{Part, Running};
use tenancy_proto::account::account_service_client::AccountServiceClient;
use tenancy_proto::account::{
    AccessScope, GetAccountRequest, InviteMemberRequest, ListInvitationsRequest,
    ReactivateMemberRequest, ServiceAccess, SuspendMemberRequest,
};
use tenancy_proto::auth::Role;
use tenancy_proto::identity::identity_service_client::IdentityServiceClient;
use tenancy_proto::identity::login_response::Outcome;
use tenancy_proto::identity::{GetMeRequest, LoginRequest};
use tenancy_proto::support::support_service_client::SupportServiceClient;
use tenancy_proto::support::{
    CreateTicketRequest, ListTicketsRequest, TicketCategory, TicketPriority,
};
use tenancy_runtime::Reason;
use tenancy_runtime::config::ServiceName;
use tenancy_testkit::TestDatabase;
use tenancy_testkit::smtp::SmtpServer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::Channel;

use crate::gateway::{Bearer, PASSWORD, Suite, bearer, channel, user_of};
use crate::load::{Caller, Load, Sample, describe, shed};
use crate::processes::{Process, free_address};

/// Deadline of every call (the client's own).
const CALL_DEADLINE: Duration = Duration::from_secs(3);
/// A call still unanswered this long past its deadline hangs: a violation.
const HANG_GRACE: Duration = Duration::from_secs(2);
/// How long after a suspension was acknowledged the gateway may still
/// accept the member's tokens (the bound: within a second; twice
/// that on a loaded 2-core machine).
const GRACE: Duration = Duration::from_secs(2);
/// Everything serves again within this of a fault's end (the part
/// restarted and serving, the port unblocked, the server back).
const RECOVERY_BOUND: Duration = Duration::from_secs(30);

/// The flows of the load, and how often each starts a call (open loop).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Flow {
    /// Login naming an account (gateway → identity → account).
    Login,
    /// GetMe with a session (gateway → identity).
    GetMe,
    /// InviteMember (account → identity, contacts: an email).
    Invite,
    /// CreateTicket (support → account).
    Ticket,
    /// GetAccount with a suspended member's session or API token: must be
    /// refused.
    Suspended,
}

const FLOWS: [(Flow, Duration); 5] = [
    (Flow::Login, Duration::from_millis(100)),
    (Flow::GetMe, Duration::from_millis(50)),
    (Flow::Invite, Duration::from_millis(150)),
    (Flow::Ticket, Duration::from_millis(100)),
    (Flow::Suspended, Duration::from_millis(50)),
];

/// A member suspended during a fault.
struct Victim {
    user_id: String,
    session: String,
    api_token: String,
    /// When SuspendMember was acknowledged.
    suspended: Option<Instant>,
}

/// What the load wrote and was told was written, and what went wrong.
#[derive(Default)]
struct Ledger {
    tickets: Vec<String>,
    /// (invitation id, email).
    invitations: Vec<(String, String)>,
    victims: Vec<Victim>,
    /// Calls with a suspended member's token accepted within [`GRACE`].
    accepted_in_grace: usize,
    violations: Vec<(Instant, String)>,
}

#[derive(Clone)]
struct Client {
    gateway: Channel,
    owner: String,
    logins: Arc<Vec<(String, String)>>,
    turn: Arc<AtomicUsize>,
    ledger: Arc<Mutex<Ledger>>,
}

fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_DEADLINE);
    request
}

type Authed = tonic::service::interceptor::InterceptedService<Channel, Bearer>;

impl Client {
    fn account(&self, token: &str) -> AccountServiceClient<Authed> {
        AccountServiceClient::with_interceptor(self.gateway.clone(), bearer(token))
    }

    fn violation(&self, what: String) {
        self.ledger.lock().violations.push((Instant::now(), what));
    }
}

impl Caller for Client {
    type Flow = Flow;

    async fn call(&self, flow: Flow) -> Result<bool, String> {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        match flow {
            Flow::Login => {
                let (email, account_id) = &self.logins[turn % self.logins.len()];
                let response = IdentityServiceClient::new(self.gateway.clone())
                    .login(request(LoginRequest {
                        email: email.clone(),
                        password: PASSWORD.into(),
                        account_id: account_id.clone(),
                        unlock_token: String::new(),
                    }))
                    .await
                    .map_err(|s| describe(&s))?
                    .into_inner();
                match response.outcome {
                    Some(Outcome::Session(s)) if s.access_token.is_some() => Ok(true),
                    other => Err(format!("no session: {other:?}")),
                }
            }
            Flow::GetMe => {
                IdentityServiceClient::with_interceptor(self.gateway.clone(), bearer(&self.owner))
                    .get_me(request(GetMeRequest {}))
                    .await
                    .map_err(|s| describe(&s))?;
                Ok(true)
            }
            Flow::Invite => {
                let email = format!("invitee{turn}@example.com");
                let invitation = self
                    .account(&self.owner)
                    .invite_member(request(InviteMemberRequest {
                        email: email.clone(),
                        role: Role::Manager as i32,
                        access_scope: Some(AccessScope {
                            portal_access: true,
                            service_access: ServiceAccess::All as i32,
                            ..Default::default()
                        }),
                    }))
                    .await
                    .map_err(|s| describe(&s))?
                    .into_inner()
                    .invitation
                    .ok_or("no invitation")?;
                self.ledger.lock().invitations.push((invitation.id, email));
                Ok(true)
            }
            Flow::Ticket => {
                let ticket = SupportServiceClient::with_interceptor(
                    self.gateway.clone(),
                    bearer(&self.owner),
                )
                .create_ticket(request(CreateTicketRequest {
                    subject: format!("Disk full #{turn}"),
                    body: "The disk of my server is full.".into(),
                    priority: TicketPriority::Normal as i32,
                    category: TicketCategory::General as i32,
                    ..Default::default()
                }))
                .await
                .map_err(|s| describe(&s))?
                .into_inner()
                .ticket
                .ok_or("no ticket")?;
                self.ledger.lock().tickets.push(ticket.id);
                Ok(true)
            }
            Flow::Suspended => {
                let target = {
                    let ledger = self.ledger.lock();
                    let suspended: Vec<_> = ledger
                        .victims
                        .iter()
                        .filter_map(|v| Some((v.suspended?, v)))
                        .collect();
                    if suspended.is_empty() {
                        return Ok(false);
                    }
                    let (at, victim) = suspended[turn % suspended.len()];
                    let (what, token) = if turn.is_multiple_of(2) {
                        ("session", victim.session.clone())
                    } else {
                        ("API token", victim.api_token.clone())
                    };
                    (at, what, token, victim.user_id.clone())
                };
                let (suspended_at, what, token, user) = target;
                let started = Instant::now();
                let accepted = self
                    .account(&token)
                    .get_account(request(GetAccountRequest::default()))
                    .await
                    .is_ok();
                if accepted {
                    if started > suspended_at + GRACE {
                        self.violation(format!(
                            "the {what} of {user}, suspended {:?} before, was accepted",
                            started - suspended_at
                        ));
                    } else {
                        self.ledger.lock().accepted_in_grace += 1;
                    }
                }
                Ok(true)
            }
        }
    }

    fn hung(&self, flow: Flow) {
        self.violation(format!(
            "a {flow:?} call hung past its deadline ({CALL_DEADLINE:?})"
        ));
    }
}

/// Phase lengths: short in CI, longer from the environment.
struct Phases {
    /// How long a part stays dead, a port blocked, the SMTP server stopped.
    down: Duration,
    /// How long the load runs after recovery (no call may fail then).
    settle: Duration,
    /// How many times the whole list of faults runs.
    rounds: usize,
}

impl Phases {
    fn from_env() -> Self {
        let seconds = |name: &str, default: f64| {
            Duration::from_secs_f64(
                std::env::var(name)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(default),
            )
        };
        Self {
            down: seconds("TENANCY_FAULTS_DOWN", 1.5),
            settle: seconds("TENANCY_FAULTS_SETTLE", 1.5),
            rounds: std::env::var("TENANCY_FAULTS_ROUNDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
        }
    }
}

/// One fault, as the table shows it.
struct Fault {
    name: String,
    started: Instant,
    /// When the fault ended (the part restarted and serving, the port
    /// unblocked, the server back).
    healed: Instant,
    /// When every flow succeeded again (twice in a row).
    recovered: Instant,
    checks: &'static str,
}

/// Waits until a login, GetMe, an invitation and a ticket all succeed
/// twice in a row; returns when.
async fn until_recovered(client: &Client, since: Instant, what: &str) -> Instant {
    let mut streak = 0;
    loop {
        let mut failed = Vec::new();
        for flow in [Flow::Login, Flow::GetMe, Flow::Invite, Flow::Ticket] {
            if let Err(e) = client.call(flow).await {
                failed.push(format!("{flow:?}: {e}"));
            }
        }
        streak = if failed.is_empty() { streak + 1 } else { 0 };
        if streak == 2 {
            println!("{what}: recovered {:?} after it was back", since.elapsed());
            return Instant::now();
        }
        assert!(
            since.elapsed() < RECOVERY_BOUND,
            "not recovered from {what} within {RECOVERY_BOUND:?}: {failed:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A member of the owner's account with a session selecting it and an API
/// token, to be suspended during a fault.
async fn victim(suite: &Suite, client: &Client, account_id: &str, n: usize) -> usize {
    let email = format!("victim{n}@example.com");
    let session = suite
        .member(&client.owner, account_id, &email, Role::Manager)
        .await;
    let api_token = suite.api_token(&session).await;
    let mut ledger = client.ledger.lock();
    ledger.victims.push(Victim {
        user_id: user_of(&session),
        session,
        api_token,
        suspended: None,
    });
    ledger.victims.len() - 1
}

/// Suspends victim `index` in the background, retrying until acknowledged.
fn suspend(client: &Client, index: usize) -> tokio::task::JoinHandle<()> {
    let client = client.clone();
    tokio::spawn(async move {
        let user_id = client.ledger.lock().victims[index].user_id.clone();
        loop {
            let done = client
                .account(&client.owner)
                .suspend_member(request(SuspendMemberRequest {
                    user_id: user_id.clone(),
                }))
                .await;
            if done.is_ok() {
                client.ledger.lock().victims[index].suspended = Some(Instant::now());
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// A TCP proxy in front of a replica, which can stop forwarding: its port
/// still accepts connections, nothing gets through either way.
struct Proxy {
    address: SocketAddr,
    blocked: tokio::sync::watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let address = free_address();
        let listener = TcpListener::bind(address).await.unwrap();
        let (blocked, _) = tokio::sync::watch::channel(false);
        let gate = blocked.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let gate = gate.subscribe();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (from_client, to_client) = inbound.into_split();
                    let (from_server, to_server) = outbound.into_split();
                    tokio::join!(
                        forward(from_client, to_server, gate.clone()),
                        forward(from_server, to_client, gate)
                    );
                });
            }
        });
        Self {
            address,
            blocked,
            accept,
        }
    }

    fn block(&self, blocked: bool) {
        self.blocked.send_replace(blocked);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies `from` to `to`, holding every byte while the gate is closed.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut blocked: tokio::sync::watch::Receiver<bool>,
) {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        if blocked.wait_for(|b| !*b).await.is_err() {
            return;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(read) => read,
        };
        if blocked.wait_for(|b| !*b).await.is_err() || to.write_all(&buffer[..read]).await.is_err()
        {
            return;
        }
    }
}

/// A PostgreSQL cluster of this test's own, which it may kill: initdb and
/// postgres as the `postgres` user on a temporary directory it owns.
struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    user: (u32, u32),
    child: Option<tokio::process::Child>,
}

impl Postgres {
    /// Why it cannot be started here, if it cannot.
    async fn start() -> Result<Self, String> {
        let id = |args: &[&str]| -> Result<u32, String> {
            let out = std::process::Command::new("id")
                .args(args)
                .output()
                .map_err(|e| format!("id: {e}"))?;
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .map_err(|_| format!("id {args:?}: {}", String::from_utf8_lossy(&out.stderr)))
        };
        if id(&["-u"])? != 0 {
            return Err("not root (initdb and postgres run as the postgres user)".into());
        }
        let user = (id(&["-u", "postgres"])?, id(&["-g", "postgres"])?);
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("/usr/lib/postgresql: {e}"))?
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("postgres").exists() && b.join("initdb").exists())
            .max()
            .ok_or("no /usr/lib/postgresql/<version>/bin/{initdb,postgres}")?;
        let dir = std::env::temp_dir().join(format!(
            "tenancy-faults-pg-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(user.0), Some(user.1)).unwrap();
        let initdb = tokio::process::Command::new(bin.join("initdb"))
            .args(["-D", "data", "-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .args(["--no-sync", "--no-instructions"])
            .current_dir(&dir)
            .uid(user.0)
            .gid(user.1)
            .output()
            .await
            .map_err(|e| format!("initdb: {e}"))?;
        if !initdb.status.success() {
            return Err(format!(
                "initdb: {}",
                String::from_utf8_lossy(&initdb.stderr)
            ));
        }
        let mut postgres = Self {
            bin,
            dir,
            port: free_address().port(),
            user,
            child: None,
        };
        postgres.spawn().await;
        Ok(postgres)
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again), retrying while the old one's processes
    /// are still going away; returns once it answers.
    async fn spawn(&mut self) {
        let started = Instant::now();
        loop {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join("postgres.log"))
                .unwrap();
            let mut child = tokio::process::Command::new(self.bin.join("postgres"))
                .args(["-D", "data", "-k", "."])
                .args(["-p", &self.port.to_string(), "-h", "127.0.0.1"])
                // Only processes die here, never the machine: the kernel
                // keeps what was written, fsync or not.
                .args(["-c", "max_connections=300", "-c", "fsync=off"])
                .current_dir(&self.dir)
                .uid(self.user.0)
                .gid(self.user.1)
                .process_group(0)
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            loop {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if let Ok(db) = sea_orm::Database::connect(self.url()).await {
                    let answered = sea_orm::ConnectionTrait::execute_unprepared(&db, "SELECT 1")
                        .await
                        .is_ok();
                    let _ = db.close().await;
                    if answered {
                        self.child = Some(child);
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "PostgreSQL did not start: {}",
                std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// kill -9 of the server and every process of it.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().unwrap();
            let group = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait().await;
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(child) = &self.child
            && let Some(pid) = child.id()
        {
            let group = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until the gateway at `gateway` reports SERVING.
async fn serving(gateway: &Channel) {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = HealthClient::new(gateway.clone())
            .check(HealthCheckRequest::default())
            .await
            .map(|r| r.into_inner().status());
        if status.ok() == Some(ServingStatus::Serving) {
            return;
        }
        assert!(Instant::now() < deadline, "the gateway never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every id a List method returns, page after page: `page` fetches the
/// page at a token and gives its ids and its `next_page_token`.
async fn all_pages<F, P>(mut page: F) -> BTreeSet<String>
where
    F: FnMut(String) -> P,
    P: std::future::Future<Output = (Vec<String>, String)>,
{
    let mut ids = BTreeSet::new();
    let mut page_token = String::new();
    loop {
        let (more, next) = page(page_token).await;
        ids.extend(more);
        if next.is_empty() {
            return ids;
        }
        page_token = next;
    }
}

/// Every page of the account's tickets' ids.
async fn ticket_ids(client: &Client) -> BTreeSet<String> {
    all_pages(|page_token| async move {
        let page =
            SupportServiceClient::with_interceptor(client.gateway.clone(), bearer(&client.owner))
                .list_tickets(ListTicketsRequest {
                    page_size: 100,
                    page_token,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
        let ids = page.tickets.into_iter().map(|t| t.id).collect();
        (ids, page.next_page_token)
    })
    .await
}

/// Every page of the account's invitations' ids.
async fn invitation_ids(client: &Client) -> BTreeSet<String> {
    all_pages(|page_token| async move {
        let page = client
            .account(&client.owner)
            .list_invitations(ListInvitationsRequest {
                page_size: 100,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let ids = page.invitations.into_iter().map(|i| i.id).collect();
        (ids, page.next_page_token)
    })
    .await
}

/// The refusal of a call with `token` in its account, if refused.
async fn refusal(client: &Client, token: &str) -> Option<tonic::Status> {
    client
        .account(token)
        .get_account(request(GetAccountRequest::default()))
        .await
        .err()
}

/// `PRAGMA integrity_check` of the SQLite database at `url`.
async fn integrity(url: &str) -> String {
    use sea_orm::ConnectionTrait as _;
    let db = sea_orm::Database::connect(url).await.unwrap();
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "PRAGMA integrity_check",
        ))
        .await
        .unwrap();
    let result = rows
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).unwrap())
        .collect::<Vec<_>>()
        .join("; ");
    db.close().await.unwrap();
    result
}

fn path_of(url: &str) -> &Path {
    Path::new(
        url.trim_start_matches("sqlite://")
            .split('?')
            .next()
            .unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_loses_nothing_fails_closed_and_recovers() {
    let phases = Phases::from_env();
    let test_started = Instant::now();
    let database = Arc::new(TestDatabase::new("faults").await);
    let mut postgres = None;
    if TestDatabase::is_postgres() {
        match Postgres::start().await {
            Ok(started) => postgres = Some(started),
            Err(why) => println!("PostgreSQL kill -9: skipped, no private cluster here: {why}"),
        }
    } else {
        println!("PostgreSQL kill -9: skipped on SQLite (set TENANCY_TEST_DATABASE_URL)");
    }
    let mut config = tenancy_testkit::test_config(&database);
    if let Some(postgres) = &postgres {
        for name in ServiceName::ALL {
            config.service_mut(name).database_url = Some(postgres.url());
        }
    }
    let database_url = config.identity.database_url.clone().unwrap();
    config.auth.argon2_memory_kib = 1024;
    config.auth.argon2_iterations = 1;
    // The load's tokens outlive the long run's hour.
    config.auth.access_token_lifetime = Duration::from_secs(2 * 3600);
    config.gateway.public_rate_per_minute = 1_000_000;
    config.gateway.public_burst = 1_000_000;
    config.gateway.principal_rate_per_second = 1_000_000;
    config.gateway.principal_burst = 1_000_000;
    config.mail.retry_base_delay = Duration::from_millis(200);
    config.mail.max_attempts = 30;
    // The parts' logs (on the test's stderr): errors only, unless asked.
    config.log_filter = std::env::var("TENANCY_FAULTS_LOG").unwrap_or_else(|_| "error".into());
    let mut smtp = SmtpServer::start().await;
    config.smtp_url = Some(smtp.url());

    // Every address known before anything starts (identity and account
    // call each other); identity#1 and support behind proxies.
    let identity = [free_address(), free_address()];
    let account = [free_address(), free_address()];
    let (contacts, support, gateway) = (free_address(), free_address(), free_address());
    let identity_proxy = Proxy::start(identity[1]).await;
    let support_proxy = Proxy::start(support).await;
    let urls = |addresses: &[SocketAddr]| {
        addresses
            .iter()
            .map(|a| format!("https://{a}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    config.identity.url = Some(urls(&[identity[0], identity_proxy.address]));
    config.account.url = Some(urls(&account));
    config.contacts.url = Some(urls(&[contacts]));
    config.support.url = Some(urls(&[support_proxy.address]));
    for part in [Part::Identity, Part::Account, Part::Contacts, Part::Support] {
        tenancy::migrate(&config, part).await.unwrap();
    }
    let mut parts: Vec<Process> = Vec::new();
    for (part, index, address) in [
        (Part::Contacts, 0, contacts),
        (Part::Identity, 0, identity[0]),
        (Part::Identity, 1, identity[1]),
        (Part::Account, 0, account[0]),
        (Part::Account, 1, account[1]),
        (Part::Support, 0, support),
        (Part::Gateway, 0, gateway),
    ] {
        parts.push(Process::start(part, index, &config, address).await);
    }
    let gateway_channel = channel(gateway).await;
    serving(&gateway_channel).await;
    let suite = Suite {
        running: Running::listing(vec![(ServiceName::Contacts, contacts)]),
        gateway: gateway_channel.clone(),
        config: config.clone(),
        database: database.clone(),
    };
    let owner = suite.user("owner@example.com").await;
    let (account_id, owner) = suite.account_of(&owner).await;
    let mut logins = vec![("owner@example.com".to_owned(), account_id.clone())];
    for i in 0..5 {
        let email = format!("login{i}@example.com");
        let (login_account, _) = suite.account_of(&suite.user(&email).await).await;
        logins.push((email, login_account));
    }
    let client = Client {
        gateway: gateway_channel.clone(),
        owner,
        logins: Arc::new(logins),
        turn: Arc::default(),
        ledger: Arc::default(),
    };
    println!("set up in {:?}", test_started.elapsed());

    let load = Load::start(&client, &FLOWS, CALL_DEADLINE + HANG_GRACE);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut faults: Vec<Fault> = Vec::new();
    let checks_kill = "writes, suspension, deadlines, fail-closed";
    for round in 0..phases.rounds {
        // kill -9 of each part's process in turn.
        for part in &mut parts {
            let name = part.name.clone();
            let victim = victim(&suite, &client, &account_id, faults.len()).await;
            let started = Instant::now();
            part.kill().await;
            let suspension = suspend(&client, victim);
            tokio::time::sleep(phases.down).await;
            part.spawn().await;
            if name.starts_with("gateway") {
                serving(&gateway_channel).await;
            }
            let healed = Instant::now();
            let recovered = until_recovered(&client, healed, &name).await;
            tokio::time::timeout(RECOVERY_BOUND, suspension)
                .await
                .expect("suspension never acknowledged")
                .unwrap();
            tokio::time::sleep(phases.settle).await;
            faults.push(Fault {
                name: format!("{name} kill -9"),
                started,
                healed,
                recovered,
                checks: checks_kill,
            });
        }

        // kill -9 of PostgreSQL.
        if let Some(postgres) = &mut postgres {
            let victim = victim(&suite, &client, &account_id, faults.len()).await;
            let started = Instant::now();
            postgres.kill().await;
            let suspension = suspend(&client, victim);
            tokio::time::sleep(phases.down).await;
            postgres.spawn().await;
            let healed = Instant::now();
            let recovered = until_recovered(&client, healed, "PostgreSQL").await;
            tokio::time::timeout(RECOVERY_BOUND, suspension)
                .await
                .expect("suspension never acknowledged")
                .unwrap();
            tokio::time::sleep(phases.settle).await;
            faults.push(Fault {
                name: "PostgreSQL kill -9".into(),
                started,
                healed,
                recovered,
                checks: checks_kill,
            });
        }

        // The SMTP server stopped: nothing fails, mail waits in the outbox.
        {
            let victim = victim(&suite, &client, &account_id, faults.len()).await;
            let started = Instant::now();
            smtp.stop().await;
            let suspension = suspend(&client, victim);
            tokio::time::sleep(phases.down * 2).await;
            smtp.restart().await;
            let healed = Instant::now();
            // Recovered: every invitation acknowledged so far has arrived.
            let expected: BTreeSet<String> = client
                .ledger
                .lock()
                .invitations
                .iter()
                .map(|(_, email)| email.clone())
                .collect();
            loop {
                let arrived: BTreeSet<String> =
                    smtp.received().into_iter().flat_map(|m| m.rcpt).collect();
                if expected.is_subset(&arrived) {
                    break;
                }
                assert!(
                    healed.elapsed() < RECOVERY_BOUND,
                    "mail queued while the SMTP server was down never arrived: {:?}",
                    expected.difference(&arrived).collect::<Vec<_>>()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let recovered = Instant::now();
            tokio::time::timeout(RECOVERY_BOUND, suspension)
                .await
                .expect("suspension never acknowledged")
                .unwrap();
            tokio::time::sleep(phases.settle).await;
            faults.push(Fault {
                name: "SMTP server stopped".into(),
                started,
                healed,
                recovered,
                checks: "writes, no call failed, queued mail delivered, suspension",
            });
        }

        // The ports of identity#1 and support blocked: connections hang.
        {
            let victim = victim(&suite, &client, &account_id, faults.len()).await;
            let started = Instant::now();
            identity_proxy.block(true);
            support_proxy.block(true);
            let suspension = suspend(&client, victim);
            tokio::time::sleep(phases.down + CALL_DEADLINE).await;
            identity_proxy.block(false);
            support_proxy.block(false);
            let healed = Instant::now();
            let recovered = until_recovered(&client, healed, "blocked ports").await;
            tokio::time::timeout(RECOVERY_BOUND, suspension)
                .await
                .expect("suspension never acknowledged")
                .unwrap();
            tokio::time::sleep(phases.settle).await;
            faults.push(Fault {
                name: "identity#1 + support ports blocked".into(),
                started,
                healed,
                recovered,
                checks: "writes, suspension, deadlines (no hang), fail-closed",
            });
        }
        println!("round {round} done at {:?}", test_started.elapsed());
    }
    let samples = load.stop().await;
    let ledger = &client.ledger;
    {
        // One guard: a second `lock()` in the same statement would wait for
        // the first (parking_lot's mutex is not reentrant).
        let ledger = ledger.lock();
        println!(
            "load: {} calls, {} tickets and {} invitations acknowledged, {} suspensions",
            samples.len(),
            ledger.tickets.len(),
            ledger.invitations.len(),
            ledger.victims.len()
        );
    }
    let mut violations: Vec<String> = Vec::new();

    // The table: per fault, the calls that failed from its start until
    // recovered, the recovery time, and any call failed once recovered.
    println!(
        "\n{:<38} {:>16} {:>10} {:>10}  invariants checked",
        "fault", "failed / made", "outage", "recovery"
    );
    for fault in &faults {
        let during: Vec<&Sample<Flow>> = samples
            .iter()
            .filter(|s| s.flow != Flow::Suspended)
            .filter(|s| s.started >= fault.started && s.started < fault.recovered)
            .collect();
        let failed = during.iter().filter(|s| s.failure.is_some()).count();
        println!(
            "{:<38} {:>16} {:>9.1}s {:>9.1}s  {}",
            fault.name,
            format!("{failed} / {}", during.len()),
            (fault.recovered - fault.started).as_secs_f64(),
            (fault.recovered - fault.healed).as_secs_f64(),
            fault.checks
        );
        let mut why: BTreeMap<(Flow, &str), usize> = BTreeMap::new();
        for s in &during {
            if let Some(f) = &s.failure {
                *why.entry((s.flow, f.as_str())).or_default() += 1;
            }
        }
        if !why.is_empty() {
            println!("{:<38} {why:?}", "");
        }
        // Once recovered (a second's margin for calls already on their way
        // to a replica that only just came back into rotation), until the
        // next fault: nothing fails.
        let next = faults
            .iter()
            .map(|f| f.started)
            .find(|s| *s > fault.started)
            .unwrap_or_else(Instant::now);
        for s in samples.iter().filter(|s| {
            s.flow != Flow::Suspended
                && s.failure.is_some()
                && s.started >= fault.recovered + Duration::from_secs(1)
                // Answered before the next fault began: a call still in
                // flight then is that fault's.
                && s.ended < next
                && !(s.flow == Flow::Login && shed(s.failure.as_deref()))
        }) {
            violations.push(format!(
                "{:?} failed {:?} after {} recovered: {}",
                s.flow,
                s.started - fault.recovered,
                fault.name,
                s.failure.as_deref().unwrap_or_default()
            ));
        }
        if fault.name.starts_with("SMTP") && failed > 0 {
            violations.push(format!(
                "{failed} calls failed while only the SMTP server was down"
            ));
        }
    }
    for (at, what) in ledger.lock().violations.iter() {
        violations.push(format!("+{:?}: {what}", *at - test_started));
    }
    let worst = faults
        .iter()
        .map(|f| f.recovered - f.healed)
        .max()
        .unwrap_or_default();
    println!(
        "worst recovery {worst:?} (bound {RECOVERY_BOUND:?}); suspended members' tokens accepted within {GRACE:?} of the suspension: {}",
        ledger.lock().accepted_in_grace
    );

    // Every acknowledged write is there.
    let tickets = ticket_ids(&client).await;
    let lost: Vec<String> = ledger
        .lock()
        .tickets
        .iter()
        .filter(|id| !tickets.contains(*id))
        .cloned()
        .collect();
    if !lost.is_empty() {
        violations.push(format!("acknowledged tickets lost: {lost:?}"));
    }
    let invitations = invitation_ids(&client).await;
    let lost: Vec<String> = ledger
        .lock()
        .invitations
        .iter()
        .filter(|(id, _)| !invitations.contains(id))
        .map(|(id, _)| id.clone())
        .collect();
    if !lost.is_empty() {
        violations.push(format!("acknowledged invitations lost: {lost:?}"));
    }

    // Every acknowledged invitation's email arrives, each message once
    // (a repeat carries the same Message-ID: at-least-once).
    let expected: BTreeSet<String> = ledger
        .lock()
        .invitations
        .iter()
        .map(|(_, email)| email.clone())
        .collect();
    let waited = Instant::now();
    let received = loop {
        let received = smtp.received();
        let arrived: BTreeSet<&String> = received.iter().flat_map(|m| &m.rcpt).collect();
        let missing: Vec<&String> = expected.iter().filter(|e| !arrived.contains(e)).collect();
        if missing.is_empty() {
            break received;
        }
        if waited.elapsed() > RECOVERY_BOUND * 2 {
            violations.push(format!(
                "acknowledged invitations never emailed: {missing:?}"
            ));
            break received;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut copies: BTreeMap<(Vec<String>, String, String), BTreeSet<String>> = BTreeMap::new();
    let mut redelivered = received.len();
    for m in &received {
        copies
            .entry((m.rcpt.clone(), m.subject.clone(), m.text.clone()))
            .or_default()
            .insert(m.message_id.clone());
    }
    redelivered -= copies.len();
    for ((rcpt, subject, _), ids) in &copies {
        if ids.len() > 1 {
            violations.push(format!(
                "{subject:?} to {rcpt:?} sent {} times with different Message-IDs",
                ids.len()
            ));
        }
    }
    println!(
        "mail: {} messages received, {} distinct, {redelivered} redelivered with the same Message-ID",
        received.len(),
        copies.len()
    );

    // No half-applied suspension: each suspended member's API token is
    // revoked in identity (TOKEN_REVOKED) and stays refused once the member
    // is reactivated; their session works again (suspension keeps it).
    let victims: Vec<(String, String, String)> = ledger
        .lock()
        .victims
        .iter()
        .map(|v| (v.user_id.clone(), v.session.clone(), v.api_token.clone()))
        .collect();
    let since = Instant::now();
    for (user_id, _, api_token) in &victims {
        loop {
            let refused = refusal(&client, api_token).await;
            if refused.as_ref().map(crate::gateway::reason) == Some(Reason::TokenRevoked) {
                break;
            }
            if since.elapsed() > RECOVERY_BOUND {
                let refused = refused.map(|s| describe(&s));
                violations.push(format!(
                    "the API token of suspended {user_id} never revoked: {refused:?}"
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        client
            .account(&client.owner)
            .reactivate_member(request(ReactivateMemberRequest {
                user_id: user_id.clone(),
            }))
            .await
            .unwrap();
    }
    let since = Instant::now();
    let mut sessions_back = false;
    while since.elapsed() < Duration::from_secs(2) || !sessions_back {
        sessions_back = true;
        for (user_id, session, api_token) in &victims {
            if refusal(&client, api_token).await.is_none() {
                violations.push(format!(
                    "the API token of {user_id} accepted after reactivation"
                ));
            }
            sessions_back &= refusal(&client, session).await.is_none();
        }
        assert!(
            since.elapsed() < RECOVERY_BOUND,
            "reactivated members' sessions still refused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for part in &mut parts {
        part.kill().await;
    }
    if postgres.is_none() && !TestDatabase::is_postgres() {
        // SQLite: the file the killed processes wrote is intact.
        let check = integrity(&database_url).await;
        println!(
            "SQLite {}: PRAGMA integrity_check = {check}",
            path_of(&database_url).display()
        );
        if check != "ok" {
            violations.push(format!("PRAGMA integrity_check: {check}"));
        }
    }
    println!("whole run: {:?}", test_started.elapsed());
    assert!(violations.is_empty(), "{violations:#?}");
}
