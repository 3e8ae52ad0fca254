//! Operator commands: staff, login unlocks, ending sessions, describing
//! users, code-word checks, signing-key rotation, initial passwords.

use tenancy_proto::identity as pb;
use tenancy_runtime::ids::UserId;
use tonic::Request;

use super::{Api, Reply, jwk, member_id, ok, session, user};
use crate::app::admin::UserRef;
use crate::domain::admin::{AdminEvent, Operator};
use crate::domain::error::{IdentityError, Invalid};

/// Who calls an operator method: the certificate's caller and the request
/// id, for the audit.
fn operator<T>(request: &Request<T>) -> Result<Operator, tenancy_runtime::Error> {
    let p = tenancy_runtime::server::principal(request)?;
    Ok(Operator {
        caller: p
            .caller
            .map_or("unspecified", tenancy_runtime::tls::caller_name)
            .to_owned(),
        request_id: p.request_id.clone(),
    })
}

/// An audit entry as DescribeUser shows it.
fn admin_event(e: AdminEvent) -> pb::AdminEvent {
    pb::AdminEvent {
        action: e.action,
        caller: e.caller,
        request_id: e.request_id,
        time: Some(tenancy_runtime::Timestamp(e.time).to_proto()),
        detail: e.detail,
    }
}

pub(super) async fn grant_staff(
    api: &Api,
    request: Request<pb::GrantStaffRequest>,
) -> Reply<pb::GrantStaffResponse> {
    let by = operator(&request)?;
    let found = api
        .app
        .set_staff(&by, &request.get_ref().email, true)
        .await?;
    ok(pb::GrantStaffResponse {
        user: Some(user(found)),
    })
}

pub(super) async fn revoke_staff(
    api: &Api,
    request: Request<pb::RevokeStaffRequest>,
) -> Reply<pb::RevokeStaffResponse> {
    let by = operator(&request)?;
    let found = api
        .app
        .set_staff(&by, &request.get_ref().email, false)
        .await?;
    ok(pb::RevokeStaffResponse {
        user: Some(user(found)),
    })
}

pub(super) async fn unlock_login(
    api: &Api,
    request: Request<pb::UnlockLoginRequest>,
) -> Reply<pb::UnlockLoginResponse> {
    let by = operator(&request)?;
    let (found, cleared) = api.app.unlock_login(&by, &request.get_ref().email).await?;
    ok(pb::UnlockLoginResponse {
        user_id: found.id,
        cleared,
    })
}

pub(super) async fn end_user_sessions(
    api: &Api,
    request: Request<pb::EndUserSessionsRequest>,
) -> Reply<pb::EndUserSessionsResponse> {
    let by = operator(&request)?;
    let (found, sessions_ended) = api
        .app
        .end_user_sessions(
            &by,
            match &request.get_ref().user {
                Some(pb::end_user_sessions_request::User::UserId(id)) => {
                    Some(UserRef::Id(member_id(id)?))
                }
                Some(pb::end_user_sessions_request::User::Email(email)) => {
                    Some(UserRef::Email(email))
                }
                None => None,
            },
        )
        .await?;
    ok(pb::EndUserSessionsResponse {
        user_id: found.id,
        sessions_ended,
    })
}

pub(super) async fn describe_user(
    api: &Api,
    request: Request<pb::DescribeUserRequest>,
) -> Reply<pb::DescribeUserResponse> {
    let (found, sessions, audit) = api
        .app
        .describe_user(match &request.get_ref().user {
            Some(pb::describe_user_request::User::UserId(id)) => Some(UserRef::Id(member_id(id)?)),
            Some(pb::describe_user_request::User::Email(email)) => Some(UserRef::Email(email)),
            None => None,
        })
        .await?;
    ok(pb::DescribeUserResponse {
        user: Some(user(found)),
        sessions: sessions.into_iter().map(|s| session(s, None)).collect(),
        admin_events: audit.into_iter().map(admin_event).collect(),
    })
}

pub(super) async fn verify_code_word(
    api: &Api,
    request: Request<pb::VerifyCodeWordRequest>,
) -> Reply<pb::VerifyCodeWordResponse> {
    let r = request.get_ref();
    if r.staff_user_id.trim().is_empty() {
        let missing =
            IdentityError::invalid(Invalid::StaffUserIdRequired, "staff_user_id", "required");
        return Err(missing.into());
    }
    // A malformed id names no user.
    let user = UserId::parse("user_id", &r.user_id).map_err(|_| IdentityError::UserNotFound)?;
    let check = api
        .app
        .verify_code_word(&user, &r.staff_user_id, &r.account_id, &r.code_word)
        .await?;
    ok(pb::VerifyCodeWordResponse {
        r#match: check.matched,
        code_word_set: check.set,
        remaining_attempts: i32::try_from(check.remaining_attempts).unwrap_or(0),
    })
}

pub(super) async fn rotate_signing_key(
    api: &Api,
    request: Request<pb::RotateSigningKeyRequest>,
) -> Reply<pb::RotateSigningKeyResponse> {
    let by = operator(&request)?;
    let (key, previous_kid) = api
        .app
        .rotate_signing_key(&by, request.into_inner().revoke_current)
        .await?;
    ok(pb::RotateSigningKeyResponse {
        activate_time: Some(key.not_before.to_proto()),
        new_key: Some(jwk(key)),
        previous_kid,
    })
}

pub(super) async fn set_initial_password(
    api: &Api,
    request: Request<pb::SetInitialPasswordRequest>,
) -> Reply<pb::SetInitialPasswordResponse> {
    let r = request.into_inner();
    let found = api
        .app
        .set_initial_password(&r.user_id, &r.password, &r.name)
        .await?;
    ok(pb::SetInitialPasswordResponse {
        user: Some(user(found)),
    })
}
