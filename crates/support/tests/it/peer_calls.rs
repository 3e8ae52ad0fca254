//! Ticket notifications are durable: written with the message into
//! support's outbox of calls (`support_peer_calls`), delivered until
//! contacts acknowledges, the row deleted then; identity or contacts being
//! down only delays them, and each message is notified exactly once.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tenancy_proto::support as pb;
use tenancy_runtime::clock::{Clock, SystemClock};
use tenancy_runtime::config::ServiceName;

use crate::harness::{World, create};

/// Calls not yet acknowledged: (attempts, last_error) of each.
async fn pending(db: &DatabaseConnection) -> Vec<(i32, String)> {
    db.query_all_raw(sea_orm::Statement::from_string(
        db.get_database_backend(),
        "SELECT attempts, last_error FROM support_peer_calls ORDER BY id",
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.try_get::<i32>("", "attempts").unwrap(),
            r.try_get::<String>("", "last_error").unwrap(),
        )
    })
    .collect()
}

/// Polls until `done` or 30 s passed (a loaded CI machine, a peer's
/// restart, the worker's backoff of at most 5 s).
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A general ticket of the owner with `all` as CC user, its receipt
/// delivered (and its call gone).
async fn ticket(w: &World, db: &DatabaseConnection) -> pb::Ticket {
    let mut req = create(None);
    req.category = pb::TicketCategory::General as i32;
    req.cc_user_ids = vec![w.all.clone()];
    let t = w
        .customer(&w.owner)
        .create_ticket(req)
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(
        w.outbox_at_least("support:ticket-created", 2).await.len(),
        2
    );
    eventually("the receipt's call is deleted", || async {
        pending(db).await.is_empty()
    })
    .await;
    t
}

/// `all` replies on `t`; returns the message id.
async fn reply(w: &World, t: &pb::Ticket) -> String {
    w.customer(&w.all)
        .add_message(pb::AddMessageRequest {
            ticket_id: t.id.clone(),
            body: "still broken".into(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap()
        .id
}

/// The reply to `t`'s owner, once exactly one was queued.
async fn notified_once(w: &World, message_id: &str) {
    let key = format!("support:ticket-reply:{message_id}");
    let sent = w.outbox_at_least(&key, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.outbox(&key).await.len(), 1, "{sent:?}");
    assert_eq!(w.recipients(&sent), std::slice::from_ref(&w.owner));
    // Rendered completely: the author's name came from identity.
    assert_eq!(sent[0].template_data["author_name"], w.names[&w.all]);
    assert_eq!(sent[0].template_data["message_excerpt"], "still broken");
}

/// A reply made while `peer` is down commits, its notification waits in
/// the outbox (retried, not dropped), and is sent once `peer` is back.
async fn a_reply_made_while_down_is_notified_once_it_is_back(label: &str, peer: ServiceName) {
    let mut w = World::new(label).await;
    let db = Database::connect(&w.support_db.url).await.unwrap();
    let t = ticket(&w, &db).await;

    w.peers.stop(peer).await;
    let message_id = reply(&w, &t).await;
    eventually("a delivery failed", || async {
        pending(&db)
            .await
            .first()
            .is_some_and(|(attempts, _)| *attempts >= 1)
    })
    .await;
    let calls = pending(&db).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(!calls[0].1.is_empty(), "the error is kept: {calls:?}");

    // The peer comes back (a new server on the same database): the worker
    // delivers without anyone asking, then deletes the call.
    w.peers.restart(peer).await;
    eventually("the outbox is delivered", || async {
        pending(&db).await.is_empty()
    })
    .await;
    notified_once(&w, &message_id).await;
}

#[tokio::test]
async fn a_reply_made_while_contacts_is_down_is_notified_once_it_is_back() {
    a_reply_made_while_down_is_notified_once_it_is_back("pc_contacts", ServiceName::Contacts).await;
}

#[tokio::test]
async fn a_reply_made_while_identity_is_down_is_notified_once_it_is_back() {
    a_reply_made_while_down_is_notified_once_it_is_back("pc_identity", ServiceName::Identity).await;
}

#[tokio::test]
async fn a_notification_another_replica_holds_is_sent_once_its_lease_runs_out() {
    let mut w = World::new("pc_lease").await;
    let db = Database::connect(&w.support_db.url).await.unwrap();
    let t = ticket(&w, &db).await;
    w.peers.stop(ServiceName::Contacts).await;
    let message_id = reply(&w, &t).await;
    // Its call as a replica that claimed it and died holds it: leased for
    // 3 more seconds. Taken only between attempts (no lease), so no
    // delivery of this replica is under way (one waiting for contacts
    // would deliver as soon as it is back).
    let lease = std::cell::Cell::new(0);
    eventually("the reply's call is taken between attempts", || {
        let (db, lease) = (&db, &lease);
        async move {
            let now = SystemClock.now().millis();
            lease.set(now + 3_000);
            db.execute_unprepared(&format!(
                "UPDATE support_peer_calls SET lease_until = {lease}, due_time = {now} \
                 WHERE lease_until IS NULL AND attempts >= 1",
                lease = lease.get()
            ))
            .await
            .unwrap()
            .rows_affected()
                == 1
        }
    })
    .await;
    w.peers.restart(ServiceName::Contacts).await;
    // The worker polls every 500 ms: while the lease holds, it does not
    // take the call.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let key = format!("support:ticket-reply:{message_id}");
    if SystemClock.now().millis() < lease.get() {
        assert_eq!(
            pending(&db).await.len(),
            1,
            "taken while another replica held it"
        );
        assert!(w.outbox(&key).await.is_empty());
    }
    // Then this replica takes it over, and delivers it once.
    eventually("the expired lease is taken over", || async {
        pending(&db).await.is_empty()
    })
    .await;
    notified_once(&w, &message_id).await;
}

#[tokio::test]
async fn a_notification_delivered_twice_is_sent_once() {
    let w = World::new("pc_twice").await;
    let db = Database::connect(&w.support_db.url).await.unwrap();
    let t = ticket(&w, &db).await;
    let message_id = reply(&w, &t).await;
    notified_once(&w, &message_id).await;
    assert!(pending(&db).await.is_empty(), "deleted once acknowledged");
    // Delivered again (as after a replica died before deleting it), after
    // the content changed (a CC user added): contacts' idempotency key
    // holds; nothing more is sent and the call is done.
    w.customer(&w.owner)
        .update_ticket_cc(pb::UpdateTicketCcRequest {
            ticket_id: t.id.clone(),
            add_user_ids: vec![w.selected.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    let payload = serde_json::json!({
        "ticket_id": t.id,
        "message_id": message_id,
        "created": false,
    })
    .to_string();
    db.execute_unprepared(&format!(
        "INSERT INTO support_peer_calls (id, call_kind, payload, create_time, attempts, due_time, lease_until, last_error) \
         VALUES ('dup', 1, '{payload}', 0, 0, 0, NULL, '')"
    ))
    .await
    .unwrap();
    eventually("the duplicate is delivered", || async {
        pending(&db).await.is_empty()
    })
    .await;
    notified_once(&w, &message_id).await;
}
