//! End to end with the REAL identity and contacts services: the invitation
//! email is read from the contacts outbox and accepted with the token from
//! the message, for a new user and for an existing user.

use std::sync::Arc;

use tenancy_account::AccountService;
use tenancy_contacts::ContactsService;
use tenancy_identity::IdentityService;
use tenancy_proto::account as pb;
use tenancy_proto::contacts::{
    self as cpb, contacts_internal_service_client::ContactsInternalServiceClient,
};
use tenancy_proto::identity::{
    self as ipb, identity_internal_service_client::IdentityInternalServiceClient,
};
use tenancy_runtime::{ManualClock, Principal};
use tenancy_testkit::{
    Caller, Role, Running, TestDatabase, member, start, test_config, test_context,
};

struct Real {
    account: Running,
    identity: Running,
    contacts: Running,
    clock: ManualClock,
}

impl Real {
    async fn new() -> Self {
        let db = TestDatabase::new("account_e2e").await;
        let mut config = test_config(&db);
        let clock = ManualClock::starting_now();
        let contacts = start::<ContactsService>(
            test_context(config.clone(), Arc::new(clock.clone())),
            clock.clone(),
        )
        .await;
        config.contacts.url = Some(format!("http://{}", contacts.address));
        let identity = start::<IdentityService>(
            test_context(config.clone(), Arc::new(clock.clone())),
            clock.clone(),
        )
        .await;
        config.identity.url = Some(format!("http://{}", identity.address));
        let account =
            start::<AccountService>(test_context(config, Arc::new(clock.clone())), clock.clone())
                .await;
        Self {
            account,
            identity,
            contacts,
            clock,
        }
    }

    fn service(&self) -> Caller {
        Caller::new(Principal::service("e2e"), Arc::new(self.clock.clone()))
    }

    async fn account_client(&self, principal: Principal) -> crate::Client {
        pb::account_service_client::AccountServiceClient::with_interceptor(
            self.account.channel().await,
            Caller::new(principal, Arc::new(self.clock.clone())),
        )
    }

    async fn identity(
        &self,
    ) -> IdentityInternalServiceClient<
        tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Caller>,
    > {
        IdentityInternalServiceClient::with_interceptor(
            self.identity.channel().await,
            self.service(),
        )
    }

    /// A user with a password, through identity's internal API.
    async fn user_with_password(&self, email: &str) -> String {
        let mut identity = self.identity().await;
        let user = identity
            .ensure_user(ipb::EnsureUserRequest {
                email: email.into(),
                name: "Existing".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap();
        identity
            .set_initial_password(ipb::SetInitialPasswordRequest {
                user_id: user.id.clone(),
                password: "correct horse battery staple".into(),
                name: String::new(),
            })
            .await
            .unwrap();
        user.id
    }

    /// The token from the newest invitation in the contacts outbox.
    async fn token_from_outbox(&self, email: &str) -> String {
        let mut contacts = ContactsInternalServiceClient::with_interceptor(
            self.contacts.channel().await,
            self.service(),
        );
        let messages = contacts
            .list_outbox_messages(cpb::ListOutboxMessagesRequest {
                to_email: email.into(),
                template: cpb::MessageTemplate::Invitation as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .messages;
        let newest = messages.first().expect("an invitation in the outbox");
        let url = &newest.template_data["accept_url"];
        url.split("token=").nth(1).unwrap().to_owned()
    }
}

#[tokio::test]
async fn invitations_travel_through_the_real_outbox_for_new_and_existing_users() {
    let env = Real::new().await;
    let owner = env.user_with_password("owner@example.com").await;
    let created = env
        .account_client(member(&owner, "", Role::Unspecified))
        .await
        .create_account(pb::CreateAccountRequest {
            account: Some(pb::Account {
                r#type: 2,
                name: "Acme".into(),
                legal_name: "Acme B.V.".into(),
                country_code: "NL".into(),
                ..Default::default()
            }),
            idempotency_key: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let account = created.account.unwrap().id;
    assert_eq!(created.member.unwrap().email, "owner@example.com");
    let mut principal = member(&owner, &account, Role::Owner);
    principal.auth_time = Some(tenancy_runtime::Clock::now(&env.clock).seconds());
    let mut owner_client = env.account_client(principal).await;
    let mut anonymous = env.account_client(Principal::anonymous(None, "e2e")).await;

    // A new user.
    owner_client
        .invite_member(pb::InviteMemberRequest {
            email: "newbie@example.com".into(),
            role: Role::Manager as i32,
            access_scope: Some(crate::all_services()),
        })
        .await
        .unwrap();
    let token = env.token_from_outbox("newbie@example.com").await;
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
    let users = env
        .identity()
        .await
        .batch_get_users(ipb::BatchGetUsersRequest {
            user_ids: vec![accepted.user_id.clone()],
        })
        .await
        .unwrap()
        .into_inner()
        .users;
    assert!(users[0].password_set);
    assert_eq!(users[0].name, "New Bie");
    let e = anonymous
        .accept_invitation(pb::AcceptInvitationRequest {
            token,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(crate::reason(&e), "INVITATION_USED");

    // An existing user.
    let existing = env.user_with_password("existing@example.com").await;
    owner_client
        .invite_member(pb::InviteMemberRequest {
            email: "existing@example.com".into(),
            role: Role::Owner as i32,
            access_scope: None,
        })
        .await
        .unwrap();
    let token = env.token_from_outbox("existing@example.com").await;
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
