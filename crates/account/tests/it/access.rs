use tenancy_proto::account as pb;
use tenancy_runtime::Reason;
use tenancy_testkit::Role;
use tonic::Code;

use crate::{Env, Internal, mask, reason};

pub async fn register(internal: &mut Internal, account: &str, name: &str, tags: &[&str]) -> String {
    internal
        .register_service(pb::RegisterServiceRequest {
            service: Some(pb::Service {
                account_id: account.into(),
                kind: "cloud_server".into(),
                name: name.into(),
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .service
        .unwrap()
        .id
}

async fn check(
    internal: &mut Internal,
    user: &str,
    account: &str,
    service: &str,
    level: pb::AccessLevel,
) -> pb::CheckAccessResponse {
    internal
        .check_access(pb::CheckAccessRequest {
            user_id: user.into(),
            account_id: account.into(),
            target: Some(pb::check_access_request::Target::ServiceId(service.into())),
            level: level as i32,
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn check_access_names_the_rule_that_decides() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let mut internal = env.internal();
    let web = register(&mut internal, &account, "web-01", &["prod"]).await;
    let db = register(&mut internal, &account, "db-01", &["Staging"]).await;
    let other = register(&mut internal, &account, "other", &[]).await;
    let manager = env
        .join(
            &account,
            &owner,
            Role::Manager,
            pb::AccessScope {
                service_access: pb::ServiceAccess::Selected as i32,
                selected_service_ids: vec![web.clone()],
                resource_grants: vec![pb::ResourceGrant {
                    service_id: other.clone(),
                    level: pb::AccessLevel::View as i32,
                }],
                tag_grants: vec![pb::TagGrant {
                    tag: "staging".into(),
                    level: pb::AccessLevel::Manage as i32,
                }],
                ..Default::default()
            },
        )
        .await;
    use pb::AccessReason as R;
    let cases = [
        (&owner, &web, pb::AccessLevel::Manage, true, R::Owner),
        (
            &manager,
            &web,
            pb::AccessLevel::Manage,
            true,
            R::SelectedService,
        ),
        (&manager, &db, pb::AccessLevel::Manage, true, R::TagGrant),
        (
            &manager,
            &other,
            pb::AccessLevel::View,
            true,
            R::ResourceGrant,
        ),
        (
            &manager,
            &other,
            pb::AccessLevel::Manage,
            false,
            R::DeniedInsufficientLevel,
        ),
    ];
    for (user, service, level, allowed, why) in cases {
        let r = check(&mut internal, user, &account, service, level).await;
        assert_eq!(
            (r.allowed, r.reason),
            (allowed, why as i32),
            "{service} {level:?}"
        );
    }
    let ghost = uuid::Uuid::now_v7().to_string();
    let r = check(
        &mut internal,
        &manager,
        &account,
        &ghost,
        pb::AccessLevel::View,
    )
    .await;
    assert_eq!(r.reason, R::DeniedServiceNotFound as i32);
    let r = check(&mut internal, &ghost, &account, &web, pb::AccessLevel::View).await;
    assert_eq!(r.reason, R::DeniedNotMember as i32);
    // A tag target: tag grants on it, not on others.
    let r = internal
        .check_access(pb::CheckAccessRequest {
            user_id: manager.clone(),
            account_id: account.clone(),
            target: Some(pb::check_access_request::Target::Tag("prod".into())),
            level: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.reason, R::DeniedNoAccess as i32);
    // Membership only.
    let r = internal
        .check_access(pb::CheckAccessRequest {
            user_id: manager.clone(),
            account_id: account.clone(),
            target: None,
            level: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.reason, R::ActiveMember as i32);
    // Suspension denies.
    env.suspend(&owner, &account, &manager).await.unwrap();
    let r = check(
        &mut internal,
        &manager,
        &account,
        &web,
        pb::AccessLevel::View,
    )
    .await;
    assert_eq!(r.reason, R::DeniedNotActive as i32);
    let e = internal
        .check_access(pb::CheckAccessRequest {
            user_id: String::new(),
            account_id: account.clone(),
            target: None,
            level: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn members_see_only_the_services_they_may_access_and_deleted_services_drop_out() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let mut internal = env.internal();
    let a = register(&mut internal, &account, "a", &["x"]).await;
    let b = register(&mut internal, &account, "b", &[]).await;
    let c = register(&mut internal, &account, "c", &[]).await;
    let manager = env
        .join(
            &account,
            &owner,
            Role::Manager,
            pb::AccessScope {
                service_access: pb::ServiceAccess::Selected as i32,
                selected_service_ids: vec![b.clone()],
                tag_grants: vec![pb::TagGrant {
                    tag: "x".into(),
                    level: 1,
                }],
                ..Default::default()
            },
        )
        .await;
    let listed = env
        .as_member(&manager, &account, Role::Manager)
        .list_services(pb::ListServicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .services;
    assert_eq!(
        listed
            .iter()
            .map(|s| (s.id.clone(), s.access_level))
            .collect::<Vec<_>>(),
        [(a.clone(), 1), (b.clone(), 2)]
    );
    let all = env
        .as_member(&owner, &account, Role::Owner)
        .list_services(pb::ListServicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .services;
    assert_eq!(all.len(), 3);
    let e = env
        .as_member(&manager, &account, Role::Manager)
        .get_service(pb::GetServiceRequest {
            service_id: c.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::ServiceNotFound);
    let batch = internal
        .batch_check_access(pb::BatchCheckAccessRequest {
            user_id: manager.clone(),
            account_id: account.clone(),
            service_ids: vec![a.clone(), b.clone(), c.clone()],
            level: 1,
            include_accessible_service_ids: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        batch.results.iter().map(|r| r.allowed).collect::<Vec<_>>(),
        [true, true, false]
    );
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(batch.accessible_service_ids, expected);
    internal
        .delete_service(pb::DeleteServiceRequest {
            service_id: b.clone(),
        })
        .await
        .unwrap();
    let m = env.member(&owner, &account, &manager).await;
    assert!(m.access_scope.unwrap().selected_service_ids.is_empty());
    // Scope validation: unknown services are refused by index.
    let e = env
        .as_member(&owner, &account, Role::Owner)
        .set_member_access(pb::SetMemberAccessRequest {
            user_id: manager.clone(),
            access_scope: Some(pb::AccessScope {
                service_access: 3,
                selected_service_ids: vec![a.clone(), b.clone()],
                ..Default::default()
            }),
            update_mask: mask(&["service_access", "selected_service_ids"]),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert_eq!(reason(&e), Reason::ServiceIdUnknown);
    assert_eq!(crate::fields(&e), ["access_scope.selected_service_ids[1]"]);
}

#[tokio::test]
async fn external_ids_are_unique_within_an_account() {
    let env = Env::new().await;
    let (account, _) = env.account().await;
    let mut internal = env.internal();
    let req = pb::RegisterServiceRequest {
        service: Some(pb::Service {
            account_id: account.clone(),
            kind: "cloud_storage".into(),
            name: "s".into(),
            external_id: "ord-1".into(),
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let first = internal
        .register_service(req.clone())
        .await
        .unwrap()
        .into_inner()
        .service
        .unwrap();
    let e = internal.register_service(req).await.unwrap_err();
    assert_eq!(reason(&e), Reason::ExternalIdInUse);
    let info = tonic_types::StatusExt::get_details_error_info(&e).unwrap();
    assert_eq!(info.metadata["service_id"], first.id);
    let e = internal
        .register_service(pb::RegisterServiceRequest {
            service: Some(pb::Service {
                account_id: account.clone(),
                kind: "Bad Kind".into(),
                name: String::new(),
                tags: vec!["ok".into(), "bad tag".into()],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    let f = crate::fields(&e);
    for field in ["service.kind", "service.name", "service.tags[1]"] {
        assert!(f.contains(&field.to_owned()), "{f:?}");
    }
}

/// Invites the existing user `user` into `account`; they accept.
async fn invite_existing(env: &Env, account: &str, owner: &str, user: &str) {
    let email = env.identity_user(user).await.email;
    env.as_member(owner, account, Role::Owner)
        .invite_member(pb::InviteMemberRequest {
            email: email.clone(),
            role: Role::Manager as i32,
            access_scope: Some(crate::all_services()),
        })
        .await
        .unwrap();
    let token = env.invitation_token(&email).await;
    assert_eq!(env.accept(&token).await, user);
}

#[tokio::test]
async fn the_default_account_is_the_first_usable_preferred_one_else_the_earliest_joined() {
    let env = Env::new().await;
    let (a, owner_a) = env.account().await;
    let user = env.manager(&a, &owner_a).await;
    env.clock.advance(std::time::Duration::from_secs(1));
    let (b, owner_b) = env.account().await;
    invite_existing(&env, &b, &owner_b, &user).await;
    // A membership without portal access is never picked.
    let (c, owner_c) = env.account().await;
    invite_existing(&env, &c, &owner_c, &user).await;
    env.as_member(&owner_c, &c, Role::Owner)
        .set_member_access(pb::SetMemberAccessRequest {
            user_id: user.clone(),
            access_scope: Some(pb::AccessScope::default()),
            update_mask: mask(&["portal_access"]),
        })
        .await
        .unwrap();
    let internal = env.internal();
    let default = |preferred: &[&str]| {
        let request = pb::GetDefaultAccountRequest {
            user_id: user.clone(),
            preferred_account_ids: preferred.iter().map(|id| (*id).to_owned()).collect(),
        };
        let mut internal = internal.clone();
        async move {
            internal
                .get_default_account(request)
                .await
                .unwrap()
                .into_inner()
                .account_id
        }
    };
    assert_eq!(default(&[]).await, a);
    assert_eq!(default(&[&b]).await, b);
    assert_eq!(default(&[&c, &b, &a]).await, b);
    let stranger = uuid::Uuid::now_v7().to_string();
    assert_eq!(default(&[&stranger, &c]).await, a);
    // Suspended in the earliest: the next one joined.
    env.suspend(&owner_a, &a, &user).await.unwrap();
    assert_eq!(default(&[&a]).await, b);
    // A user without any usable membership gets none, not an error.
    let nobody = env
        .internal()
        .get_default_account(pb::GetDefaultAccountRequest {
            user_id: uuid::Uuid::now_v7().to_string(),
            preferred_account_ids: vec![a.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(nobody.account_id, "");
}

#[tokio::test]
async fn the_default_account_needs_a_user_and_at_most_10_preferences() {
    let env = Env::new().await;
    let mut internal = env.internal();
    let e = internal
        .get_default_account(pb::GetDefaultAccountRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(crate::fields(&e), ["user_id"]);
    let e = internal
        .get_default_account(pb::GetDefaultAccountRequest {
            user_id: uuid::Uuid::now_v7().to_string(),
            preferred_account_ids: (0..11).map(|_| uuid::Uuid::now_v7().to_string()).collect(),
        })
        .await
        .unwrap_err();
    assert_eq!(crate::fields(&e), ["preferred_account_ids"]);
}

/// The service catalogue is written by billing and provisioning, each
/// recorded in the audit log under the name its certificate gives it.
#[tokio::test]
async fn catalogue_changes_are_audited_under_the_calling_service() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let mut internal = env.internal();
    register(&mut internal, &account, "web-01", &[]).await;
    let events = env
        .as_member(&owner, &account, Role::Owner)
        .list_audit_events(pb::ListAuditEventsRequest {
            action: "service.".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].actor_kind, pb::ActorKind::Service as i32);
    // The test channel presents the first caller the rule names: billing.
    assert_eq!(events[0].actor_id, "billing");
}

/// Registers a service of `resource_kind` with `tags`; returns its id.
async fn register_kind(
    internal: &mut Internal,
    account: &str,
    name: &str,
    resource_kind: pb::ResourceKind,
    tags: &[&str],
) -> String {
    let service = internal
        .register_service(pb::RegisterServiceRequest {
            service: Some(pb::Service {
                account_id: account.into(),
                kind: "cloud_product".into(),
                name: name.into(),
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
                resource_kind: resource_kind as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .service
        .unwrap();
    assert_eq!(service.resource_kind, resource_kind as i32);
    service.id
}

/// Seed 003: "assign permissions per server, storage, or server tag". For
/// each resource kind, a grant on one resource and a grant on a tag give
/// exactly their level on exactly their services.
#[tokio::test]
async fn check_access_per_resource_and_per_tag_for_servers_and_storage() {
    use pb::AccessLevel::{Manage, View};
    use pb::AccessReason as R;
    use pb::ResourceKind::{Other, Server, Storage};
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let mut internal = env.internal();
    let web = register_kind(&mut internal, &account, "web-01", Server, &["prod"]).await;
    let edge = register_kind(&mut internal, &account, "edge-01", Server, &["eu"]).await;
    let spare = register_kind(&mut internal, &account, "spare-01", Server, &[]).await;
    let backup = register_kind(&mut internal, &account, "backup-01", Storage, &["prod"]).await;
    let volume = register_kind(&mut internal, &account, "vol-01", Storage, &["eu"]).await;
    let bucket = register_kind(&mut internal, &account, "bucket-01", Storage, &[]).await;
    let manager = env
        .join(
            &account,
            &owner,
            Role::Manager,
            pb::AccessScope {
                service_access: pb::ServiceAccess::None as i32,
                resource_grants: vec![
                    pb::ResourceGrant {
                        service_id: web.clone(),
                        level: View as i32,
                    },
                    pb::ResourceGrant {
                        service_id: backup.clone(),
                        level: Manage as i32,
                    },
                ],
                tag_grants: vec![pb::TagGrant {
                    tag: "eu".into(),
                    level: View as i32,
                }],
                ..Default::default()
            },
        )
        .await;
    let cases = [
        // Servers: per resource, per tag, neither.
        (&web, View, true, R::ResourceGrant),
        (&web, Manage, false, R::DeniedInsufficientLevel),
        (&edge, View, true, R::TagGrant),
        (&edge, Manage, false, R::DeniedInsufficientLevel),
        (&spare, View, false, R::DeniedNoAccess),
        // Storage: the same rules.
        (&backup, Manage, true, R::ResourceGrant),
        (&volume, View, true, R::TagGrant),
        (&volume, Manage, false, R::DeniedInsufficientLevel),
        (&bucket, View, false, R::DeniedNoAccess),
    ];
    for (service, level, allowed, why) in cases {
        let r = check(&mut internal, &manager, &account, service, level).await;
        assert_eq!(
            (r.allowed, r.reason),
            (allowed, why as i32),
            "{service} {level:?}"
        );
    }
    // An API member with the same scope is answered the same (it has no
    // portal access, yet its tokens act within its scope).
    let bot = env
        .as_member(&owner, &account, Role::Owner)
        .create_api_member(pb::CreateApiMemberRequest {
            name: "backup agent".into(),
            description: String::new(),
            access_scope: Some(pb::AccessScope {
                service_access: pb::ServiceAccess::None as i32,
                resource_grants: vec![pb::ResourceGrant {
                    service_id: backup.clone(),
                    level: Manage as i32,
                }],
                tag_grants: vec![pb::TagGrant {
                    tag: "eu".into(),
                    level: View as i32,
                }],
                ..Default::default()
            }),
            source_allowlist: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap()
        .user_id;
    for (service, level, allowed, why) in [
        (&backup, Manage, true, R::ResourceGrant),
        (&edge, View, true, R::TagGrant),
        (&web, View, false, R::DeniedNoAccess),
    ] {
        let r = check(&mut internal, &bot, &account, service, level).await;
        assert_eq!(
            (r.allowed, r.reason),
            (allowed, why as i32),
            "API member: {service}"
        );
    }
    // The catalogue lists them by kind, as far as the member reaches.
    let listed = |kind: pb::ResourceKind| {
        let client = env.as_member(&manager, &account, Role::Manager);
        async move {
            let mut client = client;
            let mut names: Vec<String> = client
                .list_services(pb::ListServicesRequest {
                    resource_kind: kind as i32,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .services
                .into_iter()
                .map(|s| s.name)
                .collect();
            names.sort();
            names
        }
    };
    assert_eq!(listed(Server).await, ["edge-01", "web-01"]);
    assert_eq!(listed(Storage).await, ["backup-01", "vol-01"]);
    assert!(listed(Other).await.is_empty());
    // Unstated on registration: OTHER.
    let old = register(&mut internal, &account, "lb-01", &[]).await;
    let owners = env
        .as_member(&owner, &account, Role::Owner)
        .get_service(pb::GetServiceRequest { service_id: old })
        .await
        .unwrap()
        .into_inner()
        .service
        .unwrap();
    assert_eq!(owners.resource_kind, Other as i32);
}
