//! Issue 20 §0: on PostgreSQL, a policy change made through one replica
//! wakes the watchers of every other replica at once (`NOTIFY` at commit,
//! `LISTEN` in each process) instead of waiting for their poll.

use std::time::{Duration, Instant};

use tenancy_proto::account as pb;
use tenancy_proto::account::watch_policies_response::Event;
use tenancy_testkit::{Role, TestDatabase};
use tokio_stream::StreamExt;

use crate::Env;

#[tokio::test]
async fn on_postgresql_a_change_through_one_replica_reaches_a_watch_on_another_at_once() {
    if !TestDatabase::is_postgres() {
        // SQLite: one process per database file; other processes' appends
        // are found by the poll.
        return;
    }
    let env = Env::new().await;
    let b = env.replica().await;
    let (account, owner) = env.account().await;
    let manager = env.manager(&account, &owner).await;
    let mut on_b = b
        .internal()
        .watch_policies(pb::WatchPoliciesRequest {
            from_position: 0,
            ..Default::default()
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
            if !matches!(message.event, Some(Event::Heartbeat(_))) {
                return message.event.unwrap();
            }
        }
    };
    while !matches!(next().await, Event::CaughtUp(_)) {}
    let owner_client = env.as_member(&owner, &account, Role::Owner);
    let mut worst = Duration::ZERO;
    for round in 0..20 {
        // Through replica A (the Env's); watched on replica B.
        if round % 2 == 0 {
            owner_client
                .clone()
                .suspend_member(pb::SuspendMemberRequest {
                    user_id: manager.clone(),
                })
                .await
                .unwrap();
        } else {
            owner_client
                .clone()
                .reactivate_member(pb::ReactivateMemberRequest {
                    user_id: manager.clone(),
                })
                .await
                .unwrap();
        }
        let acknowledged = Instant::now();
        let status = if round % 2 == 0 {
            pb::MemberStatus::Suspended
        } else {
            pb::MemberStatus::Active
        };
        loop {
            if let Event::MembershipChanged(m) = next().await
                && m.user_id == manager
                && m.status == status as i32
            {
                break;
            }
        }
        worst = worst.max(acknowledged.elapsed());
    }
    println!("policy change through replica A seen on replica B's watch: worst of 20 {worst:?}");
    // Without NOTIFY only the poll (every second on PostgreSQL) finds it.
    assert!(worst < Duration::from_millis(500), "worst of 20: {worst:?}");
}
