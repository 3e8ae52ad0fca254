use std::time::Duration;

use tenancy_proto::account as pb;
use tenancy_runtime::Principal;
use tenancy_runtime::Reason;
use tenancy_testkit::Role;
use tonic::Code;

use crate::{Env, all_services, mask, reason};

fn anon(env: &Env) -> crate::Client {
    env.client(Principal::anonymous(None, "r"))
}

async fn invite(
    env: &Env,
    account: &str,
    owner: &str,
    email: &str,
) -> Result<pb::Invitation, tonic::Status> {
    env.as_member(owner, account, Role::Owner)
        .invite_member(pb::InviteMemberRequest {
            email: email.into(),
            role: Role::Manager as i32,
            access_scope: Some(all_services()),
        })
        .await
        .map(|r| r.into_inner().invitation.unwrap())
}

#[tokio::test]
async fn a_new_user_accepts_the_emailed_invitation_with_name_and_password() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let inv = invite(&env, &account, &owner, "New.Person@Example.com")
        .await
        .unwrap();
    assert_eq!(inv.email, "new.person@example.com");
    assert_eq!(inv.state, pb::InvitationState::Pending as i32);
    // Not a member until accepted.
    let members = env
        .as_member(&owner, &account, Role::Owner)
        .list_members(pb::ListMembersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(members.len(), 1);
    let token = env.invitation_token("new.person@example.com").await;
    let e = anon(&env)
        .accept_invitation(pb::AcceptInvitationRequest {
            token: token.clone(),
            name: "New Person".into(),
            password: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = anon(&env)
        .accept_invitation(pb::AcceptInvitationRequest {
            token: token.clone(),
            name: "New Person".into(),
            password: "short".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // Identity's refusal comes back whole: its reason, its violation, and
    // the field named once (not "password: password: ...").
    assert_eq!(reason(&e), Reason::PasswordTooShort);
    assert_eq!(crate::fields(&e), ["password"]);
    assert_eq!(e.message(), "password: at least 12 characters");
    let accepted = anon(&env)
        .accept_invitation(pb::AcceptInvitationRequest {
            token: token.clone(),
            name: "New Person".into(),
            password: "a long enough password".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(accepted.user_created);
    assert_eq!(accepted.account_id, account);
    assert_eq!(
        env.identity_user(&accepted.user_id).await.name,
        "New Person"
    );
    let m = env
        .as_member(&owner, &account, Role::Owner)
        .get_member(pb::GetMemberRequest {
            user_id: accepted.user_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(m.status, pb::MemberStatus::Active as i32);
    assert!(m.access_scope.unwrap().portal_access);
    // A used token is refused.
    let e = env.try_accept(&token).await.unwrap_err();
    assert_eq!(reason(&e), Reason::InvitationUsed);
}

#[tokio::test]
async fn an_existing_user_joins_by_accepting_without_a_password() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let user = env.user("existing@example.com").await;
    invite(&env, &account, &owner, "existing@example.com")
        .await
        .unwrap();
    let token = env.invitation_token("existing@example.com").await;
    let accepted = env.try_accept(&token).await.unwrap();
    assert!(!accepted.user_created);
    assert_eq!(accepted.user_id, user);
    assert_eq!(accepted.role, Role::Manager as i32);
}

#[tokio::test]
async fn expired_and_cancelled_invitations_are_refused_and_can_be_replaced() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    env.user("late@example.com").await;
    invite(&env, &account, &owner, "late@example.com")
        .await
        .unwrap();
    let token = env.invitation_token("late@example.com").await;
    env.clock.advance(Duration::from_secs(7 * 24 * 3600 + 1));
    let e = env.try_accept(&token).await.unwrap_err();
    assert_eq!(reason(&e), Reason::InvitationExpired);
    // An expired invitation no longer blocks a new one.
    let second = invite(&env, &account, &owner, "late@example.com")
        .await
        .unwrap();
    let e = invite(&env, &account, &owner, "late@example.com")
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::InvitationPending);
    let cancelled = env
        .as_member(&owner, &account, Role::Owner)
        .cancel_invitation(pb::CancelInvitationRequest {
            invitation_id: second.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .invitation
        .unwrap();
    assert_eq!(cancelled.state, pb::InvitationState::Cancelled as i32);
    let token = env.invitation_token("late@example.com").await;
    let e = env.try_accept(&token).await.unwrap_err();
    assert_eq!(reason(&e), Reason::InvitationCancelled);
    let e = env
        .as_member(&owner, &account, Role::Owner)
        .resend_invitation(pb::ResendInvitationRequest {
            invitation_id: second.id,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::InvitationCancelled);
    // And after cancelling, the email can be invited again.
    invite(&env, &account, &owner, "late@example.com")
        .await
        .unwrap();
    let states: Vec<i32> = env
        .as_member(&owner, &account, Role::Owner)
        .list_invitations(pb::ListInvitationsRequest {
            states: vec![pb::InvitationState::Expired as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .invitations
        .iter()
        .map(|i| i.state)
        .collect();
    assert_eq!(states, [pb::InvitationState::Expired as i32]);
}

#[tokio::test]
async fn resending_kills_the_old_link_and_is_rate_limited() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    env.user("r@example.com").await;
    let inv = invite(&env, &account, &owner, "r@example.com")
        .await
        .unwrap();
    let old = env.invitation_token("r@example.com").await;
    let e = env
        .as_member(&owner, &account, Role::Owner)
        .resend_invitation(pb::ResendInvitationRequest {
            invitation_id: inv.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert_eq!(reason(&e), Reason::InvitationResendTooSoon);
    env.clock.advance(Duration::from_secs(61));
    let resent = env
        .as_member(&owner, &account, Role::Owner)
        .resend_invitation(pb::ResendInvitationRequest {
            invitation_id: inv.id,
        })
        .await
        .unwrap()
        .into_inner()
        .invitation
        .unwrap();
    assert_eq!(resent.send_count, 2);
    let new = env.invitation_token("r@example.com").await;
    assert_ne!(old, new);
    let e = env.try_accept(&old).await.unwrap_err();
    assert_eq!(reason(&e), Reason::InvitationNotFound);
    env.try_accept(&new).await.unwrap();
}

#[tokio::test]
async fn active_members_cannot_be_invited_but_revoked_ones_can() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let manager = env.manager(&account, &owner).await;
    let email = env.identity_user(&manager).await.email;
    let e = invite(&env, &account, &owner, &email).await.unwrap_err();
    assert_eq!(reason(&e), Reason::MemberExists);
    env.as_member(&owner, &account, Role::Owner)
        .revoke_member(pb::RevokeMemberRequest {
            user_id: manager.clone(),
        })
        .await
        .unwrap();
    invite(&env, &account, &owner, &email).await.unwrap();
    let token = env.invitation_token(&email).await;
    env.try_accept(&token).await.unwrap();
    env.get_account_as(&manager, &account, Role::Manager)
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_tokens_are_not_found_and_managers_cannot_invite() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let manager = env.manager(&account, &owner).await;
    let e = anon(&env)
        .accept_invitation(pb::AcceptInvitationRequest {
            token: "tni_nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::InvitationNotFound);
    let e = invite(&env, &account, &manager, "x@example.com")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = invite(&env, &account, &owner, "not-an-email")
        .await
        .unwrap_err();
    assert!(crate::fields(&e).contains(&"email".to_owned()));
}

#[tokio::test]
async fn giving_portal_access_to_an_added_member_emails_an_invitation_to_set_a_password() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let added = env
        .as_member(&owner, &account, Role::Owner)
        .add_member(pb::AddMemberRequest {
            email: "later@example.com".into(),
            name: "Later".into(),
            role: Role::Manager as i32,
            access_scope: Some(all_services()),
        })
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    let r = env
        .as_member(&owner, &account, Role::Owner)
        .set_member_access(pb::SetMemberAccessRequest {
            user_id: added.user_id.clone(),
            access_scope: Some(pb::AccessScope {
                portal_access: true,
                ..Default::default()
            }),
            update_mask: mask(&["portal_access"]),
        })
        .await
        .unwrap()
        .into_inner();
    let inv = r.invitation.unwrap();
    assert_eq!(inv.user_id, added.user_id);
    let token = env.invitation_token("later@example.com").await;
    let accepted = anon(&env)
        .accept_invitation(pb::AcceptInvitationRequest {
            token,
            name: String::new(),
            password: "a long enough password".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(accepted.user_created);
    let m = env
        .as_member(&owner, &account, Role::Owner)
        .get_member(pb::GetMemberRequest {
            user_id: added.user_id,
        })
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert!(m.access_scope.unwrap().portal_access);
}

async fn cancel(
    env: &Env,
    account: &str,
    owner: &str,
    id: &str,
) -> Result<tonic::Response<pb::CancelInvitationResponse>, tonic::Status> {
    env.as_member(owner, account, Role::Owner)
        .cancel_invitation(pb::CancelInvitationRequest {
            invitation_id: id.to_owned(),
        })
        .await
}

#[tokio::test]
async fn cancelling_twice_answers_the_same_and_accepted_invitations_cannot_be_cancelled_or_resent()
{
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    env.user("twice@example.com").await;
    let inv = invite(&env, &account, &owner, "twice@example.com")
        .await
        .unwrap();
    let first = cancel(&env, &account, &owner, &inv.id)
        .await
        .unwrap()
        .into_inner()
        .invitation;
    // The second cancel writes nothing: the same invitation, same close time.
    let again = cancel(&env, &account, &owner, &inv.id)
        .await
        .unwrap()
        .into_inner()
        .invitation;
    assert_eq!(again, first);
    // Another account's owner does not find it.
    let (other, other_owner) = env.account().await;
    let e = cancel(&env, &other, &other_owner, &inv.id)
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::InvitationNotFound);
    // Once accepted, neither cancel nor resend applies (the resend limit
    // long past).
    env.user("used@example.com").await;
    let used = invite(&env, &account, &owner, "used@example.com")
        .await
        .unwrap();
    let token = env.invitation_token("used@example.com").await;
    env.try_accept(&token).await.unwrap();
    let e = cancel(&env, &account, &owner, &used.id).await.unwrap_err();
    assert_eq!(reason(&e), Reason::InvitationUsed);
    env.clock.advance(Duration::from_secs(61));
    let e = env
        .as_member(&owner, &account, Role::Owner)
        .resend_invitation(pb::ResendInvitationRequest {
            invitation_id: used.id,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::InvitationUsed);
}

#[tokio::test]
async fn an_invitation_whose_email_cannot_be_sent_is_withdrawn_and_a_retry_sends_a_new_one() {
    let mut env = Env::new().await;
    let (account, owner) = env.account().await;
    env.peers
        .stop(tenancy_runtime::config::ServiceName::Contacts)
        .await;
    let e = invite(&env, &account, &owner, "late@example.com")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    // The invitation nobody received a link for is not left pending.
    let invitations = env
        .as_member(&owner, &account, Role::Owner)
        .list_invitations(pb::ListInvitationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .invitations;
    let states: Vec<i32> = invitations.iter().map(|i| i.state).collect();
    assert_eq!(states, [pb::InvitationState::Cancelled as i32]);

    env.peers
        .restart(tenancy_runtime::config::ServiceName::Contacts)
        .await;
    // The retry is a new invitation (not INVITATION_PENDING), and its link
    // works.
    let inv = invite(&env, &account, &owner, "late@example.com")
        .await
        .unwrap();
    assert_eq!(inv.state, pb::InvitationState::Pending as i32);
    let token = env.invitation_token("late@example.com").await;
    let accepted = anon(&env)
        .accept_invitation(pb::AcceptInvitationRequest {
            token,
            name: "Late Person".into(),
            password: "a long enough password".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(accepted.account_id, account);
}
