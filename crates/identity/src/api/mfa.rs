//! Second factors: TOTP enrolment and removal, MFA challenges, re-
//! authentication, recovery codes.

use tenancy_proto::identity as pb;
use tenancy_runtime::server::principal;
use tonic::Request;

use super::{Api, Reply, access_token, client, credentials, ip_of, ok};
use crate::app::mfa::Factor;
use crate::domain::totp;

pub(super) async fn complete_mfa(
    api: &Api,
    request: Request<pb::CompleteMfaRequest>,
) -> Reply<pb::CompleteMfaResponse> {
    let c = client(principal(&request)?);
    let r = request.into_inner();
    super::token_sized(
        "challenge_token",
        &r.challenge_token,
        tenancy_runtime::Reason::FieldInvalid,
    )?;
    let factor = r.second_factor.map(|f| match f {
        pb::complete_mfa_request::SecondFactor::TotpCode(code) => Factor::Totp(code),
        pb::complete_mfa_request::SecondFactor::RecoveryCode(code) => Factor::Recovery(code),
        pb::complete_mfa_request::SecondFactor::PasskeyCredentialJson(json) => {
            Factor::Passkey(json)
        }
    });
    factor_sized(factor.as_ref())?;
    let session = api.app.complete_mfa(&r.challenge_token, factor, &c).await?;
    ok(pb::CompleteMfaResponse {
        session: Some(credentials(session)),
    })
}

pub(super) async fn reauthenticate(
    api: &Api,
    request: Request<pb::ReauthenticateRequest>,
) -> Reply<pb::ReauthenticateResponse> {
    let p = principal(&request)?;
    let c = client(p);
    let r = request.get_ref();
    let factor = r.second_factor.clone().map(|f| match f {
        pb::reauthenticate_request::SecondFactor::TotpCode(code) => Factor::Totp(code),
        pb::reauthenticate_request::SecondFactor::RecoveryCode(code) => Factor::Recovery(code),
    });
    super::password_sized("password", &r.password)?;
    factor_sized(factor.as_ref())?;
    let token = api
        .app
        .reauthenticate(p.user()?, p.session_id.as_deref(), &r.password, factor, &c)
        .await?;
    ok(pb::ReauthenticateResponse {
        access_token: Some(access_token(token)),
    })
}

pub(super) async fn begin_totp_enrollment(
    api: &Api,
    request: Request<pb::BeginTotpEnrollmentRequest>,
) -> Reply<pb::BeginTotpEnrollmentResponse> {
    let p = principal(&request)?;
    let begun = api.app.begin_totp(p.user()?).await?;
    ok(pb::BeginTotpEnrollmentResponse {
        secret: begun.secret,
        otpauth_uri: begun.otpauth_uri,
        qr_code_png: begun.qr_code_png,
        digits: i32::from(totp::DIGITS),
        period_seconds: i32::try_from(totp::PERIOD).unwrap_or(30),
        expire_time: Some(begun.expire_time.to_proto()),
    })
}

pub(super) async fn confirm_totp_enrollment(
    api: &Api,
    request: Request<pb::ConfirmTotpEnrollmentRequest>,
) -> Reply<pb::ConfirmTotpEnrollmentResponse> {
    let p = principal(&request)?;
    super::code_sized("totp_code", &request.get_ref().totp_code)?;
    let (recovery_codes, token) = api
        .app
        .confirm_totp(
            p.user()?,
            p.session_id.as_deref(),
            &request.get_ref().totp_code,
            &client(p).ip,
        )
        .await?;
    ok(pb::ConfirmTotpEnrollmentResponse {
        recovery_codes,
        access_token: Some(access_token(token)),
    })
}

pub(super) async fn disable_totp(
    api: &Api,
    request: Request<pb::DisableTotpRequest>,
) -> Reply<pb::DisableTotpResponse> {
    let p = principal(&request)?;
    let (password, code) = match &request.get_ref().proof {
        Some(pb::disable_totp_request::Proof::Password(pw)) => (Some(pw.as_str()), None),
        Some(pb::disable_totp_request::Proof::TotpCode(c)) => (None, Some(c.as_str())),
        None => (None, None),
    };
    proof_sized(password, code)?;
    let token = api
        .app
        .disable_totp(
            p.user()?,
            p.session_id.as_deref(),
            password,
            code,
            &ip_of(p),
        )
        .await?;
    ok(pb::DisableTotpResponse {
        access_token: Some(access_token(token)),
    })
}

pub(super) async fn regenerate_recovery_codes(
    api: &Api,
    request: Request<pb::RegenerateRecoveryCodesRequest>,
) -> Reply<pb::RegenerateRecoveryCodesResponse> {
    let p = principal(&request)?;
    let (password, code) = match &request.get_ref().proof {
        Some(pb::regenerate_recovery_codes_request::Proof::Password(pw)) => {
            (Some(pw.as_str()), None)
        }
        Some(pb::regenerate_recovery_codes_request::Proof::TotpCode(c)) => (None, Some(c.as_str())),
        None => (None, None),
    };
    proof_sized(password, code)?;
    let recovery_codes = api
        .app
        .regenerate_recovery_codes(p.user()?, password, code)
        .await?;
    ok(pb::RegenerateRecoveryCodesResponse { recovery_codes })
}

/// Refuses an oversized second-factor code, naming its field.
fn factor_sized(factor: Option<&Factor>) -> Result<(), tenancy_runtime::Error> {
    match factor {
        Some(Factor::Totp(code)) => super::code_sized("totp_code", code),
        Some(Factor::Recovery(code)) => super::code_sized("recovery_code", code),
        // Capped where it is parsed (16 KiB).
        Some(Factor::Passkey(_)) | None => Ok(()),
    }
}

/// Refuses an oversized proof (password or TOTP code), naming its field.
fn proof_sized(password: Option<&str>, code: Option<&str>) -> Result<(), tenancy_runtime::Error> {
    if let Some(password) = password {
        super::password_sized("password", password)?;
    }
    match code {
        Some(code) => super::code_sized("totp_code", code),
        None => Ok(()),
    }
}
