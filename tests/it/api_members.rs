//! API members (issue 17 §1) through the whole suite, over real gRPC: an
//! owner creates one, issues its tokens and calls with them; it is scoped,
//! suspended and revoked like any member, never an owner, never logs in;
//! source allowlists of API members and of API tokens are enforced by the
//! gateway.

use std::time::{Duration, Instant};

use prost_types::FieldMask;
use tenancy_proto::account::{
    AccessScope, ChangeMemberRoleRequest, CreateApiMemberRequest, GetAccountRequest,
    ListAuditEventsRequest, ListMembersRequest, ListServicesRequest, Member, MemberKind,
    ReactivateMemberRequest, RevokeMemberRequest, SecuritySettings, ServiceAccess,
    SetMemberAccessRequest, SuspendMemberRequest, UpdateApiMemberRequest,
    UpdateSecuritySettingsRequest,
};
use tenancy_proto::auth::Role;
use tenancy_proto::identity::identity_service_client::IdentityServiceClient;
use tenancy_proto::identity::{
    CreateApiTokenRequest, GetMeRequest, ListApiTokensRequest, LoginRequest,
    RequestPasswordResetRequest, SwitchAccountRequest,
};
use tenancy_runtime::Reason;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::gateway::{Suite, reason, user_of};

/// Creates an API member ("terraform", service access ALL) as `owner`.
async fn api_member(suite: &Suite, owner: &str, source_allowlist: &[&str]) -> Member {
    suite
        .account(owner)
        .create_api_member(CreateApiMemberRequest {
            name: "terraform".into(),
            description: "CI pipeline of the infrastructure repository".into(),
            access_scope: Some(AccessScope {
                service_access: ServiceAccess::All as i32,
                ..Default::default()
            }),
            source_allowlist: source_allowlist.iter().map(|s| (*s).to_owned()).collect(),
        })
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap()
}

/// An API token for `member_id` (empty: the owner's own), issued by
/// `owner`; returns its secret.
async fn token_for(suite: &Suite, owner: &str, member_id: &str, allowlist: &[&str]) -> String {
    suite
        .identity(owner)
        .create_api_token(CreateApiTokenRequest {
            name: "deploy".into(),
            member_id: member_id.into(),
            source_allowlist: allowlist.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .secret
}

/// A call an API token may make (ListServices).
async fn list_services(suite: &Suite, token: &str) -> Result<(), tonic::Status> {
    suite
        .account(token)
        .list_services(ListServicesRequest::default())
        .await
        .map(|_| ())
}

/// Polls ListServices with `token` until the membership has reached the
/// gateway (no NOT_A_MEMBER any more); returns the first other answer.
async fn settled(suite: &Suite, token: &str) -> Result<(), tonic::Status> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match list_services(suite, token).await {
            Err(status) if reason(&status) == Reason::NotAMember => {
                assert!(Instant::now() < deadline, "never reached the gateway");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
}

/// Polls until `call` answers `want` (within 5 s, for state to propagate).
async fn until<F, Fut>(want: Result<(), Reason>, mut call: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = call().await.map_err(|s| reason(&s));
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{got:?} instead of {want:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn metadata(status: &tonic::Status, key: &str) -> Option<String> {
    status
        .get_details_error_info()
        .and_then(|info| info.metadata.get(key).cloned())
}

#[tokio::test]
async fn an_owner_creates_an_api_member_and_calls_with_the_token_issued_for_it() {
    let suite = Suite::start(|_| {}).await;
    let owner = suite.user("owner@example.com").await;
    let (acme, owner) = suite.account_of(&owner).await;
    let bot = api_member(&suite, &owner, &[]).await;
    assert_eq!(bot.kind, MemberKind::Api as i32);
    assert_eq!(bot.role, Role::Manager as i32);
    assert_eq!(bot.email, "");
    assert_eq!(bot.name, "terraform");
    assert!(!bot.access_scope.as_ref().unwrap().portal_access);

    // Listed among the members, with its kind and description.
    let members = suite
        .account(&owner)
        .list_members(ListMembersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .members;
    let listed = members.iter().find(|m| m.user_id == bot.user_id).unwrap();
    assert_eq!(listed.kind, MemberKind::Api as i32);
    assert_eq!(
        listed.description,
        "CI pipeline of the infrastructure repository"
    );
    let me = members
        .iter()
        .find(|m| m.user_id == user_of(&owner))
        .unwrap();
    assert_eq!(me.kind, MemberKind::Person as i32);

    // The owner issues its token (shown once) and the token acts as it.
    let token = token_for(&suite, &owner, &bot.user_id, &[]).await;
    settled(&suite, &token).await.unwrap();
    let me = suite
        .identity(&token)
        .get_me(GetMeRequest::default())
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(
        (me.id.as_str(), me.email.as_str()),
        (bot.user_id.as_str(), "")
    );
    let listed = suite
        .identity(&owner)
        .list_api_tokens(ListApiTokensRequest {
            user_id: bot.user_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .api_tokens;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].user_id, bot.user_id);
    assert_eq!(listed[0].account_id, acme);

    // Audited.
    let events = suite
        .account(&owner)
        .list_audit_events(ListAuditEventsRequest {
            action: "member.create_api".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 1);

    // Enforced 2FA does not apply to it (no interactive login), even past
    // every deadline; a person's session without 2FA is held to it.
    suite
        .account(&owner)
        .update_security_settings(UpdateSecuritySettingsRequest {
            settings: Some(SecuritySettings {
                enforce_mfa: true,
                mfa_grace_period: Some(prost_types::Duration::default()),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["enforce_mfa".into(), "mfa_grace_period".into()],
            }),
            force: false,
        })
        .await
        .unwrap();
    let refused = suite.account_refusal(&owner).await;
    assert_eq!(reason(&refused), Reason::MfaEnrollmentRequired);
    list_services(&suite, &token).await.unwrap();
}

#[tokio::test]
async fn an_api_member_never_logs_in_never_becomes_an_owner_and_only_owners_issue_its_tokens() {
    let suite = Suite::start(|_| {}).await;
    let owner = suite.user("owner@example.com").await;
    let (acme, owner) = suite.account_of(&owner).await;
    let bot = api_member(&suite, &owner, &[]).await;

    // Never an owner, never portal access.
    let status = suite
        .account(&owner)
        .change_member_role(ChangeMemberRoleRequest {
            user_id: bot.user_id.clone(),
            role: Role::Owner as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status)),
        (Code::FailedPrecondition, Reason::ApiMemberRestricted)
    );
    let status = suite
        .account(&owner)
        .set_member_access(SetMemberAccessRequest {
            user_id: bot.user_id.clone(),
            access_scope: Some(AccessScope {
                portal_access: true,
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["portal_access".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), Reason::ApiMemberRestricted);
    let status = suite
        .account(&owner)
        .create_api_member(CreateApiMemberRequest {
            name: "portal bot".into(),
            access_scope: Some(AccessScope {
                portal_access: true,
                service_access: ServiceAccess::None as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), Reason::ApiMemberRestricted);
    // Its scope changes like anyone's (read-only grants included).
    suite
        .account(&owner)
        .set_member_access(SetMemberAccessRequest {
            user_id: bot.user_id.clone(),
            access_scope: Some(AccessScope {
                service_access: ServiceAccess::None as i32,
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["service_access".into()],
            }),
        })
        .await
        .unwrap();

    // Only owners issue its tokens; a person's id is no API member.
    let manager = suite
        .member(&owner, &acme, "manager@example.com", Role::Manager)
        .await;
    let status = suite
        .identity(&manager)
        .create_api_token(CreateApiTokenRequest {
            name: "mine now".into(),
            member_id: bot.user_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), Reason::RoleTooLow);
    let status = suite
        .identity(&owner)
        .create_api_token(CreateApiTokenRequest {
            name: "as the manager".into(),
            member_id: user_of(&manager),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status)),
        (Code::NotFound, Reason::MemberNotFound)
    );

    // It never logs in: it has no email or password, so no login, reset or
    // session reaches it, and its token cannot open or switch sessions.
    let token = token_for(&suite, &owner, &bot.user_id, &[]).await;
    settled(&suite, &token).await.unwrap();
    let status = IdentityServiceClient::new(suite.gateway.clone())
        .login(LoginRequest {
            email: format!("api:{}", bot.user_id),
            password: "correct horse battery staple".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status)),
        (Code::Unauthenticated, Reason::CredentialsInvalid)
    );
    IdentityServiceClient::new(suite.gateway.clone())
        .request_password_reset(RequestPasswordResetRequest {
            email: format!("api:{}", bot.user_id),
        })
        .await
        .unwrap_err();
    let status = suite
        .identity(&token)
        .switch_account(SwitchAccountRequest {
            account_id: acme.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), Reason::ApiTokenNotAllowed);
    let status = suite
        .identity(&token)
        .create_api_token(CreateApiTokenRequest {
            name: "more".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), Reason::ApiTokenNotAllowed);
}

#[tokio::test]
async fn an_api_members_tokens_are_refused_on_suspension_and_end_with_its_revocation() {
    let suite = Suite::start(|_| {}).await;
    let owner = suite.user("owner@example.com").await;
    let (_, owner) = suite.account_of(&owner).await;
    let bot = api_member(&suite, &owner, &[]).await;
    let token = token_for(&suite, &owner, &bot.user_id, &[]).await;
    settled(&suite, &token).await.unwrap();

    suite
        .account(&owner)
        .suspend_member(SuspendMemberRequest {
            user_id: bot.user_id.clone(),
        })
        .await
        .unwrap();
    // Refused at once (the gateway knows the suspension), then revoked for
    // good (identity revoked it).
    let started = Instant::now();
    let mut suspended_seen = false;
    loop {
        match list_services(&suite, &token).await {
            Ok(()) => {}
            Err(status) => match reason(&status) {
                Reason::MemberSuspended => suspended_seen = true,
                Reason::TokenRevoked => break,
                other => panic!("{other:?}: {status:?}"),
            },
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not revoked within 5 s (suspension seen: {suspended_seen})"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    suite
        .account(&owner)
        .reactivate_member(ReactivateMemberRequest {
            user_id: bot.user_id.clone(),
        })
        .await
        .unwrap();
    let status = list_services(&suite, &token).await.unwrap_err();
    assert_eq!(reason(&status), Reason::TokenRevoked);
    // A new token works again once the reactivation reached the gateway.
    let fresh = token_for(&suite, &owner, &bot.user_id, &[]).await;
    until(Ok(()), || list_services(&suite, &fresh)).await;

    suite
        .account(&owner)
        .revoke_member(RevokeMemberRequest {
            user_id: bot.user_id.clone(),
        })
        .await
        .unwrap();
    until(Err(Reason::TokenRevoked), || list_services(&suite, &fresh)).await;
}

/// No token is issued for a suspended API member (FAILED_PRECONDITION
/// API_MEMBER_SUSPENDED) until it is reactivated, nor ever for a revoked
/// one (MEMBER_REVOKED): identity asks the account service for the
/// member's status.
#[tokio::test]
async fn no_token_is_issued_for_a_suspended_or_revoked_api_member() {
    let suite = Suite::start(|_| {}).await;
    let owner = suite.user("owner@example.com").await;
    let (_, owner) = suite.account_of(&owner).await;
    let bot = api_member(&suite, &owner, &[]).await;
    let issue = || async {
        suite
            .identity(&owner)
            .create_api_token(CreateApiTokenRequest {
                name: "deploy".into(),
                member_id: bot.user_id.clone(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner())
    };
    issue().await.unwrap();

    suite
        .account(&owner)
        .suspend_member(SuspendMemberRequest {
            user_id: bot.user_id.clone(),
        })
        .await
        .unwrap();
    let status = issue().await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(reason(&status), Reason::ApiMemberSuspended);

    suite
        .account(&owner)
        .reactivate_member(ReactivateMemberRequest {
            user_id: bot.user_id.clone(),
        })
        .await
        .unwrap();
    let token = issue().await.unwrap();
    until(Ok(()), || list_services(&suite, &token.secret)).await;

    suite
        .account(&owner)
        .revoke_member(RevokeMemberRequest {
            user_id: bot.user_id.clone(),
        })
        .await
        .unwrap();
    let status = issue().await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(reason(&status), Reason::MemberRevoked);
}

#[tokio::test]
async fn a_token_used_outside_its_source_allowlist_is_refused_by_the_gateway() {
    let suite = Suite::start(|_| {}).await;
    let owner = suite.user("owner@example.com").await;
    let (acme, owner) = suite.account_of(&owner).await;
    // The suite's clients connect from 127.0.0.1.
    let bot = api_member(&suite, &owner, &["203.0.113.0/24", "2001:db8::/32"]).await;
    assert_eq!(bot.source_allowlist, ["203.0.113.0/24", "2001:db8::/32"]);
    let token = token_for(&suite, &owner, &bot.user_id, &[]).await;
    let status = settled(&suite, &token).await.unwrap_err();
    assert_eq!(
        (status.code(), reason(&status)),
        (Code::PermissionDenied, Reason::SourceIpNotAllowed),
        "{status:?}"
    );
    assert_eq!(metadata(&status, "allowlist").as_deref(), Some("member"));
    assert_eq!(metadata(&status, "client_ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        metadata(&status, "account_id").as_deref(),
        Some(acme.as_str())
    );
    // The owner widens it: the gateway follows at once.
    suite
        .account(&owner)
        .update_api_member(UpdateApiMemberRequest {
            user_id: bot.user_id.clone(),
            source_allowlist: vec!["127.0.0.1".into(), "::1".into()],
            update_mask: Some(FieldMask {
                paths: vec!["source_allowlist".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    until(Ok(()), || list_services(&suite, &token)).await;

    // An ordinary token's own list, and the API member's token's own list
    // besides its member's.
    let elsewhere = token_for(&suite, &owner, "", &["192.0.2.0/24"]).await;
    let status = list_services(&suite, &elsewhere).await.unwrap_err();
    assert_eq!(reason(&status), Reason::SourceIpNotAllowed);
    assert_eq!(metadata(&status, "allowlist").as_deref(), Some("token"));
    let here = token_for(&suite, &owner, "", &["127.0.0.0/8"]).await;
    list_services(&suite, &here).await.unwrap();
    let bots_elsewhere = token_for(&suite, &owner, &bot.user_id, &["192.0.2.1"]).await;
    let status = list_services(&suite, &bots_elsewhere).await.unwrap_err();
    assert_eq!(reason(&status), Reason::SourceIpNotAllowed);
    let shown = suite
        .identity(&owner)
        .list_api_tokens(ListApiTokensRequest::default())
        .await
        .unwrap()
        .into_inner()
        .api_tokens;
    assert!(
        shown.iter().any(|t| t.source_allowlist == ["192.0.2.0/24"]),
        "{shown:?}"
    );
    // The account's portal allowlist still never applies to API tokens.
    suite
        .account(&owner)
        .update_security_settings(UpdateSecuritySettingsRequest {
            settings: Some(SecuritySettings {
                ip_allowlist: vec!["127.0.0.1/32".into()],
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["ip_allowlist".into()],
            }),
            force: false,
        })
        .await
        .unwrap();
    suite
        .account(&owner)
        .get_account(GetAccountRequest::default())
        .await
        .unwrap();
    list_services(&suite, &token).await.unwrap();

    // Bad lists are refused at the edge, naming the entry.
    let status = suite
        .identity(&owner)
        .create_api_token(CreateApiTokenRequest {
            name: "typo".into(),
            source_allowlist: vec!["10.0.0.0/8".into(), "10.0.0.300".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status)),
        (Code::InvalidArgument, Reason::CidrInvalid)
    );
    let fields: Vec<String> = status
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["source_allowlist[1]"]);
    let status = suite
        .account(&owner)
        .create_api_member(CreateApiMemberRequest {
            name: "too many".into(),
            access_scope: Some(AccessScope {
                service_access: ServiceAccess::None as i32,
                ..Default::default()
            }),
            source_allowlist: (0..21).map(|i| format!("10.0.{i}.0/24")).collect(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), Reason::AllowlistTooLong);
}
