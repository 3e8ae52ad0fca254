//! Public API tokens and password resets.

use std::sync::Arc;

use sea_orm::QueryResult;
use tenancy_proto::contacts::MessageTemplate;
use tenancy_proto::identity as pb;
use tenancy_runtime::secret::{SecretToken, sha256_hex};
use tenancy_runtime::{Error, Principal, Timestamp, ids};

use super::App;
use super::revocations::Revocation;
use super::users::RESET;
use crate::domain::api_tokens::{TokenState, token_state};
use crate::domain::credentials::{api_token_well_formed, new_api_token};
use crate::domain::error::{IdentityError, Invalid};
use crate::domain::password::check_new_password;
use crate::domain::profile::{parse_email, parse_label};
use crate::store::api_tokens;
use tenancy_runtime::db::{all, exec, get, one};

const TOKEN_COLUMNS: &str = "id, name, user_id, account_id, last_four, read_only, create_time, expire_time, \
    last_used_time, last_used_ip, revoke_time, revoked_by";

fn token_from_row(r: &QueryResult, now: Timestamp) -> Result<pb::ApiToken, IdentityError> {
    let expire: Option<i64> = get(r, "expire_time")?;
    let revoke: Option<i64> = get(r, "revoke_time")?;
    let state = match token_state(revoke, expire, now.millis()) {
        TokenState::Active => pb::ApiTokenState::Active,
        TokenState::Expired => pb::ApiTokenState::Expired,
        TokenState::Revoked => pb::ApiTokenState::Revoked,
    };
    Ok(pb::ApiToken {
        id: get(r, "id")?,
        name: get(r, "name")?,
        user_id: get(r, "user_id")?,
        account_id: get(r, "account_id")?,
        last_four: get(r, "last_four")?,
        read_only: get(r, "read_only")?,
        state: state as i32,
        create_time: Some(Timestamp(get(r, "create_time")?).to_proto()),
        expire_time: expire.map(|t| Timestamp(t).to_proto()),
        last_used_time: get::<Option<i64>>(r, "last_used_time")?.map(|t| Timestamp(t).to_proto()),
        last_used_ip_address: get(r, "last_used_ip")?,
        revoke_time: revoke.map(|t| Timestamp(t).to_proto()),
        revoked_by_user_id: get(r, "revoked_by")?,
    })
}

/// Active API tokens a user may hold per account.
const MAX_ACTIVE_TOKENS: i64 = 50;

impl App {
    /// CreateApiToken (portal session, recent authentication).
    pub(crate) async fn create_api_token(
        &self,
        p: &Principal,
        name: &str,
        expire: Option<Timestamp>,
        read_only: bool,
    ) -> Result<(pb::ApiToken, String), IdentityError> {
        let user_id = p.user()?.to_owned();
        let account_id = p.account()?.to_owned();
        if p.token_kind != tenancy_runtime::principal::TokenKind::Portal {
            return Err(IdentityError::PortalSessionRequired(
                "an API token cannot create tokens",
            ));
        }
        let session = self.own_session(&user_id, p.session_id.as_deref()).await?;
        self.require_recent(&session)?;
        let name = parse_label("name", name)?;
        let now = self.now();
        if expire.is_some_and(|e| e <= now) {
            return Err(IdentityError::invalid(
                Invalid::ExpireTime,
                "expire_time",
                "must be in the future",
            ));
        }
        let secret = new_api_token();
        let id = ids::new_id();
        let tx = crate::store::begin(&self.db).await?;
        let active = api_tokens::count_active(&tx, &user_id, &account_id, now.millis()).await?;
        if active >= MAX_ACTIVE_TOKENS {
            return Err(IdentityError::ApiTokenLimitReached {
                limit: MAX_ACTIVE_TOKENS,
            });
        }
        exec(
            &tx,
            "INSERT INTO identity_api_tokens (id, token_hash, user_id, account_id, name, last_four, read_only, \
             create_time, expire_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            vec![
                id.clone().into(),
                sha256_hex(secret.as_bytes()).into(),
                user_id.into(),
                account_id.into(),
                name.into(),
                secret[secret.len() - 4..].to_owned().into(),
                read_only.into(),
                now.millis().into(),
                expire.map(|e| e.millis()).into(),
            ],
        )
        .await?;
        let row = one(
            &tx,
            &format!("SELECT {TOKEN_COLUMNS} FROM identity_api_tokens WHERE id = $1"),
            vec![id.into()],
        )
        .await?
        .ok_or_else(|| Error::internal("token vanished"))?;
        tx.commit().await?;
        Ok((token_from_row(&row, now)?, secret))
    }

    /// RevokeApiToken: managers their own, owners any in the account.
    pub(crate) async fn revoke_api_token(
        &self,
        p: &Principal,
        id: &str,
    ) -> Result<pb::ApiToken, IdentityError> {
        let account_id = p.account()?.to_owned();
        let user_id = p.user()?.to_owned();
        let id = ids::parse_id("api_token_id", id).map_err(|_| IdentityError::ApiTokenNotFound)?;
        let now = self.now();
        let tx = crate::store::begin(&self.db).await?;
        let row = one(
            &tx,
            &format!(
                "SELECT {TOKEN_COLUMNS} FROM identity_api_tokens WHERE id = $1 AND account_id = $2"
            ),
            vec![id.clone().into(), account_id.clone().into()],
        )
        .await?
        .ok_or(IdentityError::ApiTokenNotFound)?;
        let token = token_from_row(&row, now)?;
        if !p.is_owner() && token.user_id != user_id {
            return Err(IdentityError::ApiTokenNotFound);
        }
        if token.state != pb::ApiTokenState::Active as i32 {
            return Ok(token);
        }
        let n = exec(
            &tx,
            "UPDATE identity_api_tokens SET revoke_time = $1, revoked_by = $2 WHERE id = $3 AND revoke_time IS NULL",
            vec![now.millis().into(), user_id.clone().into(), id.clone().into()],
        )
        .await?;
        if n == 1 {
            let reason = if token.user_id == user_id {
                pb::RevocationReason::RevokedByUser
            } else {
                pb::RevocationReason::RevokedByOwner
            };
            self.append_revocation(
                &tx,
                Revocation::ApiToken {
                    id: id.clone(),
                    user_id: token.user_id.clone(),
                    account_id,
                },
                reason,
            )
            .await?;
        }
        let row = one(
            &tx,
            &format!("SELECT {TOKEN_COLUMNS} FROM identity_api_tokens WHERE id = $1"),
            vec![id.into()],
        )
        .await?
        .ok_or(IdentityError::ApiTokenNotFound)?;
        tx.commit().await?;
        self.notify_revocations();
        token_from_row(&row, now)
    }

    /// ListApiTokens: newest first, keyset-paginated by id (UUIDv7, so
    /// creation order), filtered by user and states.
    pub(crate) async fn list_api_tokens(
        &self,
        p: &Principal,
        request: &pb::ListApiTokensRequest,
    ) -> Result<(Vec<pb::ApiToken>, String), IdentityError> {
        let account_id = p.account()?.to_owned();
        let me = p.user()?.to_owned();
        let user_filter = request.user_id.as_str();
        let filter = if p.is_owner() {
            user_filter.to_owned()
        } else if user_filter.is_empty() || user_filter == me {
            me
        } else {
            return Err(IdentityError::OthersTokensNeedOwner);
        };
        let size = ids::page_size(request.page_size)?;
        let mut states: Vec<i32> = request.states.clone();
        if states.is_empty() {
            states.push(pb::ApiTokenState::Active as i32);
        }
        states.sort_unstable();
        states.dedup();
        let list = TokenList {
            account: account_id.clone(),
            user: filter.clone(),
            states: states.clone(),
            after: String::new(),
        };
        let after = ids::decode_page_token_for::<TokenList>(&request.page_token, |c| {
            c.account == list.account && c.user == list.user && c.states == list.states
        })?;
        let now = self.now();
        let mut conditions = Vec::new();
        for state in &states {
            let state = match pb::ApiTokenState::try_from(*state) {
                Ok(pb::ApiTokenState::Active) => TokenState::Active,
                Ok(pb::ApiTokenState::Expired) => TokenState::Expired,
                Ok(pb::ApiTokenState::Revoked) => TokenState::Revoked,
                _ => return Err(IdentityError::ApiTokenStateInvalid),
            };
            conditions.push(api_tokens::state_condition(state, "$3"));
        }
        let limit = i64::try_from(size).unwrap_or(50) + 1;
        let rows = all(
            &self.db,
            &format!(
                "SELECT {TOKEN_COLUMNS} FROM identity_api_tokens WHERE account_id = $1 AND ($2 = '' OR user_id = $2) \
                 AND ({}) AND ($4 = '' OR id < $4) ORDER BY id DESC LIMIT $5",
                conditions.join(" OR ")
            ),
            vec![
                account_id.into(),
                filter.into(),
                now.millis().into(),
                after.map(|c| c.after).unwrap_or_default().into(),
                limit.into(),
            ],
        )
        .await?;
        let mut tokens = rows
            .iter()
            .map(|r| token_from_row(r, now))
            .collect::<Result<Vec<_>, _>>()?;
        let mut next = String::new();
        if tokens.len() > usize::try_from(size).unwrap_or(50) {
            tokens.pop();
            if let Some(last) = tokens.last() {
                next = ids::encode_page_token(&TokenList {
                    after: last.id.clone(),
                    ..list
                });
            }
        }
        Ok((tokens, next))
    }

    /// IntrospectApiToken: the principal of a live token. A token identity
    /// never issued (or malformed) is NOT_FOUND `API_TOKEN_INVALID`; one it
    /// issued but that is dead says why, as the gateway tells its holder:
    /// UNAUTHENTICATED `TOKEN_REVOKED` (revocation wins over expiry) or
    /// `TOKEN_EXPIRED`. Only the holder of the full secret learns that.
    pub(crate) async fn introspect_api_token(
        &self,
        secret: &str,
    ) -> Result<pb::IntrospectApiTokenResponse, IdentityError> {
        let invalid_token = || IdentityError::ApiTokenInvalid;
        if !api_token_well_formed(secret) {
            return Err(invalid_token());
        }
        let now = self.now();
        let row = one(
            &self.db,
            "SELECT t.id, t.user_id, t.account_id, t.read_only, t.expire_time, t.create_time, \
             t.revoke_time, u.totp_secret IS NOT NULL AS mfa FROM identity_api_tokens t \
             JOIN identity_users u ON u.id = t.user_id WHERE t.token_hash = $1",
            vec![sha256_hex(secret.as_bytes()).into()],
        )
        .await?
        .ok_or_else(invalid_token)?;
        let expire: Option<i64> = get(&row, "expire_time")?;
        if get::<Option<i64>>(&row, "revoke_time")?.is_some() {
            return Err(IdentityError::TokenRevoked);
        }
        if expire.is_some_and(|e| e <= now.millis()) {
            return Err(IdentityError::TokenExpired);
        }
        Ok(pb::IntrospectApiTokenResponse {
            api_token_id: get(&row, "id")?,
            user_id: get(&row, "user_id")?,
            account_id: get(&row, "account_id")?,
            read_only: get(&row, "read_only")?,
            expire_time: expire.map(|t| Timestamp(t).to_proto()),
            create_time: Some(Timestamp(get(&row, "create_time")?).to_proto()),
            mfa_enabled: get(&row, "mfa")?,
        })
    }

    /// RequestPasswordReset: the same answer, in the same time, whether or
    /// not the email exists: only the address's syntax is checked before
    /// answering; the lookup and the message happen in the background.
    pub(crate) fn request_password_reset(
        self: &Arc<Self>,
        email: &str,
        ip: &str,
    ) -> Result<(), IdentityError> {
        let email = parse_email("email", email)?;
        let app = Arc::clone(self);
        let ip = ip.to_owned();
        tokio::spawn(async move {
            let sent = match app.user_by_email(&app.db, &email).await {
                Ok(Some(user)) => app.send_reset(&user, &ip).await,
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(error) = sent {
                tracing::warn!(%error, "password reset message not queued");
            }
        });
        Ok(())
    }

    /// ResetPassword: new password, email verified, every session ended.
    pub(crate) async fn reset_password(
        &self,
        token: &str,
        password: &str,
        ip: &str,
    ) -> Result<(), IdentityError> {
        let hash = SecretToken::from_client(token.trim().to_owned()).hash();
        let now = self.now();
        let row = one(
            &self.db,
            "SELECT t.user_id, t.expire_time, t.used_time, u.email FROM identity_email_tokens t \
             JOIN identity_users u ON u.id = t.user_id WHERE t.token_hash = $1 AND t.purpose = $2",
            vec![hash.clone().into(), RESET.into()],
        )
        .await?
        .ok_or_else(|| IdentityError::invalid(Invalid::ResetToken, "token", "unknown or used"))?;
        if get::<Option<i64>>(&row, "used_time")?.is_some() {
            return Err(IdentityError::invalid(
                Invalid::ResetToken,
                "token",
                "unknown or used",
            ));
        }
        if get::<i64>(&row, "expire_time")? <= now.millis() {
            return Err(IdentityError::invalid(
                Invalid::ResetTokenExpired,
                "token",
                "expired",
            ));
        }
        let user_id: String = get(&row, "user_id")?;
        let email: String = get(&row, "email")?;
        let local = parse_email("email", &email).ok().map(|e| e.local);
        let password = check_new_password(
            "new_password",
            password,
            self.auth.password_min_chars,
            local.as_deref(),
        )?;
        let new_hash = self.hasher.hash(password).await?;
        let tx = crate::store::begin(&self.db).await?;
        let spent = exec(
            &tx,
            "UPDATE identity_email_tokens SET used_time = $1 WHERE token_hash = $2 AND used_time IS NULL",
            vec![now.millis().into(), hash.into()],
        )
        .await?;
        if spent == 0 {
            return Err(IdentityError::invalid(
                Invalid::ResetToken,
                "token",
                "unknown or used",
            ));
        }
        // Every other outstanding reset link dies with the change.
        exec(
            &tx,
            "UPDATE identity_email_tokens SET used_time = $1 WHERE user_id = $2 AND purpose = $3 AND used_time IS NULL",
            vec![now.millis().into(), user_id.clone().into(), RESET.into()],
        )
        .await?;
        exec(
            &tx,
            "UPDATE identity_users SET password_hash = $1, password_update_time = $2, update_time = $2, \
             email_verified = TRUE WHERE id = $3",
            vec![new_hash.into(), now.millis().into(), user_id.clone().into()],
        )
        .await?;
        let sessions: Vec<String> = all(
            &tx,
            "SELECT id FROM identity_sessions WHERE user_id = $1 AND revoke_time IS NULL",
            vec![user_id.clone().into()],
        )
        .await?
        .iter()
        .map(|r| get::<String>(r, "id"))
        .collect::<Result<_, _>>()?;
        self.end_sessions(
            &tx,
            &sessions,
            &user_id,
            pb::RevocationReason::PasswordReset,
        )
        .await?;
        let user_id_for_notice = user_id.clone();
        self.append_revocation(
            &tx,
            Revocation::UserTokensBefore { user_id },
            pb::RevocationReason::PasswordReset,
        )
        .await?;
        tx.commit().await?;
        self.notify_revocations();
        self.security_notice(
            &user_id_for_notice,
            MessageTemplate::SecurityPasswordChanged,
            ip,
            &[],
        )
        .await;
        Ok(())
    }
}

/// Where the next page of ListApiTokens starts (after this token id), and
/// the list and filters the token was issued for.
#[derive(serde::Serialize, serde::Deserialize)]
struct TokenList {
    account: String,
    user: String,
    states: Vec<i32>,
    after: String,
}
