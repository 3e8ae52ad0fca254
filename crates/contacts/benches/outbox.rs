//! Outbox throughput: messages/s queued with SendEmail over gRPC, and
//! delivered to a loopback SMTP server (aiosmtpd, tests/it/smtp_sink.py).
//!
//! Run: `cargo bench -p tenancy-contacts` (set TENANCY_TEST_DATABASE_URL
//! for PostgreSQL; `OUTBOX_BENCH_MESSAGES` changes the count, default 3000).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashMap;
use std::io::BufRead as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tenancy_contacts::ContactsService;
use tenancy_contacts::store::outbox::{SENT, count_in_state};
use tenancy_proto::contacts as pb;
use tenancy_proto::contacts::contacts_internal_service_client::ContactsInternalServiceClient;
use tenancy_runtime::{ManualClock, Principal};
use tenancy_testkit::{Caller, TestDatabase};

#[tokio::main]
async fn main() {
    let total: usize = std::env::var("OUTBOX_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let concurrency = 32;

    let dir = std::env::temp_dir().join(format!("outbox-bench-{}", tenancy_runtime::ids::new_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/smtp_sink.py");
    let mut sink = Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .arg(dir.join("mail"))
        .arg("raw")
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with aiosmtpd");
    let mut line = String::new();
    std::io::BufReader::new(sink.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");

    let db = TestDatabase::new("outbox_bench").await;
    let mut config = tenancy_testkit::test_config(&db);
    config.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
    let clock = ManualClock::starting_now();
    let context = tenancy_testkit::test_context(config, std::sync::Arc::new(clock.clone()));
    let running = tenancy_testkit::start::<ContactsService>(context, clock.clone()).await;
    let caller = Caller::new(
        Principal::service("bench"),
        std::sync::Arc::new(clock.clone()),
    );
    let client = ContactsInternalServiceClient::with_interceptor(running.channel().await, caller);
    let reader = tenancy_runtime::db::connect(&db.url, "bench")
        .await
        .unwrap();

    let start = Instant::now();
    futures::stream::iter(0..total)
        .for_each_concurrent(concurrency, |i| {
            let mut client = client.clone();
            async move {
                client
                    .send_email(pb::SendEmailRequest {
                        idempotency_key: format!("bench:{i}"),
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
                    })
                    .await
                    .unwrap();
            }
        })
        .await;
    let enqueued = start.elapsed();
    loop {
        let sent = count_in_state(&reader, SENT).await.unwrap();
        if sent as usize >= total {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "delivery stalled at {sent}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = start.elapsed();
    let files = std::fs::read_dir(dir.join("mail")).unwrap().count();
    let _ = sink.kill();
    let _ = sink.wait();
    let backend = if TestDatabase::is_postgres() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!(
        "outbox benchmark ({backend}, {total} messages, {concurrency} concurrent SendEmail calls)"
    );
    println!(
        "  enqueued via SendEmail over gRPC: {:>8.0} messages/s ({:.2} s)",
        total as f64 / enqueued.as_secs_f64(),
        enqueued.as_secs_f64()
    );
    println!(
        "  delivered to loopback SMTP sink:  {:>8.0} messages/s ({:.2} s from the first enqueue to the last SENT; sink holds {files})",
        total as f64 / delivered.as_secs_f64(),
        delivered.as_secs_f64()
    );
}
