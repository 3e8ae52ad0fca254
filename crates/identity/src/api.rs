//! The gRPC surface of the identity service: proto ⇄ use cases, nothing
//! else.

use std::sync::Arc;

use tenancy_proto::identity as pb;
use tenancy_proto::identity::{
    identity_internal_service_server::IdentityInternalService,
    identity_service_server::IdentityService,
};
use tenancy_runtime::server::principal;
use tenancy_runtime::{Error, Principal, Reason};
use tonic::{Request, Response, Status};

use crate::core::admin::{LoginEventFilter, UserRef};
use crate::core::mfa::Factor;
use crate::core::{Client, Core};
use crate::domain::profile::truncate_user_agent;

/// The handlers; cheap to clone.
#[derive(Clone)]
pub(crate) struct Api {
    core: Arc<Core>,
    /// Ends Watch streams when the server stops.
    shutdown: tenancy_runtime::shutdown::Shutdown,
}

impl Api {
    pub(crate) fn new(core: Arc<Core>, shutdown: tenancy_runtime::shutdown::Shutdown) -> Self {
        Self { core, shutdown }
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
fn member_id(raw: &str) -> Result<String, Error> {
    tenancy_runtime::ids::parse_id("user_id", raw).map_err(|e| Error {
        reason: Reason::UserIdInvalid,
        ..e
    })
}

fn ip_of(p: &Principal) -> String {
    p.client_ip.map(|ip| ip.to_string()).unwrap_or_default()
}

#[tonic::async_trait]
impl IdentityService for Api {
    async fn sign_up(&self, request: Request<pb::SignUpRequest>) -> Reply<pb::SignUpResponse> {
        let ip = ip_of(principal(&request)?);
        let r = request.into_inner();
        self.core
            .sign_up(&r.email, &r.password, &r.name, &ip)
            .await?;
        ok(pb::SignUpResponse {})
    }

    async fn verify_email(
        &self,
        request: Request<pb::VerifyEmailRequest>,
    ) -> Reply<pb::VerifyEmailResponse> {
        let email = self.core.verify_email(&request.into_inner().token).await?;
        ok(pb::VerifyEmailResponse { email })
    }

    async fn login(&self, request: Request<pb::LoginRequest>) -> Reply<pb::LoginResponse> {
        let c = client(principal(&request)?);
        let r = request.into_inner();
        let outcome = self
            .core
            .login(&r.email, &r.password, &r.account_id, &c)
            .await?;
        ok(pb::LoginResponse {
            outcome: Some(outcome),
        })
    }

    async fn refresh_session(
        &self,
        request: Request<pb::RefreshSessionRequest>,
    ) -> Reply<pb::RefreshSessionResponse> {
        let c = client(principal(&request)?);
        let session = self
            .core
            .refresh(&request.into_inner().refresh_token, &c)
            .await?;
        ok(pb::RefreshSessionResponse {
            session: Some(session),
        })
    }

    async fn logout(&self, request: Request<pb::LogoutRequest>) -> Reply<pb::LogoutResponse> {
        let p = principal(&request)?;
        if let Some(session) = p.session_id.as_deref() {
            self.core.logout(p.user()?, session).await?;
        }
        ok(pb::LogoutResponse {})
    }

    async fn complete_mfa(
        &self,
        request: Request<pb::CompleteMfaRequest>,
    ) -> Reply<pb::CompleteMfaResponse> {
        let c = client(principal(&request)?);
        let r = request.into_inner();
        let factor = r.second_factor.map(|f| match f {
            pb::complete_mfa_request::SecondFactor::TotpCode(code) => Factor::Totp(code),
            pb::complete_mfa_request::SecondFactor::RecoveryCode(code) => Factor::Recovery(code),
        });
        let session = self
            .core
            .complete_mfa(&r.challenge_token, factor, &c)
            .await?;
        ok(pb::CompleteMfaResponse {
            session: Some(session),
        })
    }

    async fn switch_account(
        &self,
        request: Request<pb::SwitchAccountRequest>,
    ) -> Reply<pb::SwitchAccountResponse> {
        let p = principal(&request)?;
        let c = client(p);
        let token = self
            .core
            .switch_account(
                p.user()?,
                p.session_id.as_deref(),
                &request.get_ref().account_id,
                &c,
            )
            .await?;
        ok(pb::SwitchAccountResponse {
            access_token: Some(token),
        })
    }

    async fn reauthenticate(
        &self,
        request: Request<pb::ReauthenticateRequest>,
    ) -> Reply<pb::ReauthenticateResponse> {
        let p = principal(&request)?;
        let c = client(p);
        let r = request.get_ref();
        let factor = r.second_factor.clone().map(|f| match f {
            pb::reauthenticate_request::SecondFactor::TotpCode(code) => Factor::Totp(code),
            pb::reauthenticate_request::SecondFactor::RecoveryCode(code) => Factor::Recovery(code),
        });
        let token = self
            .core
            .reauthenticate(p.user()?, p.session_id.as_deref(), &r.password, factor, &c)
            .await?;
        ok(pb::ReauthenticateResponse {
            access_token: Some(token),
        })
    }

    async fn begin_totp_enrollment(
        &self,
        request: Request<pb::BeginTotpEnrollmentRequest>,
    ) -> Reply<pb::BeginTotpEnrollmentResponse> {
        let p = principal(&request)?;
        ok(self.core.begin_totp(p.user()?).await?)
    }

    async fn confirm_totp_enrollment(
        &self,
        request: Request<pb::ConfirmTotpEnrollmentRequest>,
    ) -> Reply<pb::ConfirmTotpEnrollmentResponse> {
        let p = principal(&request)?;
        let (recovery_codes, token) = self
            .core
            .confirm_totp(
                p.user()?,
                p.session_id.as_deref(),
                &request.get_ref().totp_code,
                &client(p).ip,
            )
            .await?;
        ok(pb::ConfirmTotpEnrollmentResponse {
            recovery_codes,
            access_token: Some(token),
        })
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Reply<pb::ListSessionsResponse> {
        let p = principal(&request)?;
        tenancy_runtime::ids::page_size(request.get_ref().page_size)?;
        let sessions = self
            .core
            .list_sessions(p.user()?, p.session_id.as_deref(), None)
            .await?;
        ok(pb::ListSessionsResponse {
            sessions,
            next_page_token: String::new(),
        })
    }

    async fn revoke_session(
        &self,
        request: Request<pb::RevokeSessionRequest>,
    ) -> Reply<pb::RevokeSessionResponse> {
        let p = principal(&request)?;
        self.core
            .revoke_own_sessions(p.user()?, Some(&request.get_ref().session_id), None)
            .await?;
        ok(pb::RevokeSessionResponse {})
    }

    async fn revoke_other_sessions(
        &self,
        request: Request<pb::RevokeOtherSessionsRequest>,
    ) -> Reply<pb::RevokeOtherSessionsResponse> {
        let p = principal(&request)?;
        let n = self
            .core
            .revoke_own_sessions(p.user()?, None, p.session_id.as_deref())
            .await?;
        ok(pb::RevokeOtherSessionsResponse {
            revoked_session_count: i32::try_from(n).unwrap_or(i32::MAX),
        })
    }

    async fn create_api_token(
        &self,
        request: Request<pb::CreateApiTokenRequest>,
    ) -> Reply<pb::CreateApiTokenResponse> {
        let p = principal(&request)?;
        let r = request.get_ref();
        let expire = r
            .expire_time
            .as_ref()
            .map(tenancy_runtime::Timestamp::from_proto);
        let (token, secret) = self
            .core
            .create_api_token(p, &r.name, expire, r.read_only)
            .await?;
        ok(pb::CreateApiTokenResponse {
            api_token: Some(token),
            secret,
        })
    }

    async fn list_api_tokens(
        &self,
        request: Request<pb::ListApiTokensRequest>,
    ) -> Reply<pb::ListApiTokensResponse> {
        let p = principal(&request)?;
        let (api_tokens, next_page_token) = self.core.list_api_tokens(p, request.get_ref()).await?;
        ok(pb::ListApiTokensResponse {
            api_tokens,
            next_page_token,
        })
    }

    async fn revoke_api_token(
        &self,
        request: Request<pb::RevokeApiTokenRequest>,
    ) -> Reply<pb::RevokeApiTokenResponse> {
        let p = principal(&request)?;
        let token = self
            .core
            .revoke_api_token(p, &request.get_ref().api_token_id)
            .await?;
        ok(pb::RevokeApiTokenResponse {
            api_token: Some(token),
        })
    }

    async fn request_password_reset(
        &self,
        request: Request<pb::RequestPasswordResetRequest>,
    ) -> Reply<pb::RequestPasswordResetResponse> {
        let ip = ip_of(principal(&request)?);
        self.core
            .request_password_reset(&request.get_ref().email, &ip)?;
        ok(pb::RequestPasswordResetResponse {})
    }

    async fn reset_password(
        &self,
        request: Request<pb::ResetPasswordRequest>,
    ) -> Reply<pb::ResetPasswordResponse> {
        let ip = ip_of(principal(&request)?);
        let r = request.into_inner();
        self.core
            .reset_password(&r.token, &r.new_password, &ip)
            .await?;
        ok(pb::ResetPasswordResponse {})
    }

    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Reply<pb::ChangePasswordResponse> {
        let p = principal(&request)?;
        let r = request.get_ref();
        let (token, n) = self
            .core
            .change_password(
                p.user()?,
                p.session_id.as_deref(),
                &r.current_password,
                &r.new_password,
                &ip_of(p),
            )
            .await?;
        ok(pb::ChangePasswordResponse {
            access_token: Some(token),
            revoked_session_count: i32::try_from(n).unwrap_or(i32::MAX),
        })
    }

    async fn set_code_word(
        &self,
        request: Request<pb::SetCodeWordRequest>,
    ) -> Reply<pb::SetCodeWordResponse> {
        let p = principal(&request)?;
        self.core
            .set_code_word(
                p.user()?,
                p.session_id.as_deref(),
                &request.get_ref().code_word,
            )
            .await?;
        ok(pb::SetCodeWordResponse {})
    }

    async fn list_member_sessions(
        &self,
        request: Request<pb::ListMemberSessionsRequest>,
    ) -> Reply<pb::ListMemberSessionsResponse> {
        let p = principal(&request)?;
        let account = p.account()?;
        let member = member_id(&request.get_ref().user_id)?;
        let sessions = self
            .core
            .list_sessions(&member, None, Some(account))
            .await?;
        ok(pb::ListMemberSessionsResponse {
            sessions,
            next_page_token: String::new(),
        })
    }

    async fn revoke_member_sessions(
        &self,
        request: Request<pb::RevokeMemberSessionsRequest>,
    ) -> Reply<pb::RevokeMemberSessionsResponse> {
        let p = principal(&request)?;
        let r = request.get_ref();
        let (sessions, tokens) = self
            .core
            .revoke_member_sessions(p.user()?, p.account()?, &r.user_id, r.revoke_api_tokens)
            .await?;
        ok(pb::RevokeMemberSessionsResponse {
            revoked_session_count: i32::try_from(sessions).unwrap_or(i32::MAX),
            revoked_api_token_count: i32::try_from(tokens).unwrap_or(i32::MAX),
        })
    }

    async fn list_login_events(
        &self,
        request: Request<pb::ListLoginEventsRequest>,
    ) -> Reply<pb::ListLoginEventsResponse> {
        let p = principal(&request)?;
        let r = request.get_ref();
        let limit = tenancy_runtime::ids::page_size(r.page_size)?;
        let filter = LoginEventFilter::new(&r.start_time, &r.end_time, &r.methods, &r.outcomes);
        let (login_events, next_page_token) = self
            .core
            .login_events(p.user()?, None, &filter, limit, &r.page_token)
            .await?;
        ok(pb::ListLoginEventsResponse {
            login_events,
            next_page_token,
        })
    }

    async fn list_member_login_events(
        &self,
        request: Request<pb::ListMemberLoginEventsRequest>,
    ) -> Reply<pb::ListMemberLoginEventsResponse> {
        let p = principal(&request)?;
        let r = request.get_ref();
        let member = member_id(&r.user_id)?;
        let limit = tenancy_runtime::ids::page_size(r.page_size)?;
        let filter = LoginEventFilter::new(&r.start_time, &r.end_time, &r.methods, &r.outcomes);
        let (login_events, next_page_token) = self
            .core
            .login_events(&member, Some(p.account()?), &filter, limit, &r.page_token)
            .await?;
        ok(pb::ListMemberLoginEventsResponse {
            login_events,
            next_page_token,
        })
    }

    async fn disable_totp(
        &self,
        request: Request<pb::DisableTotpRequest>,
    ) -> Reply<pb::DisableTotpResponse> {
        let p = principal(&request)?;
        let (password, code) = match &request.get_ref().proof {
            Some(pb::disable_totp_request::Proof::Password(pw)) => (Some(pw.as_str()), None),
            Some(pb::disable_totp_request::Proof::TotpCode(c)) => (None, Some(c.as_str())),
            None => (None, None),
        };
        let token = self
            .core
            .disable_totp(
                p.user()?,
                p.session_id.as_deref(),
                password,
                code,
                &ip_of(p),
            )
            .await?;
        ok(pb::DisableTotpResponse {
            access_token: Some(token),
        })
    }

    async fn regenerate_recovery_codes(
        &self,
        request: Request<pb::RegenerateRecoveryCodesRequest>,
    ) -> Reply<pb::RegenerateRecoveryCodesResponse> {
        let p = principal(&request)?;
        let (password, code) = match &request.get_ref().proof {
            Some(pb::regenerate_recovery_codes_request::Proof::Password(pw)) => {
                (Some(pw.as_str()), None)
            }
            Some(pb::regenerate_recovery_codes_request::Proof::TotpCode(c)) => {
                (None, Some(c.as_str()))
            }
            None => (None, None),
        };
        let recovery_codes = self
            .core
            .regenerate_recovery_codes(p.user()?, password, code)
            .await?;
        ok(pb::RegenerateRecoveryCodesResponse { recovery_codes })
    }

    async fn get_jwks(&self, _request: Request<pb::GetJwksRequest>) -> Reply<pb::GetJwksResponse> {
        let keys = self.core.jwks().await?;
        ok(pb::GetJwksResponse {
            keys,
            cache_duration: Some(prost_types::Duration {
                seconds: i64::try_from(crate::core::keys::JWKS_CACHE.as_secs()).unwrap_or(300),
                nanos: 0,
            }),
        })
    }

    async fn get_me(&self, request: Request<pb::GetMeRequest>) -> Reply<pb::GetMeResponse> {
        let p = principal(&request)?;
        let user = self.core.get_user(p.user()?).await?;
        ok(pb::GetMeResponse { user: Some(user) })
    }

    async fn update_me(
        &self,
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
        let user = self
            .core
            .update_me(
                p,
                wanted("name").then_some(given.name.as_str()),
                wanted("email").then_some(given.email.as_str()),
            )
            .await?;
        ok(pb::UpdateMeResponse { user: Some(user) })
    }

    async fn add_ssh_key(
        &self,
        request: Request<pb::AddSshKeyRequest>,
    ) -> Reply<pb::AddSshKeyResponse> {
        let p = principal(&request)?;
        let r = request.get_ref();
        let key = self.core.add_ssh_key(p, &r.name, &r.public_key).await?;
        ok(pb::AddSshKeyResponse { ssh_key: Some(key) })
    }

    async fn list_ssh_keys(
        &self,
        request: Request<pb::ListSshKeysRequest>,
    ) -> Reply<pb::ListSshKeysResponse> {
        let p = principal(&request)?;
        let r = request.get_ref();
        let (ssh_keys, next_page_token) = self
            .core
            .list_ssh_keys(p, r.page_size, &r.page_token)
            .await?;
        ok(pb::ListSshKeysResponse {
            ssh_keys,
            next_page_token,
        })
    }

    async fn delete_ssh_key(
        &self,
        request: Request<pb::DeleteSshKeyRequest>,
    ) -> Reply<pb::DeleteSshKeyResponse> {
        let p = principal(&request)?;
        self.core
            .delete_ssh_key(p, &request.get_ref().ssh_key_id)
            .await?;
        ok(pb::DeleteSshKeyResponse {})
    }
}

#[tonic::async_trait]
impl IdentityInternalService for Api {
    async fn ensure_user(
        &self,
        request: Request<pb::EnsureUserRequest>,
    ) -> Reply<pb::EnsureUserResponse> {
        let r = request.into_inner();
        let (user, created) = self.core.ensure_user(&r.email, &r.name).await?;
        ok(pb::EnsureUserResponse {
            user: Some(user),
            created,
        })
    }

    async fn batch_get_users(
        &self,
        request: Request<pb::BatchGetUsersRequest>,
    ) -> Reply<pb::BatchGetUsersResponse> {
        let users = self
            .core
            .batch_get_users(&request.into_inner().user_ids)
            .await?;
        ok(pb::BatchGetUsersResponse { users })
    }

    async fn watch_revocations(
        &self,
        request: Request<pb::WatchRevocationsRequest>,
    ) -> Reply<
        std::pin::Pin<
            Box<dyn futures::Stream<Item = Result<pb::WatchRevocationsResponse, Status>> + Send>,
        >,
    > {
        let from = request.into_inner().from_position;
        let stream = self.core.clone().watch_revocations(from).await?;
        Ok(Response::new(tenancy_runtime::shutdown::until_shutdown(
            stream,
            self.shutdown.clone(),
        )))
    }

    async fn revoke_account_access(
        &self,
        request: Request<pb::RevokeAccountAccessRequest>,
    ) -> Reply<pb::RevokeAccountAccessResponse> {
        let r = request.into_inner();
        let (tokens, position) = self
            .core
            .revoke_account_access(
                &r.user_id,
                &r.account_id,
                r.reason,
                r.change_time
                    .as_ref()
                    .map(|t| tenancy_runtime::Timestamp::from_proto(t).millis()),
            )
            .await?;
        ok(pb::RevokeAccountAccessResponse {
            revoked_api_token_count: tokens,
            position,
        })
    }

    async fn introspect_api_token(
        &self,
        request: Request<pb::IntrospectApiTokenRequest>,
    ) -> Reply<pb::IntrospectApiTokenResponse> {
        ok(self
            .core
            .introspect_api_token(&request.get_ref().secret)
            .await?)
    }

    async fn grant_staff(
        &self,
        request: Request<pb::GrantStaffRequest>,
    ) -> Reply<pb::GrantStaffResponse> {
        let user = self.core.set_staff(&request.get_ref().email, true).await?;
        ok(pb::GrantStaffResponse { user: Some(user) })
    }

    async fn revoke_staff(
        &self,
        request: Request<pb::RevokeStaffRequest>,
    ) -> Reply<pb::RevokeStaffResponse> {
        let user = self.core.set_staff(&request.get_ref().email, false).await?;
        ok(pb::RevokeStaffResponse { user: Some(user) })
    }

    async fn unlock_login(
        &self,
        request: Request<pb::UnlockLoginRequest>,
    ) -> Reply<pb::UnlockLoginResponse> {
        let (user, cleared) = self.core.unlock_login(&request.get_ref().email).await?;
        ok(pb::UnlockLoginResponse {
            user_id: user.id,
            cleared,
        })
    }

    async fn end_user_sessions(
        &self,
        request: Request<pb::EndUserSessionsRequest>,
    ) -> Reply<pb::EndUserSessionsResponse> {
        let (user, sessions_ended) = self
            .core
            .end_user_sessions(request.get_ref().user.as_ref().map(|u| match u {
                pb::end_user_sessions_request::User::UserId(id) => UserRef::Id(id),
                pb::end_user_sessions_request::User::Email(email) => UserRef::Email(email),
            }))
            .await?;
        ok(pb::EndUserSessionsResponse {
            user_id: user.id,
            sessions_ended,
        })
    }

    async fn describe_user(
        &self,
        request: Request<pb::DescribeUserRequest>,
    ) -> Reply<pb::DescribeUserResponse> {
        let (user, sessions) = self
            .core
            .describe_user(request.get_ref().user.as_ref().map(|u| match u {
                pb::describe_user_request::User::UserId(id) => UserRef::Id(id),
                pb::describe_user_request::User::Email(email) => UserRef::Email(email),
            }))
            .await?;
        ok(pb::DescribeUserResponse {
            user: Some(user),
            sessions,
        })
    }

    async fn record_usage(
        &self,
        request: Request<pb::RecordUsageRequest>,
    ) -> Reply<pb::RecordUsageResponse> {
        self.core.record_usage(request.get_ref()).await?;
        ok(pb::RecordUsageResponse {})
    }

    async fn verify_code_word(
        &self,
        request: Request<pb::VerifyCodeWordRequest>,
    ) -> Reply<pb::VerifyCodeWordResponse> {
        ok(self.core.verify_code_word(request.get_ref()).await?)
    }

    async fn rotate_signing_key(
        &self,
        request: Request<pb::RotateSigningKeyRequest>,
    ) -> Reply<pb::RotateSigningKeyResponse> {
        let (key, activate, previous_kid) = self
            .core
            .rotate_signing_key(request.into_inner().revoke_current)
            .await?;
        ok(pb::RotateSigningKeyResponse {
            new_key: Some(key),
            activate_time: Some(activate.to_proto()),
            previous_kid,
        })
    }

    async fn set_initial_password(
        &self,
        request: Request<pb::SetInitialPasswordRequest>,
    ) -> Reply<pb::SetInitialPasswordResponse> {
        let r = request.into_inner();
        let user = self
            .core
            .set_initial_password(&r.user_id, &r.password, &r.name)
            .await?;
        ok(pb::SetInitialPasswordResponse { user: Some(user) })
    }
}
