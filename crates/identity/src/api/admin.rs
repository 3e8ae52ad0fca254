//! Operator commands: staff, login unlocks, ending sessions, describing
//! users, code-word checks, signing-key rotation, initial passwords.

use tenancy_proto::identity as pb;
use tonic::Request;

use super::{Api, Reply, member_id, ok, user};
use crate::app::admin::UserRef;

pub(super) async fn grant_staff(
    api: &Api,
    request: Request<pb::GrantStaffRequest>,
) -> Reply<pb::GrantStaffResponse> {
    let found = api.app.set_staff(&request.get_ref().email, true).await?;
    ok(pb::GrantStaffResponse {
        user: Some(user(found)),
    })
}

pub(super) async fn revoke_staff(
    api: &Api,
    request: Request<pb::RevokeStaffRequest>,
) -> Reply<pb::RevokeStaffResponse> {
    let found = api.app.set_staff(&request.get_ref().email, false).await?;
    ok(pb::RevokeStaffResponse {
        user: Some(user(found)),
    })
}

pub(super) async fn unlock_login(
    api: &Api,
    request: Request<pb::UnlockLoginRequest>,
) -> Reply<pb::UnlockLoginResponse> {
    let (found, cleared) = api.app.unlock_login(&request.get_ref().email).await?;
    ok(pb::UnlockLoginResponse {
        user_id: found.id,
        cleared,
    })
}

pub(super) async fn end_user_sessions(
    api: &Api,
    request: Request<pb::EndUserSessionsRequest>,
) -> Reply<pb::EndUserSessionsResponse> {
    let (found, sessions_ended) = api
        .app
        .end_user_sessions(match &request.get_ref().user {
            Some(pb::end_user_sessions_request::User::UserId(id)) => {
                Some(UserRef::Id(member_id(id)?))
            }
            Some(pb::end_user_sessions_request::User::Email(email)) => Some(UserRef::Email(email)),
            None => None,
        })
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
    let (found, sessions) = api
        .app
        .describe_user(match &request.get_ref().user {
            Some(pb::describe_user_request::User::UserId(id)) => Some(UserRef::Id(member_id(id)?)),
            Some(pb::describe_user_request::User::Email(email)) => Some(UserRef::Email(email)),
            None => None,
        })
        .await?;
    ok(pb::DescribeUserResponse {
        user: Some(user(found)),
        sessions,
    })
}

pub(super) async fn verify_code_word(
    api: &Api,
    request: Request<pb::VerifyCodeWordRequest>,
) -> Reply<pb::VerifyCodeWordResponse> {
    ok(api.app.verify_code_word(request.get_ref()).await?)
}

pub(super) async fn rotate_signing_key(
    api: &Api,
    request: Request<pb::RotateSigningKeyRequest>,
) -> Reply<pb::RotateSigningKeyResponse> {
    let (key, activate, previous_kid) = api
        .app
        .rotate_signing_key(request.into_inner().revoke_current)
        .await?;
    ok(pb::RotateSigningKeyResponse {
        new_key: Some(key),
        activate_time: Some(activate.to_proto()),
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
