//! ListTickets p99 for a SELECTED member in an account with 50,000 tickets
//! across 500 services (target ≤ 25 ms), over real gRPC.
//!
//! Support runs beside its REAL peers (testkit's [`Acme`]: identity,
//! account and contacts, each on its own database and loopback port, every
//! internal call over mutual TLS as in production): the account, its 500
//! services and the SELECTED manager (who reaches 10 of them) are made
//! through account's API as a client would; only the tickets are seeded
//! straight into support's database. Prints p50/p99 of every order, with
//! and without a status filter, for the store query alone and over gRPC
//! (each ListTickets asks account for the member's access, one
//! BatchCheckAccess). Run: `cargo bench --profile dev -p tenancy-support`,
//! with `TENANCY_TEST_DATABASE_URL=postgres://…` for PostgreSQL (every
//! service's database there) and `SUPPORT_BENCH_PLANS=1` to print each
//! query plan.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::{Duration, Instant};

use tenancy_proto::account as apb;
use tenancy_proto::support::{self as pb, support_service_client::SupportServiceClient};
use tenancy_runtime::Clock;
use tenancy_runtime::config::ServiceName;
use tenancy_support::store::{TicketSeed, seed_tickets};
use tenancy_testkit::{Acme, Role, TestDatabase};

const TICKETS: usize = 50_000;
const SERVICES: usize = 500;
const SELECTED: usize = 10;
const GENERAL_EVERY: usize = 10;

fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let db = TestDatabase::new("bench").await;
    let backend = if TestDatabase::is_postgres() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let start = Instant::now();
    let (mut acme, listener) = Acme::start("bench", ServiceName::Support, &db, |_| {}).await;
    acme.found("owner").await;
    let mut services = Vec::with_capacity(SERVICES);
    for i in 0..SERVICES {
        services.push(acme.register_service(&format!("vps {i}")).await);
    }
    let selected: Vec<String> = services
        .iter()
        .step_by(SERVICES / SELECTED)
        .cloned()
        .collect();
    let member = acme.user("selected").await;
    acme.add_manager(&member, apb::ServiceAccess::Selected, &selected)
        .await;
    let account_id = acme.account_id.clone();
    let clock = acme.clock.clone();
    println!(
        "account with {SERVICES} services and a SELECTED manager made through the real account service in {:?}",
        start.elapsed()
    );

    let conn = tenancy_runtime::db::open::<tenancy_support::migration::Migrator>(&db.url, "bench")
        .await
        .unwrap();
    let start = Instant::now();
    let base = clock.now().millis() - 100_000_000;
    let rows: Vec<TicketSeed> = (0..TICKETS)
        .map(|i| TicketSeed {
            id: id(),
            account_id: account_id.clone(),
            subject: format!("ticket {i}"),
            service_id: (i % GENERAL_EVERY != GENERAL_EVERY - 1)
                .then(|| services[i % SERVICES].clone()),
            priority: (i % 4) as i32 + 1,
            status: (i % 5) as i32 + 1,
            created_by_user_id: member.clone(),
            time: base + (i as i64) * 1000,
        })
        .collect();
    seed_tickets(&conn, rows).await.unwrap();
    // Some noise: another account's tickets.
    let other = id();
    seed_tickets(
        &conn,
        (0..5_000)
            .map(|i| TicketSeed {
                id: id(),
                account_id: other.clone(),
                subject: "noise".into(),
                service_id: None,
                priority: 2,
                status: 1,
                created_by_user_id: member.clone(),
                time: base + i * 1000,
            })
            .collect(),
    )
    .await
    .unwrap();
    if TestDatabase::is_postgres() {
        use sea_orm::ConnectionTrait;
        // What autovacuum does after a bulk insert: statistics, and the
        // visibility map that lets index-only scans skip the table.
        conn.execute_unprepared("VACUUM ANALYZE").await.unwrap();
    }
    println!(
        "seeded {TICKETS} tickets across {SERVICES} services in {:?} ({backend})",
        start.elapsed()
    );

    // The database work of one page, without gRPC, for every order, with
    // and without a status filter; the plan of each once.
    let orders = [
        (pb::TicketOrder::CreateTimeAsc, "create time asc"),
        (pb::TicketOrder::CreateTimeDesc, "create time desc"),
        (pb::TicketOrder::UpdateTimeAsc, "update time asc"),
        (
            pb::TicketOrder::UpdateTimeDesc,
            "update time desc (default)",
        ),
        (pb::TicketOrder::PriorityAsc, "priority asc"),
        (pb::TicketOrder::PriorityDesc, "priority desc"),
    ];
    let show_plans = std::env::var_os("SUPPORT_BENCH_PLANS").is_some();
    for (statuses, filter) in [
        (vec![], "all statuses"),
        (vec![1, 3], "open + awaiting support"),
    ] {
        for (order, order_name) in orders {
            if show_plans {
                let plan = tenancy_support::store::bench_explain_page(
                    &conn,
                    &account_id,
                    Some(selected.clone()),
                    statuses.clone(),
                    order as i32,
                )
                .await
                .unwrap();
                println!("plan [{backend}] {filter}, {order_name}:");
                for line in plan {
                    println!("    {line}");
                }
            }
            let mut times = Vec::new();
            for _ in 0..200 {
                let t = Instant::now();
                tenancy_support::store::bench_list_page(
                    &conn,
                    &account_id,
                    Some(selected.clone()),
                    statuses.clone(),
                    order as i32,
                )
                .await
                .unwrap();
                times.push(t.elapsed());
            }
            times.sort();
            println!(
                "store query [{backend}] {filter}, {order_name}: p50 {:.2} ms, p99 {:.2} ms",
                percentile(&times, 0.50).as_secs_f64() * 1e3,
                percentile(&times, 0.99).as_secs_f64() * 1e3,
            );
        }
    }

    let server = tenancy_testkit::start_on::<tenancy_support::SupportService>(
        listener,
        acme.context(acme.config().clone()),
        clock.clone(),
    )
    .await;
    let mut client = SupportServiceClient::with_interceptor(
        server.channel().await,
        acme.signed(acme.member_principal(&member, &account_id, Role::Manager)),
    );

    let mut scenarios: Vec<(String, pb::ListTicketsRequest)> = Vec::new();
    for (order, order_name) in orders {
        scenarios.push((
            order_name.to_owned(),
            pb::ListTicketsRequest {
                order_by: order as i32,
                ..Default::default()
            },
        ));
        scenarios.push((
            format!("open + awaiting support, {order_name}"),
            pb::ListTicketsRequest {
                statuses: vec![1, 3],
                order_by: order as i32,
                ..Default::default()
            },
        ));
    }
    scenarios.push((
        "one selected service".to_owned(),
        pb::ListTicketsRequest {
            service_id: selected[3].clone(),
            ..Default::default()
        },
    ));
    for (name, request) in scenarios {
        // Warm-up, and the 3rd page token for a deeper page.
        let mut token = String::new();
        for _ in 0..3 {
            let mut r = request.clone();
            r.page_token = token.clone();
            token = client
                .list_tickets(r)
                .await
                .unwrap()
                .into_inner()
                .next_page_token;
        }
        let mut times = Vec::new();
        let mut returned = 0;
        for i in 0..200 {
            let mut r = request.clone();
            if i % 2 == 1 {
                r.page_token = token.clone();
            }
            let t = Instant::now();
            let page = client.list_tickets(r).await.unwrap().into_inner();
            times.push(t.elapsed());
            returned = page.tickets.len();
        }
        times.sort();
        println!(
            "ListTickets [{backend}] {name}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} per page, 200 calls, pages 1 and 4)",
            percentile(&times, 0.50).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3,
            times.last().unwrap().as_secs_f64() * 1e3,
            returned
        );
    }
}
