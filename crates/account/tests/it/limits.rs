//! Issue 21 §6: every repeated request field has a documented limit,
//! refused at the edge with INVALID_ARGUMENT reason LIST_TOO_LONG naming
//! the field, before any entry is looked at.

use tenancy_proto::account as pb;
use tenancy_testkit::{Reason, Role};
use tonic::Code;

use crate::{Env, fields, mask, reason};

/// `status` is INVALID_ARGUMENT LIST_TOO_LONG naming exactly `field`.
#[track_caller]
fn too_long(status: &tonic::Status, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(reason(status), Reason::ListTooLong, "{status:?}");
    assert_eq!(fields(status), [field.to_owned()], "{status:?}");
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|_| uuid::Uuid::new_v4().to_string()).collect()
}

#[tokio::test]
async fn access_scope_lists_are_refused_beyond_their_limits() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let c = env.as_member(&owner, &account, Role::Owner);
    let add = |scope: pb::AccessScope| {
        let mut c = c.clone();
        async move {
            c.add_member(pb::AddMemberRequest {
                email: "big@example.com".into(),
                name: "Big".into(),
                role: Role::Manager as i32,
                access_scope: Some(scope),
            })
            .await
            .unwrap_err()
        }
    };
    // 40,000 ids: once a quadratic duplicate check before the limit.
    let e = add(pb::AccessScope {
        service_access: pb::ServiceAccess::Selected as i32,
        selected_service_ids: ids(40_000),
        ..Default::default()
    })
    .await;
    too_long(&e, "access_scope.selected_service_ids");
    let e = add(pb::AccessScope {
        service_access: pb::ServiceAccess::Selected as i32,
        selected_service_ids: ids(1001),
        ..Default::default()
    })
    .await;
    too_long(&e, "access_scope.selected_service_ids");
    let e = add(pb::AccessScope {
        service_access: pb::ServiceAccess::None as i32,
        resource_grants: ids(1001)
            .into_iter()
            .map(|service_id| pb::ResourceGrant {
                service_id,
                level: pb::AccessLevel::View as i32,
            })
            .collect(),
        ..Default::default()
    })
    .await;
    too_long(&e, "access_scope.resource_grants");
    let e = add(pb::AccessScope {
        service_access: pb::ServiceAccess::None as i32,
        tag_grants: (0..101)
            .map(|k| pb::TagGrant {
                tag: format!("t{k}"),
                level: pb::AccessLevel::View as i32,
            })
            .collect(),
        ..Default::default()
    })
    .await;
    too_long(&e, "access_scope.tag_grants");
    // At the limit it is the entries' turn (unknown services here); the
    // first 20 are named (a thousand would not fit in the headers).
    let e = add(pb::AccessScope {
        service_access: pb::ServiceAccess::Selected as i32,
        selected_service_ids: ids(1000),
        ..Default::default()
    })
    .await;
    assert_eq!(reason(&e), Reason::ServiceIdUnknown);
    assert_eq!(fields(&e).len(), 20);
    assert_eq!(fields(&e)[0], "access_scope.selected_service_ids[0]");
    // SetMemberAccess parses the same scope.
    let e = c
        .clone()
        .set_member_access(pb::SetMemberAccessRequest {
            user_id: owner.clone(),
            access_scope: Some(pb::AccessScope {
                tag_grants: (0..5000)
                    .map(|k| pb::TagGrant {
                        tag: format!("t{k}"),
                        level: pb::AccessLevel::View as i32,
                    })
                    .collect(),
                ..Default::default()
            }),
            update_mask: mask(&["tag_grants"]),
        })
        .await
        .unwrap_err();
    too_long(&e, "access_scope.tag_grants");
}

#[tokio::test]
async fn list_filters_masks_and_tags_are_refused_beyond_their_limits() {
    let env = Env::new().await;
    let (account, owner) = env.account().await;
    let c = env.as_member(&owner, &account, Role::Owner);
    let e = c
        .clone()
        .list_members(pb::ListMembersRequest {
            statuses: vec![pb::MemberStatus::Active as i32; 11],
            ..Default::default()
        })
        .await
        .unwrap_err();
    too_long(&e, "statuses");
    let e = c
        .clone()
        .list_invitations(pb::ListInvitationsRequest {
            states: vec![1; 11],
            ..Default::default()
        })
        .await
        .unwrap_err();
    too_long(&e, "states");
    let e = c
        .clone()
        .list_services(pb::ListServicesRequest {
            tags: (0..11).map(|k| format!("t{k}")).collect(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    too_long(&e, "tags");
    let e = c
        .clone()
        .update_account(pb::UpdateAccountRequest {
            account: Some(pb::Account::default()),
            update_mask: mask(&["name"; 21]),
        })
        .await
        .unwrap_err();
    too_long(&e, "update_mask.paths");
    let e = c
        .clone()
        .update_account(pb::UpdateAccountRequest {
            account: Some(pb::Account {
                address: Some(pb::PostalAddress {
                    lines: vec!["x".repeat(10); 10_000],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            update_mask: mask(&["address.lines"]),
        })
        .await
        .unwrap_err();
    too_long(&e, "account.address.lines");
    // The internal API: service tags and batch checks.
    let e = env
        .internal()
        .register_service(pb::RegisterServiceRequest {
            service: Some(pb::Service {
                account_id: account.clone(),
                kind: "vps".into(),
                name: "big".into(),
                tags: (0..51).map(|k| format!("t{k}")).collect(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    too_long(&e, "service.tags");
    let e = env
        .internal()
        .batch_check_access(pb::BatchCheckAccessRequest {
            user_id: owner.clone(),
            account_id: account.clone(),
            service_ids: ids(501),
            level: pb::AccessLevel::View as i32,
            include_accessible_service_ids: false,
        })
        .await
        .unwrap_err();
    too_long(&e, "service_ids");
    let e = env
        .internal()
        .get_default_account(pb::GetDefaultAccountRequest {
            user_id: owner.clone(),
            preferred_account_ids: ids(11),
        })
        .await
        .unwrap_err();
    too_long(&e, "preferred_account_ids");
}
