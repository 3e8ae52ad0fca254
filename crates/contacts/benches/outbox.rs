//! Outbox throughput: messages/s queued with SendEmail over gRPC, and
//! delivered to a loopback SMTP sink, in two phases:
//!
//! 1. end to end: N SendEmail calls (32 at a time) while the worker
//!    delivers; prints the enqueue rate and the delivery rate from the
//!    first call to the last message SENT (bounded by the enqueue rate);
//! 2. drain: N more messages committed to the outbox in one transaction;
//!    prints the delivery rate of the worker alone, from the commit to the
//!    last message SENT.
//!
//! The sink is the tests' SMTP server (`tenancy_testkit::SmtpServer`, in
//! this process, on loopback); it keeps every message, and the benchmark
//! counts them and their distinct Message-IDs at the end.
//!
//! Run: `cargo bench --profile dev -p tenancy-contacts` (set
//! TENANCY_TEST_DATABASE_URL for PostgreSQL; `OUTBOX_BENCH_MESSAGES`
//! changes N, default 3000; `OUTBOX_BENCH_CONCURRENCY` sets
//! `mail.delivery_concurrency`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use sea_orm::{DatabaseConnection, TransactionTrait};
use tenancy_contacts::ContactsService;
use tenancy_contacts::domain::outbox::MessageState;
use tenancy_contacts::domain::templates::{self, Template};
use tenancy_contacts::store::outbox::{NewMessage, count_in_state, enqueue};
use tenancy_proto::contacts as pb;
use tenancy_proto::contacts::contacts_internal_service_client::ContactsInternalServiceClient;
use tenancy_runtime::{Clock as _, ManualClock, Principal};
use tenancy_testkit::{Caller, SmtpServer, TestDatabase};

const CONCURRENCY: usize = 32;

#[tokio::main]
async fn main() {
    let total: usize = std::env::var("OUTBOX_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let sink = SmtpServer::start().await;

    let db = TestDatabase::new("outbox_bench").await;
    let mut config = tenancy_testkit::test_config(&db);
    config.smtp_url = Some(sink.url());
    if let Some(n) = std::env::var("OUTBOX_BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.mail.delivery_concurrency = n;
    }
    let clock = ManualClock::starting_now();
    let context = tenancy_testkit::test_context(config.clone(), Arc::new(clock.clone()));
    let running = tenancy_testkit::start::<ContactsService>(context, clock.clone()).await;
    let caller = Caller::new(Principal::service("bench"), Arc::new(clock.clone()));
    let client = ContactsInternalServiceClient::with_interceptor(running.channel().await, caller);
    let reader = tenancy_runtime::db::connect(&db.url, "bench")
        .await
        .unwrap();

    // Phase 1: end to end.
    let start = Instant::now();
    futures::stream::iter(0..total)
        .for_each_concurrent(CONCURRENCY, |i| {
            let mut client = client.clone();
            async move {
                client.send_email(request(i)).await.unwrap();
            }
        })
        .await;
    let enqueued = start.elapsed();
    all_sent(&reader, total, start).await;
    let delivered = start.elapsed();

    // Phase 2: the worker alone, on a queue filled in one commit.
    let txn = reader.begin().await.unwrap();
    for (chunk, first) in (total..2 * total).step_by(500).enumerate() {
        // Chunks: SQLite allows 32766 parameters per statement.
        let messages: Vec<NewMessage> =
            (first..(first + 500).min(2 * total)).map(message).collect();
        enqueue(
            &txn,
            &format!("bench:drain:{chunk}"),
            "-",
            messages,
            "bench",
            clock.now(),
        )
        .await
        .unwrap();
    }
    txn.commit().await.unwrap();
    let start = Instant::now();
    all_sent(&reader, 2 * total, start).await;
    let drained = start.elapsed();

    let received = sink.received();
    let distinct: HashSet<&str> = received.iter().map(|m| m.message_id.as_str()).collect();
    let (received, distinct) = (received.len(), distinct.len());
    let backend = if TestDatabase::is_postgres() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!(
        "outbox benchmark ({backend}, {total} + {total} messages, testkit SMTP server, \
         mail.delivery_concurrency = {})",
        config.mail.delivery_concurrency
    );
    println!(
        "  enqueued via SendEmail over gRPC ({CONCURRENCY} at a time): {:>6.0} messages/s ({:.2} s)",
        total as f64 / enqueued.as_secs_f64(),
        enqueued.as_secs_f64()
    );
    println!(
        "  delivered, end to end (first call to last SENT):  {:>6.0} messages/s ({:.2} s)",
        total as f64 / delivered.as_secs_f64(),
        delivered.as_secs_f64()
    );
    println!(
        "  delivered, queue drain (commit to last SENT):      {:>6.0} messages/s ({:.2} s)",
        total as f64 / drained.as_secs_f64(),
        drained.as_secs_f64()
    );
    println!("  sink received {received} messages, {distinct} distinct Message-IDs");
}

fn request(i: usize) -> pb::SendEmailRequest {
    pb::SendEmailRequest {
        request_id: format!("bench:{i}"),
        to: vec![pb::EmailAddress {
            email: format!("user{i}@example.com"),
            name: format!("User {i}"),
        }],
        template: pb::MessageTemplate::PasswordReset as i32,
        template_data: HashMap::from([
            (
                "reset_url".to_owned(),
                format!("https://portal.example/reset?token=t{i}"),
            ),
            ("expire_time".to_owned(), "2026-11-23T00:00:00Z".to_owned()),
        ]),
        account_id: String::new(),
    }
}

fn message(i: usize) -> NewMessage {
    let data = BTreeMap::from([
        ("recipient_email".to_owned(), format!("user{i}@example.com")),
        ("recipient_name".to_owned(), format!("User {i}")),
        (
            "reset_url".to_owned(),
            format!("https://portal.example/reset?token=t{i}"),
        ),
        ("expire_time".to_owned(), "2026-11-23T00:00:00Z".to_owned()),
    ]);
    let rendered = templates::render(Template::PasswordReset, &data).unwrap();
    NewMessage {
        to_email: format!("user{i}@example.com"),
        to_name: format!("User {i}"),
        subject: rendered.subject,
        body_text: rendered.text,
        body_html: rendered.html,
        template: Template::PasswordReset,
        template_data: serde_json::to_string(&data).unwrap(),
        account_id: None,
        category: None,
        channel: tenancy_contacts::domain::outbox::Channel::Email,
        to_phone: String::new(),
    }
}

async fn all_sent(reader: &DatabaseConnection, n: usize, start: Instant) {
    loop {
        let sent = count_in_state(reader, MessageState::Sent).await.unwrap();
        if sent as usize >= n {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "delivery stalled at {sent}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
