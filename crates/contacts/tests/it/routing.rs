//! Preferences, ResolveRecipients and Notify, with the real identity and
//! account services beside contacts (see world.rs).

use std::collections::HashMap;

use tenancy_proto::contacts as pb;
use tenancy_proto::contacts::{
    ContactRole, ExclusionReason, MessageTemplate, NotificationCategory as C, RecipientReasonKind,
};
use tenancy_runtime::Reason;
use tenancy_testkit::Role;

use tenancy_proto::account::ServiceAccess;

use crate::contacts::verify;
use crate::support::{Env, id, reason};
use crate::world::World;

fn prefs(list: &[(C, bool)]) -> Vec<pb::NotificationPreference> {
    list.iter()
        .map(|(c, e)| pb::NotificationPreference {
            category: *c as i32,
            enabled: *e,
            locked: false,
        })
        .collect()
}

#[tokio::test]
async fn members_see_defaults_and_security_is_locked_on() {
    let env = Env::start("prefs_defaults").await;
    let api = env.member(&id(), &id(), Role::Manager).await;
    let p = api
        .clone()
        .get_notification_preferences(pb::GetNotificationPreferencesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .notification_preferences
        .unwrap();
    let got: Vec<_> = p
        .preferences
        .iter()
        .map(|x| (x.category, x.enabled, x.locked))
        .collect();
    assert_eq!(
        got,
        [
            (C::Billing as i32, false, false),
            (C::TechnicalIncidents as i32, true, false),
            (C::Maintenance as i32, true, false),
            (C::Security as i32, true, true),
            (C::SupportReplies as i32, true, false),
            (C::Account as i32, true, false),
            (C::Abuse as i32, false, false),
        ]
    );
    assert!(p.update_time.is_none());
    let error = api
        .clone()
        .update_notification_preferences(pb::UpdateNotificationPreferencesRequest {
            user_id: String::new(),
            preferences: prefs(&[(C::Billing, true), (C::Security, false)]),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert_eq!(reason(&error), Reason::NotificationCategoryLocked);
    let p = api
        .clone()
        .update_notification_preferences(pb::UpdateNotificationPreferencesRequest {
            user_id: String::new(),
            preferences: prefs(&[(C::Billing, true), (C::Maintenance, false)]),
        })
        .await
        .unwrap()
        .into_inner()
        .notification_preferences
        .unwrap();
    assert!(p.preferences[0].enabled);
    assert!(!p.preferences[2].enabled);
    assert!(p.update_time.is_some());
    let error = api
        .clone()
        .update_notification_preferences(pb::UpdateNotificationPreferencesRequest {
            user_id: String::new(),
            preferences: prefs(&[(C::Billing, true), (C::Billing, false)]),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn only_an_owner_sets_another_members_preferences() {
    let mut world = World::start("prefs_owner", "owner@example.com").await;
    let manager = world.member("m@example.com", ServiceAccess::All).await;
    let outsider = world.user("outsider@example.com").await;
    let (env, account, owner) = (&world.env, world.account_id.clone(), world.owner.clone());
    let as_manager = env.member(&id(), &account, Role::Manager).await;
    let error = as_manager
        .clone()
        .get_notification_preferences(pb::GetNotificationPreferencesRequest {
            user_id: manager.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::PermissionDenied);
    assert_eq!(reason(&error), Reason::RoleTooLow);
    let as_owner = env.member(&owner, &account, Role::Owner).await;
    as_owner
        .clone()
        .update_notification_preferences(pb::UpdateNotificationPreferencesRequest {
            user_id: manager.clone(),
            preferences: prefs(&[(C::Abuse, true)]),
        })
        .await
        .unwrap();
    let p = env
        .member(&manager, &account, Role::Manager)
        .await
        .get_notification_preferences(pb::GetNotificationPreferencesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .notification_preferences
        .unwrap();
    assert!(p.preferences[6].enabled);
    let error = as_owner
        .clone()
        .get_notification_preferences(pb::GetNotificationPreferencesRequest { user_id: outsider })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::NotFound);
    assert_eq!(reason(&error), Reason::MemberNotFound);
}

#[tokio::test]
async fn recipients_come_from_verified_contact_roles_and_member_preferences_deduplicated() {
    let mut world = World::start("resolve", "alice@example.com").await;
    let alice = world.owner.clone();
    let bob = world.member("bob@example.com", ServiceAccess::None).await;
    let sus = world.user("sus@example.com").await;
    // A member who has not accepted is addressed by the id AddMember showed.
    let added = world.add_member(&sus, ServiceAccess::All, &[]).await;
    world.suspend(&added.user_id).await;
    let (env, account) = (&world.env, world.account_id.clone());
    let api = env.member(&alice, &account, Role::Owner).await;
    // Alice opts in to billing; she is also the (verified) billing contact.
    api.clone()
        .update_notification_preferences(pb::UpdateNotificationPreferencesRequest {
            user_id: String::new(),
            preferences: prefs(&[(C::Billing, true)]),
        })
        .await
        .unwrap();
    api.clone()
        .create_contact(pb::CreateContactRequest {
            contact: Some(pb::Contact {
                name: "Alice".into(),
                email: "ALICE@example.com".into(),
                roles: vec![ContactRole::Billing as i32],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    api.clone()
        .create_contact(pb::CreateContactRequest {
            contact: Some(pb::Contact {
                name: "Unverified".into(),
                email: "unverified@example.com".into(),
                roles: vec![ContactRole::Billing as i32],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    verify(env, "alice@example.com").await;
    let internal = env.internal().await;
    let r = internal
        .clone()
        .resolve_recipients(pb::ResolveRecipientsRequest {
            account_id: account.clone(),
            category: C::Billing as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.recipients.len(), 1, "{r:?}");
    let alice_r = &r.recipients[0];
    let kinds: Vec<_> = alice_r.reasons.iter().map(|x| x.kind).collect();
    // Primary + billing contact, and her preference.
    assert_eq!(
        kinds,
        [
            RecipientReasonKind::ContactRole as i32,
            RecipientReasonKind::ContactRole as i32,
            RecipientReasonKind::UserPreference as i32
        ]
    );
    assert_eq!(
        alice_r.name, "alice",
        "the user's name (from identity) comes first"
    );
    assert_eq!(r.excluded.len(), 1);
    assert_eq!(
        r.excluded[0].reason,
        ExclusionReason::ContactEmailUnverified as i32
    );

    // Security reaches every ACTIVE member (not the suspended one).
    let r = internal
        .clone()
        .resolve_recipients(pb::ResolveRecipientsRequest {
            account_id: account.clone(),
            category: C::Security as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let emails: Vec<_> = r.recipients.iter().map(|x| x.email.as_str()).collect();
    assert_eq!(emails, ["ALICE@example.com", "bob@example.com"]);
    assert!(r.recipients[1].reasons[0].kind == RecipientReasonKind::Mandatory as i32);

    // Extra recipients: a suspended user is left out, a plain address kept.
    let r = internal
        .clone()
        .resolve_recipients(pb::ResolveRecipientsRequest {
            account_id: account.clone(),
            category: C::SupportReplies as i32,
            extra_recipients: vec![
                pb::ExtraRecipient {
                    user_id: sus.clone(),
                    email: "sus@example.com".into(),
                    name: String::new(),
                },
                pb::ExtraRecipient {
                    user_id: String::new(),
                    email: "cc@example.com".into(),
                    name: "CC".into(),
                },
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let emails: Vec<_> = r.recipients.iter().map(|x| x.email.as_str()).collect();
    assert_eq!(emails, ["cc@example.com"]);
    assert_eq!(
        r.excluded[0].reason,
        ExclusionReason::MemberNotActive as i32
    );

    // Service filter: bob's access scope is NONE.
    let service = world.register_service("vps-1").await;
    let r = internal
        .clone()
        .resolve_recipients(pb::ResolveRecipientsRequest {
            account_id: account.clone(),
            category: C::Maintenance as i32,
            service_id: service,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        r.excluded
            .iter()
            .any(|e| e.user_id == bob && e.reason == ExclusionReason::NoServiceAccess as i32)
    );
    let error = internal
        .clone()
        .resolve_recipients(pb::ResolveRecipientsRequest {
            account_id: id(),
            category: C::Billing as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&error), Reason::AccountNotFound);
    // A malformed id is named once, with what is wrong with it.
    let error = internal
        .clone()
        .resolve_recipients(pb::ResolveRecipientsRequest {
            account_id: "not-a-uuid".into(),
            category: C::Billing as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&error), Reason::FieldInvalid);
    assert_eq!(crate::support::fields(&error), ["account_id"]);
    assert_eq!(error.message(), "account_id: must be a UUID");
}

#[tokio::test]
async fn notify_queues_one_message_per_recipient_once_per_key() {
    let mut world = World::start("notify", "alice@example.com").await;
    world.member("bob@example.com", ServiceAccess::All).await;
    let (env, account) = (&world.env, world.account_id.clone());
    let request = pb::NotifyRequest {
        request_id: "account:2fa-enforced:1".into(),
        account_id: account.clone(),
        category: C::Security as i32,
        template: MessageTemplate::GenericNotification as i32,
        template_data: HashMap::from([
            ("subject".into(), "2FA is now required".into()),
            ("body".into(), "Your account now requires 2FA.".into()),
        ]),
        ..Default::default()
    };
    let internal = env.internal().await;
    let first = internal
        .clone()
        .notify(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.messages.len(), 2);
    assert!(!first.duplicate);
    assert_eq!(first.messages[0].category, C::Security as i32);
    assert_eq!(first.messages[0].subject, "2FA is now required");
    let again = internal
        .clone()
        .notify(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(again.duplicate);
    assert_eq!(again.messages.len(), 2);
    let mut other = request;
    other.category = C::Billing as i32;
    let error = internal.clone().notify(other).await.unwrap_err();
    assert_eq!(reason(&error), Reason::RequestIdReused);
}

#[tokio::test]
async fn notify_is_unavailable_while_the_account_service_is_down_and_queues_nothing() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = Env::start_with("notify_down", |c| {
        c.account.url = Some(format!("http://127.0.0.1:{port}"));
        c.identity.url = Some(format!("http://127.0.0.1:{port}"));
    })
    .await;
    let internal = env.internal().await;
    let error = internal
        .clone()
        .notify(pb::NotifyRequest {
            request_id: "k".into(),
            account_id: id(),
            category: C::Account as i32,
            template: MessageTemplate::GenericNotification as i32,
            template_data: HashMap::from([
                ("subject".into(), "s".into()),
                ("body".into(), "b".into()),
            ]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::Unavailable);
    let listed = internal
        .clone()
        .list_outbox_messages(pb::ListOutboxMessagesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.messages.is_empty());
}

#[tokio::test]
async fn a_support_reply_can_go_to_the_technical_contacts_only() {
    let world = World::start("technical_only", "olga@example.com").await;
    let (env, account) = (&world.env, world.account_id.clone());
    let api = env.member(&world.owner, &account, Role::Owner).await;
    for (name, email, role) in [
        ("Pat", "pat@example.com", ContactRole::Billing),
        ("Tess", "tess@example.com", ContactRole::Technical),
    ] {
        api.clone()
            .create_contact(pb::CreateContactRequest {
                contact: Some(pb::Contact {
                    name: name.into(),
                    email: email.into(),
                    roles: vec![role as i32],
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .unwrap();
        verify(env, email).await;
    }
    let reply = |roles: Vec<i32>| pb::NotifyRequest {
        request_id: format!("support:reply:{}", roles.len()),
        account_id: account.clone(),
        category: C::SupportReplies as i32,
        template: MessageTemplate::GenericNotification as i32,
        template_data: HashMap::from([
            ("subject".into(), "Re: ticket".into()),
            ("body".into(), "Fixed.".into()),
        ]),
        extra_recipients: vec![pb::ExtraRecipient {
            user_id: world.owner.clone(),
            email: "olga@example.com".into(),
            name: String::new(),
        }],
        contact_roles: roles,
        ..Default::default()
    };
    let internal = env.internal().await;
    let to = |r: pb::NotifyResponse| -> Vec<String> {
        r.messages
            .into_iter()
            .map(|m| m.to.unwrap().email)
            .collect()
    };
    // Without roles: the ticket's people only (Pat is also PRIMARY).
    let plain = internal
        .clone()
        .notify(reply(vec![]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(to(plain), ["olga@example.com"]);
    let technical = internal
        .clone()
        .notify(reply(vec![ContactRole::Technical as i32]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(to(technical), ["olga@example.com", "tess@example.com"]);
    for bad in [vec![0], vec![3, 3], vec![99]] {
        let error = internal
            .clone()
            .resolve_recipients(pb::ResolveRecipientsRequest {
                account_id: account.clone(),
                category: C::SupportReplies as i32,
                contact_roles: bad,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert_eq!(crate::support::fields(&error), ["contact_roles"]);
    }
}

#[tokio::test]
async fn repeated_request_fields_are_limited_and_named() {
    let env = Env::start("list_limits").await;
    let account = id();
    let api = env.member(&id(), &account, Role::Manager).await;
    let refused = |error: tonic::Status, field: &str| {
        assert_eq!(error.code(), tonic::Code::InvalidArgument, "{field}");
        assert_eq!(reason(&error), Reason::ListTooLong, "{field}");
        assert_eq!(crate::support::fields(&error), [field]);
    };
    // 100,000 copies of one role: refused whole, not collapsed.
    let error = api
        .clone()
        .create_contact(pb::CreateContactRequest {
            contact: Some(pb::Contact {
                name: "Pat".into(),
                email: "pat@example.com".into(),
                roles: vec![ContactRole::Billing as i32; 100_000],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    refused(error, "contact.roles");
    // Within the limit, repeats still collapse.
    let c = api
        .clone()
        .create_contact(pb::CreateContactRequest {
            contact: Some(pb::Contact {
                name: "Pat".into(),
                email: "pat@example.com".into(),
                roles: vec![ContactRole::Billing as i32; 10],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .contact
        .unwrap();
    assert!(c.roles.contains(&(ContactRole::Billing as i32)));
    let error = api
        .clone()
        .update_notification_preferences(pb::UpdateNotificationPreferencesRequest {
            user_id: String::new(),
            preferences: prefs(&[(C::Billing, true); 100_000]),
        })
        .await
        .unwrap_err();
    refused(error, "preferences");
    let internal = env.internal().await;
    let extra = pb::ExtraRecipient {
        user_id: String::new(),
        email: "x@example.com".into(),
        name: "X".into(),
    };
    let error = internal
        .clone()
        .resolve_recipients(pb::ResolveRecipientsRequest {
            account_id: account.clone(),
            category: C::Security as i32,
            extra_recipients: vec![extra.clone(); 101],
            ..Default::default()
        })
        .await
        .unwrap_err();
    refused(error, "extra_recipients");
    let error = internal
        .clone()
        .resolve_recipients(pb::ResolveRecipientsRequest {
            account_id: account.clone(),
            category: C::Security as i32,
            contact_roles: vec![ContactRole::Billing as i32; 100_000],
            ..Default::default()
        })
        .await
        .unwrap_err();
    refused(error, "contact_roles");
    let error = internal
        .clone()
        .send_email(pb::SendEmailRequest {
            request_id: "test:limits:1".into(),
            to: vec![
                pb::EmailAddress {
                    email: "x@example.com".into(),
                    name: String::new(),
                };
                51
            ],
            template: MessageTemplate::GenericNotification as i32,
            template_data: HashMap::from([
                ("subject".into(), "s".into()),
                ("body".into(), "b".into()),
            ]),
            account_id: String::new(),
        })
        .await
        .unwrap_err();
    refused(error, "to");
    // An extra recipient's name is bounded too.
    let long_name = pb::ExtraRecipient {
        name: "n".repeat(201),
        ..extra
    };
    let error = internal
        .clone()
        .resolve_recipients(pb::ResolveRecipientsRequest {
            account_id: account,
            category: C::Security as i32,
            extra_recipients: vec![long_name],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert_eq!(crate::support::fields(&error), ["extra_recipients[0].name"]);
}
