//! Logins and portal sessions: Login, RefreshSession, Logout, SwitchAccount,
//! the caller's and a member's sessions.

use tenancy_proto::identity as pb;
use tenancy_proto::identity::login_response::Outcome;
use tenancy_runtime::server::principal;
use tonic::Request;

use std::time::{Duration, Instant};

use crate::app::sessions::LoginOutcome;
use crate::domain::password::DEADLINE;

use super::{Api, Reply, access_token, account_id, client, credentials, member_id, ok, session};

/// When the caller gives up, from its `grpc-timeout` header (1 to 8 digits
/// and a unit: H, M, S, m, u, n), if it sent one.
fn caller_deadline(metadata: &tonic::metadata::MetadataMap) -> Option<Instant> {
    let text = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let timeout = match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    };
    Instant::now().checked_add(timeout)
}

pub(super) async fn login(
    api: &Api,
    request: Request<pb::LoginRequest>,
) -> Reply<pb::LoginResponse> {
    let c = client(principal(&request)?);
    let deadline = caller_deadline(request.metadata());
    let r = request.into_inner();
    super::token_sized(
        "unlock_token",
        &r.unlock_token,
        tenancy_runtime::Reason::FieldInvalid,
    )?;
    let outcome = DEADLINE
        .scope(
            deadline,
            api.app
                .login(&r.email, &r.password, &r.account_id, &r.unlock_token, &c),
        )
        .await?;
    let outcome = match outcome {
        LoginOutcome::Session(session) => Outcome::Session(credentials(session)),
        LoginOutcome::MfaChallenge(challenge) => {
            let mut allowed = Vec::new();
            if challenge.totp_allowed {
                allowed.push(pb::SecondFactorType::Totp as i32);
            }
            if challenge.recovery_codes_allowed {
                allowed.push(pb::SecondFactorType::RecoveryCode as i32);
            }
            if challenge.passkey_options.is_some() {
                allowed.push(pb::SecondFactorType::Passkey as i32);
            }
            Outcome::MfaChallenge(pb::MfaChallenge {
                challenge_token: challenge.token,
                expire_time: Some(challenge.expire_time.to_proto()),
                allowed_factors: allowed,
                passkey_request_options_json: challenge.passkey_options.unwrap_or_default(),
            })
        }
    };
    ok(pb::LoginResponse {
        outcome: Some(outcome),
    })
}

pub(super) async fn refresh_session(
    api: &Api,
    request: Request<pb::RefreshSessionRequest>,
) -> Reply<pb::RefreshSessionResponse> {
    let c = client(principal(&request)?);
    let token = request.into_inner().refresh_token;
    super::token_sized(
        "refresh_token",
        &token,
        tenancy_runtime::Reason::FieldInvalid,
    )?;
    let session = api.app.refresh(&token, &c).await?;
    ok(pb::RefreshSessionResponse {
        session: Some(credentials(session)),
    })
}

pub(super) async fn logout(
    api: &Api,
    request: Request<pb::LogoutRequest>,
) -> Reply<pb::LogoutResponse> {
    let p = principal(&request)?;
    if let Some(session) = p.session_id.as_deref() {
        api.app.logout(p.user()?, session).await?;
    }
    ok(pb::LogoutResponse {})
}

pub(super) async fn switch_account(
    api: &Api,
    request: Request<pb::SwitchAccountRequest>,
) -> Reply<pb::SwitchAccountResponse> {
    let p = principal(&request)?;
    let c = client(p);
    let user = p.user()?;
    let account = account_id(&request.get_ref().account_id)?;
    let token = api
        .app
        .switch_account(user, p.session_id.as_deref(), &account, &c)
        .await?;
    ok(pb::SwitchAccountResponse {
        access_token: Some(access_token(token)),
    })
}

pub(super) async fn list_sessions(
    api: &Api,
    request: Request<pb::ListSessionsRequest>,
) -> Reply<pb::ListSessionsResponse> {
    let p = principal(&request)?;
    let r = request.get_ref();
    let size = tenancy_runtime::ids::page_size(r.page_size)?;
    super::page_token_sized(&r.page_token)?;
    let (sessions, next_page_token) = api
        .app
        .list_sessions(p.user()?, None, size, &r.page_token)
        .await?;
    let current = p.session_id.as_deref();
    ok(pb::ListSessionsResponse {
        sessions: sessions.into_iter().map(|s| session(s, current)).collect(),
        next_page_token,
    })
}

pub(super) async fn revoke_session(
    api: &Api,
    request: Request<pb::RevokeSessionRequest>,
) -> Reply<pb::RevokeSessionResponse> {
    let p = principal(&request)?;
    api.app
        .revoke_own_sessions(p.user()?, Some(&request.get_ref().session_id), None)
        .await?;
    ok(pb::RevokeSessionResponse {})
}

pub(super) async fn revoke_other_sessions(
    api: &Api,
    request: Request<pb::RevokeOtherSessionsRequest>,
) -> Reply<pb::RevokeOtherSessionsResponse> {
    let p = principal(&request)?;
    let n = api
        .app
        .revoke_own_sessions(p.user()?, None, p.session_id.as_deref())
        .await?;
    ok(pb::RevokeOtherSessionsResponse {
        revoked_session_count: i32::try_from(n).unwrap_or(i32::MAX),
    })
}

pub(super) async fn list_member_sessions(
    api: &Api,
    request: Request<pb::ListMemberSessionsRequest>,
) -> Reply<pb::ListMemberSessionsResponse> {
    let p = principal(&request)?;
    let account = p.account()?;
    let r = request.get_ref();
    let member = member_id(&r.user_id)?;
    let size = tenancy_runtime::ids::page_size(r.page_size)?;
    super::page_token_sized(&r.page_token)?;
    let (sessions, next_page_token) = api
        .app
        .list_sessions(member.as_str(), Some(account), size, &r.page_token)
        .await?;
    ok(pb::ListMemberSessionsResponse {
        sessions: sessions.into_iter().map(|s| session(s, None)).collect(),
        next_page_token,
    })
}

pub(super) async fn revoke_member_sessions(
    api: &Api,
    request: Request<pb::RevokeMemberSessionsRequest>,
) -> Reply<pb::RevokeMemberSessionsResponse> {
    let p = principal(&request)?;
    let r = request.get_ref();
    let (owner, account) = (p.user()?, p.account()?);
    let member = member_id(&r.user_id)?;
    let (sessions, tokens) = api
        .app
        .revoke_member_sessions(owner, account, &member, r.revoke_api_tokens)
        .await?;
    ok(pb::RevokeMemberSessionsResponse {
        revoked_session_count: i32::try_from(sessions).unwrap_or(i32::MAX),
        revoked_api_token_count: i32::try_from(tokens).unwrap_or(i32::MAX),
    })
}
