//! Delivery by SMTP to a real server on loopback: contents, retries with
//! back-off, permanent failures, and no loss across an outage and restart.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tenancy_proto::contacts as pb;
use tenancy_proto::contacts::{MessageTemplate, OutboxMessageState};

use crate::support::{Env, Internal, Reply, eventually, smtp_server};

fn invitation(key: &str, to: &str) -> pb::SendEmailRequest {
    pb::SendEmailRequest {
        request_id: key.to_owned(),
        to: vec![pb::EmailAddress {
            email: to.to_owned(),
            name: "Ann Example".to_owned(),
        }],
        template: MessageTemplate::Invitation as i32,
        template_data: HashMap::from([
            ("account_name".to_owned(), "Acme <Hosting>".to_owned()),
            ("inviter_name".to_owned(), "Olga Owner".to_owned()),
            ("role".to_owned(), "MANAGER".to_owned()),
            (
                "accept_url".to_owned(),
                "https://portal.example/invitations/accept?token=tok_abc&x=1".to_owned(),
            ),
            ("expire_time".to_owned(), "2026-11-29T00:00:00Z".to_owned()),
        ]),
        account_id: String::new(),
    }
}

async fn message(api: &Internal, id: &str) -> pb::OutboxMessage {
    api.clone()
        .get_outbox_message(pb::GetOutboxMessageRequest { id: id.to_owned() })
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap()
}

async fn state_is(api: &Internal, id: &str, state: OutboxMessageState) -> bool {
    message(api, id).await.state == state as i32
}

#[tokio::test]
async fn a_message_is_delivered_to_a_real_smtp_server_and_reads_back() {
    let sink = smtp_server().await;
    let url = sink.url();
    let env = Env::start_with("smtp_delivery", |c| c.smtp_url = Some(url)).await;
    let api = env.internal().await;
    let queued = api
        .clone()
        .send_email(invitation("account:invite:1", "ann@example.com"))
        .await
        .unwrap()
        .into_inner();
    let id = queued.messages[0].id.clone();
    eventually(15, "delivery", || {
        state_is(&api, &id, OutboxMessageState::Sent)
    })
    .await;
    let received = sink.received();
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert_eq!(got.subject, "Olga Owner invited you to Acme <Hosting>");
    assert_eq!(got.rcpt, ["ann@example.com"]);
    assert!(got.to.contains("ann@example.com"), "{}", got.to);
    assert!(
        got.text
            .contains("https://portal.example/invitations/accept?token=tok_abc&x=1"),
        "{}",
        got.text
    );
    let html = got.html.replace("&#x2f;", "/");
    assert!(
        html.contains("href=\"https://portal.example/invitations/accept?token=tok_abc&amp;x=1\""),
        "{}",
        got.html
    );
    assert!(html.contains("Acme &lt;Hosting&gt;"), "{html}");
    let stored = message(&api, &id).await;
    assert_eq!(got.message_id, stored.smtp_message_id);
    assert!(stored.send_time.is_some());
}

#[tokio::test]
async fn a_permanent_rejection_marks_the_message_failed_with_the_reason() {
    let sink = smtp_server().await;
    let url = sink.url();
    let env = Env::start_with("smtp_permanent", |c| c.smtp_url = Some(url)).await;
    let api = env.internal().await;
    let queued = api
        .clone()
        .send_email(invitation("k:reject", "reject-me@example.com"))
        .await
        .unwrap()
        .into_inner();
    let id = queued.messages[0].id.clone();
    eventually(15, "failure", || {
        state_is(&api, &id, OutboxMessageState::Failed)
    })
    .await;
    let m = message(&api, &id).await;
    assert_eq!(m.attempts, 1);
    assert!(m.last_error.contains("550"), "{}", m.last_error);
    assert!(m.next_attempt_time.is_none());
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn a_transient_refusal_is_retried_after_the_backoff_and_then_delivered_once() {
    let sink = smtp_server().await;
    sink.on_rcpt(|_| Some(Reply::new(451, "4.3.0 Mailbox busy, try again later")));
    let url = sink.url();
    let env = Env::start_with("smtp_transient", |c| {
        c.smtp_url = Some(url);
        c.mail.retry_base_delay = Duration::from_secs(30);
    })
    .await;
    let api = env.internal().await;
    let queued = api
        .clone()
        .send_email(invitation("k:transient", "ann@example.com"))
        .await
        .unwrap()
        .into_inner();
    let id = queued.messages[0].id.clone();
    eventually(15, "the refused attempt recorded", || {
        let api = api.clone();
        let id = id.clone();
        async move {
            // Claiming counts the attempt; its outcome follows.
            let m = message(&api, &id).await;
            m.attempts == 1 && !m.last_error.is_empty()
        }
    })
    .await;
    let m = message(&api, &id).await;
    assert_eq!(m.state, OutboxMessageState::Pending as i32, "{m:?}");
    assert!(m.last_error.contains("451"), "{}", m.last_error);
    assert!(m.next_attempt_time.is_some());
    assert_eq!(sink.count(), 0);

    // The relay accepts again; the retry waits for its back-off.
    sink.on_rcpt(|_| None);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(message(&api, &id).await.attempts, 1);
    env.clock.advance(Duration::from_secs(30));
    eventually(15, "delivery on retry", || {
        state_is(&api, &id, OutboxMessageState::Sent)
    })
    .await;
    let received = sink.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].rcpt, ["ann@example.com"]);
    assert_eq!(message(&api, &id).await.attempts, 2);
}

#[tokio::test]
async fn temporary_failures_retry_with_backoff_then_give_up_after_max_attempts() {
    // Nothing listens on this port: every attempt fails temporarily.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = Env::start_with("smtp_retry", |c| {
        c.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        c.mail.max_attempts = 3;
        c.mail.retry_base_delay = Duration::from_secs(30);
    })
    .await;
    let api = env.internal().await;
    let queued = api
        .clone()
        .send_email(invitation("k:retry", "ann@example.com"))
        .await
        .unwrap()
        .into_inner();
    let id = queued.messages[0].id.clone();
    let attempts_are = |n: i32| {
        let api = api.clone();
        let id = id.clone();
        move || {
            let api = api.clone();
            let id = id.clone();
            async move {
                let m = message(&api, &id).await;
                m.attempts == n && m.state == OutboxMessageState::Pending as i32
            }
        }
    };
    eventually(15, "first failed attempt", attempts_are(1)).await;
    let m = message(&api, &id).await;
    assert!(!m.last_error.is_empty());
    let created = m.create_time.unwrap().seconds;
    assert_eq!(m.next_attempt_time.unwrap().seconds, created + 30);
    // Not retried before the back-off ends.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(message(&api, &id).await.attempts, 1);
    env.clock.advance(Duration::from_secs(30));
    eventually(15, "second failed attempt", attempts_are(2)).await;
    let m = message(&api, &id).await;
    assert_eq!(m.next_attempt_time.unwrap().seconds, created + 30 + 60);
    env.clock.advance(Duration::from_secs(60));
    eventually(15, "giving up", || {
        state_is(&api, &id, OutboxMessageState::Failed)
    })
    .await;
    let m = message(&api, &id).await;
    assert_eq!(m.attempts, 3);
    assert!(!m.last_error.is_empty());
}

#[tokio::test]
async fn queued_messages_survive_an_smtp_outage_and_a_restart_and_arrive_exactly_once() {
    let mut sink = smtp_server().await;
    let url = sink.url();
    let mut env = Env::start_with("smtp_outage", |c| {
        c.smtp_url = Some(url);
        c.mail.retry_base_delay = Duration::from_secs(5);
    })
    .await;
    let api = env.internal().await;
    let total = 60;
    let mut ids = Vec::new();
    for i in 0..total {
        let r = api
            .clone()
            .send_email(invitation(
                &format!("k:outage:{i}"),
                &format!("user{i}@example.com"),
            ))
            .await
            .unwrap()
            .into_inner();
        ids.push(r.messages[0].id.clone());
        if i == 5 {
            // Mid-queue: the first messages are on their way; cut SMTP.
            eventually(15, "the first delivery", || {
                let n = sink.count();
                async move { n > 0 }
            })
            .await;
            sink.stop().await;
        }
    }
    let delivered_before = sink.count();
    assert!(
        delivered_before < total,
        "the outage must leave messages queued"
    );
    // Wait until the worker has tried (and failed) at least one message.
    let api2 = api.clone();
    let ids2 = ids.clone();
    eventually(15, "a failed attempt", move || {
        let api = api2.clone();
        let last = ids2[total - 1].clone();
        async move { !message(&api, &last).await.last_error.is_empty() }
    })
    .await;

    env.restart().await;
    let api = env.internal().await;
    sink.restart().await;
    // Past every back-off and any lease a stopped worker still held.
    env.clock.advance(Duration::from_secs(10 * 60));
    eventually(60, "every message sent", || {
        let api = api.clone();
        let ids = ids.clone();
        async move {
            for id in &ids {
                if !state_is(&api, id, OutboxMessageState::Sent).await {
                    return false;
                }
            }
            true
        }
    })
    .await;
    let received = sink.received();
    let distinct: HashSet<_> = received.iter().map(|r| r.message_id.clone()).collect();
    assert_eq!(distinct.len(), total, "every message arrived");
    assert_eq!(received.len(), total, "and none twice");
}

#[tokio::test]
async fn a_damaged_row_fails_alone_and_the_messages_behind_it_are_still_delivered() {
    use sea_orm::ConnectionTrait;
    let sink = smtp_server().await;
    sink.on_rcpt(|_| Some(Reply::new(451, "4.3.0 Mailbox busy, try again later")));
    let url = sink.url();
    let env = Env::start_with("smtp_damaged", |c| {
        c.smtp_url = Some(url);
        c.mail.retry_base_delay = Duration::from_secs(30);
    })
    .await;
    let api = env.internal().await;
    let mut ids = Vec::new();
    for (key, to) in [
        ("k:damaged", "bad@example.com"),
        ("k:fine", "ann@example.com"),
    ] {
        let queued = api
            .clone()
            .send_email(invitation(key, to))
            .await
            .unwrap()
            .into_inner();
        ids.push(queued.messages[0].id.clone());
    }
    for id in &ids {
        eventually(15, "the refused attempt recorded", || {
            let api = api.clone();
            let id = id.clone();
            async move { message(&api, &id).await.attempts == 1 }
        })
        .await;
    }
    // A template number we never write, behind the service's back.
    let db = sea_orm::Database::connect(&env.db.url).await.unwrap();
    db.execute_unprepared(&format!(
        "UPDATE outbox_message SET template = 99 WHERE id = '{}'",
        ids[0]
    ))
    .await
    .unwrap();
    sink.on_rcpt(|_| None);
    env.clock.advance(Duration::from_secs(30));
    eventually(15, "the message behind the damaged row delivered", || {
        state_is(&api, &ids[1], OutboxMessageState::Sent)
    })
    .await;
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT state, last_error FROM outbox_message WHERE id = '{}'",
                ids[0]
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.try_get::<i32>("", "state").unwrap(),
        OutboxMessageState::Failed as i32
    );
    assert!(
        row.try_get::<String>("", "last_error")
            .unwrap()
            .starts_with("unreadable row"),
        "the reason is kept"
    );
    assert_eq!(sink.received().len(), 1);
}
