//! The gRPC surface of the identity service: proto ⇄ use cases, nothing
//! else. The two trait impls below only dispatch; each handler's body
//! (parse the request, call one use case, render the answer) lives in the
//! file of its resource.

mod admin;
mod internal;
mod login_events;
mod mfa;
mod passkeys;
mod sessions;
mod ssh_keys;
mod tokens;
mod users;

use std::sync::Arc;

use tenancy_proto::identity as pb;
use tenancy_proto::identity::{
    identity_internal_service_server::IdentityInternalService,
    identity_service_server::IdentityService,
};
use tenancy_runtime::error::at_most;
use tenancy_runtime::ids::{AccountId, UserId};
use tenancy_runtime::{Error, Principal, Reason, Timestamp};
use tonic::{Request, Response, Status};

use crate::app::keys::PublicKey;
use crate::app::sessions::{AccessToken, Credentials};
use crate::app::{App, Client};
use crate::domain::password::MAX_PASSWORD_BYTES;
use crate::domain::profile::{device, truncate_user_agent};
use crate::store::sessions::SessionListing;
use crate::store::users::UserRow;

/// The handlers; cheap to clone.
#[derive(Clone)]
pub(crate) struct Api {
    app: Arc<App>,
    /// Ends Watch streams when the server stops.
    shutdown: tenancy_runtime::shutdown::Shutdown,
}

impl Api {
    pub(crate) fn new(app: Arc<App>, shutdown: tenancy_runtime::shutdown::Shutdown) -> Self {
        Self { app, shutdown }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn ok<T>(value: T) -> Reply<T> {
    Ok(Response::new(value))
}

fn client(p: &Principal) -> Client {
    Client {
        ip: p.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        user_agent: truncate_user_agent(&p.user_agent),
    }
}

/// A member's user id from a request, refused as USER_ID_INVALID.
fn member_id(raw: &str) -> Result<UserId, Error> {
    UserId::parse("user_id", raw).map_err(|e| Error {
        reason: Reason::UserIdInvalid,
        ..e
    })
}

/// Most values a repeated enum filter (`methods`, `outcomes`, `states`)
/// may list; each enum has fewer, so a longer list only repeats them.
const MAX_FILTER_VALUES: usize = 16;
/// Longest token, code or page token a request may carry, in bytes: every
/// one we issue is far shorter, and a longer one is refused before it is
/// hashed, decoded or looked up.
const MAX_TOKEN_BYTES: usize = 512;

/// Longest TOTP or recovery code a request may carry, in bytes: a TOTP
/// code has 6 digits, a recovery code 11 characters; the rest is room for
/// the spaces people type.
const MAX_CODE_BYTES: usize = 64;

/// Refuses `field` over `max` bytes as INVALID_ARGUMENT `reason`, naming
/// the field: checked at the edge, before the value is hashed, decoded or
/// looked up (and before any attempt is counted).
fn sized(field: &str, value: &str, max: usize, reason: Reason) -> Result<(), Error> {
    if value.len() <= max {
        return Ok(());
    }
    Err(Error::invalid(
        reason,
        field,
        format!("at most {max} bytes"),
    ))
}

/// Refuses a token-like `field` over [`MAX_TOKEN_BYTES`] as
/// `reason`, naming the field.
fn token_sized(field: &str, value: &str, reason: Reason) -> Result<(), Error> {
    sized(field, value, MAX_TOKEN_BYTES, reason)
}

/// Refuses a TOTP or recovery code over [`MAX_CODE_BYTES`] as
/// SECOND_FACTOR_INVALID (no code that long is right).
fn code_sized(field: &str, value: &str) -> Result<(), Error> {
    sized(field, value, MAX_CODE_BYTES, Reason::SecondFactorInvalid)
}

/// Refuses a password given as proof over the longest a password may be
/// ([`MAX_PASSWORD_BYTES`]) as PASSWORD_INCORRECT (no password set is that
/// long), before it is hashed.
fn password_sized(field: &str, value: &str) -> Result<(), Error> {
    sized(field, value, MAX_PASSWORD_BYTES, Reason::PasswordIncorrect)
}

/// Refuses a `page_token` over [`MAX_TOKEN_BYTES`] (PAGE_TOKEN_INVALID).
fn page_token_sized(value: &str) -> Result<(), Error> {
    token_sized("page_token", value, Reason::PageTokenInvalid)
}

/// An account id from a request, refused as ACCOUNT_ID_INVALID.
fn account_id(raw: &str) -> Result<AccountId, Error> {
    AccountId::parse("account_id", raw).map_err(|e| Error {
        reason: Reason::AccountIdInvalid,
        ..e
    })
}

fn ip_of(p: &Principal) -> String {
    p.client_ip.map(|ip| ip.to_string()).unwrap_or_default()
}

/// An access token as clients receive it.
fn access_token(t: AccessToken) -> pb::AccessToken {
    pb::AccessToken {
        token: t.token,
        expire_time: Some(t.expire_time.to_proto()),
        account_id: t.account_id.unwrap_or_default(),
        auth_time: Some(t.auth_time.to_proto()),
    }
}

/// A session's credentials as clients receive them.
fn credentials(c: Credentials) -> pb::SessionCredentials {
    pb::SessionCredentials {
        session_id: c.session_id,
        user_id: c.user_id,
        access_token: Some(access_token(c.access)),
        refresh_token: c.refresh_token,
        refresh_token_expire_time: Some(c.refresh_expire_time.to_proto()),
    }
}

/// A live session as ListSessions shows it; `current` names the caller's.
fn session(s: SessionListing, current: Option<&str>) -> pb::Session {
    let time = |ms: i64| Some(Timestamp(ms).to_proto());
    pb::Session {
        current: current == Some(s.id.as_str()),
        device: device(&s.user_agent),
        id: s.id,
        user_id: s.user_id,
        account_id: s.account_id,
        user_agent: s.user_agent,
        create_ip_address: s.create_ip,
        last_ip_address: s.last_ip,
        create_time: time(s.create_time),
        last_seen_time: time(s.last_seen_time),
        auth_time: time(s.auth_time),
        expire_time: time(s.expire_time),
        amr: s.amr,
    }
}

/// A signing key as a JWK (RFC 8037: OKP, Ed25519, EdDSA).
fn jwk(key: PublicKey) -> pb::Jwk {
    pb::Jwk {
        kid: key.kid,
        kty: "OKP".into(),
        crv: "Ed25519".into(),
        x: key.x,
        alg: "EdDSA".into(),
        r#use: "sig".into(),
        not_before: Some(key.not_before.to_proto()),
        not_after: key.not_after.map(|t| t.to_proto()),
    }
}

/// A user as clients see them.
fn user(u: UserRow) -> pb::User {
    let time = |ms: i64| Timestamp(ms).to_proto();
    pb::User {
        id: u.id,
        email: u.email,
        email_verified: u.email_verified,
        pending_email: u.pending_email,
        name: u.name,
        // Recovery codes count only while TOTP is on.
        recovery_codes_remaining: if u.totp_enabled {
            i32::try_from(u.recovery_codes_remaining).unwrap_or(0)
        } else {
            0
        },
        totp_enabled: u.totp_enabled,
        passkey_count: i32::try_from(u.passkey_count).unwrap_or(i32::MAX),
        password_set: u.password_set,
        code_word_set: u.code_word_set,
        staff: u.staff,
        create_time: Some(time(u.create_time)),
        update_time: Some(time(u.update_time)),
        last_login_time: u.last_login_time.map(time),
        password_update_time: u.password_update_time.map(time),
        phone: u.phone,
    }
}

#[tonic::async_trait]
impl IdentityService for Api {
    async fn sign_up(&self, request: Request<pb::SignUpRequest>) -> Reply<pb::SignUpResponse> {
        users::sign_up(self, request).await
    }

    async fn verify_email(
        &self,
        request: Request<pb::VerifyEmailRequest>,
    ) -> Reply<pb::VerifyEmailResponse> {
        users::verify_email(self, request).await
    }

    async fn login(&self, request: Request<pb::LoginRequest>) -> Reply<pb::LoginResponse> {
        sessions::login(self, request).await
    }

    async fn refresh_session(
        &self,
        request: Request<pb::RefreshSessionRequest>,
    ) -> Reply<pb::RefreshSessionResponse> {
        sessions::refresh_session(self, request).await
    }

    async fn logout(&self, request: Request<pb::LogoutRequest>) -> Reply<pb::LogoutResponse> {
        sessions::logout(self, request).await
    }

    async fn complete_mfa(
        &self,
        request: Request<pb::CompleteMfaRequest>,
    ) -> Reply<pb::CompleteMfaResponse> {
        mfa::complete_mfa(self, request).await
    }

    async fn switch_account(
        &self,
        request: Request<pb::SwitchAccountRequest>,
    ) -> Reply<pb::SwitchAccountResponse> {
        sessions::switch_account(self, request).await
    }

    async fn reauthenticate(
        &self,
        request: Request<pb::ReauthenticateRequest>,
    ) -> Reply<pb::ReauthenticateResponse> {
        mfa::reauthenticate(self, request).await
    }

    async fn begin_totp_enrollment(
        &self,
        request: Request<pb::BeginTotpEnrollmentRequest>,
    ) -> Reply<pb::BeginTotpEnrollmentResponse> {
        mfa::begin_totp_enrollment(self, request).await
    }

    async fn confirm_totp_enrollment(
        &self,
        request: Request<pb::ConfirmTotpEnrollmentRequest>,
    ) -> Reply<pb::ConfirmTotpEnrollmentResponse> {
        mfa::confirm_totp_enrollment(self, request).await
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Reply<pb::ListSessionsResponse> {
        sessions::list_sessions(self, request).await
    }

    async fn revoke_session(
        &self,
        request: Request<pb::RevokeSessionRequest>,
    ) -> Reply<pb::RevokeSessionResponse> {
        sessions::revoke_session(self, request).await
    }

    async fn revoke_other_sessions(
        &self,
        request: Request<pb::RevokeOtherSessionsRequest>,
    ) -> Reply<pb::RevokeOtherSessionsResponse> {
        sessions::revoke_other_sessions(self, request).await
    }

    async fn create_api_token(
        &self,
        request: Request<pb::CreateApiTokenRequest>,
    ) -> Reply<pb::CreateApiTokenResponse> {
        tokens::create_api_token(self, request).await
    }

    async fn list_api_tokens(
        &self,
        request: Request<pb::ListApiTokensRequest>,
    ) -> Reply<pb::ListApiTokensResponse> {
        tokens::list_api_tokens(self, request).await
    }

    async fn revoke_api_token(
        &self,
        request: Request<pb::RevokeApiTokenRequest>,
    ) -> Reply<pb::RevokeApiTokenResponse> {
        tokens::revoke_api_token(self, request).await
    }

    async fn request_password_reset(
        &self,
        request: Request<pb::RequestPasswordResetRequest>,
    ) -> Reply<pb::RequestPasswordResetResponse> {
        users::request_password_reset(self, request).await
    }

    async fn reset_password(
        &self,
        request: Request<pb::ResetPasswordRequest>,
    ) -> Reply<pb::ResetPasswordResponse> {
        users::reset_password(self, request).await
    }

    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Reply<pb::ChangePasswordResponse> {
        users::change_password(self, request).await
    }

    async fn set_code_word(
        &self,
        request: Request<pb::SetCodeWordRequest>,
    ) -> Reply<pb::SetCodeWordResponse> {
        users::set_code_word(self, request).await
    }

    async fn list_member_sessions(
        &self,
        request: Request<pb::ListMemberSessionsRequest>,
    ) -> Reply<pb::ListMemberSessionsResponse> {
        sessions::list_member_sessions(self, request).await
    }

    async fn revoke_member_sessions(
        &self,
        request: Request<pb::RevokeMemberSessionsRequest>,
    ) -> Reply<pb::RevokeMemberSessionsResponse> {
        sessions::revoke_member_sessions(self, request).await
    }

    async fn list_login_events(
        &self,
        request: Request<pb::ListLoginEventsRequest>,
    ) -> Reply<pb::ListLoginEventsResponse> {
        login_events::list_login_events(self, request).await
    }

    async fn list_member_login_events(
        &self,
        request: Request<pb::ListMemberLoginEventsRequest>,
    ) -> Reply<pb::ListMemberLoginEventsResponse> {
        login_events::list_member_login_events(self, request).await
    }

    async fn disable_totp(
        &self,
        request: Request<pb::DisableTotpRequest>,
    ) -> Reply<pb::DisableTotpResponse> {
        mfa::disable_totp(self, request).await
    }

    async fn regenerate_recovery_codes(
        &self,
        request: Request<pb::RegenerateRecoveryCodesRequest>,
    ) -> Reply<pb::RegenerateRecoveryCodesResponse> {
        mfa::regenerate_recovery_codes(self, request).await
    }

    async fn get_jwks(&self, request: Request<pb::GetJwksRequest>) -> Reply<pb::GetJwksResponse> {
        tokens::get_jwks(self, request).await
    }

    async fn begin_passkey_registration(
        &self,
        request: Request<pb::BeginPasskeyRegistrationRequest>,
    ) -> Reply<pb::BeginPasskeyRegistrationResponse> {
        passkeys::begin_passkey_registration(self, request).await
    }

    async fn finish_passkey_registration(
        &self,
        request: Request<pb::FinishPasskeyRegistrationRequest>,
    ) -> Reply<pb::FinishPasskeyRegistrationResponse> {
        passkeys::finish_passkey_registration(self, request).await
    }

    async fn list_passkeys(
        &self,
        request: Request<pb::ListPasskeysRequest>,
    ) -> Reply<pb::ListPasskeysResponse> {
        passkeys::list_passkeys(self, request).await
    }

    async fn rename_passkey(
        &self,
        request: Request<pb::RenamePasskeyRequest>,
    ) -> Reply<pb::RenamePasskeyResponse> {
        passkeys::rename_passkey(self, request).await
    }

    async fn delete_passkey(
        &self,
        request: Request<pb::DeletePasskeyRequest>,
    ) -> Reply<pb::DeletePasskeyResponse> {
        passkeys::delete_passkey(self, request).await
    }

    async fn begin_passkey_login(
        &self,
        request: Request<pb::BeginPasskeyLoginRequest>,
    ) -> Reply<pb::BeginPasskeyLoginResponse> {
        passkeys::begin_passkey_login(self, request).await
    }

    async fn finish_passkey_login(
        &self,
        request: Request<pb::FinishPasskeyLoginRequest>,
    ) -> Reply<pb::FinishPasskeyLoginResponse> {
        passkeys::finish_passkey_login(self, request).await
    }

    async fn get_me(&self, request: Request<pb::GetMeRequest>) -> Reply<pb::GetMeResponse> {
        users::get_me(self, request).await
    }

    async fn update_me(
        &self,
        request: Request<pb::UpdateMeRequest>,
    ) -> Reply<pb::UpdateMeResponse> {
        users::update_me(self, request).await
    }

    async fn add_ssh_key(
        &self,
        request: Request<pb::AddSshKeyRequest>,
    ) -> Reply<pb::AddSshKeyResponse> {
        ssh_keys::add_ssh_key(self, request).await
    }

    async fn list_ssh_keys(
        &self,
        request: Request<pb::ListSshKeysRequest>,
    ) -> Reply<pb::ListSshKeysResponse> {
        ssh_keys::list_ssh_keys(self, request).await
    }

    async fn delete_ssh_key(
        &self,
        request: Request<pb::DeleteSshKeyRequest>,
    ) -> Reply<pb::DeleteSshKeyResponse> {
        ssh_keys::delete_ssh_key(self, request).await
    }

    async fn start_phone_verification(
        &self,
        request: Request<pb::StartPhoneVerificationRequest>,
    ) -> Reply<pb::StartPhoneVerificationResponse> {
        let p = tenancy_runtime::server::principal(&request)?;
        let expire = self
            .app
            .start_phone_verification(p, &request.get_ref().phone)
            .await?;
        ok(pb::StartPhoneVerificationResponse {
            expire_time: Some(expire.to_proto()),
        })
    }

    async fn confirm_phone(
        &self,
        request: Request<pb::ConfirmPhoneRequest>,
    ) -> Reply<pb::ConfirmPhoneResponse> {
        let p = tenancy_runtime::server::principal(&request)?;
        let ip = client(p).ip;
        let u = self
            .app
            .confirm_phone(p, &request.get_ref().code, &ip)
            .await?;
        ok(pb::ConfirmPhoneResponse {
            user: Some(user(u)),
        })
    }
}

#[tonic::async_trait]
impl IdentityInternalService for Api {
    async fn ensure_user(
        &self,
        request: Request<pb::EnsureUserRequest>,
    ) -> Reply<pb::EnsureUserResponse> {
        internal::ensure_user(self, request).await
    }

    async fn create_api_user(
        &self,
        request: Request<pb::CreateApiUserRequest>,
    ) -> Reply<pb::CreateApiUserResponse> {
        internal::create_api_user(self, request).await
    }

    async fn batch_get_users(
        &self,
        request: Request<pb::BatchGetUsersRequest>,
    ) -> Reply<pb::BatchGetUsersResponse> {
        internal::batch_get_users(self, request).await
    }

    async fn watch_revocations(
        &self,
        request: Request<pb::WatchRevocationsRequest>,
    ) -> Reply<
        std::pin::Pin<
            Box<dyn futures::Stream<Item = Result<pb::WatchRevocationsResponse, Status>> + Send>,
        >,
    > {
        internal::watch_revocations(self, request).await
    }

    async fn revoke_account_access(
        &self,
        request: Request<pb::RevokeAccountAccessRequest>,
    ) -> Reply<pb::RevokeAccountAccessResponse> {
        internal::revoke_account_access(self, request).await
    }

    async fn introspect_api_token(
        &self,
        request: Request<pb::IntrospectApiTokenRequest>,
    ) -> Reply<pb::IntrospectApiTokenResponse> {
        tokens::introspect_api_token(self, request).await
    }

    async fn grant_staff(
        &self,
        request: Request<pb::GrantStaffRequest>,
    ) -> Reply<pb::GrantStaffResponse> {
        admin::grant_staff(self, request).await
    }

    async fn revoke_staff(
        &self,
        request: Request<pb::RevokeStaffRequest>,
    ) -> Reply<pb::RevokeStaffResponse> {
        admin::revoke_staff(self, request).await
    }

    async fn unlock_login(
        &self,
        request: Request<pb::UnlockLoginRequest>,
    ) -> Reply<pb::UnlockLoginResponse> {
        admin::unlock_login(self, request).await
    }

    async fn end_user_sessions(
        &self,
        request: Request<pb::EndUserSessionsRequest>,
    ) -> Reply<pb::EndUserSessionsResponse> {
        admin::end_user_sessions(self, request).await
    }

    async fn describe_user(
        &self,
        request: Request<pb::DescribeUserRequest>,
    ) -> Reply<pb::DescribeUserResponse> {
        admin::describe_user(self, request).await
    }

    async fn record_usage(
        &self,
        request: Request<pb::RecordUsageRequest>,
    ) -> Reply<pb::RecordUsageResponse> {
        internal::record_usage(self, request).await
    }

    async fn verify_code_word(
        &self,
        request: Request<pb::VerifyCodeWordRequest>,
    ) -> Reply<pb::VerifyCodeWordResponse> {
        admin::verify_code_word(self, request).await
    }

    async fn rotate_signing_key(
        &self,
        request: Request<pb::RotateSigningKeyRequest>,
    ) -> Reply<pb::RotateSigningKeyResponse> {
        admin::rotate_signing_key(self, request).await
    }

    async fn set_initial_password(
        &self,
        request: Request<pb::SetInitialPasswordRequest>,
    ) -> Reply<pb::SetInitialPasswordResponse> {
        admin::set_initial_password(self, request).await
    }
}
