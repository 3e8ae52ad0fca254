//! Many replicas, one PostgreSQL (issue 20 §1): two gateways and two
//! replicas of every service (identity, account, contacts, support), each
//! a process of its own ([`crate::processes`]) on one PostgreSQL database,
//! every part reaching the replicas of the others through its
//! `<service>.url` list, clients spread over both gateways.
//!
//! 1. `tenancy::migrate`, run at once by as many callers per part as it
//!    has replicas on the fresh database: none fails, and the schema is
//!    the one a single migrator makes.
//! 2. The seed flows pass with their steps spread over the two gateways
//!    (written through one, read or acted on through the other): invite →
//!    accept, role change, API token (issued through one, used through the
//!    other), tickets (create, list, reply), suspension (the member's API
//!    token revoked for good), enforced 2FA, IP allowlist.
//! 3. A revocation (logout) or suspension made through either gateway, and
//!    so through either replica behind it, is enforced by both gateways
//!    within 1 s: worst and median of `CLUSTER_TRIALS` trials (default
//!    100), printed, from the write's acknowledgement to the refusal on
//!    the slower gateway; and at once, not at the next poll (NOTIFY): the
//!    median of each kind under a quarter of the poll interval.
//! 4. A gateway started after all of that catches up and serves: it
//!    refuses every revoked token and suspended member from its first
//!    accepted call on, accepts the valid ones, and follows later writes;
//!    its time to catch up is printed.
//!
//! PostgreSQL only: replicas sharing one SQLite file are not a deployment
//! (see the README, Operations, "Replicas"); on SQLite the test says so and
//! passes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait as _, DbBackend, Statement};
use tenancy::{Part, Running};
use tenancy_proto::account::{
    ChangeMemberRoleRequest, GetAccountRequest, ListInvitationsRequest, ListMembersRequest,
    MemberStatus, ReactivateMemberRequest, SecuritySettings, SuspendMemberRequest,
    UpdateSecuritySettingsRequest,
};
use tenancy_proto::auth::Role;
use tenancy_proto::identity::{
    BeginTotpEnrollmentRequest, ConfirmTotpEnrollmentRequest, GetMeRequest, LogoutRequest,
};
use tenancy_proto::support::support_service_client::SupportServiceClient;
use tenancy_proto::support::{AddMessageRequest, ListMessagesRequest, ListTicketsRequest};
use tenancy_runtime::Reason;
use tenancy_runtime::config::{Config, ServiceName};
use tenancy_testkit::{TestDatabase, test_config};

use crate::gateway::{PASSWORD, Suite, bearer, channel, member_across, reason, user_of};
use crate::processes::{Process, free_address};

/// Replicas of every service, and gateways serving from the start.
const REPLICAS: usize = 2;

/// Every service, in the order they start (contacts first: the others
/// send mail through it; identity and account call each other).
const SERVICES: [(ServiceName, Part); 4] = [
    (ServiceName::Contacts, Part::Contacts),
    (ServiceName::Identity, Part::Identity),
    (ServiceName::Account, Part::Account),
    (ServiceName::Support, Part::Support),
];

/// The rule measured: a revocation or suspension is enforced by every
/// gateway within this long of its acknowledgement.
const ENFORCED_WITHIN: Duration = Duration::from_secs(1);

/// How fast a change typically reaches every gateway: each kind's median
/// stays under a quarter of PostgreSQL's poll interval (1 s), which only
/// the NOTIFY sent at commit achieves. Without it (tried: `notify` made a
/// no-op) the logouts' median was 929–940 ms and their worst 983–994 ms,
/// still under [`ENFORCED_WITHIN`]: that bound alone does not tell.
const TYPICALLY_WITHIN: Duration = Duration::from_millis(250);

/// How long a poll waits for a change to reach a gateway before it fails
/// (room for a loaded machine; what the rule allows is asserted apart).
const SETTLE: Duration = Duration::from_secs(5);

/// Trials of step 3 (a logout or a suspension each), from the environment.
const TRIALS_ENV: &str = "CLUSTER_TRIALS";
const TRIALS_DEFAULT: usize = 100;

/// What a call answered: accepted, or its refusal's reason.
type Answer = Result<(), Reason>;

/// A call made with a token, through a gateway.
#[derive(Clone, Copy, Debug)]
enum Call {
    /// GetMe (USER: any portal session).
    Me,
    /// GetAccount (ACCOUNT, MANAGER; API tokens allowed).
    Account,
    /// ListInvitations (ACCOUNT, OWNER; portal sessions).
    Invitations,
}

impl Call {
    async fn with(self, suite: &Suite, token: &str) -> Result<(), tonic::Status> {
        match self {
            Self::Me => suite
                .identity(token)
                .get_me(GetMeRequest::default())
                .await
                .map(drop),
            Self::Account => suite
                .account(token)
                .get_account(GetAccountRequest::default())
                .await
                .map(drop),
            Self::Invitations => suite
                .account(token)
                .list_invitations(ListInvitationsRequest::default())
                .await
                .map(drop),
        }
    }

    async fn answer(self, suite: &Suite, token: &str) -> Answer {
        self.with(suite, token).await.map_err(|s| reason(&s))
    }
}

/// Polls `call` with `token` through `suite` until it answers `want`;
/// returns how long after `since` it first did. Fails past `limit`.
async fn answers(
    what: &str,
    suite: &Suite,
    call: Call,
    token: &str,
    want: Answer,
    since: Instant,
    limit: Duration,
) -> Duration {
    loop {
        let got = call.answer(suite, token).await;
        let took = since.elapsed();
        if got == want {
            return took;
        }
        assert!(
            took < limit,
            "{what}: {got:?} instead of {want:?} after {took:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Polls both gateways at once until each answers `want`; returns how long
/// after `since` the slower one did.
async fn both_answer(
    what: &str,
    gateways: &[Suite],
    call: Call,
    token: &str,
    want: Answer,
    since: Instant,
) -> Duration {
    let (a, b) = tokio::join!(
        answers(what, &gateways[0], call, token, want, since, SETTLE),
        answers(what, &gateways[1], call, token, want, since, SETTLE),
    );
    a.max(b)
}

/// A token and how every gateway must answer it: what a gateway started
/// late must know before it accepts anything.
struct Expectation {
    what: &'static str,
    token: String,
    call: Call,
    want: Answer,
}

impl Expectation {
    fn new(what: &'static str, token: &str, call: Call, want: Answer) -> Self {
        Self {
            what,
            token: token.to_owned(),
            call,
            want,
        }
    }
}

/// The schema of the database at `url` (PostgreSQL), one line per column,
/// index, constraint and type, with every migration recorded, in order.
async fn schema(url: &str) -> Vec<String> {
    const SCHEMA: &str = "\
        SELECT format('column %s.%s %s %s %s', table_name, column_name, data_type, is_nullable, \
               coalesce(column_default, '')) AS line \
          FROM information_schema.columns WHERE table_schema = 'public' \
        UNION ALL SELECT format('index %s', indexdef) FROM pg_indexes WHERE schemaname = 'public' \
        UNION ALL SELECT format('constraint %s %s %s', conrelid::regclass, conname, \
               pg_get_constraintdef(oid)) \
          FROM pg_constraint WHERE connamespace = 'public'::regnamespace \
        UNION ALL SELECT format('type %s', typname) FROM pg_type \
          WHERE typnamespace = 'public'::regnamespace \
        ORDER BY 1";
    let db = sea_orm::Database::connect(url).await.unwrap();
    let query = |sql: String| {
        let db = &db;
        async move {
            db.query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
                .await
                .unwrap()
                .iter()
                .map(|row| row.try_get::<String>("", "line").unwrap())
                .collect::<Vec<_>>()
        }
    };
    let mut lines = query(SCHEMA.to_owned()).await;
    let migration_tables = query(
        "SELECT table_name::text AS line FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name LIKE '%\\_migrations' ORDER BY 1"
            .to_owned(),
    )
    .await;
    assert_eq!(
        migration_tables.len(),
        SERVICES.len(),
        "{migration_tables:?}"
    );
    for table in migration_tables {
        lines.extend(
            query(format!(
                "SELECT format('migration %s %s', '{table}', version) AS line \
                 FROM \"{table}\" ORDER BY version"
            ))
            .await,
        );
    }
    db.close().await.unwrap();
    lines
}

/// Step 1: every part migrated by as many callers at once as it has
/// replicas, on the fresh database: none fails, and the schema is the
/// one a single migrator makes on another fresh database.
async fn migrate_at_once(config: &Config, database: &TestDatabase) {
    let started = Instant::now();
    let migrators: Vec<_> = SERVICES
        .iter()
        .flat_map(|(_, part)| std::iter::repeat_n(*part, REPLICAS))
        .map(|part| {
            let config = config.clone();
            tokio::spawn(async move { (part, tenancy::migrate(&config, part).await) })
        })
        .collect();
    let count = migrators.len();
    for migrator in migrators {
        let (part, result) = migrator.await.unwrap();
        if let Err(e) = result {
            panic!("a concurrent migration of {part:?} failed: {e}");
        }
    }
    println!(
        "{count} migrations at once ({REPLICAS} per part): none failed, {:?}",
        started.elapsed()
    );
    let single = TestDatabase::new("cluster_single").await;
    let single_config = test_config(&single);
    for (_, part) in SERVICES {
        tenancy::migrate(&single_config, part).await.unwrap();
    }
    let (concurrent, single) = (schema(&database.url).await, schema(&single.url).await);
    assert!(concurrent.len() > 100, "{concurrent:#?}");
    assert_eq!(
        concurrent, single,
        "the schema migrated at once differs from one migrated alone"
    );
}

/// `https://…` of every address, comma-separated: one service's replicas.
fn urls(addresses: &[SocketAddr]) -> String {
    addresses
        .iter()
        .map(|a| format!("https://{a}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The e2e helpers through the gateway at `address`, reading mail from
/// the contacts replica at `contacts`.
async fn suite_at(
    address: SocketAddr,
    contacts: SocketAddr,
    config: &Config,
    database: &Arc<TestDatabase>,
) -> Suite {
    Suite {
        running: Running::listing(vec![(ServiceName::Contacts, contacts)]),
        gateway: channel(address).await,
        config: config.clone(),
        database: database.clone(),
    }
}

/// Changes the `paths` of the security settings of the account `owner`'s
/// token selects, through `suite`.
async fn update_security(
    suite: &Suite,
    owner: &str,
    settings: SecuritySettings,
    paths: &[&str],
    force: bool,
) {
    suite
        .account(owner)
        .update_security_settings(UpdateSecuritySettingsRequest {
            settings: Some(settings),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            }),
            force,
        })
        .await
        .unwrap();
}

/// The current TOTP code of `secret` (base32).
fn totp_now(secret: &str) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret).unwrap();
    let totp = totp_rs::Builder::new().with_secret(secret).build().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    totp.generate(now.as_secs()).to_string()
}

/// Polls `call` with `token` through `suite` from now until it answers
/// `want` (a change reaching that gateway); prints how long it took.
async fn reaches(what: &str, suite: &Suite, call: Call, token: &str, want: Answer) {
    let took = answers(what, suite, call, token, want, Instant::now(), SETTLE).await;
    println!("  {what}: {took:?}");
}

/// Step 2: the seed flows, every step through another gateway than the one
/// before. Returns what a gateway started later must know.
async fn seed_flows(a: &Suite, b: &Suite) -> Vec<Expectation> {
    println!("seed flows across the gateways (time for each change to reach the other one):");
    let mut expected = Vec::new();

    // Invite → accept. The account is created through A; the invitation
    // sent through A is accepted through B.
    let owner_email = "owner@example.com";
    let owner = a.user(owner_email).await;
    let (account_id, owner) = a.account_of(&owner).await;
    let first = Call::Account.answer(b, &owner).await;
    println!("  the new account's first call through B: {first:?}");
    reaches("new account on B", b, Call::Account, &owner, Ok(())).await;
    let member_email = "member@example.com";
    let member = member_across(a, b, &owner, &account_id, member_email, Role::Manager).await;
    let member_id = user_of(&member);
    reaches(
        "accepted invitation on A",
        a,
        Call::Account,
        &member,
        Ok(()),
    )
    .await;
    let members = a
        .account(&owner)
        .list_members(ListMembersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .members;
    let listed = members
        .iter()
        .find(|m| m.user_id == member_id)
        .expect("the member listed through A");
    assert_eq!(
        (listed.email.as_str(), listed.role, listed.status),
        (
            member_email,
            Role::Manager as i32,
            MemberStatus::Active as i32
        )
    );

    // Role change: promoted through A, the member may do an owner's call
    // through B; demoted through B, no more through A.
    let refused = Call::Invitations.answer(b, &member).await;
    assert_eq!(refused, Err(Reason::RoleTooLow));
    let change_role = |suite: &Suite, role: Role| {
        let (mut client, user_id) = (suite.account(&owner), member_id.clone());
        async move {
            client
                .change_member_role(ChangeMemberRoleRequest {
                    user_id,
                    role: role as i32,
                })
                .await
                .unwrap()
        }
    };
    change_role(a, Role::Owner).await;
    reaches("promotion on B", b, Call::Invitations, &member, Ok(())).await;
    change_role(b, Role::Manager).await;
    let demoted = Err(Reason::RoleTooLow);
    reaches("demotion on A", a, Call::Invitations, &member, demoted).await;

    // API token: issued through A, used through B.
    let api = a.api_token(&member).await;
    reaches(
        "new API token used through B",
        b,
        Call::Account,
        &api,
        Ok(()),
    )
    .await;

    // Tickets: opened through A (by the member), listed through B (by the
    // API token), answered through B (by the owner), read through A.
    let ticket = a.ticket(&member).await;
    let support = |suite: &Suite, token: &str| {
        SupportServiceClient::with_interceptor(suite.gateway.clone(), bearer(token))
    };
    let listed = support(b, &api)
        .list_tickets(ListTicketsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tickets;
    assert!(listed.iter().any(|t| t.id == ticket.id), "{listed:?}");
    let reply = "Freed 10 GB of logs; it has room again.";
    support(b, &owner)
        .add_message(AddMessageRequest {
            ticket_id: ticket.id.clone(),
            body: reply.into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let messages = support(a, &member)
        .list_messages(ListMessagesRequest {
            ticket_id: ticket.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert!(messages.iter().any(|m| m.body == reply), "{messages:?}");

    // Suspension through A: B refuses the member, and the member's API
    // token for good (revoked by identity, not only refused while
    // suspended): reactivated through B, the session is back on A, the
    // API token on neither.
    let suspend = SuspendMemberRequest {
        user_id: member_id.clone(),
    };
    a.account(&owner).suspend_member(suspend).await.unwrap();
    let suspended = Err(Reason::MemberSuspended);
    reaches("suspension on B", b, Call::Account, &member, suspended).await;
    let revoked = Err(Reason::TokenRevoked);
    reaches(
        "the suspended member's API token revoked on B",
        b,
        Call::Account,
        &api,
        revoked,
    )
    .await;
    let reactivate = ReactivateMemberRequest {
        user_id: member_id.clone(),
    };
    b.account(&owner)
        .reactivate_member(reactivate)
        .await
        .unwrap();
    reaches("reactivation on A", a, Call::Account, &member, Ok(())).await;
    for suite in [a, b] {
        assert_eq!(Call::Account.answer(suite, &api).await, revoked);
    }
    expected.push(Expectation::new(
        "a reactivated member's API token revoked at their suspension",
        &api,
        Call::Account,
        revoked,
    ));

    // Enforced 2FA: the owner begins TOTP enrolment through B and confirms
    // it through A (a fresh session: enrolment needs a recent login), and
    // enforces 2FA with no grace through A; B refuses the member without 2FA, serves the owner.
    let session = b.session(owner_email, PASSWORD, &account_id).await;
    let session = session.access_token.unwrap().token;
    let begun = b
        .identity(&session)
        .begin_totp_enrollment(BeginTotpEnrollmentRequest {})
        .await
        .unwrap()
        .into_inner();
    let owner = a
        .identity(&session)
        .confirm_totp_enrollment(ConfirmTotpEnrollmentRequest {
            totp_code: totp_now(&begun.secret),
        })
        .await
        .unwrap()
        .into_inner()
        .access_token
        .unwrap()
        .token;
    let settings = SecuritySettings {
        enforce_mfa: true,
        mfa_grace_period: Some(prost_types::Duration::default()),
        ..Default::default()
    };
    update_security(
        a,
        &owner,
        settings,
        &["enforce_mfa", "mfa_grace_period"],
        false,
    )
    .await;
    let required = Err(Reason::MfaEnrollmentRequired);
    reaches("enforced 2FA on B", b, Call::Account, &member, required).await;
    assert_eq!(Call::Account.answer(b, &owner).await, Ok(()));
    expected.push(Expectation::new(
        "a member without 2FA where it is enforced",
        &member,
        Call::Account,
        required,
    ));
    expected.push(Expectation::new(
        "an owner with 2FA where it is enforced",
        &owner,
        Call::Account,
        Ok(()),
    ));

    // IP allowlist (another account, as it locks its owner's portal
    // sessions out): set through A, enforced by B on the portal session,
    // not on the API token.
    let owner = b.user("allowlist@example.com").await;
    let (_, owner) = b.account_of(&owner).await;
    let api = b.api_token(&owner).await;
    reaches("another new account on A", a, Call::Account, &owner, Ok(())).await;
    let settings = SecuritySettings {
        ip_allowlist: vec!["198.51.100.0/24".into()],
        ..Default::default()
    };
    update_security(a, &owner, settings, &["ip_allowlist"], true).await;
    let outside = Err(Reason::IpNotAllowed);
    reaches("allowlist on B", b, Call::Account, &owner, outside).await;
    for suite in [a, b] {
        assert_eq!(Call::Account.answer(suite, &api).await, Ok(()));
    }
    expected.push(Expectation::new(
        "a portal session from outside the allowlist",
        &owner,
        Call::Account,
        outside,
    ));
    expected.push(Expectation::new(
        "an API token under an allowlist",
        &api,
        Call::Account,
        Ok(()),
    ));
    expected
}

/// The median and the worst of `times`.
fn p50_and_worst(times: &[Duration]) -> (Duration, Duration) {
    let mut sorted = times.to_vec();
    sorted.sort();
    (
        sorted.get(sorted.len() / 2).copied().unwrap_or_default(),
        sorted.last().copied().unwrap_or_default(),
    )
}

/// Step 3: `trials` revocations and suspensions through alternating
/// gateways, each polled on both until refused. Returns the expectations
/// for a gateway started later and the owner's token of the account.
async fn enforced_by_both(gateways: &[Suite], trials: usize) -> (Vec<Expectation>, String) {
    let (a, b) = (&gateways[0], &gateways[1]);
    let leaver = "leaver@example.com";
    a.user(leaver).await;
    let owner = b.user("trials@example.com").await;
    let (account_id, owner) = b.account_of(&owner).await;
    let member = member_across(
        b,
        a,
        &owner,
        &account_id,
        "suspended@example.com",
        Role::Manager,
    )
    .await;
    let member_id = user_of(&member);
    both_answer(
        "member",
        gateways,
        Call::Account,
        &member,
        Ok(()),
        Instant::now(),
    )
    .await;

    let mut expected = Vec::new();
    let (mut logouts, mut suspensions, mut reactivations) = (Vec::new(), Vec::new(), Vec::new());
    let started = Instant::now();
    for trial in 0..trials {
        // Writes alternate between the gateways (and so between the
        // replicas behind them); the session is opened through the other.
        let (writer, other) = if (trial / 2) % 2 == 0 { (a, b) } else { (b, a) };
        if trial % 2 == 0 {
            let token = other.login(leaver).await;
            both_answer(
                "session",
                gateways,
                Call::Me,
                &token,
                Ok(()),
                Instant::now(),
            )
            .await;
            writer
                .identity(&token)
                .logout(LogoutRequest::default())
                .await
                .unwrap();
            let acked = Instant::now();
            let revoked = Err(Reason::TokenRevoked);
            logouts.push(both_answer("logout", gateways, Call::Me, &token, revoked, acked).await);
            expected.push(Expectation::new(
                "a logged-out session",
                &token,
                Call::Me,
                revoked,
            ));
        } else {
            let user_id = member_id.clone();
            writer
                .account(&owner)
                .suspend_member(SuspendMemberRequest { user_id })
                .await
                .unwrap();
            let acked = Instant::now();
            let suspended = Err(Reason::MemberSuspended);
            suspensions.push(
                both_answer(
                    "suspension",
                    gateways,
                    Call::Account,
                    &member,
                    suspended,
                    acked,
                )
                .await,
            );
            let user_id = member_id.clone();
            other
                .account(&owner)
                .reactivate_member(ReactivateMemberRequest { user_id })
                .await
                .unwrap();
            let acked = Instant::now();
            reactivations.push(
                both_answer(
                    "reactivation",
                    gateways,
                    Call::Account,
                    &member,
                    Ok(()),
                    acked,
                )
                .await,
            );
        }
    }
    let took = started.elapsed();
    let all: Vec<Duration> = logouts.iter().chain(&suspensions).copied().collect();
    let (p50, worst) = p50_and_worst(&all);
    println!(
        "{trials} trials in {took:?}: a logout or suspension through one gateway, enforced by \
         both (from the write's acknowledgement to the slower gateway's refusal): worst {worst:?}, \
         p50 {p50:?}"
    );
    let mut slow = Vec::new();
    for (what, times) in [
        ("logouts", &logouts),
        ("suspensions", &suspensions),
        ("reactivations (accepted again on both)", &reactivations),
    ] {
        let (p50, worst) = p50_and_worst(times);
        println!("  {} {what}: worst {worst:?}, p50 {p50:?}", times.len());
        if p50 > TYPICALLY_WITHIN {
            slow.push(format!("{what}: p50 {p50:?}"));
        }
    }
    assert!(
        worst <= ENFORCED_WITHIN,
        "a revocation or suspension reached both gateways only after {worst:?}"
    );
    assert!(
        slow.is_empty(),
        "changes reach the gateways at the poll, not at once (over {TYPICALLY_WITHIN:?}): {slow:?}"
    );

    // Left suspended, for the gateway started later.
    let user_id = member_id.clone();
    a.account(&owner)
        .suspend_member(SuspendMemberRequest { user_id })
        .await
        .unwrap();
    let suspended = Err(Reason::MemberSuspended);
    both_answer(
        "suspension",
        gateways,
        Call::Account,
        &member,
        suspended,
        Instant::now(),
    )
    .await;
    expected.push(Expectation::new(
        "a suspended member",
        &member,
        Call::Account,
        suspended,
    ));
    let session = b.login(leaver).await;
    expected.push(Expectation::new(
        "a session opened after the logouts",
        &session,
        Call::Me,
        Ok(()),
    ));
    expected.push(Expectation::new("the owner", &owner, Call::Account, Ok(())));
    (expected, owner)
}

/// The trials of step 3: `CLUSTER_TRIALS`, or 100.
fn trials() -> usize {
    std::env::var(TRIALS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(TRIALS_DEFAULT)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_of_every_part_on_one_postgresql_serve_the_seed_flows_and_enforce_revocations() {
    if !TestDatabase::is_postgres() {
        println!(
            "cluster: skipped on SQLite (replicas of a part need PostgreSQL); set \
             TENANCY_TEST_DATABASE_URL to run it"
        );
        return;
    }
    let database = Arc::new(TestDatabase::new("cluster").await);
    let mut config = test_config(&database);
    config.auth.argon2_memory_kib = 1024;
    config.auth.argon2_iterations = 1;
    config.gateway.public_rate_per_minute = 1_000_000;
    config.gateway.public_burst = 1_000_000;
    config.gateway.principal_rate_per_second = 1_000_000;
    config.gateway.principal_burst = 1_000_000;
    config.log_filter = "warn".into();
    let addresses: Vec<[SocketAddr; REPLICAS]> = SERVICES
        .iter()
        .map(|_| std::array::from_fn(|_| free_address()))
        .collect();
    for ((name, _), replicas) in SERVICES.iter().zip(&addresses) {
        config.service_mut(*name).url = Some(urls(replicas));
    }

    // 1. Every replica migrates at start.
    migrate_at_once(&config, &database).await;

    // Every replica, then both gateways, each a process of its own.
    let started = Instant::now();
    let mut parts = Vec::new();
    for ((_, part), replicas) in SERVICES.iter().zip(&addresses) {
        let starting = replicas
            .iter()
            .enumerate()
            .map(|(index, address)| Process::start(*part, index, &config, *address));
        parts.extend(futures::future::join_all(starting).await);
    }
    let gateway_addresses: [SocketAddr; REPLICAS] = std::array::from_fn(|_| free_address());
    let starting = gateway_addresses
        .iter()
        .enumerate()
        .map(|(index, address)| Process::start(Part::Gateway, index, &config, *address));
    parts.extend(futures::future::join_all(starting).await);
    let contacts = addresses[0];
    let mut gateways = Vec::new();
    for (address, contacts) in gateway_addresses.iter().zip(contacts) {
        let suite = suite_at(*address, contacts, &config, &database).await;
        suite.wait_ready().await;
        gateways.push(suite);
    }
    println!(
        "{} processes serving after {:?}",
        parts.len(),
        started.elapsed()
    );

    // 2. The seed flows, across the gateways.
    let started = Instant::now();
    let mut expected = seed_flows(&gateways[0], &gateways[1]).await;
    println!("seed flows passed in {:?}", started.elapsed());

    // 3. Revocations and suspensions reach both gateways within 1 s.
    let (more, owner) = enforced_by_both(&gateways, trials()).await;
    expected.extend(more);

    // 4. A gateway started now catches up: from its first accepted call on,
    // it answers every token as the others do.
    let address = free_address();
    let started = Instant::now();
    parts.push(Process::start(Part::Gateway, REPLICAS, &config, address).await);
    let serving = started.elapsed();
    let late = suite_at(address, contacts[0], &config, &database).await;
    let caught_up = answers(
        "the late gateway",
        &late,
        Call::Account,
        &owner,
        Ok(()),
        started,
        Duration::from_secs(30),
    )
    .await;
    let mut wrong = Vec::new();
    for e in &expected {
        let got = e.call.answer(&late, &e.token).await;
        if got != e.want {
            wrong.push(format!("{}: {got:?} instead of {:?}", e.what, e.want));
        }
    }
    println!(
        "a gateway started late: serving its port {serving:?} after it started, caught up \
         (its first call accepted) {caught_up:?} after it started ({:?} after serving); {} \
         tokens answered as by the others",
        caught_up.saturating_sub(serving),
        expected.len()
    );
    assert!(
        wrong.is_empty(),
        "the late gateway answered otherwise: {wrong:#?}"
    );
    // And it follows what is written after it started.
    let member = expected
        .iter()
        .find(|e| e.what == "a suspended member")
        .unwrap();
    gateways[0]
        .account(&owner)
        .reactivate_member(ReactivateMemberRequest {
            user_id: user_of(&member.token),
        })
        .await
        .unwrap();
    let token = &member.token;
    reaches(
        "a reactivation written after it started",
        &late,
        Call::Account,
        token,
        Ok(()),
    )
    .await;

    // Gateways first, so none logs its streams failing.
    for mut part in parts.into_iter().rev() {
        part.kill().await;
    }
}
