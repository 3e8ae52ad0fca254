use tenancy_proto::account as pb;
use tenancy_testkit::{Reason, Role};
use tonic::Code;

use crate::{Env, mask, reason};

#[tokio::test]
async fn last_active_owner_cannot_be_demoted() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let error = env
        .as_member(&owner, &account, Role::Owner)
        .change_member_role(pb::ChangeMemberRoleRequest {
            user_id: owner.clone(),
            role: Role::Manager as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert_eq!(reason(&error), Reason::LastActiveOwner);
}

#[tokio::test]
async fn last_active_owner_cannot_leave_or_drop_portal_access() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let error = env
        .as_member(&owner, &account, Role::Owner)
        .leave_account(pb::LeaveAccountRequest {})
        .await
        .unwrap_err();
    assert_eq!(reason(&error), Reason::LastActiveOwner);
    let error = env
        .as_member(&owner, &account, Role::Owner)
        .set_member_access(pb::SetMemberAccessRequest {
            user_id: owner.clone(),
            access_scope: Some(pb::AccessScope {
                portal_access: false,
                ..Default::default()
            }),
            update_mask: mask(&["portal_access"]),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&error), Reason::LastActiveOwner);
}

#[tokio::test]
async fn owners_cannot_suspend_or_revoke_themselves() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let c = env.as_member(&owner, &account, Role::Owner);
    let e = c
        .clone()
        .suspend_member(pb::SuspendMemberRequest {
            user_id: owner.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::TargetIsSelf);
    let e = c
        .clone()
        .revoke_member(pb::RevokeMemberRequest {
            user_id: owner.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::TargetIsSelf);
}

#[tokio::test]
async fn with_a_second_owner_an_owner_may_step_down() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let second = env.owner(&account, &owner).await;
    let m = env
        .as_member(&owner, &account, Role::Owner)
        .change_member_role(pb::ChangeMemberRoleRequest {
            user_id: owner.clone(),
            role: Role::Manager as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(m.role, Role::Manager as i32);
    // Now `second` is the last active owner.
    let e = env
        .as_member(&second, &account, Role::Owner)
        .change_member_role(pb::ChangeMemberRoleRequest {
            user_id: second.clone(),
            role: Role::Manager as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::LastActiveOwner);
}

#[tokio::test]
async fn two_owners_demoting_each_other_at_once_cannot_both_succeed() {
    let env = Env::new().await;
    for _ in 0..10 {
        let (account, a) = env.account().await;
        let b = env.owner(&account, &a).await;
        let mut ca = env.as_member(&a, &account, Role::Owner);
        let mut cb = env.as_member(&b, &account, Role::Owner);
        let (ra, rb) = tokio::join!(
            ca.change_member_role(pb::ChangeMemberRoleRequest {
                user_id: b.clone(),
                role: Role::Manager as i32
            }),
            cb.change_member_role(pb::ChangeMemberRoleRequest {
                user_id: a.clone(),
                role: Role::Manager as i32
            }),
        );
        let ok = [ra.is_ok(), rb.is_ok()].iter().filter(|x| **x).count();
        assert_eq!(ok, 1, "{ra:?} {rb:?}");
        let failed = ra.err().or(rb.err()).unwrap();
        // Refused either by the invariant or because the loser was demoted
        // before their own change ran.
        assert!(
            [Reason::LastActiveOwner, Reason::RoleTooLow].contains(&reason(&failed)),
            "{failed:?}"
        );
        let owners = env
            .as_member(&a, &account, Role::Manager)
            .list_members(pb::ListMembersRequest {
                role: Role::Owner as i32,
                ..Default::default()
            })
            .await;
        // Whoever lost the race is a manager now; exactly one owner remains.
        let owners = match owners {
            Ok(r) => r.into_inner().members,
            Err(_) => {
                env.as_member(&b, &account, Role::Manager)
                    .list_members(pb::ListMembersRequest {
                        role: Role::Owner as i32,
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .members
            }
        };
        assert_eq!(owners.len(), 1);
    }
}

#[tokio::test]
async fn a_suspended_member_is_refused_everything_and_loses_tokens() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let manager = env.manager(&account, &owner).await;
    let token = env.api_token(&manager, &account).await;
    let m = env.suspend(&owner, &account, &manager).await.unwrap();
    assert_eq!(m.status, pb::MemberStatus::Suspended as i32);
    let e = env
        .get_account_as(&manager, &account, Role::Manager)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(reason(&e), Reason::MemberSuspended);
    // Identity was told: the member's API tokens for the account are
    // revoked for good.
    assert!(
        env.api_token_revocations()
            .await
            .contains(&(token, manager.clone(), account.clone()))
    );
    // Still listed for the switcher, as SUSPENDED.
    let mine = env
        .as_user(&manager)
        .list_my_accounts(pb::ListMyAccountsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        mine.memberships[0].status,
        pb::MemberStatus::Suspended as i32
    );
    // Reactivation restores access.
    env.reactivate(&owner, &account, &manager).await;
    env.get_account_as(&manager, &account, Role::Manager)
        .await
        .unwrap();
}

#[tokio::test]
async fn revoked_members_lose_access_and_stay_listed_as_revoked() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let manager = env.manager(&account, &owner).await;
    env.as_member(&owner, &account, Role::Owner)
        .revoke_member(pb::RevokeMemberRequest {
            user_id: manager.clone(),
        })
        .await
        .unwrap();
    let e = env
        .get_account_as(&manager, &account, Role::Manager)
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::NotAMember);
    let got = env.member(&owner, &account, &manager).await;
    assert_eq!(got.status, pb::MemberStatus::Revoked as i32);
    let e = env
        .as_member(&owner, &account, Role::Owner)
        .reactivate_member(pb::ReactivateMemberRequest {
            user_id: manager.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::MemberRevoked);
    let e = env
        .as_member(&owner, &account, Role::Owner)
        .change_member_role(pb::ChangeMemberRoleRequest {
            user_id: manager.clone(),
            role: Role::Owner as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::MemberRevoked);
    assert!(
        env.as_user(&manager)
            .list_my_accounts(pb::ListMyAccountsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .memberships
            .is_empty()
    );
}

#[tokio::test]
async fn managers_may_leave_and_cannot_manage_members() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let manager = env.manager(&account, &owner).await;
    let e = env
        .as_member(&manager, &account, Role::Manager)
        .suspend_member(pb::SuspendMemberRequest {
            user_id: owner.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    env.as_member(&manager, &account, Role::Manager)
        .leave_account(pb::LeaveAccountRequest {})
        .await
        .unwrap();
    let e = env
        .get_account_as(&manager, &account, Role::Manager)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn unknown_members_are_not_found() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let e = env
        .as_member(&owner, &account, Role::Owner)
        .get_member(pb::GetMemberRequest {
            user_id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::MemberNotFound);
    let e = env
        .as_member(&owner, &account, Role::Owner)
        .get_member(pb::GetMemberRequest {
            user_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn list_members_pages_by_keyset_with_profiles_from_identity() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let mut ids = vec![owner.clone()];
    for _ in 0..4 {
        ids.push(env.manager(&account, &owner).await);
        env.clock.advance(std::time::Duration::from_millis(5));
    }
    let c = env.as_member(&owner, &account, Role::Owner);
    let p1 = c
        .clone()
        .list_members(pb::ListMembersRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let p2 = c
        .clone()
        .list_members(pb::ListMembersRequest {
            page_size: 2,
            page_token: p1.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // A member joining meanwhile does not shift the pages.
    env.manager(&account, &owner).await;
    let p3 = c
        .clone()
        .list_members(pb::ListMembersRequest {
            page_size: 2,
            page_token: p2.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<String> = p1
        .members
        .iter()
        .chain(&p2.members)
        .chain(&p3.members)
        .map(|m| m.user_id.clone())
        .collect();
    assert_eq!(&got[..5], &ids[..]);
    assert!(
        p1.members
            .iter()
            .all(|m| !m.email.is_empty() && !m.name.is_empty())
    );
    // Filters and descending order.
    let managers = c
        .clone()
        .list_members(pb::ListMembersRequest {
            role: Role::Manager as i32,
            descending: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(managers.len(), 5);
    assert!(managers.iter().all(|m| m.role == Role::Manager as i32));
    assert!(
        managers
            .windows(2)
            .all(|w| w[0].join_time.unwrap().seconds * 1000
                + i64::from(w[0].join_time.unwrap().nanos / 1_000_000)
                >= w[1].join_time.unwrap().seconds * 1000
                    + i64::from(w[1].join_time.unwrap().nanos / 1_000_000))
    );
    let by_email = c
        .clone()
        .list_members(pb::ListMembersRequest {
            order_by: pb::MemberOrderBy::Email as i32,
            page_size: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let next = c
        .clone()
        .list_members(pb::ListMembersRequest {
            order_by: pb::MemberOrderBy::Email as i32,
            page_size: 3,
            page_token: by_email.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let emails: Vec<String> = by_email
        .members
        .iter()
        .chain(&next.members)
        .map(|m| m.email.clone())
        .collect();
    let mut sorted = emails.clone();
    sorted.sort();
    assert_eq!(emails, sorted);
    let e = c
        .clone()
        .list_members(pb::ListMembersRequest {
            page_token: by_email.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::PageTokenInvalid);
    env.as_member(&owner, &account, Role::Owner)
        .suspend_member(pb::SuspendMemberRequest {
            user_id: ids[1].clone(),
        })
        .await
        .unwrap();
    let suspended = c
        .clone()
        .list_members(pb::ListMembersRequest {
            statuses: vec![pb::MemberStatus::Suspended as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(
        suspended
            .iter()
            .map(|m| m.user_id.clone())
            .collect::<Vec<_>>(),
        [ids[1].clone()]
    );
}

#[tokio::test]
async fn add_member_creates_a_member_without_portal_access_and_sends_nothing() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let sent = env.outbox_of_account(&account).await.len();
    let m = env
        .as_member(&owner, &account, Role::Owner)
        .add_member(pb::AddMemberRequest {
            email: "Bob@Example.com".into(),
            name: "Bob".into(),
            role: Role::Manager as i32,
            access_scope: Some(crate::all_services()),
        })
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(m.email, "bob@example.com");
    assert_eq!(m.status, pb::MemberStatus::Active as i32);
    assert!(!m.access_scope.unwrap().portal_access);
    assert_eq!(env.outbox_of_account(&account).await.len(), sent);
    let e = env
        .as_member(&owner, &account, Role::Owner)
        .add_member(pb::AddMemberRequest {
            email: "bob@example.com".into(),
            name: "Bob".into(),
            role: Role::Manager as i32,
            access_scope: Some(crate::all_services()),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::MemberExists);
}

/// Adds `email` as `name` to `account` as its owner; the reply's member.
async fn add(env: &Env, account: &str, owner: &str, email: &str, name: &str) -> pb::Member {
    env.as_member(owner, account, Role::Owner)
        .add_member(pb::AddMemberRequest {
            email: email.into(),
            name: name.into(),
            role: Role::Manager as i32,
            access_scope: Some(crate::all_services()),
        })
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap()
}

/// What two members have in common when only the typed email and the ids
/// and times differ.
fn without_identity(m: &pb::Member) -> pb::Member {
    pb::Member {
        user_id: String::new(),
        email: String::new(),
        join_time: None,
        update_time: None,
        ..m.clone()
    }
}

/// Issue 21 §3: AddMember reveals nothing about the person behind an
/// email — not their name, last login, 2FA, or user id (whose UUIDv7 would
/// tell when they registered) — in its reply, GetMember, ListMembers, the
/// audit log, or SetMemberAccess; until they accept an invitation, when
/// they show as they are.
#[tokio::test]
async fn added_members_show_only_what_the_owner_typed_until_they_accept() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    // A registered person with a name of their own, a login and 2FA.
    let victim = env.user("victim@example.com").await;
    env.enrol_totp(&victim, "victim@example.com").await;
    let real = env.identity_user(&victim).await;
    assert!(real.last_login_time.is_some() && real.totp_enabled);
    let real_name = real.name.clone();

    let known = add(&env, &account, &owner, "Victim@Example.com", "Typed Person").await;
    let unknown = add(&env, &account, &owner, "nobody@example.com", "Typed Person").await;
    // Indistinguishable but for what was typed.
    assert_eq!(without_identity(&known), without_identity(&unknown));
    assert_eq!(known.name, "Typed Person");
    assert_eq!(known.email, "victim@example.com");
    assert!(known.last_login_time.is_none());
    assert!(!known.totp_enabled);
    assert!(known.mfa_deadline.is_none());
    assert_ne!(known.user_id, victim);
    // Both stand-in ids were made now, like a new user's would be.
    let made = |id: &str| {
        uuid::Uuid::parse_str(id)
            .unwrap()
            .get_timestamp()
            .unwrap()
            .to_unix()
    };
    assert!(made(&known.user_id) >= made(&victim));

    let c = env.as_member(&owner, &account, Role::Owner);
    // Every read shows the same; the real user id finds nothing.
    let got = c
        .clone()
        .get_member(pb::GetMemberRequest {
            user_id: known.user_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(got, known);
    let e = c
        .clone()
        .get_member(pb::GetMemberRequest {
            user_id: victim.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::MemberNotFound);
    let e = c
        .clone()
        .suspend_member(pb::SuspendMemberRequest {
            user_id: victim.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::MemberNotFound);
    let listed = c
        .clone()
        .list_members(pb::ListMembersRequest {
            page_size: 1,
            order_by: pb::MemberOrderBy::Name as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let audit = c
        .clone()
        .list_audit_events(pb::ListAuditEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    // SetMemberAccess answers both the same: an invitation, no access yet.
    let mut invited = Vec::new();
    for m in [&known, &unknown] {
        let r = c
            .clone()
            .set_member_access(pb::SetMemberAccessRequest {
                user_id: m.user_id.clone(),
                access_scope: Some(pb::AccessScope {
                    portal_access: true,
                    ..Default::default()
                }),
                update_mask: mask(&["portal_access"]),
            })
            .await
            .unwrap()
            .into_inner();
        let inv = r.invitation.expect("an invitation, registered or not");
        assert_eq!(inv.user_id, m.user_id);
        let member = r.member.unwrap();
        assert!(!member.access_scope.as_ref().unwrap().portal_access);
        assert_eq!(without_identity(&member), without_identity(&unknown));
        invited.push(format!("{inv:?} {member:?}"));
    }
    let seen = format!("{listed:?} {audit:?} {invited:?} {known:?}");
    assert!(!seen.contains(&victim), "the user id leaked: {seen}");
    assert!(!seen.contains(&real_name), "the real name leaked: {seen}");
    // Page tokens are base64 JSON: no user id in them either.
    let page_token = String::from_utf8(
        base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            &listed.next_page_token,
        )
        .unwrap(),
    )
    .unwrap();
    assert!(!page_token.contains(&victim), "{page_token}");

    // The person accepts: from then on they show as they are, under their
    // user id (the stand-in still finds them).
    let token = env.invitation_token("victim@example.com").await;
    assert_eq!(env.accept(&token).await, victim);
    let joined = c
        .clone()
        .get_member(pb::GetMemberRequest {
            user_id: known.user_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(joined.user_id, victim);
    assert_eq!(joined.name, real_name);
    assert!(joined.totp_enabled && joined.last_login_time.is_some());
    assert!(joined.access_scope.unwrap().portal_access);
}

/// AddMember of a registered and of an unknown email: the same errors, and
/// MEMBER_EXISTS for each only when added twice.
#[tokio::test]
async fn add_member_errors_do_not_tell_registered_from_unknown() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    env.user("someone@example.com").await;
    let c = env.as_member(&owner, &account, Role::Owner);
    for email in ["someone@example.com", "no-one@example.com"] {
        let bad = c
            .clone()
            .add_member(pb::AddMemberRequest {
                email: email.into(),
                name: String::new(),
                role: Role::Manager as i32,
                access_scope: Some(crate::all_services()),
            })
            .await
            .unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);
        assert_eq!(crate::fields(&bad), ["name"]);
        add(&env, &account, &owner, email, "Typed").await;
        let again = c
            .clone()
            .add_member(pb::AddMemberRequest {
                email: email.into(),
                name: "Typed".into(),
                role: Role::Manager as i32,
                access_scope: Some(crate::all_services()),
            })
            .await
            .unwrap_err();
        assert_eq!(reason(&again), Reason::MemberExists);
        assert_eq!(again.message(), "this person is already a member");
    }
}
