//! End to end with the real identity and contacts services: the invitation
//! email is read from the contacts outbox and accepted with the token from
//! the message, for a new user and for an existing user.

use tenancy_proto::account as pb;
use tenancy_runtime::Principal;
use tenancy_runtime::Reason;
use tenancy_testkit::Role;

use crate::Env;

#[tokio::test]
async fn invitations_travel_through_the_real_outbox_for_new_and_existing_users() {
    let env = Env::new().await;
    let owner = env.user("owner@example.com").await;
    let created = env
        .as_user(&owner)
        .create_account(pb::CreateAccountRequest {
            account: Some(pb::Account {
                r#type: 2,
                name: "Acme".into(),
                legal_name: "Acme B.V.".into(),
                country_code: "NL".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let account = created.account.unwrap().id;
    assert_eq!(created.member.unwrap().email, "owner@example.com");
    let mut owner_client = env.as_member(&owner, &account, Role::Owner);
    let mut anonymous = env.client(Principal::anonymous(None, "e2e"));

    // A new user.
    owner_client
        .invite_member(pb::InviteMemberRequest {
            email: "newbie@example.com".into(),
            role: Role::Manager as i32,
            access_scope: Some(crate::all_services()),
        })
        .await
        .unwrap();
    let token = env.invitation_token("newbie@example.com").await;
    let accepted = anonymous
        .accept_invitation(pb::AcceptInvitationRequest {
            token: token.clone(),
            name: "New Bie".into(),
            password: "a sufficiently long passphrase".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(accepted.user_created);
    let user = env.identity_user(&accepted.user_id).await;
    assert!(user.password_set);
    assert_eq!(user.name, "New Bie");
    let e = anonymous
        .accept_invitation(pb::AcceptInvitationRequest {
            token,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(crate::reason(&e), Reason::InvitationUsed);

    // An existing user.
    let existing = env.user("existing@example.com").await;
    owner_client
        .invite_member(pb::InviteMemberRequest {
            email: "existing@example.com".into(),
            role: Role::Owner as i32,
            access_scope: None,
        })
        .await
        .unwrap();
    let token = env.invitation_token("existing@example.com").await;
    let accepted = anonymous
        .accept_invitation(pb::AcceptInvitationRequest {
            token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!accepted.user_created);
    assert_eq!(accepted.user_id, existing);
    assert_eq!(accepted.role, Role::Owner as i32);

    // ListMembers shows both with identity's names and emails.
    let members = owner_client
        .list_members(pb::ListMembersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .members;
    let emails: Vec<&str> = members.iter().map(|m| m.email.as_str()).collect();
    assert_eq!(
        emails,
        [
            "owner@example.com",
            "newbie@example.com",
            "existing@example.com"
        ]
    );
}
