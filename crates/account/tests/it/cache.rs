//! The access cache of CheckAccess and BatchCheckAccess never serves an
//! answer older than a change: each kind of change (role, status, scope,
//! grants, catalogue, membership) is seen by the next check on the replica
//! that made it, and by another replica within a second.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database};
use tenancy_proto::account as pb;
use tenancy_testkit::Role;

use crate::access::register;
use crate::{Env, Internal, all_services, mask};

use pb::AccessReason as R;

/// CheckAccess and BatchCheckAccess on one service at MANAGE; both must
/// agree. Returns (allowed, reason).
async fn decide(internal: &mut Internal, user: &str, account: &str, service: &str) -> (bool, R) {
    let one = check(internal, user, account, service).await;
    let batch = internal
        .batch_check_access(pb::BatchCheckAccessRequest {
            user_id: user.into(),
            account_id: account.into(),
            service_ids: vec![service.into()],
            level: pb::AccessLevel::Manage as i32,
            include_accessible_service_ids: true,
        })
        .await
        .unwrap()
        .into_inner();
    let b = &batch.results[0];
    assert_eq!(
        (one.allowed, one.reason),
        (b.allowed, b.reason),
        "batch agrees"
    );
    (one.allowed, R::try_from(one.reason).unwrap())
}

async fn set_scope(env: &Env, account: &str, owner: &str, user: &str, scope: pb::AccessScope) {
    env.as_member(owner, account, Role::Owner)
        .set_member_access(pb::SetMemberAccessRequest {
            user_id: user.into(),
            access_scope: Some(scope),
            update_mask: mask(&["*"]),
        })
        .await
        .unwrap();
}

fn none() -> pb::AccessScope {
    pb::AccessScope {
        portal_access: true,
        service_access: pb::ServiceAccess::None as i32,
        ..Default::default()
    }
}

#[tokio::test]
async fn suspension_and_reactivation_are_seen_at_once() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let mut internal = env.internal();
    let web = register(&mut internal, &account, "web", &[]).await;
    let manager = env.manager(&account, &owner).await;
    assert_eq!(
        decide(&mut internal, &manager, &account, &web).await,
        (true, R::AllServices)
    );
    let c = env.as_member(&owner, &account, Role::Owner);
    c.clone()
        .suspend_member(pb::SuspendMemberRequest {
            user_id: manager.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        decide(&mut internal, &manager, &account, &web).await,
        (false, R::DeniedNotActive)
    );
    c.clone()
        .reactivate_member(pb::ReactivateMemberRequest {
            user_id: manager.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        decide(&mut internal, &manager, &account, &web).await,
        (true, R::AllServices)
    );
    c.clone()
        .revoke_member(pb::RevokeMemberRequest {
            user_id: manager.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        decide(&mut internal, &manager, &account, &web).await,
        (false, R::DeniedNotMember)
    );
}

#[tokio::test]
async fn role_changes_are_seen_at_once() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let mut internal = env.internal();
    let web = register(&mut internal, &account, "web", &[]).await;
    let manager = env.join(&account, &owner, Role::Manager, none()).await;
    assert_eq!(
        decide(&mut internal, &manager, &account, &web).await,
        (false, R::DeniedNoAccess)
    );
    let c = env.as_member(&owner, &account, Role::Owner);
    for (role, expected) in [
        (Role::Owner, (true, R::Owner)),
        (Role::Manager, (false, R::DeniedNoAccess)),
    ] {
        c.clone()
            .change_member_role(pb::ChangeMemberRoleRequest {
                user_id: manager.clone(),
                role: role as i32,
            })
            .await
            .unwrap();
        assert_eq!(
            decide(&mut internal, &manager, &account, &web).await,
            expected,
            "{role:?}"
        );
    }
}

#[tokio::test]
async fn scope_and_grant_changes_are_seen_at_once() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let mut internal = env.internal();
    let web = register(&mut internal, &account, "web", &["prod"]).await;
    let manager = env.manager(&account, &owner).await;
    assert_eq!(
        decide(&mut internal, &manager, &account, &web).await,
        (true, R::AllServices)
    );
    let steps = [
        (
            "portal access withdrawn",
            pb::AccessScope {
                portal_access: false,
                ..all_services()
            },
            (false, R::DeniedNoPortalAccess),
        ),
        ("service access NONE", none(), (false, R::DeniedNoAccess)),
        (
            "selected",
            pb::AccessScope {
                service_access: pb::ServiceAccess::Selected as i32,
                selected_service_ids: vec![web.clone()],
                ..none()
            },
            (true, R::SelectedService),
        ),
        (
            "selection withdrawn",
            pb::AccessScope {
                service_access: pb::ServiceAccess::Selected as i32,
                ..none()
            },
            (false, R::DeniedNoAccess),
        ),
        (
            "resource grant",
            pb::AccessScope {
                resource_grants: vec![pb::ResourceGrant {
                    service_id: web.clone(),
                    level: pb::AccessLevel::Manage as i32,
                }],
                ..none()
            },
            (true, R::ResourceGrant),
        ),
        (
            "resource grant lowered",
            pb::AccessScope {
                resource_grants: vec![pb::ResourceGrant {
                    service_id: web.clone(),
                    level: pb::AccessLevel::View as i32,
                }],
                ..none()
            },
            (false, R::DeniedInsufficientLevel),
        ),
        (
            "tag grant",
            pb::AccessScope {
                tag_grants: vec![pb::TagGrant {
                    tag: "prod".into(),
                    level: pb::AccessLevel::Manage as i32,
                }],
                ..none()
            },
            (true, R::TagGrant),
        ),
        ("tag grant withdrawn", none(), (false, R::DeniedNoAccess)),
    ];
    for (step, scope, expected) in steps {
        set_scope(&env, &account, &owner, &manager, scope).await;
        assert_eq!(
            decide(&mut internal, &manager, &account, &web).await,
            expected,
            "{step}"
        );
    }
}

#[tokio::test]
async fn catalogue_changes_are_seen_at_once() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let mut internal = env.internal();
    let first = register(&mut internal, &account, "first", &[]).await;
    let manager = env
        .join(
            &account,
            &owner,
            Role::Manager,
            pb::AccessScope {
                tag_grants: vec![pb::TagGrant {
                    tag: "prod".into(),
                    level: pb::AccessLevel::Manage as i32,
                }],
                ..none()
            },
        )
        .await;
    // The catalogue is cached now; a new service is seen at once.
    assert_eq!(
        decide(&mut internal, &manager, &account, &first).await,
        (false, R::DeniedNoAccess)
    );
    let web = register(&mut internal, &account, "web", &["prod"]).await;
    assert_eq!(
        decide(&mut internal, &manager, &account, &web).await,
        (true, R::TagGrant)
    );
    let retag = |tags: &[&str]| pb::UpdateServiceRequest {
        service: Some(pb::Service {
            id: web.clone(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            ..Default::default()
        }),
        update_mask: mask(&["tags"]),
    };
    internal.update_service(retag(&["dev"])).await.unwrap();
    assert_eq!(
        decide(&mut internal, &manager, &account, &web).await,
        (false, R::DeniedNoAccess)
    );
    internal.update_service(retag(&["prod"])).await.unwrap();
    assert_eq!(
        decide(&mut internal, &manager, &account, &web).await,
        (true, R::TagGrant)
    );
    internal
        .delete_service(pb::DeleteServiceRequest {
            service_id: web.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        decide(&mut internal, &manager, &account, &web).await,
        (false, R::DeniedServiceNotFound)
    );
}

#[tokio::test]
async fn a_new_member_is_seen_at_once() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let mut internal = env.internal();
    let web = register(&mut internal, &account, "web", &[]).await;
    let email = "newcomer@example.com";
    let user = env.user(email).await;
    // Not a member yet: the negative answer is cached too.
    assert_eq!(
        decide(&mut internal, &user, &account, &web).await,
        (false, R::DeniedNotMember)
    );
    env.as_member(&owner, &account, Role::Owner)
        .invite_member(pb::InviteMemberRequest {
            email: email.into(),
            role: Role::Manager as i32,
            access_scope: Some(all_services()),
        })
        .await
        .unwrap();
    env.accept(&env.invitation_token(email).await).await;
    assert_eq!(
        decide(&mut internal, &user, &account, &web).await,
        (true, R::AllServices)
    );
}

/// Proves the answers come from memory (so the tests above test the
/// invalidation): a change written behind the service's back, without a
/// policy log entry, is not seen; one with an entry is seen within a second.
#[tokio::test]
async fn answers_come_from_memory_and_follow_the_policy_log() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let mut internal = env.internal();
    let web = register(&mut internal, &account, "web", &[]).await;
    let manager = env.manager(&account, &owner).await;
    let db = Database::connect(&env.database_url).await.unwrap();
    let set_status = |status: i32| {
        let db = db.clone();
        let sql = format!(
            "UPDATE account_members SET status = {status} WHERE account_id = '{account}' AND user_id = '{manager}'"
        );
        async move { db.execute_unprepared(&sql).await.unwrap() }
    };
    // A suspension written behind the service's back is not seen while the
    // cache is fresh. On a loaded machine the follower's polls can fall
    // more than MAX_STALENESS apart, and then checks read the database (by
    // design): such a round is undone (through the log, as another replica
    // would) and tried again.
    let mut served_from_cache = false;
    for _ in 0..5 {
        // Let the log follower pass the entries written so far (it drops
        // the account again when it reads them), then warm the cache.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let warm = Instant::now();
        while decide(&mut internal, &manager, &account, &web).await != (true, R::AllServices) {
            assert!(
                warm.elapsed() < Duration::from_secs(5),
                "never active again"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        set_status(2).await;
        if decide(&mut internal, &manager, &account, &web).await == (true, R::AllServices) {
            served_from_cache = true;
            break;
        }
        set_status(1).await;
        append_log_entry(&db, &account).await;
    }
    assert!(served_from_cache, "never served from the cache in 5 rounds");
    append_log_entry(&db, &account).await;
    // While the follower catches up, a poll may land between the single
    // and the batched check, so only the single one is polled here; both
    // must agree once the change is seen.
    let start = Instant::now();
    while check(&mut internal, &manager, &account, &web).await.allowed {
        assert!(start.elapsed() < Duration::from_millis(1500), "still stale");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!decide(&mut internal, &manager, &account, &web).await.0);
}

/// A policy-log entry for `account`, as another replica's change writes.
async fn append_log_entry(db: &sea_orm::DatabaseConnection, account: &str) {
    db.execute_unprepared(&format!(
        "INSERT INTO account_policy_log (position, event_time, account_id, event_kind, payload) \
         SELECT position + 1, 0, '{account}', 4, '' FROM account_policy_head WHERE id = 1"
    ))
    .await
    .unwrap();
    db.execute_unprepared("UPDATE account_policy_head SET position = position + 1 WHERE id = 1")
        .await
        .unwrap();
}

/// CheckAccess alone on one service at MANAGE.
async fn check(
    internal: &mut Internal,
    user: &str,
    account: &str,
    service: &str,
) -> pb::CheckAccessResponse {
    internal
        .check_access(pb::CheckAccessRequest {
            user_id: user.into(),
            account_id: account.into(),
            target: Some(pb::check_access_request::Target::ServiceId(service.into())),
            level: pb::AccessLevel::Manage as i32,
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn another_replica_sees_a_suspension_within_a_second() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let mut internal = env.internal();
    let web = register(&mut internal, &account, "web", &[]).await;
    let manager = env.manager(&account, &owner).await;
    let replica = env.replica().await;
    let mut other = replica.internal();
    assert_eq!(
        decide(&mut other, &manager, &account, &web).await,
        (true, R::AllServices),
        "warm on the other replica"
    );
    env.suspend(&owner, &account, &manager).await.unwrap();
    // Only the single check is polled: while the follower catches up, it
    // may drop the account between a single and a batched check; both must
    // agree once the change is seen.
    let start = Instant::now();
    while check(&mut other, &manager, &account, &web).await.allowed {
        // One second of staleness at most, plus scheduling slack on a busy
        // test machine.
        assert!(start.elapsed() < Duration::from_millis(1500), "still stale");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        decide(&mut other, &manager, &account, &web).await,
        (false, R::DeniedNotActive)
    );
}
