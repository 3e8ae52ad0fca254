//! Issue 20 §0: on PostgreSQL, a revocation made through one replica wakes
//! the watchers of every other replica at once (`NOTIFY` at commit,
//! `LISTEN` in each process) instead of waiting for their poll.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tenancy_proto::identity::watch_revocations_response::Item;
use tenancy_proto::identity::*;
use tenancy_testkit::TestDatabase;

use crate::harness::Env;

#[tokio::test]
async fn on_postgresql_a_revocation_through_one_replica_reaches_a_watch_on_another_at_once() {
    if !TestDatabase::is_postgres() {
        // SQLite: one process per database file; other processes' appends
        // are found by the poll.
        return;
    }
    let env = Env::start("notify").await;
    let b = env.replica().await;
    let user = env.verified_user("nora@example.com").await;
    let mut on_b = b
        .internal()
        .watch_revocations(WatchRevocationsRequest {
            from_position: 0,
            watcher: "gateway-b".into(),
            batched_catch_up: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut next = async || {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), on_b.next())
                .await
                .expect("the stream went silent")
                .unwrap()
                .unwrap();
            match message.item.unwrap() {
                Item::Heartbeat(_) => {}
                item => return item,
            }
        }
    };
    while !matches!(next().await, Item::CaughtUp(_)) {}
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let session = env.login("nora@example.com").await.session_id;
        let mut principal = tenancy_testkit::member(&user, "", tenancy_testkit::Role::Unspecified);
        principal.account_id = None;
        principal.session_id = Some(session.clone());
        // Through replica A; watched on replica B.
        env.as_principal(principal)
            .logout(LogoutRequest {})
            .await
            .unwrap();
        let acknowledged = Instant::now();
        loop {
            if let Item::Event(event) = next().await
                && let Some(revocation_event::Kind::Session(s)) = event.kind
                && s.session_id == session
            {
                break;
            }
        }
        worst = worst.max(acknowledged.elapsed());
    }
    println!("revocation through replica A seen on replica B's watch: worst of 20 {worst:?}");
    // Without NOTIFY only the poll (every second on PostgreSQL) finds it.
    assert!(worst < Duration::from_millis(500), "worst of 20: {worst:?}");
}
