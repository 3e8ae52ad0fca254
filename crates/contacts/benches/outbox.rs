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
//! The sink is a minimal SMTP server in this file (tokio; it counts
//! messages and their Message-IDs), because the Python aiosmtpd sink of
//! the e2e tests tops out near 700 messages/s on its own on a 2-core
//! machine. `OUTBOX_BENCH_SINK=aiosmtpd` uses that one instead.
//!
//! Run: `cargo bench --profile dev -p tenancy-contacts` (set
//! TENANCY_TEST_DATABASE_URL for PostgreSQL; `OUTBOX_BENCH_MESSAGES`
//! changes N, default 3000; `OUTBOX_BENCH_CONCURRENCY` sets
//! `mail.delivery_concurrency`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use parking_lot::Mutex;
use sea_orm::{DatabaseConnection, TransactionTrait};
use tenancy_contacts::ContactsService;
use tenancy_contacts::domain::templates::{self, Template};
use tenancy_contacts::store::outbox::{NewMessage, SENT, count_in_state, enqueue};
use tenancy_proto::contacts as pb;
use tenancy_proto::contacts::contacts_internal_service_client::ContactsInternalServiceClient;
use tenancy_runtime::{Clock as _, ManualClock, Principal};
use tenancy_testkit::{Caller, TestDatabase};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

const CONCURRENCY: usize = 32;

#[tokio::main]
async fn main() {
    let total: usize = std::env::var("OUTBOX_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let use_aiosmtpd = std::env::var("OUTBOX_BENCH_SINK").is_ok_and(|v| v == "aiosmtpd");
    let dir = std::env::temp_dir().join(format!("outbox-bench-{}", tenancy_runtime::ids::new_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (port, sink) = if use_aiosmtpd {
        let (port, child) = aiosmtpd(&dir);
        (port, Sink::Python(child, dir.join("mail")))
    } else {
        let sink = TokioSink::start().await;
        (sink.port, Sink::Tokio(sink))
    };

    let db = TestDatabase::new("outbox_bench").await;
    let mut config = tenancy_testkit::test_config(&db);
    config.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
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

    let (received, distinct) = sink.stop();
    let backend = if TestDatabase::is_postgres() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let sink_name = if use_aiosmtpd { "aiosmtpd" } else { "tokio" };
    println!(
        "outbox benchmark ({backend}, {total} + {total} messages, {sink_name} SMTP sink, \
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
        template: Template::PasswordReset as i32,
        template_data: serde_json::to_string(&data).unwrap(),
        account_id: String::new(),
        category: 0,
    }
}

async fn all_sent(reader: &DatabaseConnection, n: usize, start: Instant) {
    loop {
        let sent = count_in_state(reader, SENT).await.unwrap();
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

enum Sink {
    Python(Child, std::path::PathBuf),
    Tokio(TokioSink),
}

impl Sink {
    /// Stops the sink; (messages received, distinct Message-IDs).
    fn stop(self) -> (usize, usize) {
        match self {
            Self::Python(mut child, dir) => {
                let _ = child.kill();
                let _ = child.wait();
                let n = std::fs::read_dir(dir).unwrap().count();
                (n, n)
            }
            Self::Tokio(sink) => {
                let ids = sink.ids.lock();
                (ids.0, ids.1.len())
            }
        }
    }
}

fn aiosmtpd(dir: &Path) -> (u16, Child) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/smtp_sink.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .arg(dir.join("mail"))
        .arg("raw")
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with aiosmtpd");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    (port, child)
}

/// Just enough SMTP to accept mail from lettre: EHLO, MAIL, RCPT, DATA,
/// RSET, NOOP, QUIT. Counts messages and their Message-IDs.
struct TokioSink {
    port: u16,
    ids: Arc<Mutex<(usize, HashSet<String>)>>,
}

impl TokioSink {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let ids = Arc::new(Mutex::new((0, HashSet::new())));
        let seen = ids.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(session(stream, seen.clone()));
            }
        });
        Self { port, ids }
    }
}

async fn session(
    stream: tokio::net::TcpStream,
    seen: Arc<Mutex<(usize, HashSet<String>)>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 bench ESMTP\r\n").await?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let verb = line
            .get(..4)
            .map(|v| v.to_ascii_uppercase())
            .unwrap_or_default();
        match verb.as_slice() {
            b"EHLO" => {
                write
                    .write_all(b"250-bench\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                    .await?;
            }
            b"DATA" => {
                write.write_all(b"354 end with .\r\n").await?;
                let mut id = String::new();
                loop {
                    line.clear();
                    if read.read_until(b'\n', &mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == b".\r\n" {
                        break;
                    }
                    if id.is_empty()
                        && line.len() > 11
                        && line[..11].eq_ignore_ascii_case(b"message-id:")
                    {
                        id = String::from_utf8_lossy(&line[11..]).trim().to_owned();
                    }
                }
                {
                    let mut seen = seen.lock();
                    seen.0 += 1;
                    seen.1.insert(id);
                }
                write.write_all(b"250 OK queued\r\n").await?;
            }
            b"QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => write.write_all(b"250 OK\r\n").await?,
        }
    }
}
