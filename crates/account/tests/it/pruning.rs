//! Issue 20 §3: the policy log keeps entries for `account.change_log_retention`
//! and a watcher that fell further behind gets a snapshot.

use std::time::Duration;

use tenancy_proto::account as pb;
use tenancy_proto::account::watch_policies_response::Event;
use tenancy_testkit::Role;

use crate::Env;
use crate::watch::next;

/// The first message of a watch resumed after `from`.
async fn first_after(env: &Env, from: i64) -> pb::WatchPoliciesResponse {
    let mut stream = env
        .internal()
        .watch_policies(pb::WatchPoliciesRequest {
            from_position: from,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    next(&mut stream).await
}

/// A watch from 0 read up to its caught_up: the stream and the position.
async fn caught_up(env: &Env) -> (tonic::Streaming<pb::WatchPoliciesResponse>, i64) {
    let mut live = env
        .internal()
        .watch_policies(pb::WatchPoliciesRequest {
            from_position: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    loop {
        let e = next(&mut live).await;
        if matches!(e.event, Some(Event::CaughtUp(_))) {
            return (live, e.position);
        }
    }
}

#[tokio::test]
async fn old_policy_entries_are_pruned_and_a_watcher_behind_them_gets_a_snapshot() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let manager = env.manager(&account, &owner).await;
    let (mut live, behind) = caught_up(&env).await;
    let owner_client = env.as_member(&owner, &account, Role::Owner);
    owner_client
        .clone()
        .suspend_member(pb::SuspendMemberRequest {
            user_id: manager.clone(),
        })
        .await
        .unwrap();
    let old = next(&mut live).await.position;
    // Eight days later (the retention is seven), the manager is reactivated.
    env.clock.advance(Duration::from_secs(8 * 24 * 3600));
    owner_client
        .clone()
        .reactivate_member(pb::ReactivateMemberRequest {
            user_id: manager.clone(),
        })
        .await
        .unwrap();
    let new = next(&mut live).await.position;
    assert!(new > old);

    // The pruning job (every second) drops the old entries: a watcher at
    // `behind` now gets a snapshot, with the manager active again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let first = first_after(&env, behind).await;
        if let Some(Event::Reset(reset)) = first.event {
            assert_eq!(
                reset.cause,
                pb::PolicyResetCause::PositionExpired as i32,
                "{reset:?}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old entries were never pruned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut snapshot = env
        .internal()
        .watch_policies(pb::WatchPoliciesRequest {
            from_position: behind,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        next(&mut snapshot).await.event,
        Some(Event::Reset(_))
    ));
    let mut manager_active = false;
    loop {
        let e = next(&mut snapshot).await;
        match e.event {
            Some(Event::MembershipChanged(m)) if m.user_id == manager => {
                manager_active = m.status == pb::MemberStatus::Active as i32;
            }
            Some(Event::CaughtUp(c)) => {
                assert!(c.snapshot);
                assert!(e.position >= new);
                break;
            }
            _ => {}
        }
    }
    assert!(manager_active, "the snapshot carries the current state");

    // The new entry stays: a watcher right before it resumes without a
    // snapshot and receives it.
    let mut resumed = env
        .internal()
        .watch_policies(pb::WatchPoliciesRequest {
            from_position: old,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let event = next(&mut resumed).await;
    assert_eq!(event.position, new, "{event:?}");
    assert!(matches!(event.event, Some(Event::MembershipChanged(_))));
    assert!(matches!(
        next(&mut resumed).await.event,
        Some(Event::CaughtUp(pb::CaughtUp { snapshot: false }))
    ));
}

/// The retention edge: entries right after a live watcher's position are
/// pruned between two of its reads (here: appended and pruned in one
/// transaction behind the service's back, as a prune with a tiny retention
/// racing the watcher would). The watcher must get a snapshot
/// (POSITION_EXPIRED), never the entries after the gap as if nothing was
/// missing.
#[tokio::test]
async fn entries_pruned_between_a_watchers_reads_give_it_a_snapshot_not_a_gap() {
    use sea_orm::{ConnectionTrait, Database, TransactionTrait};

    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let manager = env.manager(&account, &owner).await;
    let (mut live, head) = caught_up(&env).await;
    assert!(head > 0);

    // Three entries after the head, the first two pruned at once: the
    // watcher's next read finds `head + 3` after `head`.
    let db = Database::connect(&env.database_url).await.unwrap();
    let txn = db.begin().await.unwrap();
    for position in head + 1..=head + 3 {
        txn.execute_unprepared(&format!(
            "INSERT INTO account_policy_log (position, event_time, account_id, event_kind, payload) \
             SELECT {position}, event_time, account_id, event_kind, payload \
             FROM account_policy_log WHERE position = {head}"
        ))
        .await
        .unwrap();
    }
    txn.execute_unprepared(&format!(
        "UPDATE account_policy_head SET position = {} WHERE id = 1",
        head + 3
    ))
    .await
    .unwrap();
    let pruned = tenancy_account::store::prune::policy_log(&txn, i64::MAX)
        .await
        .unwrap();
    assert!(pruned >= 3, "everything but the newest pruned: {pruned}");
    txn.commit().await.unwrap();

    let first = loop {
        let e = next(&mut live).await;
        if !matches!(e.event, Some(Event::Heartbeat(_))) {
            break e;
        }
    };
    let Some(Event::Reset(reset)) = first.event else {
        panic!(
            "entries {}..={} were skipped without a reset: {first:?}",
            head + 1,
            head + 2
        );
    };
    assert_eq!(
        reset.cause,
        pb::PolicyResetCause::PositionExpired as i32,
        "{reset:?}"
    );
    let mut manager_seen = false;
    loop {
        let e = next(&mut live).await;
        match e.event {
            Some(Event::MembershipChanged(m)) if m.user_id == manager => manager_seen = true,
            Some(Event::CaughtUp(c)) => {
                assert!(c.snapshot);
                assert_eq!(e.position, head + 3);
                break;
            }
            _ => {}
        }
    }
    assert!(manager_seen, "the snapshot carries the current state");
}
