use tenancy_proto::account as pb;
use tenancy_runtime::Reason;
use tenancy_testkit::Role;
use tonic::Code;

use crate::{Env, fields, mask, reason};

#[tokio::test]
async fn create_account_makes_the_caller_its_first_active_owner() {
    let env = Env::new().await;
    let user = env.user("ann@example.com").await;
    let created = env
        .as_user(&user)
        .create_account(pb::CreateAccountRequest {
            account: Some(pb::Account {
                r#type: pb::AccountType::Individual as i32,
                name: "Ann's".into(),
                country_code: "DE".into(),
                vat_number: "de 123.456.789".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let account = created.account.unwrap();
    assert_eq!(account.vat_number, "DE123456789");
    let member = created.member.unwrap();
    assert_eq!(member.role, Role::Owner as i32);
    assert_eq!(member.status, pb::MemberStatus::Active as i32);
    assert_eq!(member.email, "ann@example.com");
    let scope = member.access_scope.unwrap();
    assert!(scope.portal_access);
    assert_eq!(scope.service_access, pb::ServiceAccess::All as i32);

    let mine = env
        .as_user(&user)
        .list_my_accounts(pb::ListMyAccountsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.memberships.len(), 1);
    assert_eq!(mine.memberships[0].role, Role::Owner as i32);
    assert_eq!(mine.memberships[0].account.as_ref().unwrap().id, account.id);
}

#[tokio::test]
async fn create_account_refuses_invalid_fields_each_named() {
    let env = Env::new().await;
    let user = env.user("ann@example.com").await;
    let error = env
        .as_user(&user)
        .create_account(pb::CreateAccountRequest {
            account: Some(pb::Account {
                r#type: pb::AccountType::Company as i32,
                name: String::new(),
                country_code: "nld".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let f = fields(&error);
    for field in ["account.name", "account.country_code", "account.legal_name"] {
        assert!(f.contains(&field.to_owned()), "{f:?}");
    }
}

#[tokio::test]
async fn create_account_with_the_same_idempotency_key_returns_the_first_account() {
    let env = Env::new().await;
    let user = env.user("ann@example.com").await;
    let request = pb::CreateAccountRequest {
        account: Some(pb::Account {
            r#type: 1,
            name: "A".into(),
            country_code: "NL".into(),
            ..Default::default()
        }),
        request_id: "k1".into(),
    };
    let a = env
        .as_user(&user)
        .create_account(request.clone())
        .await
        .unwrap()
        .into_inner();
    let b = env
        .as_user(&user)
        .create_account(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.account.unwrap().id, b.account.unwrap().id);
    let mut other = request;
    other.account.as_mut().unwrap().name = "B".into();
    let error = env.as_user(&user).create_account(other).await.unwrap_err();
    assert_eq!(reason(&error), Reason::RequestIdReused);
}

#[tokio::test]
async fn owners_and_managers_update_account_details() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let manager = env.manager(&account, &owner).await;
    let updated = env
        .as_member(&owner, &account, Role::Owner)
        .update_account(pb::UpdateAccountRequest {
            account: Some(pb::Account {
                name: "Acme Cloud".into(),
                ..Default::default()
            }),
            update_mask: mask(&["name"]),
        })
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(updated.name, "Acme Cloud");
    assert_eq!(updated.legal_name, "Acme B.V.");
    // Seed 004: a manager has full access to the account but for users.
    let updated = env
        .as_member(&manager, &account, Role::Manager)
        .update_account(pb::UpdateAccountRequest {
            account: Some(pb::Account {
                name: "Acme Hosting".into(),
                vat_number: "NL123456789B01".into(),
                ..Default::default()
            }),
            update_mask: mask(&["name", "vat_number"]),
        })
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(updated.name, "Acme Hosting");
    let got = env
        .as_member(&owner, &account, Role::Owner)
        .get_account(pb::GetAccountRequest {})
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(
        (got.name.as_str(), got.vat_number.as_str()),
        ("Acme Hosting", "NL123456789B01")
    );
}

#[tokio::test]
async fn a_manager_whose_token_claims_owner_is_still_refused_by_live_role() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let manager = env.manager(&account, &owner).await;
    let error = env
        .as_member(&manager, &account, Role::Owner)
        .invite_member(pb::InviteMemberRequest {
            email: "friend@example.com".into(),
            role: Role::Owner as i32,
            access_scope: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (error.code(), reason(&error)),
        (Code::PermissionDenied, Reason::RoleTooLow)
    );
}

#[tokio::test]
async fn update_account_refuses_an_empty_or_unknown_mask() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    for paths in [&[][..], &["id"][..], &["create_time"][..]] {
        let error = env
            .as_member(&owner, &account, Role::Owner)
            .update_account(pb::UpdateAccountRequest {
                account: Some(pb::Account::default()),
                update_mask: mask(paths),
            })
            .await
            .unwrap_err();
        assert_eq!(reason(&error), Reason::UpdateMaskInvalid, "{paths:?}");
    }
}

#[tokio::test]
async fn audit_log_records_changes_with_actor_and_address_for_owners_only() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let manager = env.manager(&account, &owner).await;
    env.as_member(&owner, &account, Role::Owner)
        .update_account(pb::UpdateAccountRequest {
            account: Some(pb::Account {
                name: "Renamed".into(),
                ..Default::default()
            }),
            update_mask: mask(&["name"]),
        })
        .await
        .unwrap();
    let events = env
        .as_member(&owner, &account, Role::Owner)
        .list_audit_events(pb::ListAuditEventsRequest {
            action: "account.".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(
        events.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["account.update", "account.create"]
    );
    let update = &events[0];
    assert_eq!(update.actor_id, owner);
    assert_eq!(update.client_ip, "203.0.113.7");
    assert!(update.before.as_ref().unwrap().fields.contains_key("name"));
    // Pagination, newest first, one per page.
    let first = env
        .as_member(&owner, &account, Role::Owner)
        .list_audit_events(pb::ListAuditEventsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let second = env
        .as_member(&owner, &account, Role::Owner)
        .list_audit_events(pb::ListAuditEventsRequest {
            page_size: 1,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(first.events[0].id, second.events[0].id);
    let error = env
        .as_member(&owner, &account, Role::Owner)
        .list_audit_events(pb::ListAuditEventsRequest {
            page_size: 1,
            page_token: first.next_page_token,
            action: "member.".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&error), Reason::PageTokenInvalid);
    let error = env
        .as_member(&manager, &account, Role::Manager)
        .list_audit_events(pb::ListAuditEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn other_services_record_audit_events_once_per_idempotency_key() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let event = pb::AuditEvent {
        account_id: account.clone(),
        actor_kind: pb::ActorKind::Staff as i32,
        actor_id: "staff-1".into(),
        action: "ticket.read".into(),
        target_type: "ticket".into(),
        target_id: "t1".into(),
        ..Default::default()
    };
    let a = env
        .internal()
        .record_audit_event(pb::RecordAuditEventRequest {
            event: Some(event.clone()),
            request_id: "x".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let b = env
        .internal()
        .record_audit_event(pb::RecordAuditEventRequest {
            event: Some(event.clone()),
            request_id: "x".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.event.unwrap().id, b.event.unwrap().id);
    let listed = env
        .as_member(&owner, &account, Role::Owner)
        .list_audit_events(pb::ListAuditEventsRequest {
            actor_kind: pb::ActorKind::Staff as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(listed.len(), 1);
    let error = env
        .internal()
        .record_audit_event(pb::RecordAuditEventRequest {
            event: Some(pb::AuditEvent {
                action: "Bad Action".into(),
                ..event.clone()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert!(fields(&error).contains(&"event.action".to_owned()));
    let error = env
        .internal()
        .record_audit_event(pb::RecordAuditEventRequest {
            event: Some(pb::AuditEvent {
                account_id: uuid::Uuid::now_v7().to_string(),
                ..event
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&error), Reason::AccountNotFound);
}
