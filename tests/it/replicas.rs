//! Two replicas of identity and of account, each a process of its own on
//! one database, behind one gateway (issue 20 §0, second defect): calls
//! between services stop going to a replica that died (kill -9) or hangs
//! (SIGSTOP: its port accepts, nothing answers) within a second or two,
//! calls that are safe to repeat go to the other replica meanwhile, and a
//! replica that comes back gets calls again.
//!
//! Under a steady load of the three flows that cross services — a login
//! naming an account (gateway → identity → account), ListMembers with
//! names (gateway → account → identity) and ListTickets (gateway → support
//! → account) — every fault is measured: calls failed in each second after
//! it (printed), none failed once the dead replica is out of rotation
//! (asserted).
//!
//! The replicas are processes of their own ([`crate::processes`]);
//! contacts, support and the gateway run in the test's process.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tenancy::{Part, Running, start};
use tenancy_proto::account::ListMembersRequest;
use tenancy_proto::account::account_service_client::AccountServiceClient;
use tenancy_proto::identity::LoginRequest;
use tenancy_proto::identity::identity_service_client::IdentityServiceClient;
use tenancy_proto::identity::login_response::Outcome;
use tenancy_proto::support::ListTicketsRequest;
use tenancy_proto::support::support_service_client::SupportServiceClient;
use tenancy_runtime::config::{Config, ServiceName};
use tenancy_runtime::tls::Caller as Peer;
use tenancy_runtime::{SystemClock, TlsParts};
use tenancy_testkit::{TestDatabase, test_config};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::gateway::{PASSWORD, Suite, bearer, channel};
use crate::load::{Caller, Load, Sample, describe, shed};
use crate::processes::{Process, free_address};

/// The three flows under load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Flow {
    /// Login naming an account: gateway → identity → account.
    Login,
    /// ListMembers with names and emails: gateway → account → identity.
    Members,
    /// ListTickets: gateway → support → account.
    Tickets,
}

const FLOWS: [Flow; 3] = [Flow::Login, Flow::Members, Flow::Tickets];

/// Deadline of every call of the load (the client's own).
const CALL_DEADLINE: Duration = Duration::from_secs(5);

/// Everything the flows need, through the one gateway.
#[derive(Clone)]
struct Client {
    gateway: Channel,
    /// Who logs in (email, account named), in turn: the login throttle
    /// checks at most 5 passwords of one email from one address at once
    /// (in-flight attempts count until they succeed), so the load spreads
    /// its logins over several people as real traffic does.
    logins: Arc<Vec<(String, String)>>,
    turn: Arc<std::sync::atomic::AtomicUsize>,
    token: String,
}

impl Caller for Client {
    type Flow = Flow;

    async fn call(&self, flow: Flow) -> Result<bool, String> {
        match flow {
            Flow::Login => {
                let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (email, account_id) = &self.logins[turn % self.logins.len()];
                let mut request = tonic::Request::new(LoginRequest {
                    email: email.clone(),
                    password: PASSWORD.into(),
                    account_id: account_id.clone(),
                    unlock_token: String::new(),
                });
                request.set_timeout(CALL_DEADLINE);
                let response = IdentityServiceClient::new(self.gateway.clone())
                    .login(request)
                    .await
                    .map_err(|s| describe(&s))?
                    .into_inner();
                match response.outcome {
                    Some(Outcome::Session(session)) if session.access_token.is_some() => Ok(true),
                    other => Err(format!("no session: {other:?}")),
                }
            }
            Flow::Members => {
                let mut request = tonic::Request::new(ListMembersRequest::default());
                request.set_timeout(CALL_DEADLINE);
                let members = AccountServiceClient::with_interceptor(
                    self.gateway.clone(),
                    bearer(&self.token),
                )
                .list_members(request)
                .await
                .map_err(|s| describe(&s))?
                .into_inner()
                .members;
                if members.is_empty() {
                    return Err("no members".into());
                }
                if members
                    .iter()
                    .any(|m| m.name.is_empty() || m.email.is_empty())
                {
                    return Err("members without names".into());
                }
                Ok(true)
            }
            Flow::Tickets => {
                let mut request = tonic::Request::new(ListTicketsRequest::default());
                request.set_timeout(CALL_DEADLINE);
                let tickets = SupportServiceClient::with_interceptor(
                    self.gateway.clone(),
                    bearer(&self.token),
                )
                .list_tickets(request)
                .await
                .map_err(|s| describe(&s))?
                .into_inner()
                .tickets;
                if tickets.is_empty() {
                    return Err("no tickets".into());
                }
                Ok(true)
            }
        }
    }
}

/// How often each flow starts a call: open loop, whether earlier calls
/// have answered or not, so calls keep starting while some are stuck on a
/// hung replica and every second after a fault is measured.
const CALL_EVERY: Duration = Duration::from_millis(25);

/// Logins start half as often: with one identity replica left, each login
/// is an argon2 hash (~40 ms of a core in the test build), and 40 a
/// second on two cores shared with the whole suite overloads the hashing
/// pool, whose admission control then rightly sheds logins
/// (RESOURCE_EXHAUSTED `UPSTREAM_BUSY`) — overload, not routing, which is
/// what this test measures.
const LOGIN_EVERY: Duration = Duration::from_millis(50);

/// The load: how often each flow starts a call.
const LOAD: [(Flow, Duration); 3] = [
    (Flow::Login, LOGIN_EVERY),
    (Flow::Members, CALL_EVERY),
    (Flow::Tickets, CALL_EVERY),
];

/// The load started, each call given up as hung at twice its deadline.
fn start_load(client: &Client) -> Load<Flow> {
    Load::start(client, &LOAD, CALL_DEADLINE * 2)
}

/// Prints, per flow and second after `fault` (calls made before it in
/// "before"), the calls that failed of those made, with why; then the
/// slowest call that started `settled` after the fault. Returns the calls
/// that failed although they started `settled` after it.
fn report(title: &str, samples: &[Sample<Flow>], fault: Instant, settled: Duration) -> Vec<String> {
    type Row = (usize, usize, BTreeMap<String, usize>);
    let mut table: BTreeMap<(Flow, Option<u64>), Row> = BTreeMap::new();
    for sample in samples {
        let second = sample
            .started
            .checked_duration_since(fault)
            .map(|d| d.as_secs());
        let row = table.entry((sample.flow, second)).or_default();
        row.0 += 1;
        if let Some(failure) = &sample.failure {
            row.1 += 1;
            let took = sample.took().as_secs_f64().round();
            *row.2
                .entry(format!("{failure} after ~{took} s"))
                .or_default() += 1;
        }
    }
    println!("\n{title}: calls failed / made, by when they started");
    for ((flow, second), (made, failed, why)) in table {
        let when = second.map_or("before".to_owned(), |s| format!("+{s}–{} s", s + 1));
        let why = if why.is_empty() {
            String::new()
        } else {
            format!("  {why:?}")
        };
        println!("  {flow:?} {when}: {failed} / {made}{why}");
    }
    let failed = samples.iter().filter(|s| s.failure.is_some()).count();
    let after: Vec<&Sample<Flow>> = samples
        .iter()
        .filter(|s| s.started >= fault + settled)
        .collect();
    let slowest = after.iter().map(|s| s.took()).max().unwrap_or_default();
    println!(
        "  all flows: {failed} of {} calls failed; from +{settled:?}: {} calls, slowest {slowest:?}",
        samples.len(),
        after.len()
    );
    // A login the hashing pool shed (its expected wait over
    // auth.password_hash_max_wait) is not a routing failure.
    let shed_login = |s: &&&Sample<Flow>| s.flow == Flow::Login && shed(s.failure.as_deref());
    let shed_logins = after.iter().filter(shed_login).count();
    if shed_logins > 0 {
        println!(
            "  logins shed by the hashing pool (not counted as routing failures): {shed_logins}"
        );
    }
    after
        .iter()
        .filter(|s| !shed_login(s))
        .filter_map(|s| {
            s.failure.as_ref().map(|f| {
                format!(
                    "{:?} at +{:?}: {f}",
                    s.flow,
                    s.started.saturating_duration_since(fault)
                )
            })
        })
        .collect()
}

/// Runs the load for `length`; prints what failed and returns it.
async fn load_for(client: &Client, title: &str, length: Duration) -> Vec<String> {
    let started = Instant::now();
    let load = start_load(client);
    tokio::time::sleep(length).await;
    let samples = load.stop().await;
    for flow in FLOWS {
        assert!(
            samples.iter().any(|s| s.flow == flow),
            "no {flow:?} call made"
        );
    }
    report(title, &samples, started, Duration::ZERO)
}

/// How long after a fault every call must succeed: a dead replica is out
/// of rotation within 1–2 s (a check a second, one second to answer);
/// calls stuck on a hung one fail at its second silent check (≤ 4 s), when
/// its connections close and the gateway follows its streams from the other
/// replica (refusing authenticated calls until it has caught up: it fails
/// closed); plus room for a loaded machine.
const SETTLED: Duration = Duration::from_secs(5);

/// A runtime channel from the gateway to `name`, as the gateway's own,
/// probed with health checks: its view of each replica shows whether a
/// restarted one is back in rotation and gets calls again.
struct Probe {
    channel: tenancy_runtime::Channel,
}

impl Probe {
    fn new(config: &Config, name: ServiceName) -> Self {
        let channel = tenancy_runtime::service::channel_to(
            config,
            &Arc::new(TlsParts::new(&config.tls)),
            Peer::Gateway,
            name,
        )
        .unwrap();
        Self { channel }
    }

    /// A few health checks through the channel (each to the next replica
    /// in rotation).
    async fn call(&self, calls: usize) {
        for _ in 0..calls {
            let mut request = tonic::Request::new(HealthCheckRequest::default());
            request.set_timeout(Duration::from_millis(500));
            let _ = HealthClient::new(self.channel.clone()).check(request).await;
        }
    }

    /// Calls until replica `index` is out of rotation; returns how long
    /// that took.
    async fn until_ejected(&self, index: usize, limit: Duration) -> Duration {
        let started = Instant::now();
        while self.channel.replicas()[index].healthy {
            self.call(1).await;
            assert!(
                started.elapsed() < limit,
                "replica {index} still in rotation: {:?}",
                self.channel.replicas()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        started.elapsed()
    }

    /// Calls until replica `index` is healthy and has received `calls`
    /// more calls; returns how long that took.
    async fn until_serving(&self, index: usize, calls: u64, limit: Duration) -> Duration {
        let started = Instant::now();
        let before = self.channel.replicas()[index].sent;
        loop {
            self.call(1).await;
            let now = &self.channel.replicas()[index];
            if now.healthy && now.sent >= before + calls {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "replica {index} not back in rotation: {:?}",
                self.channel.replicas()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A verified user with an account and a ticket in it, through the
/// gateway of `suite`; returns the client of the flows.
async fn customer(suite: &Suite) -> Client {
    let mut logins = Vec::new();
    let mut token = String::new();
    for i in 0..12 {
        let email = format!("ada{i}@example.com");
        let (account_id, in_account) = suite.account_of(&suite.user(&email).await).await;
        if i == 0 {
            suite.ticket(&in_account).await;
            token = in_account;
        }
        logins.push((email, account_id));
    }
    Client {
        gateway: suite.gateway.clone(),
        logins: Arc::new(logins),
        turn: Arc::default(),
        token,
    }
}

/// Waits until the gateway reports SERVING.
async fn gateway_ready(gateway: &Channel) {
    use tonic_health::pb::health_check_response::ServingStatus;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = HealthClient::new(gateway.clone())
            .check(HealthCheckRequest::default())
            .await
            .map(|r| r.into_inner().status());
        if status.ok() == Some(ServingStatus::Serving) {
            return;
        }
        assert!(Instant::now() < deadline, "the gateway never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_between_services_survive_a_dead_or_hung_replica_and_reach_it_again() {
    let database = Arc::new(TestDatabase::new("replicas").await);
    let mut config = test_config(&database);
    config.auth.argon2_memory_kib = 1024;
    config.auth.argon2_iterations = 1;
    config.gateway.public_rate_per_minute = 1_000_000;
    config.gateway.public_burst = 1_000_000;
    config.gateway.principal_rate_per_second = 1_000_000;
    config.gateway.principal_burst = 1_000_000;
    config.log_filter = "warn,tenancy_runtime::replicas=info".into();
    let identity = [free_address(), free_address()];
    let account = [free_address(), free_address()];
    let urls = |addresses: &[SocketAddr]| {
        addresses
            .iter()
            .map(|a| format!("https://{a}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    config.identity.url = Some(urls(&identity));
    config.account.url = Some(urls(&account));
    for part in [Part::Identity, Part::Account, Part::Contacts, Part::Support] {
        tenancy::migrate(&config, part).await.unwrap();
    }
    // Contacts first: the replicas send mail through it.
    let contacts = start(config.clone(), Part::Contacts, Arc::new(SystemClock))
        .await
        .unwrap();
    let contacts_address = contacts.service(ServiceName::Contacts).unwrap();
    config.contacts.url = Some(format!("https://{contacts_address}"));
    let mut identities = Vec::new();
    let mut accounts = Vec::new();
    for index in 0..2 {
        identities.push(Process::start(Part::Identity, index, &config, identity[index]).await);
        accounts.push(Process::start(Part::Account, index, &config, account[index]).await);
    }
    let support = start(config.clone(), Part::Support, Arc::new(SystemClock))
        .await
        .unwrap();
    config.support.url = Some(format!(
        "https://{}",
        support.service(ServiceName::Support).unwrap()
    ));
    let gateway_part: Running = start(config.clone(), Part::Gateway, Arc::new(SystemClock))
        .await
        .unwrap();
    let gateway = channel(gateway_part.gateway.unwrap()).await;
    gateway_ready(&gateway).await;
    // The e2e helpers, on these parts.
    let suite = Suite {
        running: Running::listing(vec![(ServiceName::Contacts, contacts_address)]),
        gateway: gateway.clone(),
        config: config.clone(),
        database: database.clone(),
    };
    let client = customer(&suite).await;
    let probes = [
        Probe::new(&config, ServiceName::Identity),
        Probe::new(&config, ServiceName::Account),
    ];
    for probe in &probes {
        probe.call(4).await;
    }

    // Every replica up: every call succeeds.
    let failed = load_for(&client, "every replica up", Duration::from_secs(2)).await;
    assert!(
        failed.is_empty(),
        "calls failed with every replica up: {failed:#?}"
    );

    // 1. kill -9 one replica of identity and one of account.
    let load = start_load(&client);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fault = Instant::now();
    identities[1].kill().await;
    accounts[1].kill().await;
    for (probe, name) in probes.iter().zip(["identity", "account"]) {
        let out = probe.until_ejected(1, SETTLED).await;
        println!("{name}#1 killed: out of rotation after {out:?}");
    }
    tokio::time::sleep(SETTLED + Duration::from_secs(3)).await;
    let samples = load.stop().await;
    let late = report(
        "identity#1 and account#1 killed (-9)",
        &samples,
        fault,
        SETTLED,
    );
    assert!(
        late.is_empty(),
        "calls failed once the dead replicas were out: {late:#?}"
    );

    // 2. They come back on the same ports: back in rotation, they get calls
    // again, and no call fails meanwhile.
    let load = start_load(&client);
    let fault = Instant::now();
    identities[1].spawn().await;
    accounts[1].spawn().await;
    for (probe, name) in probes.iter().zip(["identity", "account"]) {
        let back = probe.until_serving(1, 3, Duration::from_secs(10)).await;
        println!("{name}#1 restarted: back in rotation and called {back:?} after it served");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let samples = load.stop().await;
    let failed = report(
        "identity#1 and account#1 restarted",
        &samples,
        fault,
        Duration::ZERO,
    );
    assert!(
        failed.is_empty(),
        "calls failed while replicas rejoined: {failed:#?}"
    );

    // 3. On SQLite the replicas share one file: a process stopped while it
    // holds SQLite's write lock (a write transaction in flight) stops every
    // writer of every replica, which no routing can help. Several replicas
    // of a part need PostgreSQL in production; the hang is measured there.
    if TestDatabase::is_postgres() {
        // The other two hang (SIGSTOP): their ports accept, nothing answers.
        // Calls stuck on them end by their deadline; every one starting once
        // they are out of rotation goes to the replicas that came back in 2.
        let load = start_load(&client);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let fault = Instant::now();
        identities[0].freeze();
        accounts[0].freeze();
        for (probe, name) in probes.iter().zip(["identity", "account"]) {
            let out = probe.until_ejected(0, SETTLED).await;
            println!("{name}#0 hung: out of rotation after {out:?}");
        }
        tokio::time::sleep(SETTLED + Duration::from_secs(3)).await;
        let samples = load.stop().await;
        identities[0].thaw();
        accounts[0].thaw();
        let late = report(
            "identity#0 and account#0 hung (SIGSTOP)",
            &samples,
            fault,
            SETTLED,
        );
        assert!(
            late.is_empty(),
            "calls failed once the hung replicas were out: {late:#?}"
        );

        // 4. Resumed, they rejoin and get calls again.
        for (probe, name) in probes.iter().zip(["identity", "account"]) {
            let back = probe.until_serving(0, 3, Duration::from_secs(10)).await;
            println!("{name}#0 resumed: back in rotation and called after {back:?}");
        }
        let failed = load_for(&client, "every replica back", Duration::from_secs(2)).await;
        assert!(
            failed.is_empty(),
            "calls failed with every replica back: {failed:#?}"
        );
    } else {
        println!("\nhung replicas (SIGSTOP): measured on PostgreSQL only");
    }

    gateway_part.stop().await.unwrap();
    support.stop().await.unwrap();
    contacts.stop().await.unwrap();
    for mut replica in identities.into_iter().chain(accounts) {
        replica.kill().await;
    }
}
