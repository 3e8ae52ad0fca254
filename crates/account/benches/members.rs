//! Benchmark: ListMembers latency (first page and a page 90,000 rows deep
//! in an account with 100,000 members, names from the real identity
//! service) and CheckAccess throughput for a member with 1,000 selected
//! services and 100 tag grants, all over gRPC on loopback.
//!
//! `cargo bench -p tenancy-account` (SQLite; set TENANCY_TEST_DATABASE_URL
//! for PostgreSQL). Rows are seeded directly into the database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database};
use tenancy_account::AccountService;
use tenancy_identity::IdentityService;
use tenancy_proto::account::{
    self as pb, account_internal_service_client::AccountInternalServiceClient,
    account_service_client::AccountServiceClient,
};
use tenancy_runtime::{ManualClock, Principal};
use tenancy_testkit::{Caller, Role, TestDatabase, member, start, test_config, test_context};

/// The allocator the `tenancy` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MEMBERS: usize = 100_000;
const SERVICES: usize = 1_000;
const TAGS: usize = 100;

fn id(n: usize) -> String {
    format!("00000000-0000-7000-8000-{n:012}")
}

async fn insert(db: &sea_orm::DatabaseConnection, table_cols: &str, rows: Vec<String>) {
    for chunk in rows.chunks(500) {
        db.execute_unprepared(&format!(
            "INSERT INTO {table_cols} VALUES {}",
            chunk.join(", ")
        ))
        .await
        .unwrap();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let db = TestDatabase::new("account_bench").await;
    let mut config = test_config(&db);
    let clock = ManualClock::starting_now();
    let identity = start::<IdentityService>(
        test_context(config.clone(), Arc::new(clock.clone())),
        clock.clone(),
    )
    .await;
    config.identity.url = Some(format!("http://{}", identity.address));
    let account =
        start::<AccountService>(test_context(config, Arc::new(clock.clone())), clock.clone()).await;
    let conn = Database::connect(&db.url).await.unwrap();
    let now = tenancy_runtime::Clock::now(&clock).millis();
    let account_id = id(999_999_999);

    let t = Instant::now();
    conn.execute_unprepared(&format!(
        "INSERT INTO account_accounts (id, account_type, name, legal_name, country_code, vat_number, registration_number, address_json, created_by, create_time, update_time, lock_version, enforce_mfa, mfa_grace_ms, enforce_mfa_time, ip_allowlist_json, security_update_time, security_update_user) \
         VALUES ('{account_id}', 2, 'Big', 'Big B.V.', 'NL', '', '', '{{}}', '{}', {now}, {now}, 0, FALSE, 0, NULL, '[]', NULL, '')",
        id(0)
    ))
    .await
    .unwrap();
    let users: Vec<String> = (0..MEMBERS)
        .map(|n| format!("('{}', 'user{n}@example.com', 'user{n}@example.com', TRUE, 'User {n}', {now}, {now}, {now})", id(n)))
        .collect();
    insert(&conn, "identity_users (id, email, email_key, email_verified, name, create_time, update_time, last_login_time)", users).await;
    let members: Vec<String> = (0..MEMBERS)
        .map(|n| {
            let role = if n == 0 { 2 } else { 1 };
            let access = if n == 1 { 3 } else { 2 };
            // alias_id: the id a member is first shown under, unique in
            // the account (their user id once they joined themselves).
            format!("('{account_id}', '{}', {role}, 1, TRUE, FALSE, {access}, {}, {now}, 'user {n}', 'user{n}@example.com', NULL, '{}')", id(n), now + n as i64, id(n))
        })
        .collect();
    insert(&conn, "account_members (account_id, user_id, role, status, portal_access, password_pending, service_access, join_time, update_time, name_key, email, mfa_deadline, alias_id)", members).await;
    let services: Vec<String> = (0..SERVICES)
        .map(|n| format!("('{}', '{account_id}', 'cloud_server', 'srv-{n:04}', '[\"tag-{}\"]', NULL, {now}, {now})", id(500_000 + n), n % 200))
        .collect();
    insert(&conn, "account_services (id, account_id, kind, name, tags_json, external_id, create_time, update_time)", services).await;
    let tags: Vec<String> = (0..SERVICES)
        .map(|n| format!("('{}', '{account_id}', 'tag-{}')", id(500_000 + n), n % 200))
        .collect();
    insert(
        &conn,
        "account_service_tags (service_id, account_id, tag)",
        tags,
    )
    .await;
    // Member 1: SELECTED with every service, plus 100 tag grants.
    let mut grants: Vec<String> = (0..SERVICES)
        .map(|n| format!("('{account_id}', '{}', 1, '{}', 2)", id(1), id(500_000 + n)))
        .collect();
    grants.extend((0..TAGS).map(|n| format!("('{account_id}', '{}', 3, 'tag-{n}', 1)", id(1))));
    insert(
        &conn,
        "account_member_grants (account_id, user_id, grant_kind, grant_key, level)",
        grants,
    )
    .await;
    conn.execute_unprepared("ANALYZE").await.unwrap();
    println!(
        "seeded {MEMBERS} members, {SERVICES} services in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let channel = account.channel().await;
    let owner = AccountServiceClient::with_interceptor(
        channel.clone(),
        Caller::new(
            member(&id(0), &account_id, Role::Owner),
            Arc::new(clock.clone()),
        ),
    );

    // ACCOUNT_BENCH=check measures CheckAccess only (for profiling).
    let lists = std::env::var("ACCOUNT_BENCH").map_or(true, |v| v != "check");
    // ListMembers, first page.
    let page = |token: String| pb::ListMembersRequest {
        page_size: 50,
        page_token: token,
        ..Default::default()
    };
    let mut first = Vec::new();
    for k in 0..if lists { 220 } else { 0 } {
        let t = Instant::now();
        let r = owner
            .clone()
            .list_members(page(String::new()))
            .await
            .unwrap()
            .into_inner();
        if k >= 20 {
            first.push(t.elapsed());
        }
        assert_eq!(r.members.len(), 50);
        assert!(!r.members[0].name.is_empty());
    }
    // Walk to row 90,000 with big pages, then measure 50-row pages there.
    let mut token = String::new();
    let mut seen = 0;
    while lists && seen < 90_000 {
        let r = owner
            .clone()
            .list_members(pb::ListMembersRequest {
                page_size: 500,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen += r.members.len();
        token = r.next_page_token;
    }
    let mut deep = Vec::new();
    for k in 0..if lists { 220 } else { 0 } {
        let t = Instant::now();
        let r = owner
            .clone()
            .list_members(page(token.clone()))
            .await
            .unwrap()
            .into_inner();
        if k >= 20 {
            deep.push(t.elapsed());
        }
        assert_eq!(r.members[0].user_id, id(90_000));
    }
    // The first page again, now that the walk has warmed the database's
    // caches as production traffic would.
    let mut first_warm = Vec::new();
    for _ in 0..if lists { 200 } else { 0 } {
        let t = Instant::now();
        owner
            .clone()
            .list_members(page(String::new()))
            .await
            .unwrap();
        first_warm.push(t.elapsed());
    }
    first.sort();
    deep.sort();
    first_warm.sort();
    if lists {
        println!(
            "ListMembers first page again after the walk:     p50 {:.2} ms, p99 {:.2} ms",
            ms(percentile(&first_warm, 0.5)),
            ms(percentile(&first_warm, 0.99))
        );
        println!(
            "ListMembers first page (50 rows, 100k members): p50 {:.2} ms, p99 {:.2} ms",
            ms(percentile(&first, 0.5)),
            ms(percentile(&first, 0.99))
        );
        println!(
            "ListMembers page at row 90,000 (50 rows):        p50 {:.2} ms, p99 {:.2} ms",
            ms(percentile(&deep, 0.5)),
            ms(percentile(&deep, 0.99))
        );
    }

    // CheckAccess throughput: several HTTP/2 connections, so one
    // connection's framing is not the limit, each shared by several callers.
    let connections = 4;
    let workers = 64;
    let mut clients = Vec::new();
    for _ in 0..connections {
        clients.push(AccountInternalServiceClient::with_interceptor(
            account.channel().await,
            Caller::new(Principal::service("bench"), Arc::new(clock.clone())),
        ));
    }
    drop(channel);
    let user = id(1);
    let duration = Duration::from_secs(5);
    // Warm up (the first check loads the member and the catalogue).
    for client in &clients {
        client
            .clone()
            .check_access(pb::CheckAccessRequest {
                user_id: user.clone(),
                account_id: account_id.clone(),
                target: Some(pb::check_access_request::Target::ServiceId(id(500_000))),
                level: pb::AccessLevel::Manage as i32,
            })
            .await
            .unwrap();
    }
    let (u, a) = (user.clone(), account_id.clone());
    let single = move |mut client: Client, n: usize| {
        let (user, account_id) = (u.clone(), a.clone());
        async move {
            let r = client
                .check_access(pb::CheckAccessRequest {
                    user_id: user,
                    account_id,
                    target: Some(pb::check_access_request::Target::ServiceId(id(
                        500_000 + n % SERVICES
                    ))),
                    level: pb::AccessLevel::Manage as i32,
                })
                .await
                .unwrap()
                .into_inner();
            assert!(r.allowed);
            1
        }
    };
    for (workers, what) in [(workers, "throughput"), (4, "latency at light load")] {
        let (rate, lat) = load(&clients, workers, duration, single.clone()).await;
        println!(
            "CheckAccess, {what} (1,000 services, 100 tag grants, {workers} concurrent callers on {connections} HTTP/2 connections): {rate:.0} checks/s, p50 {:.2} ms, p99 {:.2} ms",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99))
        );
    }
    // The batched form other services use (support: one call per page).
    const BATCH: usize = 50;
    let (u, a) = (user.clone(), account_id.clone());
    let batch = move |mut client: Client, n: usize| {
        let (user, account_id) = (u.clone(), a.clone());
        async move {
            let r = client
                .batch_check_access(pb::BatchCheckAccessRequest {
                    user_id: user,
                    account_id,
                    service_ids: (0..BATCH)
                        .map(|k| id(500_000 + (n + k * 17) % SERVICES))
                        .collect(),
                    level: pb::AccessLevel::Manage as i32,
                    include_accessible_service_ids: false,
                })
                .await
                .unwrap()
                .into_inner();
            assert!(r.results.iter().all(|r| r.allowed));
            r.results.len()
        }
    };
    let (rate, lat) = load(&clients, 16, duration, batch).await;
    println!(
        "BatchCheckAccess ({BATCH} services a call, 16 concurrent callers on {connections} HTTP/2 connections): {rate:.0} checks/s, per call p50 {:.2} ms, p99 {:.2} ms",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99))
    );
    drop(clients);

    // The same check from an external load generator, as another service
    // calls it: the in-process tonic callers above spend about as much CPU
    // as the server they measure, on the same cores.
    let request = pb::CheckAccessRequest {
        user_id: user,
        account_id,
        target: Some(pb::check_access_request::Target::ServiceId(id(500_123))),
        level: pb::AccessLevel::Manage as i32,
    };
    // h2load presents no client certificate, and every internal call is
    // mutual TLS naming its caller: an nginx relay takes h2load's cleartext
    // HTTP/2 and calls account over mutual TLS as support does (support's
    // certificate, upstream keepalive). The relay's CPU is measured apart.
    let answer = AccountInternalServiceClient::new(account.channel().await)
        .check_access(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(answer.allowed);
    let relay = match Relay::start(account.address) {
        Ok(relay) => relay,
        Err(why) => {
            println!("CheckAccess via h2load: skipped ({why})");
            return;
        }
    };
    for (conns, streams) in h2load_shapes() {
        match h2load_check_access(&relay, &request, conns, streams) {
            Ok(line) => println!("{line}"),
            Err(why) => {
                println!("CheckAccess via h2load: skipped ({why})");
                break;
            }
        }
    }
}

/// nginx relaying cleartext HTTP/2 (h2load's) to account over mutual TLS
/// with support's certificate; stopped when dropped.
struct Relay {
    dir: std::path::PathBuf,
    address: std::net::SocketAddr,
    nginx: std::process::Child,
}

impl Relay {
    fn start(account: std::net::SocketAddr) -> Result<Self, String> {
        let pki = tenancy_testkit::test_pki();
        let dir = std::env::temp_dir().join(format!("account-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let address = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?;
        let (d, p) = (dir.display(), pki.display());
        std::fs::write(
            dir.join("nginx.conf"),
            format!(
                "worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  client_body_temp_path {d};
  upstream account {{ server {account}; keepalive 64; keepalive_requests 10000000; }}
  server {{
    listen {address} http2;
    http2_max_concurrent_streams 1024;
    location / {{
      grpc_pass grpcs://account;
      grpc_ssl_certificate {p}/support.pem;
      grpc_ssl_certificate_key {p}/support.key;
      grpc_ssl_trusted_certificate {p}/ca.pem;
      grpc_ssl_verify on;
      grpc_ssl_name account.tenancy;
      grpc_ssl_server_name on;
      grpc_ssl_session_reuse on;
    }}
  }}
}}
"
            ),
        )
        .map_err(|e| e.to_string())?;
        let nginx = std::process::Command::new("nginx")
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("nginx: {e}"))?;
        let relay = Self {
            dir,
            address,
            nginx,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(address).is_err() {
            if Instant::now() > deadline {
                return Err("nginx did not start listening within 5 s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(relay)
    }

    /// CPU time (user + system) nginx's processes have used so far.
    fn cpu(&self) -> Duration {
        let master = self.nginx.id();
        let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
            .unwrap_or_default();
        std::iter::once(master.to_string())
            .chain(children.split_whitespace().map(str::to_owned))
            .map(|pid| tenancy_testkit::process_cpu(&pid))
            .sum()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // SIGTERM, so the master stops its worker too (SIGKILL would
        // orphan it, still listening).
        let _ = std::process::Command::new("kill")
            .arg(self.nginx.id().to_string())
            .status();
        let _ = self.nginx.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// h2load connection × stream shapes: `CHECK_H2LOAD=4x4,8x4` or these.
fn h2load_shapes() -> Vec<(usize, usize)> {
    std::env::var("CHECK_H2LOAD")
        .unwrap_or_else(|_| "2x8,4x4,4x8".to_owned())
        .split(',')
        .filter_map(|shape| {
            let (c, m) = shape.split_once('x')?;
            Some((c.trim().parse().ok()?, m.trim().parse().ok()?))
        })
        .collect()
}

/// Runs h2load (Debian's nghttp2-client) against CheckAccess with `conns`
/// connections of `streams` concurrent streams each; returns the result
/// line, or why it could not run.
fn h2load_check_access(
    relay: &Relay,
    request: &pb::CheckAccessRequest,
    conns: usize,
    streams: usize,
) -> Result<String, String> {
    use prost::Message as _;
    const CALLS: usize = 200_000;
    let dir = &relay.dir;
    // One gRPC frame: uncompressed flag, big-endian length, the message.
    let message = request.encode_to_vec();
    let mut frame = vec![0];
    frame.extend(u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend(message);
    let body = dir.join("check.grpc");
    let log = dir.join("h2load.log");
    std::fs::write(&body, frame).map_err(|e| e.to_string())?;
    let (account_before, relay_before) = (tenancy_testkit::process_cpu("self"), relay.cpu());
    let output = std::process::Command::new("h2load")
        .args(["-n", &CALLS.to_string(), "-c", &conns.to_string()])
        .args(["-m", &streams.to_string(), "-t", "1"])
        .arg("-d")
        .arg(&body)
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .arg(format!("--log-file={}", log.display()))
        .arg(format!(
            "http://{}/tenancy.account.v1.AccountInternalService/CheckAccess",
            relay.address
        ))
        .output()
        .map_err(|e| format!("h2load: {e}"))?;
    let (account_cpu, relay_cpu) = (
        tenancy_testkit::process_cpu("self") - account_before,
        relay.cpu() - relay_before,
    );
    let out = String::from_utf8_lossy(&output.stdout);
    let rate = out
        .split("req/s")
        .next()
        .and_then(|head| head.rsplit(", ").next())
        .and_then(|r| r.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("unexpected h2load output: {out}"))?;
    // Every answer must be an allowing message (a refusal is trailers-only,
    // so no DATA): h2load counts HTTP 200s, not gRPC statuses.
    assert!(
        out.contains(&format!("{CALLS} succeeded")),
        "h2load: not every call succeeded: {out}"
    );
    let data: usize = out
        .split(") data")
        .next()
        .and_then(|head| head.rsplit('(').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("unexpected h2load output: {out}"))?;
    // A frame header (5 bytes) and at least `allowed = true` (2) each.
    assert!(
        data >= CALLS * 7,
        "h2load: answers without a message: {out}"
    );
    let mut latencies: Vec<Duration> = std::fs::read_to_string(&log)
        .map_err(|e| e.to_string())?
        .lines()
        .filter_map(|line| line.split('\t').nth(2)?.parse().ok())
        .map(Duration::from_micros)
        .collect();
    latencies.sort();
    let per_call = |cpu: Duration| cpu.as_secs_f64() * 1e6 / CALLS as f64;
    Ok(format!(
        "CheckAccess via h2load (1,000 services, 100 tag grants, {conns} connections x {streams} streams, {CALLS} calls, through an nginx mutual-TLS relay): {rate:.0} checks/s, p50 {:.2} ms, p99 {:.2} ms; CPU per check: account {:.1} us, relay {:.1} us",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        per_call(account_cpu),
        per_call(relay_cpu),
    ))
}

type Client = AccountInternalServiceClient<
    tonic::service::interceptor::InterceptedService<tenancy_testkit::TestChannel, Caller>,
>;

/// Runs `workers` callers spread over `clients` for `duration`, each calling
/// `call` (which returns how many checks it answered) in a loop. Returns
/// checks per second and every call's latency, sorted.
async fn load<F, Fut>(
    clients: &[Client],
    workers: usize,
    duration: Duration,
    call: F,
) -> (f64, Vec<Duration>)
where
    F: Fn(Client, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = usize> + Send,
{
    let start_at = Instant::now();
    let mut handles = Vec::new();
    for w in 0..workers {
        let client = clients[w % clients.len()].clone();
        let call = call.clone();
        handles.push(tokio::spawn(async move {
            let (mut lat, mut checks, mut n) = (Vec::new(), 0, w);
            while start_at.elapsed() < duration {
                n = (n * 7919 + 13) % SERVICES;
                let t = Instant::now();
                checks += call(client.clone(), n).await;
                lat.push(t.elapsed());
            }
            (checks, lat)
        }));
    }
    let (mut checks, mut all) = (0, Vec::new());
    for h in handles {
        let (c, l) = h.await.unwrap();
        checks += c;
        all.extend(l);
    }
    let elapsed = start_at.elapsed().as_secs_f64();
    all.sort();
    (checks as f64 / elapsed, all)
}
