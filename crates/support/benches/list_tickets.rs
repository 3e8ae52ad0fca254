//! ListTickets p99 for a SELECTED member in an account with 50,000 tickets
//! across 500 services (target ≤ 25 ms), over real gRPC.
//!
//! Rows are seeded straight into the database; the account service is a
//! minimal in-bench fake answering BatchCheckAccess (the member reaches 10
//! of the 500 services). Prints p50/p99 of every order, with and without a
//! status filter, for the store query alone and over gRPC. Run:
//! `cargo bench --profile dev -p tenancy-support`, with
//! `TENANCY_TEST_DATABASE_URL=postgres://…` for PostgreSQL and
//! `SUPPORT_BENCH_PLANS=1` to print each query plan.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tenancy_proto::account::{
    self as apb, account_internal_service_server::AccountInternalService,
    account_internal_service_server::AccountInternalServiceServer,
};
use tenancy_proto::support::{self as pb, support_service_client::SupportServiceClient};
use tenancy_runtime::config::ServiceName;
use tenancy_runtime::{Clock, ManualClock};
use tenancy_support::store::{TicketSeed, seed_tickets};
use tenancy_testkit::{Caller, Role, TestDatabase};
use tonic::{Request, Response, Status};

const TICKETS: usize = 50_000;
const SERVICES: usize = 500;
const SELECTED: usize = 10;
const GENERAL_EVERY: usize = 10;

#[derive(Clone)]
struct Account {
    selected: Vec<String>,
}

#[tonic::async_trait]
impl AccountInternalService for Account {
    async fn batch_check_access(
        &self,
        _request: Request<apb::BatchCheckAccessRequest>,
    ) -> Result<Response<apb::BatchCheckAccessResponse>, Status> {
        Ok(Response::new(apb::BatchCheckAccessResponse {
            membership_reason: apb::AccessReason::ActiveMember as i32,
            service_access: apb::ServiceAccess::Selected as i32,
            all_services: false,
            accessible_service_ids: self.selected.clone(),
            ..Default::default()
        }))
    }
}

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
    let clock = ManualClock::starting_now();
    let account_id = id();
    let member = id();
    let services: Vec<String> = (0..SERVICES).map(|_| id()).collect();
    let selected: Vec<String> = services
        .iter()
        .step_by(SERVICES / SELECTED)
        .cloned()
        .collect();

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
        conn.execute_unprepared("ANALYZE").await.unwrap();
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

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let account_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AccountInternalServiceServer::new(Account {
                selected: selected.clone(),
            }))
            .serve_with_incoming(tokio_stream::StreamExt::map(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                |s| {
                    s.inspect(|s| {
                        let _ = s.set_nodelay(true);
                    })
                },
            )),
    );
    let mut config = tenancy_testkit::test_config(&db);
    config.service_mut(ServiceName::Account).url = Some(account_url);
    let context = tenancy_testkit::test_context(config, Arc::new(clock.clone()));
    let server =
        tenancy_testkit::start::<tenancy_support::SupportService>(context, clock.clone()).await;
    let principal = tenancy_testkit::member(&member, &account_id, Role::Manager);
    let mut client = SupportServiceClient::with_interceptor(
        server.channel().await,
        Caller::new(principal, Arc::new(clock.clone())),
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
