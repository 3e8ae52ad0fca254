//! Login benchmark: argon2id time at the configured parameters, the bound
//! it implies (cores ÷ hash time), measured Login throughput with 16
//! concurrent gRPC clients, and GetMe p99 while logins saturate the CPU;
//! then overload (issue 21 §11): 256 clients log in at once, several times
//! what the hashing pool can hash, and the pool's admission control
//! (`auth.password_hash_max_wait`) sheds what would wait too long: the
//! login p99 of those admitted, the share shed and GetMe p99 meanwhile.
//!
//! Run: `cargo bench -p tenancy-identity` (SQLite in a temp dir, or
//! PostgreSQL with TENANCY_TEST_DATABASE_URL).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tenancy_identity::IdentityService;
use tenancy_identity::peers::Accounts;
use tenancy_identity::peers::{Mailer, OutgoingEmail};
use tenancy_proto::identity::identity_internal_service_client::IdentityInternalServiceClient;
use tenancy_proto::identity::identity_service_client::IdentityServiceClient;
use tenancy_proto::identity::*;
use tenancy_runtime::ids::{AccountId, UserId};
use tenancy_runtime::principal::ServiceAuth;
use tenancy_runtime::{Error, Principal, SystemClock, TenancyService};
use tenancy_testkit::TestChannel as Channel;
use tenancy_testkit::{Caller, TestDatabase, test_config, test_context};
use tonic_types::StatusExt as _;

struct NoMail;
#[tonic::async_trait]
impl Mailer for NoMail {
    async fn send(&self, _: OutgoingEmail) -> Result<(), Error> {
        Ok(())
    }

    async fn send_phone_code(
        &self,
        _: tenancy_identity::peers::OutgoingPhoneCode,
    ) -> Result<(), Error> {
        Ok(())
    }
}

struct NoAccounts;
#[tonic::async_trait]
impl Accounts for NoAccounts {
    async fn is_active_member(&self, _: &UserId, _: &AccountId) -> Result<bool, Error> {
        Ok(false)
    }
    async fn default_account(
        &self,
        _: &UserId,
        _: &[AccountId],
    ) -> Result<Option<AccountId>, Error> {
        Ok(None)
    }
    async fn mfa_deadline(
        &self,
        _: &UserId,
        _: &AccountId,
    ) -> Result<Option<tenancy_runtime::Timestamp>, Error> {
        Ok(None)
    }
}

const PASSWORD: &str = "correct horse battery staple";
const CLIENTS: usize = 16;
/// Clients of the overload phase, each its own user from its own address.
const OVERLOAD_CLIENTS: usize = 256;
const RUN: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() {
    let db = TestDatabase::new("bench").await;
    let config = test_config(&db);
    let auth = config.auth.clone();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);

    // 1. argon2id at the configured parameters.
    let params = Params::new(
        auth.argon2_memory_kib,
        auth.argon2_iterations,
        auth.argon2_parallelism,
        None,
    )
    .unwrap();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let rounds = 20;
    let start = Instant::now();
    for _ in 0..rounds {
        argon.hash_password(PASSWORD.as_bytes(), &salt).unwrap();
    }
    let hash_time = start.elapsed() / rounds;
    let bound = cores as f64 / hash_time.as_secs_f64();
    println!(
        "argon2id m={} KiB t={} p={}: {:.1} ms per hash",
        auth.argon2_memory_kib,
        auth.argon2_iterations,
        auth.argon2_parallelism,
        hash_time.as_secs_f64() * 1000.0
    );
    println!("bound: {cores} cores / hash time = {bound:.1} logins/s");
    // What this machine's cores hash together, with nothing else running:
    // the ceiling any Login can reach here. Below the bound when the cores
    // share what argon2id is limited by (memory bandwidth, caches; SMT
    // siblings of one physical core).
    let together = {
        let stop = Arc::new(AtomicBool::new(false));
        let hashed = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..cores)
            .map(|_| {
                let (stop, hashed, argon, salt) =
                    (stop.clone(), hashed.clone(), argon.clone(), salt.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        argon.hash_password(PASSWORD.as_bytes(), &salt).unwrap();
                        hashed.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let start = Instant::now();
        std::thread::sleep(Duration::from_secs(5));
        let counted = hashed.load(Ordering::Relaxed);
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        counted as f64 / elapsed.as_secs_f64()
    };
    println!(
        "argon2id on all {cores} cores at once: {together:.1} hashes/s = {:.0}% of the bound",
        100.0 * together / bound
    );

    // 2. The service on loopback.
    let clock: tenancy_runtime::clock::SharedClock = Arc::new(SystemClock);
    let context =
        test_context(config, clock.clone()).for_part(tenancy_runtime::tls::Caller::Identity);
    let service = IdentityService::open_with(context, Arc::new(NoMail), Arc::new(NoAccounts))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (_trigger, stop) = tenancy_runtime::shutdown::channel();
    tokio::spawn(service.serve(listener, stop));
    let channel = Channel::new(tenancy_runtime::tls::Caller::Identity, address);
    let mut internal =
        IdentityInternalServiceClient::with_interceptor(channel.clone(), ServiceAuth::new());
    let mut users = Vec::new();
    for i in 0..OVERLOAD_CLIENTS {
        let email = format!("bench{i}@example.com");
        let user = internal
            .ensure_user(EnsureUserRequest {
                email: email.clone(),
                name: "Bench".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        internal
            .set_initial_password(SetInitialPasswordRequest {
                user_id: user.id.clone(),
                password: PASSWORD.into(),
                name: String::new(),
            })
            .await
            .unwrap();
        users.push((user.id, email));
    }

    // 3. 16 clients log in as fast as they can; one client measures GetMe.
    let done = Arc::new(AtomicBool::new(false));
    let logins = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (i, (_, email)) in users.iter().take(CLIENTS).enumerate() {
        let principal = Principal {
            client_ip: Some(format!("10.0.0.{}", i + 1).parse().unwrap()),
            request_id: "bench".into(),
            ..Principal::default()
        };
        let mut c = IdentityServiceClient::with_interceptor(
            channel.clone(),
            Caller::new(principal, clock.clone()),
        );
        let (done, logins, email) = (done.clone(), logins.clone(), email.clone());
        tasks.push(tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let r = c
                    .login(LoginRequest {
                        email: email.clone(),
                        password: PASSWORD.into(),
                        account_id: String::new(),
                        unlock_token: String::new(),
                    })
                    .await;
                match r {
                    Ok(_) => {
                        logins.fetch_add(1, Ordering::Relaxed);
                    }
                    // Shed by the hashing pool's admission control (its
                    // expected wait exceeded auth.password_hash_max_wait):
                    // a client retries a little later.
                    Err(e) if e.code() == tonic::Code::ResourceExhausted => {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }
        }));
    }
    let me = Principal {
        user_id: Some(users[0].0.clone()),
        token_kind: tenancy_testkit::TokenKind::Portal,
        session_id: Some("bench".into()),
        request_id: "bench".into(),
        ..Principal::default()
    };
    let mut getme =
        IdentityServiceClient::with_interceptor(channel.clone(), Caller::new(me, clock.clone()));
    let started = Instant::now();
    let mut latencies = Vec::new();
    tokio::time::sleep(Duration::from_millis(500)).await;
    while started.elapsed() < RUN {
        let t = Instant::now();
        getme.get_me(GetMeRequest {}).await.unwrap();
        latencies.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    done.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    for t in tasks {
        t.await.unwrap();
    }
    let throughput = logins.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64();
    let (p50, p99) = percentiles(&mut latencies);
    println!(
        "Login throughput with {CLIENTS} clients: {throughput:.1}/s = {:.0}% of bound (target >= 90%), {:.0}% of what the cores hash together",
        100.0 * throughput / bound,
        100.0 * throughput / together
    );
    println!(
        "GetMe while logins saturate the CPU: p50 {:.2} ms, p99 {:.2} ms over {} calls (target p99 <= 10 ms)",
        p50.as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0,
        latencies.len()
    );

    // 4. Overload: 256 clients, each logging in again as soon as it has an
    //    answer (a shed one after the delay its RetryInfo says, as a
    //    well-behaved client does), with the hashing pool's admission
    //    control on.
    let admitted = Arc::new(parking_lot::Mutex::new(Vec::<Duration>::new()));
    let shed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, (_, email)) in users.iter().enumerate() {
        let principal = Principal {
            client_ip: Some(format!("10.1.{}.{}", i / 250, i % 250 + 1).parse().unwrap()),
            request_id: "bench".into(),
            ..Principal::default()
        };
        let mut c = IdentityServiceClient::with_interceptor(
            channel.clone(),
            Caller::new(principal, clock.clone()),
        );
        let (done, admitted, shed, email) =
            (done.clone(), admitted.clone(), shed.clone(), email.clone());
        tasks.push(tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = c
                    .login(LoginRequest {
                        email: email.clone(),
                        password: PASSWORD.into(),
                        account_id: String::new(),
                        unlock_token: String::new(),
                    })
                    .await;
                match r {
                    Ok(_) => admitted.lock().push(t.elapsed()),
                    Err(e) if e.code() == tonic::Code::ResourceExhausted => {
                        shed.fetch_add(1, Ordering::Relaxed);
                        let delay = e
                            .get_details_retry_info()
                            .and_then(|r| r.retry_delay)
                            .unwrap_or(Duration::from_secs(1));
                        tokio::time::sleep(delay).await;
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    admitted.lock().clear();
    shed.store(0, Ordering::Relaxed);
    let started = Instant::now();
    let mut latencies = Vec::new();
    while started.elapsed() < RUN {
        let t = Instant::now();
        getme.get_me(GetMeRequest {}).await.unwrap();
        latencies.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let mut admitted_latencies = std::mem::take(&mut *admitted.lock());
    let shed = shed.load(Ordering::Relaxed);
    done.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let served = admitted_latencies.len();
    let (login_p50, login_p99) = percentiles(&mut admitted_latencies);
    let (p50, p99) = percentiles(&mut latencies);
    println!(
        "Overload, {OVERLOAD_CLIENTS} clients for {:.0} s (auth.password_hash_max_wait {} ms): {served} logins admitted ({:.1}/s = {:.0}% of bound), {shed} shed = {:.0}% of attempts; admitted login p50 {:.0} ms, p99 {:.0} ms",
        elapsed.as_secs_f64(),
        auth.password_hash_max_wait.as_millis(),
        served as f64 / elapsed.as_secs_f64(),
        100.0 * served as f64 / elapsed.as_secs_f64() / bound,
        100.0 * shed as f64 / (shed as f64 + served as f64).max(1.0),
        login_p50.as_secs_f64() * 1000.0,
        login_p99.as_secs_f64() * 1000.0,
    );
    println!(
        "GetMe during the overload: p50 {:.2} ms, p99 {:.2} ms over {} calls (target p99 <= 10 ms)",
        p50.as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0,
        latencies.len()
    );
}

/// p50 and p99 of `samples` (sorted here).
fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    if samples.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    samples.sort();
    let at = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    (at(50), at(99))
}
