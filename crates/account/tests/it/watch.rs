use std::time::Duration;

use tenancy_proto::account as pb;
use tenancy_proto::account::watch_policies_response::Event;
use tenancy_runtime::Reason;
use tenancy_testkit::Role;
use tokio_stream::StreamExt;

use crate::Env;

pub(crate) async fn next(
    stream: &mut tonic::Streaming<pb::WatchPoliciesResponse>,
) -> pb::WatchPoliciesResponse {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an event in time")
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn watch_policies_sends_a_snapshot_then_live_changes_and_resumes_from_a_position() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let manager = env.manager(&account, &owner).await;
    let mut stream = env
        .internal()
        .watch_policies(pb::WatchPoliciesRequest { from_position: 0 })
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut stream).await;
    assert!(matches!(first.event, Some(Event::Reset(_))));
    let mut members = 0;
    let mut settings = 0;
    let caught_up_at = loop {
        let e = next(&mut stream).await;
        match e.event {
            Some(Event::MembershipChanged(_)) => members += 1,
            Some(Event::SecuritySettingsChanged(_)) => settings += 1,
            Some(Event::CaughtUp(c)) => {
                assert!(c.snapshot);
                break e.position;
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!((members, settings), (2, 1));
    env.suspend(&owner, &account, &manager).await.unwrap();
    let live = next(&mut stream).await;
    assert!(live.position > caught_up_at);
    match live.event {
        Some(Event::MembershipChanged(m)) => assert_eq!(
            (m.user_id.as_str(), m.status),
            (manager.as_str(), pb::MemberStatus::Suspended as i32)
        ),
        other => panic!("unexpected {other:?}"),
    }
    env.as_member(&owner, &account, Role::Owner)
        .revoke_member(pb::RevokeMemberRequest {
            user_id: manager.clone(),
        })
        .await
        .unwrap();
    let removed = next(&mut stream).await;
    assert!(matches!(removed.event, Some(Event::MembershipRemoved(_))));
    // Resuming from the snapshot's position replays the backlog.
    let mut resumed = env
        .internal()
        .watch_policies(pb::WatchPoliciesRequest {
            from_position: caught_up_at,
        })
        .await
        .unwrap()
        .into_inner();
    let a = next(&mut resumed).await;
    let b = next(&mut resumed).await;
    let c = next(&mut resumed).await;
    assert_eq!(a.position, live.position);
    assert_eq!(b.position, removed.position);
    assert!(matches!(
        c.event,
        Some(Event::CaughtUp(pb::CaughtUp { snapshot: false }))
    ));
    // A position ahead of the log gets a fresh snapshot.
    let mut ahead = env
        .internal()
        .watch_policies(pb::WatchPoliciesRequest {
            from_position: 1_000_000,
        })
        .await
        .unwrap()
        .into_inner();
    match next(&mut ahead).await.event {
        Some(Event::Reset(r)) => assert_eq!(r.cause, pb::PolicyResetCause::PositionUnknown as i32),
        other => panic!("unexpected {other:?}"),
    }
    let e = env
        .internal()
        .watch_policies(pb::WatchPoliciesRequest { from_position: -1 })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn principal_state_reflects_membership_and_a_position() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let state = env
        .internal()
        .get_principal_state(pb::GetPrincipalStateRequest {
            user_id: owner.clone(),
            account_id: account.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let m = state.membership.unwrap();
    assert_eq!(
        (m.role, m.status, m.portal_access),
        (Role::Owner as i32, pb::MemberStatus::Active as i32, true)
    );
    assert!(state.position > 0);
    let stranger = uuid::Uuid::now_v7().to_string();
    let state = env
        .internal()
        .get_principal_state(pb::GetPrincipalStateRequest {
            user_id: stranger.clone(),
            account_id: account.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(state.membership.is_none());
    let e = env
        .internal()
        .get_principal_state(pb::GetPrincipalStateRequest {
            user_id: stranger.clone(),
            account_id: stranger,
        })
        .await
        .unwrap_err();
    assert_eq!(crate::reason(&e), Reason::AccountNotFound);
}
