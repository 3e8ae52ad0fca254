//! Public API tokens and password resets.

use std::sync::Arc;

use tenancy_proto::contacts::MessageTemplate;
use tenancy_proto::identity as pb;
use tenancy_runtime::ids::{self, AccountId, ApiTokenId};
use tenancy_runtime::secret::{SecretToken, sha256_hex};
use tenancy_runtime::{Error, Principal, Timestamp};

use super::App;
use super::revocations::Revocation;
use crate::domain::api_tokens::{TokenState, token_state};
use crate::domain::credentials::{api_token_well_formed, new_api_token};
use crate::domain::error::{IdentityError, Invalid};
use crate::domain::password::check_new_password;
use crate::domain::profile::{parse_email, parse_label};
use crate::peers::MemberState;
use crate::store::api_tokens::{self, ApiTokenRow, Introspected};
use crate::store::email_tokens::{self, Purpose};
use crate::store::{sessions, users};

/// A token and its state when it was read.
pub(crate) struct ApiToken {
    /// The token.
    pub(crate) token: ApiTokenRow,
    /// Its state then.
    pub(crate) state: TokenState,
}

/// A stored token with its state at `now`.
fn api_token(token: ApiTokenRow, now: Timestamp) -> ApiToken {
    let state = token_state(token.revoke_time, token.expire_time, now.millis());
    ApiToken { token, state }
}

/// Active API tokens a user may hold per account.
const MAX_ACTIVE_TOKENS: i64 = 50;

/// What CreateApiToken asks for (validated at the edge: the allowlist).
pub(crate) struct NewToken<'a> {
    /// The label, as sent.
    pub(crate) name: &'a str,
    /// When it expires, if ever.
    pub(crate) expire: Option<Timestamp>,
    /// Read-only methods only.
    pub(crate) read_only: bool,
    /// The API member to issue it for (empty: the caller).
    pub(crate) member_id: &'a str,
    /// Where it may be used from (empty: anywhere).
    pub(crate) source_allowlist: &'a [ipnet::IpNet],
}

/// What ListApiTokens asks for, as the client sent it (validated by the
/// use case, in its order).
pub(crate) struct TokenListing<'a> {
    /// Whose tokens (empty: the caller's, or everyone's for owners).
    pub(crate) user_id: &'a str,
    /// `ApiTokenState` numbers (empty: ACTIVE).
    pub(crate) states: &'a [i32],
    /// The page size asked for.
    pub(crate) page_size: i32,
    /// Where the page starts.
    pub(crate) page_token: &'a str,
}

impl App {
    /// CreateApiToken (portal session, recent authentication): the
    /// caller's own token, or (owners) one for an API member of the
    /// account.
    pub(crate) async fn create_api_token(
        &self,
        p: &Principal,
        new: NewToken<'_>,
    ) -> Result<(ApiToken, String), IdentityError> {
        let account_id = p.account()?.to_owned();
        self.recent_portal_session(p, "an API token cannot create tokens")
            .await?;
        let name = parse_label("name", new.name)?;
        let now = self.now();
        if new.expire.is_some_and(|e| e <= now) {
            return Err(IdentityError::invalid(
                Invalid::ExpireTime,
                "expire_time",
                "must be in the future",
            ));
        }
        let user_id = if new.member_id.is_empty() {
            p.user()?.to_owned()
        } else {
            self.api_member_of(p, &account_id, new.member_id).await?
        };
        let (expire, read_only) = (new.expire, new.read_only);
        let secret = new_api_token();
        let id = ApiTokenId::new();
        let tx = crate::store::begin(&self.db).await?;
        let active = api_tokens::count_active(&tx, &user_id, &account_id, now.millis()).await?;
        if active >= MAX_ACTIVE_TOKENS {
            return Err(IdentityError::ApiTokenLimitReached {
                limit: MAX_ACTIVE_TOKENS,
            });
        }
        let token = ApiTokenRow {
            id: id.to_string(),
            name,
            user_id,
            account_id,
            last_four: secret[secret.len() - 4..].to_owned(),
            read_only,
            create_time: now.millis(),
            expire_time: expire.map(|e| e.millis()),
            last_used_time: None,
            last_used_ip: String::new(),
            revoke_time: None,
            revoked_by: String::new(),
            source_allowlist: tenancy_runtime::allowlist::to_strings(new.source_allowlist)
                .join(" "),
        };
        api_tokens::insert(&tx, &token, sha256_hex(secret.as_bytes())).await?;
        let stored = api_tokens::get_token(&tx, &id, None)
            .await?
            .ok_or_else(|| Error::internal("token vanished"))?;
        tx.commit().await?;
        tracing::info!(
            event = "api_token.create",
            user_id = %p.user_id.as_deref().unwrap_or_default(),
            member_id = %stored.user_id,
            account_id = %stored.account_id,
            api_token_id = %stored.id,
            "API token issued"
        );
        Ok((api_token(stored, now), secret))
    }

    /// The user id of `member_id` when it names an ACTIVE API member of
    /// `account_id` and the caller is an owner there: only owners issue an
    /// API member's tokens (ROLE_TOO_LOW otherwise); a suspended one is
    /// API_MEMBER_SUSPENDED, a revoked one MEMBER_REVOKED (its status asked
    /// of the account service); anything else, including a person's id, is
    /// MEMBER_NOT_FOUND.
    async fn api_member_of(
        &self,
        p: &Principal,
        account_id: &str,
        member_id: &str,
    ) -> Result<String, IdentityError> {
        if !p.is_owner() {
            return Err(Error::role_too_low(
                tenancy_proto::auth::Role::Owner,
                "only owners issue an API member's tokens",
            )
            .into());
        }
        let Ok(id) = tenancy_runtime::ids::UserId::parse("member_id", member_id) else {
            return Err(IdentityError::ApiMemberNotFound);
        };
        match users::by_id(&self.db, id.as_str()).await? {
            Some(user) if user.api_account_id == account_id => {}
            _ => return Err(IdentityError::ApiMemberNotFound),
        }
        // An API member belongs to its one account for good: no membership
        // there any more means it was revoked.
        match self
            .accounts
            .member_status(&id, &AccountId::trusted(account_id))
            .await?
        {
            Some(MemberState::Active) => Ok(id.into_string()),
            Some(MemberState::Suspended) => Err(IdentityError::ApiMemberSuspended),
            None => Err(IdentityError::ApiMemberRevoked),
        }
    }

    /// RevokeApiToken: managers their own, owners any in the account.
    pub(crate) async fn revoke_api_token(
        &self,
        p: &Principal,
        id: &str,
    ) -> Result<ApiToken, IdentityError> {
        let account_id = p.account()?.to_owned();
        let user_id = p.user()?.to_owned();
        let id =
            ApiTokenId::parse("api_token_id", id).map_err(|_| IdentityError::ApiTokenNotFound)?;
        let now = self.now();
        let tx = crate::store::begin(&self.db).await?;
        let token = api_tokens::get_token(&tx, &id, Some(&account_id))
            .await?
            .ok_or(IdentityError::ApiTokenNotFound)?;
        if !p.is_owner() && token.user_id != user_id {
            return Err(IdentityError::ApiTokenNotFound);
        }
        if token_state(token.revoke_time, token.expire_time, now.millis()) != TokenState::Active {
            return Ok(api_token(token, now));
        }
        if api_tokens::revoke(&tx, id.as_str(), &user_id, now.millis()).await? {
            let reason = if token.user_id == user_id {
                pb::RevocationReason::RevokedByUser
            } else {
                pb::RevocationReason::RevokedByOwner
            };
            self.append_revocation(
                &tx,
                Revocation::ApiToken {
                    id: id.to_string(),
                    user_id: token.user_id.clone(),
                    account_id,
                },
                reason,
            )
            .await?;
        }
        let revoked = api_tokens::get_token(&tx, &id, None)
            .await?
            .ok_or(IdentityError::ApiTokenNotFound)?;
        tx.commit().await?;
        self.notify_revocations();
        tracing::info!(
            event = "api_token.revoke",
            user_id = %user_id,
            member_id = %revoked.user_id,
            account_id = %revoked.account_id,
            api_token_id = %revoked.id,
            "API token revoked"
        );
        Ok(api_token(revoked, now))
    }

    /// ListApiTokens: newest first, keyset-paginated by id (UUIDv7, so
    /// creation order), filtered by user and states.
    pub(crate) async fn list_api_tokens(
        &self,
        p: &Principal,
        request: TokenListing<'_>,
    ) -> Result<(Vec<ApiToken>, String), IdentityError> {
        let account_id = p.account()?.to_owned();
        let me = p.user()?.to_owned();
        let user_filter = request.user_id;
        let filter = if p.is_owner() {
            user_filter.to_owned()
        } else if user_filter.is_empty() || user_filter == me {
            me
        } else {
            return Err(IdentityError::OthersTokensNeedOwner);
        };
        let size = ids::page_size(request.page_size)?;
        let mut states: Vec<i32> = request.states.to_vec();
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
        let after = ids::decode_page_token_for::<TokenList>(request.page_token, |c| {
            c.account == list.account && c.user == list.user && c.states == list.states
        })?;
        let now = self.now();
        let mut wanted = Vec::new();
        for state in &states {
            wanted.push(match pb::ApiTokenState::try_from(*state) {
                Ok(pb::ApiTokenState::Active) => TokenState::Active,
                Ok(pb::ApiTokenState::Expired) => TokenState::Expired,
                Ok(pb::ApiTokenState::Revoked) => TokenState::Revoked,
                _ => return Err(IdentityError::ApiTokenStateInvalid),
            });
        }
        let after = after.map(|c| c.after).unwrap_or_default();
        let rows = api_tokens::page(
            &self.db,
            api_tokens::Query {
                account_id: &account_id,
                user_id: &filter,
                states: &wanted,
                now: now.millis(),
                after: &after,
                limit: i64::try_from(size).unwrap_or(50) + 1,
            },
        )
        .await?;
        let mut tokens: Vec<ApiToken> = rows.into_iter().map(|t| api_token(t, now)).collect();
        let mut next = String::new();
        if tokens.len() > usize::try_from(size).unwrap_or(50) {
            tokens.pop();
            if let Some(last) = tokens.last() {
                next = ids::encode_page_token(&TokenList {
                    after: last.token.id.clone(),
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
    ) -> Result<Introspected, IdentityError> {
        let invalid_token = || IdentityError::ApiTokenInvalid;
        if !api_token_well_formed(secret) {
            return Err(invalid_token());
        }
        let now = self.now();
        let found = api_tokens::by_hash(&self.db, &sha256_hex(secret.as_bytes()))
            .await?
            .ok_or_else(invalid_token)?;
        match token_state(
            found.token.revoke_time,
            found.token.expire_time,
            now.millis(),
        ) {
            TokenState::Revoked => Err(IdentityError::TokenRevoked),
            TokenState::Expired => Err(IdentityError::TokenExpired),
            TokenState::Active => Ok(found),
        }
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
        let unknown = || IdentityError::invalid(Invalid::ResetToken, "token", "unknown or used");
        let link = email_tokens::find(&self.db, &hash, Purpose::Reset)
            .await?
            .ok_or_else(unknown)?;
        // The user's address now (the link went to the one they had then).
        let email = users::by_id(&self.db, &link.user_id)
            .await?
            .ok_or_else(unknown)?
            .email;
        if link.used_time.is_some() {
            return Err(IdentityError::invalid(
                Invalid::ResetToken,
                "token",
                "unknown or used",
            ));
        }
        if link.expire_time <= now.millis() {
            return Err(IdentityError::invalid(
                Invalid::ResetTokenExpired,
                "token",
                "expired",
            ));
        }
        let user_id = link.user_id;
        let local = parse_email("email", &email).ok().map(|e| e.local);
        let password = check_new_password(
            "new_password",
            password,
            self.auth.password_min_chars,
            local.as_deref(),
        )?;
        let new_hash = self.hasher.hash(password).await?;
        let tx = crate::store::begin(&self.db).await?;
        if !email_tokens::spend(&tx, &hash, now.millis()).await? {
            return Err(IdentityError::invalid(
                Invalid::ResetToken,
                "token",
                "unknown or used",
            ));
        }
        // Every other outstanding reset link dies with the change.
        email_tokens::spend_all_of(&tx, &user_id, Purpose::Reset, now.millis()).await?;
        // The reset proved the address: no sign-up's link may replace the
        // password chosen here.
        email_tokens::spend_sign_ups(&tx, &user_id, now.millis()).await?;
        users::set_password(&tx, &user_id, new_hash, now.millis(), true).await?;
        let sessions = sessions::open_ids(&tx, &user_id, None, None).await?;
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
