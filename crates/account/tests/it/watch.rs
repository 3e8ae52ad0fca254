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
        .watch_policies(pb::WatchPoliciesRequest {
            from_position: 0,
            ..Default::default()
        })
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
            ..Default::default()
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
            ..Default::default()
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
        .watch_policies(pb::WatchPoliciesRequest {
            from_position: -1,
            ..Default::default()
        })
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

/// A snapshot's memberships (by account and user) and settings (by
/// account), and how many messages carried them.
async fn snapshot(
    env: &Env,
    batched: bool,
) -> (Vec<pb::MembershipState>, Vec<pb::SecuritySettings>, usize) {
    let mut stream = env
        .internal()
        .watch_policies(pb::WatchPoliciesRequest {
            from_position: 0,
            batched_snapshot: batched,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(
        next(&mut stream).await.event,
        Some(Event::Reset(_))
    ));
    let (mut members, mut settings, mut messages) = (Vec::new(), Vec::new(), 0);
    loop {
        let event = next(&mut stream).await.event.unwrap();
        messages += 1;
        match event {
            Event::MembershipChanged(m) if !batched => members.push(m),
            Event::SecuritySettingsChanged(s) if !batched => settings.push(s),
            Event::SnapshotBatch(batch) if batched => {
                assert!(batch.memberships.len() <= 1000 && batch.security_settings.len() <= 1000);
                members.extend(batch.memberships);
                settings.extend(batch.security_settings);
            }
            Event::CaughtUp(c) => {
                assert!(c.snapshot);
                members
                    .sort_by(|a, b| (&a.account_id, &a.user_id).cmp(&(&b.account_id, &b.user_id)));
                settings.sort_by(|a, b| a.account_id.cmp(&b.account_id));
                return (members, settings, messages - 1);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_batched_snapshot_holds_what_the_single_events_hold_in_few_messages() {
    use sea_orm::{ConnectionTrait as _, Database};
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let manager = env.manager(&account, &owner).await;
    env.suspend(&owner, &account, &manager).await.unwrap();
    // 2,500 more members, written behind the service's back.
    let db = Database::connect(&env.database_url).await.unwrap();
    let rows: Vec<String> = (0..2500)
        .map(|n| {
            format!(
                "('{account}', '00000000-0000-7000-8000-{n:012}', 1, 1, TRUE, FALSE, 1, 0, 0, \
                 'member {n}', 'member{n}@example.com', NULL, '00000000-0000-7000-8000-{n:012}')"
            )
        })
        .collect();
    db.execute_unprepared(&format!(
        "INSERT INTO account_members (account_id, user_id, role, status, portal_access, \
         password_pending, service_access, join_time, update_time, name_key, email, \
         mfa_deadline, alias_id) VALUES {}",
        rows.join(", ")
    ))
    .await
    .unwrap();

    let (single_members, single_settings, single_messages) = snapshot(&env, false).await;
    let (members, settings, messages) = snapshot(&env, true).await;
    assert_eq!(single_members.len(), 2502);
    assert!(single_members.iter().any(|m| m.account_id == account
        && m.user_id == manager
        && m.status == pb::MemberStatus::Suspended as i32));
    assert_eq!(members, single_members);
    assert_eq!(settings, single_settings);
    assert_eq!(single_messages, 2503);
    // 1 settings + 2,502 memberships: three batches of at most 1000.
    assert_eq!(messages, 3);
}

/// The snapshot reads only the columns a gateway needs, in bulk pages (JSON
/// on SQLite, typed rows on PostgreSQL); the log and GetPrincipalState are made from the full
/// rows. Both must say the same of every account and membership: 2FA
/// enforced with a grace period (and each person's deadline), an
/// allowlist, a suspended manager, and an API member with a source
/// allowlist (whose personal deadline is never sent), on both databases.
#[tokio::test]
async fn a_snapshot_says_of_each_account_and_membership_what_the_full_rows_say() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let manager = env.manager(&account, &owner).await;
    let mut as_owner = env.as_member(&owner, &account, Role::Owner);
    as_owner
        .update_security_settings(pb::UpdateSecuritySettingsRequest {
            settings: Some(pb::SecuritySettings {
                enforce_mfa: true,
                mfa_grace_period: Some(prost_types::Duration {
                    seconds: 86_400,
                    nanos: 0,
                }),
                ip_allowlist: vec!["203.0.113.0/24".into(), "2001:db8::/32".into()],
                ..Default::default()
            }),
            update_mask: crate::mask(&["enforce_mfa", "mfa_grace_period", "ip_allowlist"]),
            force: true,
        })
        .await
        .unwrap();
    env.suspend(&owner, &account, &manager).await.unwrap();
    let bot = as_owner
        .create_api_member(pb::CreateApiMemberRequest {
            name: "backup agent".into(),
            description: "nightly".into(),
            access_scope: Some(crate::all_services()),
            source_allowlist: vec!["198.51.100.0/24".into(), "2001:db8:1::/48".into()],
        })
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap()
        .user_id;

    let (memberships, settings, _) = snapshot(&env, true).await;
    assert_eq!(settings.len(), 1);
    assert_eq!(memberships.len(), 3);
    for user in [&owner, &manager, &bot] {
        let state = env
            .internal()
            .get_principal_state(pb::GetPrincipalStateRequest {
                user_id: user.clone(),
                account_id: account.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let full = state.membership.unwrap();
        let snapshot = memberships
            .iter()
            .find(|m| &m.user_id == user)
            .unwrap_or_else(|| panic!("{user} not in the snapshot"));
        assert_eq!(snapshot, &full);
        assert_eq!(settings[0], state.security_settings.unwrap());
    }
    let by_user = |user: &str| memberships.iter().find(|m| m.user_id == user).unwrap();
    // What the comparison covers: each field set somewhere.
    assert!(settings[0].enforce_mfa);
    assert_eq!(settings[0].ip_allowlist.len(), 2);
    assert!(settings[0].mfa_grace_period.is_some() && settings[0].enforce_mfa_time.is_some());
    assert!(by_user(&owner).mfa_deadline.is_some() && by_user(&owner).portal_access);
    assert_eq!(by_user(&manager).status, pb::MemberStatus::Suspended as i32);
    let bot = by_user(&bot);
    assert!(bot.api_member && bot.mfa_deadline.is_none() && !bot.portal_access);
    assert_eq!(bot.source_allowlist, ["198.51.100.0/24", "2001:db8:1::/48"]);
}
