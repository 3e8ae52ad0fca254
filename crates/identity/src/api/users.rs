//! Users' own accounts: sign-up, email verification, the profile (GetMe,
//! UpdateMe), passwords (reset, change) and the code word.

use tenancy_proto::identity as pb;
use tenancy_runtime::server::principal;
use tenancy_runtime::{Error, Reason};
use tonic::Request;

use super::{Api, Reply, access_token, ip_of, ok, user};

pub(super) async fn sign_up(
    api: &Api,
    request: Request<pb::SignUpRequest>,
) -> Reply<pb::SignUpResponse> {
    let ip = ip_of(principal(&request)?);
    let r = request.into_inner();
    api.app
        .sign_up(&r.email, &r.password, &r.name, &r.phone, &ip)
        .await?;
    ok(pb::SignUpResponse {})
}

pub(super) async fn verify_email(
    api: &Api,
    request: Request<pb::VerifyEmailRequest>,
) -> Reply<pb::VerifyEmailResponse> {
    let token = request.into_inner().token;
    super::token_sized("token", &token, Reason::EmailTokenInvalid)?;
    let email = api.app.verify_email(&token).await?;
    ok(pb::VerifyEmailResponse { email })
}

pub(super) async fn request_password_reset(
    api: &Api,
    request: Request<pb::RequestPasswordResetRequest>,
) -> Reply<pb::RequestPasswordResetResponse> {
    let ip = ip_of(principal(&request)?);
    api.app
        .request_password_reset(&request.get_ref().email, &ip)?;
    ok(pb::RequestPasswordResetResponse {})
}

pub(super) async fn reset_password(
    api: &Api,
    request: Request<pb::ResetPasswordRequest>,
) -> Reply<pb::ResetPasswordResponse> {
    let ip = ip_of(principal(&request)?);
    let r = request.into_inner();
    super::token_sized("token", &r.token, Reason::ResetTokenInvalid)?;
    api.app
        .reset_password(&r.token, &r.new_password, &ip)
        .await?;
    ok(pb::ResetPasswordResponse {})
}

pub(super) async fn change_password(
    api: &Api,
    request: Request<pb::ChangePasswordRequest>,
) -> Reply<pb::ChangePasswordResponse> {
    let p = principal(&request)?;
    let r = request.get_ref();
    super::password_sized("current_password", &r.current_password)?;
    let (token, n) = api
        .app
        .change_password(
            p.user()?,
            p.session_id.as_deref(),
            &r.current_password,
            &r.new_password,
            &ip_of(p),
        )
        .await?;
    ok(pb::ChangePasswordResponse {
        access_token: Some(access_token(token)),
        revoked_session_count: i32::try_from(n).unwrap_or(i32::MAX),
    })
}

pub(super) async fn set_code_word(
    api: &Api,
    request: Request<pb::SetCodeWordRequest>,
) -> Reply<pb::SetCodeWordResponse> {
    let p = principal(&request)?;
    api.app
        .set_code_word(
            p.user()?,
            p.session_id.as_deref(),
            &request.get_ref().code_word,
        )
        .await?;
    ok(pb::SetCodeWordResponse {})
}

pub(super) async fn get_me(
    api: &Api,
    request: Request<pb::GetMeRequest>,
) -> Reply<pb::GetMeResponse> {
    let p = principal(&request)?;
    let found = api.app.get_user(p.user()?).await?;
    ok(pb::GetMeResponse {
        user: Some(user(found)),
    })
}

pub(super) async fn update_me(
    api: &Api,
    request: Request<pb::UpdateMeRequest>,
) -> Reply<pb::UpdateMeResponse> {
    let p = principal(&request)?;
    let r = request.get_ref();
    let paths = r
        .update_mask
        .as_ref()
        .map(|m| m.paths.as_slice())
        .unwrap_or_default();
    if paths.is_empty() || paths.iter().any(|path| path != "name" && path != "email") {
        return Err(Error {
            reason: Reason::UpdateMaskInvalid,
            ..Error::invalid_field("update_mask", "name and/or email")
        }
        .into());
    }
    let wanted = |field: &str| paths.iter().any(|path| path == field);
    let given = r.user.clone().unwrap_or_default();
    let found = api
        .app
        .update_me(
            p,
            wanted("name").then_some(given.name.as_str()),
            wanted("email").then_some(given.email.as_str()),
        )
        .await?;
    ok(pb::UpdateMeResponse {
        user: Some(user(found)),
    })
}
