//! Growth (issue 20 §3): what a fresh gateway costs as the customer base
//! grows — the time until its Watch streams are caught up (account's
//! WatchPolicies snapshot + identity's WatchRevocations backlog) and its
//! resident memory then, and again once every active session's access
//! token is in its cache.
//!
//! Each round fills a real identity and account database (bulk SQL behind
//! the running services' backs, after their migrations ran), serves the
//! real identity and account services in this process, then starts a fresh
//! gateway **in a process of its own** (this benchmark's binary run again
//! with `GROWTH_GATEWAY=…`), so its RSS is the gateway's alone, as in
//! production. The gateway process reports its own figures: from its start
//! to both streams caught up, and `VmRSS` / `VmHWM` then.
//!
//! What a round holds, for `M` memberships and `S` active sessions:
//! - account: `M / 3` accounts (3M accounts for 10M users), every other
//!   one enforcing 2FA, every tenth with a two-entry IP allowlist; `M`
//!   ACTIVE memberships spread over them;
//! - identity: `S` session revocations in the revocation log, all within
//!   the retention and still in effect (every active session logged out of
//!   another one in the last day: the worst case the log keeps); identity
//!   streams no sessions, only revocations;
//! - the gateway's token cache: after catch-up, `S` verified access tokens
//!   (every active session called through this gateway within a token
//!   lifetime), inserted directly as the decision benchmark does, into a
//!   cache bounded by `gateway.max_cached_tokens` (its default, or
//!   `GROWTH_MAX_CACHED_TOKENS`).
//!
//! The gateway's CPU seconds to catch-up (`gw CPU`) and identity's and
//! account's together meanwhile (`srv CPU`, this process) are figures the
//! machine's load does not change much, unlike the wall-clock times.
//!
//! Run: `cargo bench -p tenancy --bench growth`. Rounds: (M, S) = (10k,
//! 100k), (100k, 100k), (100k, 1M); `GROWTH_MILLION=1` adds (1M, 1M)
//! (filling takes minutes on SQLite); `GROWTH_ROUNDS=m:s,m:s` chooses
//! others. SQLite unless `TENANCY_TEST_DATABASE_URL` names PostgreSQL.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_precision_loss
)]

use std::io::{BufRead as _, BufReader};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, TransactionTrait};
use tenancy_account::AccountService;
use tenancy_identity::IdentityService;
use tenancy_runtime::ManualClock;
use tenancy_runtime::config::{Config, TlsConfig};
use tenancy_runtime::tls::Caller;
use tenancy_testkit::{TestDatabase, loopback, start_on, test_config, test_context, test_pki};

/// The allocator the `tenancy` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Rows per INSERT statement.
const CHUNK: usize = 500;

fn id(kind: u8, n: usize) -> String {
    format!("00000000-0000-7000-8{kind:03x}-{n:012}")
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) this process has used, all threads.
fn cpu_seconds() -> f64 {
    tenancy_testkit::process_cpu("self").as_secs_f64()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

async fn insert<C: ConnectionTrait>(c: &C, table_cols: &str, rows: impl Iterator<Item = String>) {
    let mut chunk = Vec::with_capacity(CHUNK);
    for row in rows {
        chunk.push(row);
        if chunk.len() == CHUNK {
            flush(c, table_cols, &mut chunk).await;
        }
    }
    flush(c, table_cols, &mut chunk).await;
}

async fn flush<C: ConnectionTrait>(c: &C, table_cols: &str, chunk: &mut Vec<String>) {
    if !chunk.is_empty() {
        c.execute_unprepared(&format!(
            "INSERT INTO {table_cols} VALUES {}",
            chunk.join(", ")
        ))
        .await
        .unwrap();
        chunk.clear();
    }
}

fn main() {
    if let Ok(spec) = std::env::var("GROWTH_GATEWAY") {
        gateway_process(&spec);
        return;
    }
    let rounds: Vec<(usize, usize)> = match std::env::var("GROWTH_ROUNDS") {
        Ok(spec) => spec
            .split(',')
            .map(|r| {
                let (m, s) = r.split_once(':').expect("GROWTH_ROUNDS=members:sessions,…");
                (m.trim().parse().unwrap(), s.trim().parse().unwrap())
            })
            .collect(),
        Err(_) => {
            let mut rounds = vec![(10_000, 100_000), (100_000, 100_000), (100_000, 1_000_000)];
            if std::env::var("GROWTH_MILLION").is_ok_and(|v| v == "1") {
                rounds.push((1_000_000, 1_000_000));
            }
            rounds
        }
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "{:>10} {:>10} | {:>8} {:>8} | {:>7} {:>7} | {:>9} {:>9} {:>9} | {:>9} {:>9} | fill",
        "members",
        "sessions",
        "ready s",
        "(rev s)",
        "gw CPU",
        "srv CPU",
        "RSS MiB",
        "peak MiB",
        "idle MiB",
        "+cache",
        "peak"
    );
    for (members, sessions) in rounds {
        runtime.block_on(round(members, sessions));
    }
}

/// One round: fill, serve identity and account, run a fresh gateway.
async fn round(members: usize, sessions: usize) {
    let fill = Instant::now();
    let identity_db = TestDatabase::new("growth_i").await;
    let account_db = TestDatabase::new("growth_a").await;
    let mut config = test_config(&identity_db);
    config.account.database_url = Some(account_db.url.clone());
    let clock = ManualClock::starting_now();
    let (identity_listener, account_listener) = (loopback().await, loopback().await);
    config.identity.url = Some(format!(
        "https://{}",
        identity_listener.local_addr().unwrap()
    ));
    config.account.url = Some(format!(
        "https://{}",
        account_listener.local_addr().unwrap()
    ));
    let context = || test_context(config.clone(), Arc::new(clock.clone()));
    let _identity = start_on::<IdentityService>(identity_listener, context(), clock.clone()).await;
    let _account = start_on::<AccountService>(account_listener, context(), clock.clone()).await;
    let now = tenancy_runtime::Clock::now(&clock).millis();

    // Account: M / 3 accounts, M memberships.
    let accounts = (members / 3).max(1);
    let conn = Database::connect(&account_db.url).await.unwrap();
    let txn = conn.begin().await.unwrap();
    insert(
        &txn,
        "account_accounts (id, account_type, name, legal_name, country_code, vat_number, registration_number, address_json, created_by, create_time, update_time, lock_version, enforce_mfa, mfa_grace_ms, enforce_mfa_time, ip_allowlist_json, security_update_time, security_update_user)",
        (0..accounts).map(|a| {
            let enforce = a % 2 == 0;
            let allowlist = if a % 10 == 0 {
                r#"["203.0.113.0/24","2001:db8::/32"]"#
            } else {
                "[]"
            };
            format!(
                "('{}', 2, 'Account {a}', 'Account {a} B.V.', 'NL', '', '', '{{}}', '{}', {now}, {now}, 0, {enforce}, 604800000, {}, '{allowlist}', NULL, '')",
                id(1, a),
                id(2, a),
                if enforce { now.to_string() } else { "NULL".into() },
            )
        }),
    )
    .await;
    insert(
        &txn,
        "account_members (account_id, user_id, role, status, portal_access, password_pending, service_access, join_time, update_time, name_key, email, mfa_deadline, alias_id)",
        (0..members).map(|m| {
            let role = if m < accounts { 2 } else { 1 };
            format!(
                "('{}', '{}', {role}, 1, TRUE, FALSE, 1, {now}, {now}, 'user {m}', 'user{m}@example.com', NULL, '{}')",
                id(1, m % accounts),
                id(2, m),
                id(2, m),
            )
        }),
    )
    .await;
    txn.commit().await.unwrap();
    conn.close().await.unwrap();

    // Identity: S session revocations, in effect for another hour.
    let conn = Database::connect(&identity_db.url).await.unwrap();
    let txn = conn.begin().await.unwrap();
    let expire = now + 3_600_000;
    insert(
        &txn,
        "identity_revocations (position, create_time, expire_time, reason, kind, subject, user_id)",
        (0..sessions).map(|s| {
            format!(
                "({}, {now}, {expire}, 1, 'session', '{}', '{}')",
                s + 1,
                id(3, s),
                id(2, s % members.max(1)),
            )
        }),
    )
    .await;
    txn.execute_unprepared(&format!(
        "UPDATE identity_revocation_head SET position = {sessions} WHERE id = 1"
    ))
    .await
    .unwrap();
    txn.commit().await.unwrap();
    conn.close().await.unwrap();
    let fill = fill.elapsed();

    // A fresh gateway, in a process of its own.
    let spec = format!(
        "{}|{}|{}|{}|{}",
        config.identity.url.as_deref().unwrap(),
        config.account.url.as_deref().unwrap(),
        test_pki().display(),
        sessions,
        members,
    );
    let started = Instant::now();
    let servers_cpu = cpu_seconds();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env("GROWTH_GATEWAY", spec)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let seen = started.elapsed();
    // Identity's and account's CPU while they served the gateway's
    // catch-up (they are idle while it fills its token cache).
    let servers_cpu = cpu_seconds() - servers_cpu;
    let _ = child.wait();
    let figures: Vec<f64> = line
        .split_whitespace()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("gateway process said: {line}"))
        })
        .collect();
    let [
        ready,
        revocations_ready,
        gateway_cpu,
        rss,
        peak,
        idle,
        cached_rss,
        cached_peak,
        held_members,
        held_sessions,
    ] = figures[..]
    else {
        panic!("gateway process said: {line}");
    };
    assert_eq!(held_members as usize, members, "every membership arrived");
    assert_eq!(held_sessions as usize, sessions, "every revocation arrived");
    println!(
        "{members:>10} {sessions:>10} | {ready:>8.2} {revocations_ready:>8.2} | {gateway_cpu:>7.2} {servers_cpu:>7.2} | {rss:>9.1} {peak:>9.1} {idle:>9.1} | {cached_rss:>9.1} {cached_peak:>9.1} | {:.0} s (gateway process {:.2} s to its report)",
        fill.as_secs_f64(),
        seen.as_secs_f64(),
    );
}

/// The gateway process: starts a gateway against the identity and account
/// named in `spec`, waits until both streams are caught up, fills its token
/// cache with one verified token per active session, and prints its own
/// figures on one line.
fn gateway_process(spec: &str) {
    let begun = Instant::now();
    let idle = status_kib("VmRSS:");
    let parts: Vec<&str> = spec.split('|').collect();
    let [identity, account, pki, sessions, members] = parts[..] else {
        panic!("GROWTH_GATEWAY={spec}");
    };
    let sessions: usize = sessions.parse().unwrap();
    let members: usize = members.parse().unwrap();
    let pki = std::path::Path::new(pki);
    let dir = std::env::temp_dir().join(format!("tenancy-growth-{}", std::process::id()));
    let mut config = Config::for_test(&dir);
    config.tls = TlsConfig {
        ca_file: Some(pki.join("ca.pem")),
        cert_file: Some(pki.join("{part}.pem").display().to_string()),
        key_file: Some(pki.join("{part}.key").display().to_string()),
        reload_interval: None,
    };
    config.identity.url = Some(identity.to_owned());
    config.account.url = Some(account.to_owned());
    if let Ok(max) = std::env::var("GROWTH_MAX_CACHED_TOKENS") {
        config.gateway.max_cached_tokens = max.parse().unwrap();
    }
    let max_cached = config.gateway.max_cached_tokens;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let context =
            test_context(config, Arc::new(ManualClock::starting_now())).for_part(Caller::Gateway);
        let gateway = tenancy_gateway::build(&context).unwrap();
        let state = gateway.state().clone();
        let authenticator = gateway.authenticator().clone();
        let listener = loopback().await;
        let (_stop, shutdown) = tenancy_runtime::shutdown::channel();
        tokio::spawn(
            async move { tenancy_gateway::serve(&context, gateway, listener, shutdown).await },
        );
        let mut revocations_ready = None;
        while !state.is_ready() {
            if revocations_ready.is_none() && state.revocations_ready.load(Ordering::Acquire) {
                revocations_ready = Some(begun.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let ready = begun.elapsed();
        let ready_cpu = cpu_seconds();
        let revocations_ready = revocations_ready.unwrap_or(ready);
        let (rss, peak) = (status_kib("VmRSS:"), status_kib("VmHWM:"));
        let held_members = state.policies.read().members.len();
        let held_sessions = state.revocations.read().sessions.len();

        // Every active session's access token, verified and cached.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let accounts = (members / 3).max(1);
        for s in 0..sessions {
            let m = s % members.max(1);
            let claims = tenancy_gateway::jwt::Claims {
                sub: id(2, m),
                sid: id(4, s),
                acc: Some(id(1, m % accounts)),
                iat: now - 60,
                rev: sessions as i64,
                exp: now + 540,
                nbf: None,
                auth_time: now - 60,
                amr: vec!["pwd".into(), "otp".into()],
                mfa: true,
                staff: false,
                kind: Some("portal".into()),
            };
            authenticator
                .insert_verified(&format!("growth-token-{s}"), &claims)
                .unwrap();
        }
        assert!(authenticator.cached_portal_tokens() <= max_cached);
        let (cached_rss, cached_peak) = (status_kib("VmRSS:"), status_kib("VmHWM:"));
        println!(
            "{:.3} {:.3} {ready_cpu:.2} {:.1} {:.1} {:.1} {:.1} {:.1} {held_members} {held_sessions}",
            ready.as_secs_f64(),
            revocations_ready.as_secs_f64(),
            mib(rss),
            mib(peak),
            mib(idle),
            mib(cached_rss),
            mib(cached_peak),
        );
    });
    let _ = std::fs::remove_dir_all(dir);
    std::process::exit(0);
}
