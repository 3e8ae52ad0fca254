//! Login, sessions, refresh-token rotation with reuse detection, logout,
//! and ending a member's access to an account.

use std::sync::Arc;

use sea_orm::ConnectionTrait;
use tenancy_proto::identity as pb;
use tenancy_runtime::Timestamp;
use tenancy_runtime::ids::{self, AccountId, UserId};
use tenancy_runtime::secret::SecretToken;

use super::keys::Claims;
use super::revocations::Revocation;
use super::{App, Client};
use crate::domain::error::{IdentityError, Invalid};
use crate::domain::password::{MAX_PASSWORD_BYTES, normalise};
use crate::domain::profile::parse_email;
use crate::domain::sessions::session_live;
use crate::domain::throttle::{self, Counter, State};
use crate::store;
use crate::store::api_tokens;
use crate::store::login_events::{self, LoginEventRow};
use crate::store::sessions::{self, NewSession, SessionRow};
use crate::store::{mfa, users};

/// An access token just signed.
pub(crate) struct AccessToken {
    /// The JWT.
    pub(crate) token: String,
    /// When it expires.
    pub(crate) expire_time: Timestamp,
    /// The account it selects.
    pub(crate) account_id: Option<String>,
    /// When its session last proved its credentials.
    pub(crate) auth_time: Timestamp,
}

/// What a new or refreshed session hands its client.
pub(crate) struct Credentials {
    /// The session.
    pub(crate) session_id: String,
    /// Its user.
    pub(crate) user_id: String,
    /// A fresh access token.
    pub(crate) access: AccessToken,
    /// The next refresh token (shown once).
    pub(crate) refresh_token: String,
    /// When that refresh token expires unless used.
    pub(crate) refresh_expire_time: Timestamp,
}

/// A login that needs a second factor first.
pub(crate) struct MfaChallenge {
    /// The challenge token (shown once).
    pub(crate) token: String,
    /// When it expires.
    pub(crate) expire_time: Timestamp,
    /// Whether a recovery code may answer it (the user has some left).
    pub(crate) recovery_codes_allowed: bool,
    /// Whether a TOTP code may answer it.
    pub(crate) totp_allowed: bool,
    /// The WebAuthn request options when a passkey may answer it.
    pub(crate) passkey_options: Option<String>,
}

/// Why [`App::admit`] refused an attempt.
pub(crate) struct Blocked {
    /// Until when.
    pub(crate) until: Timestamp,
    /// The kinds of counter that refused it.
    pub(crate) by: Vec<Counter>,
}

impl Blocked {
    /// Adds to `blocked` the refusal of one stored counter of `kind` (if
    /// it refuses at `now`): the latest `until` of all, every kind that
    /// refused.
    fn add(blocked: &mut Option<Blocked>, kind: Counter, state: Option<State>, now: Timestamp) {
        let Some(until) = state.and_then(|s| throttle::refusing_until(kind, s, now)) else {
            return;
        };
        let b = blocked.get_or_insert(Blocked {
            until,
            by: Vec::new(),
        });
        b.until = b.until.max(until);
        b.by.push(kind);
    }

    /// The error the client sees at `now`: TOO_MANY_ATTEMPTS with when to
    /// retry (at least a second).
    pub(crate) fn error(&self, now: Timestamp) -> IdentityError {
        let wait = u64::try_from((self.until.millis() - now.millis()).max(1000)).unwrap_or(1000);
        IdentityError::Throttled {
            retry_after: std::time::Duration::from_millis(wait),
        }
    }
}

/// How a password login ended.
pub(crate) enum LoginOutcome {
    /// A session was created.
    Session(Credentials),
    /// A second factor is needed.
    MfaChallenge(MfaChallenge),
}

/// The account a login names: none when `account_id` is empty (the
/// default account is chosen), else a UUID (INVALID_ARGUMENT otherwise).
pub(crate) fn login_account(account_id: &str) -> Result<Option<String>, IdentityError> {
    if account_id.trim().is_empty() {
        return Ok(None);
    }
    ids::parse_id("account_id", account_id)
        .map(Some)
        .map_err(|e| IdentityError::bad_id(Invalid::AccountId, e))
}

/// The security log line of a login event, with the stable `event` a SIEM
/// matches (README: Traces and logs); ids only.
fn log_login(
    user_id: &str,
    account_id: &str,
    session_id: &str,
    client: &Client,
    method: pb::LoginMethod,
    outcome: pb::LoginOutcome,
) {
    let event = match outcome {
        pb::LoginOutcome::Success => "login.success",
        pb::LoginOutcome::MfaRequired => "login.mfa_required",
        pb::LoginOutcome::FailureThrottled => "login.locked_out",
        _ => "login.failure",
    };
    tracing::info!(
        event,
        user_id,
        account_id,
        session_id,
        method = method.as_str_name(),
        outcome = outcome.as_str_name(),
        client_ip = %client.ip,
        "login"
    );
}

impl App {
    /// Records a login event (only for known users).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn login_event<C: ConnectionTrait>(
        &self,
        c: &C,
        user_id: &str,
        account_id: &str,
        session_id: &str,
        client: &Client,
        method: pb::LoginMethod,
        outcome: pb::LoginOutcome,
    ) -> Result<(), IdentityError> {
        let row = self.login_event_row(user_id, account_id, session_id, client, method, outcome);
        login_events::insert(c, row).await?;
        log_login(user_id, account_id, session_id, client, method, outcome);
        Ok(())
    }

    /// A login event of `user_id`, timed now.
    fn login_event_row(
        &self,
        user_id: &str,
        account_id: &str,
        session_id: &str,
        client: &Client,
        method: pb::LoginMethod,
        outcome: pb::LoginOutcome,
    ) -> LoginEventRow {
        LoginEventRow {
            id: ids::new_id(),
            user_id: user_id.to_owned(),
            account_id: account_id.to_owned(),
            session_id: session_id.to_owned(),
            time: self.now().millis(),
            ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
            method: method as i32,
            outcome: outcome as i32,
        }
    }

    /// Records a refused login of a known user off the response path: the
    /// event (its time taken now) is written in the background, so that a
    /// refusal answers as fast for a user as for an unknown email (no
    /// enumeration by timing). A failure to write is logged.
    pub(crate) fn record_refused_login(
        self: &Arc<Self>,
        user_id: String,
        account_id: String,
        client: &Client,
        method: pb::LoginMethod,
        outcome: pb::LoginOutcome,
    ) {
        let row = self.login_event_row(&user_id, &account_id, "", client, method, outcome);
        log_login(&user_id, &account_id, "", client, method, outcome);
        let app = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(error) = login_events::insert(&app.db, row).await {
                tracing::warn!(%error, "refused login not recorded");
            }
        });
    }

    /// Admits one attempt on `keys` ([`Self::admit`], every key
    /// enforced): TOO_MANY_ATTEMPTS, saying when to retry, while any of
    /// them refuses attempts; else the attempt is counted as a failure
    /// before it is checked, so that concurrent attempts cannot all be
    /// checked. One that turns out no failure gives its count back
    /// ([`Self::refund_attempt`], or [`Self::reset_failures`] when it
    /// proved the user).
    pub(crate) async fn admit_attempt(
        &self,
        keys: &[(String, Counter)],
    ) -> Result<(), IdentityError> {
        match self.admit(keys, &[]).await? {
            Some(blocked) => Err(blocked.error(self.now())),
            None => Ok(()),
        }
    }

    /// Checks `keys` without counting an attempt (read only: nothing is
    /// written, nothing locked): TOO_MANY_ATTEMPTS, saying when to retry,
    /// while any of them refuses attempts. For a step that checks no
    /// secret but must not be open to whoever the counters refuse.
    pub(crate) async fn check_not_blocked(
        &self,
        keys: &[(String, Counter)],
    ) -> Result<(), IdentityError> {
        let now = self.now();
        let mut blocked: Option<Blocked> = None;
        for (key, kind) in keys {
            let state = store::throttle::state(&self.db, key).await?;
            Blocked::add(&mut blocked, *kind, state, now);
        }
        match blocked {
            Some(blocked) => Err(blocked.error(now)),
            None => Ok(()),
        }
    }

    /// Gives back the attempt [`Self::admit_attempt`] counted on `keys`: it
    /// was no failure (it never reached a check, or failed for another
    /// reason than a wrong secret).
    pub(crate) async fn refund_attempt(
        &self,
        keys: &[(String, Counter)],
    ) -> Result<(), IdentityError> {
        self.attempt_succeeded(None, keys).await
    }

    /// Checks and counts one attempt in one transaction: refused (nothing
    /// counted) while any counter of `enforced` refuses attempts; else the
    /// attempt is counted as a failure on every key of `enforced` and
    /// `counted` (counted, never refusing) before it is checked, so that
    /// concurrent attempts cannot all pass one check. An attempt that then
    /// succeeds gives its count back ([`Self::attempt_succeeded`]).
    pub(crate) async fn admit(
        &self,
        enforced: &[(String, Counter)],
        counted: &[(String, Counter)],
    ) -> Result<Option<Blocked>, IdentityError> {
        let now = self.now();
        let mut keys: Vec<(&str, Counter, bool)> = enforced
            .iter()
            .map(|(k, c)| (k.as_str(), *c, true))
            .chain(counted.iter().map(|(k, c)| (k.as_str(), *c, false)))
            .collect();
        // One order for every caller: two attempts never wait on each other
        // crosswise.
        keys.sort_by(|a, b| a.0.cmp(b.0));
        let tx = store::begin(&self.db).await?;
        let mut blocked: Option<Blocked> = None;
        for (key, kind, enforce) in &keys {
            let state = store::throttle::lock(&tx, key).await?;
            if *enforce {
                Blocked::add(&mut blocked, *kind, state, now);
            }
        }
        if blocked.is_some() {
            // Dropping the transaction rolls it back: nothing counted.
            return Ok(blocked);
        }
        for (key, kind, _) in &keys {
            store::throttle::count_failure(&tx, key, *kind, now).await?;
        }
        tx.commit().await?;
        Ok(None)
    }

    /// An attempt [`Self::admit`] counted succeeded: `cleared` (if any)
    /// starts again (the back-off of this email and address), `refunded`
    /// gets the attempt back.
    pub(crate) async fn attempt_succeeded(
        &self,
        cleared: Option<&str>,
        refunded: &[(String, Counter)],
    ) -> Result<(), IdentityError> {
        // Rows in the order `admit` locks them (by key): a success and an
        // attempt on the same keys never wait on each other crosswise.
        let mut keys: Vec<(&str, bool)> = refunded
            .iter()
            .map(|(k, _)| (k.as_str(), false))
            .chain(cleared.map(|k| (k, true)))
            .collect();
        keys.sort_unstable();
        let tx = store::begin(&self.db).await?;
        for (key, clear) in keys {
            if clear {
                store::throttle::clear(&tx, key).await?;
            } else {
                store::throttle::refund(&tx, key).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Forgets the counter under `key` (an attempt proved the user).
    pub(crate) async fn reset_failures(&self, key: &str) -> Result<(), IdentityError> {
        Ok(store::throttle::clear(&self.db, key).await?)
    }

    /// Issues an access token for a session. Its `rev` claim is the
    /// revocation log's head as committed now: revocations committed before
    /// this call end it, later ones (at higher positions) do not. Call it
    /// after committing what the token must survive.
    pub(crate) async fn access_token(
        &self,
        session: &SessionRow,
    ) -> Result<AccessToken, IdentityError> {
        let flags = users::token_flags(&self.db, &session.user_id)
            .await?
            .ok_or(IdentityError::RefreshTokenInvalid)?;
        let now = self.now();
        let iat = now.seconds();
        let exp = Timestamp(iat * 1000).plus(self.auth.access_token_lifetime);
        let claims = Claims {
            iss: self.auth.issuer.clone(),
            aud: self.auth.audience.clone(),
            sub: session.user_id.clone(),
            sid: session.id.clone(),
            acc: session.account_id.clone(),
            iat,
            nbf: iat,
            rev: flags.rev,
            exp: exp.seconds(),
            auth_time: Timestamp(session.auth_time).seconds(),
            amr: session.amr.clone(),
            mfa: flags.mfa,
            staff: flags.staff,
            kind: tenancy_runtime::access_token::KIND.into(),
        };
        Ok(AccessToken {
            token: self.sign(&claims).await?,
            expire_time: exp,
            account_id: session.account_id.clone(),
            auth_time: Timestamp(session.auth_time),
        })
    }

    /// Creates a session with its first refresh token.
    pub(crate) async fn create_session(
        &self,
        user_id: &str,
        account_id: Option<String>,
        amr: Vec<String>,
        client: &Client,
        method: pb::LoginMethod,
    ) -> Result<Credentials, IdentityError> {
        let now = self.now();
        let id = ids::new_id();
        let end = now.plus(self.auth.session_lifetime);
        let expire = now.plus(self.auth.session_idle_timeout).min(end);
        let refresh = SecretToken::generate("tnr_");
        let tx = crate::store::begin(&self.db).await?;
        let new_network = self.note_login_network(&tx, user_id, client).await?;
        sessions::insert(
            &tx,
            NewSession {
                id: &id,
                user_id,
                account_id: account_id.clone(),
                user_agent: &client.user_agent,
                ip: &client.ip,
                amr: amr.join(" "),
                now: now.millis(),
                expire_time: expire.millis(),
                end_time: end.millis(),
            },
        )
        .await?;
        sessions::insert_refresh(&tx, refresh.hash(), &id, now.millis()).await?;
        users::note_login(&tx, user_id, account_id.clone(), now.millis()).await?;
        self.login_event(
            &tx,
            user_id,
            account_id.as_deref().unwrap_or_default(),
            &id,
            client,
            method,
            pb::LoginOutcome::Success,
        )
        .await?;
        tx.commit().await?;
        if new_network {
            self.new_login_notice(user_id, client).await;
        }
        let session = SessionRow {
            id: id.clone(),
            user_id: user_id.to_owned(),
            account_id,
            amr,
            auth_time: now.millis(),
            expire_time: expire.millis(),
            end_time: end.millis(),
            revoked: false,
        };
        let access = self.access_token(&session).await?;
        Ok(Credentials {
            session_id: id,
            user_id: user_id.to_owned(),
            access,
            refresh_token: refresh.expose().to_owned(),
            refresh_expire_time: expire,
        })
    }

    /// Login with email and password.
    pub(crate) async fn login(
        self: &Arc<Self>,
        email: &str,
        password: &str,
        account_id: &str,
        unlock_token: &str,
        client: &Client,
    ) -> Result<LoginOutcome, IdentityError> {
        let mut known_user = false;
        let result = self
            .password_login(
                email,
                password,
                account_id,
                unlock_token,
                client,
                &mut known_user,
            )
            .await;
        self.outcomes.login(&result, known_user);
        result
    }

    /// [`Self::login`]; sets `known_user` once it knows whether the email
    /// is a user's (for the metrics, which tell wrong passwords from
    /// unknown users; the client never learns which).
    async fn password_login(
        self: &Arc<Self>,
        email: &str,
        password: &str,
        account_id: &str,
        unlock_token: &str,
        client: &Client,
        known_user: &mut bool,
    ) -> Result<LoginOutcome, IdentityError> {
        let account = login_account(account_id)?;
        let Ok(email) = parse_email("email", email) else {
            return Err(IdentityError::CredentialsInvalid);
        };
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(IdentityError::CredentialsInvalid);
        }
        // A place in the hashing pool first: a login the pool sheds under
        // overload is refused before it does or counts anything (a real
        // user retrying then is not throttled for attempts never checked).
        let hash_slot = self.hasher.reserve()?;
        let pair = format!("pw:{}|{}", email.key, client.ip);
        let per_email = (format!("pwe:{}", email.key), Counter::Email);
        let per_ip = (format!("ip:{}", client.ip), Counter::Ip);
        let row = users::login_row(&self.db, &email.key).await?;
        let user_id: Option<String> = row.as_ref().map(|r| r.id.clone());
        *known_user = user_id.is_some();
        // The per-email cap slows guessing spread over many addresses. The
        // user is not held to it from a network they created a session from
        // before, nor with an unlock link emailed to them; the back-off per
        // (email, address) and the per-address cap hold for everyone, so
        // the password is never checked unthrottled.
        // An unknown email does the same reads (for an id no row has, so
        // neither exempts it): the refusal costs the same either way.
        let probe = user_id
            .clone()
            .unwrap_or_else(|| UserId::new().into_string());
        let unlock = self.live_unlock_link(unlock_token, &probe).await?;
        let exempt = unlock.is_some() || self.known_network(&probe, client).await?;
        let mut enforced = vec![(pair.clone(), Counter::Pair), per_ip.clone()];
        let mut counted = Vec::new();
        if exempt {
            counted.push(per_email.clone());
        } else {
            enforced.push(per_email.clone());
        }
        if let Some(blocked) = self.admit(&enforced, &counted).await? {
            if let Some(row) = &row {
                self.record_refused_login(
                    row.id.clone(),
                    account.clone().unwrap_or_default(),
                    client,
                    pb::LoginMethod::Password,
                    pb::LoginOutcome::FailureThrottled,
                );
                if blocked.by == [Counter::Email] && row.email_verified {
                    self.queue_unlock_link(row.clone(), client.clone());
                }
            }
            return Err(blocked.error(self.now()));
        }
        let hash: Option<String> = row.as_ref().and_then(|r| r.password_hash.clone());
        let (ok, rehash) = match self
            .hasher
            .verify_admitted(hash_slot, normalise(password), hash)
            .await
        {
            Ok(verified) => verified,
            Err(error) => {
                // Never checked: no failure.
                self.attempt_succeeded(None, &[(pair, Counter::Pair), per_email, per_ip])
                    .await?;
                return Err(error.into());
            }
        };
        let (Some(row), Some(user_id), true) = (row, user_id, ok) else {
            // Counted as a failure already (admit). The one read both
            // kinds of refusal make; the known user's event is written in
            // the background.
            if let Some(id) = self.user_by_email(&self.db, &email).await?.map(|u| u.id) {
                self.record_refused_login(
                    id,
                    account.clone().unwrap_or_default(),
                    client,
                    pb::LoginMethod::Password,
                    pb::LoginOutcome::FailureBadCredentials,
                );
            }
            return Err(IdentityError::CredentialsInvalid);
        };
        self.attempt_succeeded(Some(&pair), &[per_email, per_ip])
            .await?;
        if let Some(hash) = unlock {
            self.spend_unlock_link(&hash).await?;
        }
        if rehash {
            let new_hash = self.hasher.hash(normalise(password)).await?;
            users::rehash_password(&self.db, &user_id, new_hash).await?;
        }
        let account_text = account.clone().unwrap_or_default();
        if !row.email_verified {
            self.login_event(
                &self.db,
                &user_id,
                &account_text,
                "",
                client,
                pb::LoginMethod::Password,
                pb::LoginOutcome::FailureUnverified,
            )
            .await?;
            if row.last_verification_sent + 600_000 <= self.now().millis() {
                // In the background, as every mail the login path sends.
                let app = Arc::clone(self);
                let (id, email, name) = (user_id.clone(), row.email.clone(), row.name.clone());
                tokio::spawn(async move {
                    if let Err(error) = app.resend_sign_up(&id, &email, &name).await {
                        tracing::warn!(%error, "verification resend not queued");
                    }
                });
            }
            return Err(IdentityError::EmailNotVerified);
        }
        if let Some(account) = &account {
            self.require_membership(&user_id, account, "", client, pb::LoginMethod::Password)
                .await?;
        }
        if row.totp || row.passkeys {
            // CompleteMfa chooses the account when the session is created.
            return self
                .mfa_challenge(&user_id, &account_text, client, row.totp)
                .await
                .map(LoginOutcome::MfaChallenge);
        }
        let account = match account {
            Some(account) => Some(account),
            None => self.login_account(&user_id).await,
        };
        self.create_session(
            &user_id,
            account,
            vec!["pwd".into()],
            client,
            pb::LoginMethod::Password,
        )
        .await
        .map(LoginOutcome::Session)
    }

    /// Issues an MFA challenge (users with TOTP or a passkey).
    pub(crate) async fn mfa_challenge(
        &self,
        user_id: &str,
        account_id: &str,
        client: &Client,
        totp: bool,
    ) -> Result<MfaChallenge, IdentityError> {
        let token = SecretToken::generate("tnc_");
        let now = self.now();
        let expire = now.plus(std::time::Duration::from_secs(300));
        mfa::insert_challenge(
            &self.db,
            token.hash(),
            user_id,
            account_id,
            now.millis(),
            expire.millis(),
        )
        .await?;
        self.login_event(
            &self.db,
            user_id,
            account_id,
            "",
            client,
            pb::LoginMethod::Password,
            pb::LoginOutcome::MfaRequired,
        )
        .await?;
        let codes = mfa::recovery_codes_left(&self.db, user_id).await?;
        let passkey_options = self
            .passkey_challenge(user_id, &token.hash(), client, expire)
            .await?;
        Ok(MfaChallenge {
            token: token.expose().to_owned(),
            expire_time: expire,
            recovery_codes_allowed: codes > 0,
            totp_allowed: totp,
            passkey_options,
        })
    }

    pub(crate) async fn load_session<C: ConnectionTrait>(
        &self,
        c: &C,
        id: &str,
    ) -> Result<Option<SessionRow>, IdentityError> {
        Ok(sessions::load(c, id).await?)
    }

    /// RefreshSession: rotates the refresh token; a rotated-out token
    /// revokes the whole session.
    pub(crate) async fn refresh(
        &self,
        token: &str,
        client: &Client,
    ) -> Result<Credentials, IdentityError> {
        let hash = SecretToken::from_client(token.trim().to_owned()).hash();
        let now = self.now();
        let tx = crate::store::begin(&self.db).await?;
        let rotated = sessions::rotate_refresh(&tx, &hash, now.millis()).await?;
        let Some(session_id) = sessions::session_of_refresh(&tx, &hash).await? else {
            return Err(IdentityError::RefreshTokenInvalid);
        };
        let Some(session) = self.load_session(&tx, &session_id).await? else {
            return Err(IdentityError::RefreshTokenInvalid);
        };
        let account = session.account_id.clone().unwrap_or_default();
        if !rotated {
            // Reuse of a rotated-out token: revoke the session (theft).
            if !session.revoked {
                self.end_sessions(
                    &tx,
                    std::slice::from_ref(&session.id),
                    &session.user_id,
                    pb::RevocationReason::RefreshTokenReused,
                )
                .await?;
            }
            self.login_event(
                &tx,
                &session.user_id,
                &account,
                &session.id,
                client,
                pb::LoginMethod::Refresh,
                pb::LoginOutcome::FailureTokenReused,
            )
            .await?;
            tx.commit().await?;
            self.notify_revocations();
            return Err(IdentityError::RefreshTokenReused);
        }
        if !session_live(
            session.revoked,
            session.expire_time,
            session.end_time,
            now.millis(),
        ) {
            return Err(IdentityError::RefreshTokenInvalid);
        }
        let refresh = SecretToken::generate("tnr_");
        let expire = now
            .plus(self.auth.session_idle_timeout)
            .min(Timestamp(session.end_time));
        sessions::insert_refresh(&tx, refresh.hash(), &session.id, now.millis()).await?;
        sessions::refreshed(
            &tx,
            &session.id,
            expire.millis(),
            now.millis(),
            &client.ip,
            &client.user_agent,
        )
        .await?;
        tx.commit().await?;
        let mut session = session;
        // The session's account while still usable, else chosen as at login.
        // No answer from the account service: keep it (the gateway checks
        // the membership on every call anyway).
        if let Ok(chosen) = self
            .default_account(&session.user_id, session.account_id.as_deref())
            .await
            && chosen != session.account_id
        {
            sessions::set_account(&self.db, &session.id, chosen.clone()).await?;
            session.account_id = chosen;
        }
        let access = self.access_token(&session).await?;
        Ok(Credentials {
            session_id: session.id.clone(),
            user_id: session.user_id.clone(),
            access,
            refresh_token: refresh.expose().to_owned(),
            refresh_expire_time: expire,
        })
    }

    /// Ends sessions and appends one SESSION event each (in `c`'s
    /// transaction). Returns how many were live.
    pub(crate) async fn end_sessions<C: ConnectionTrait>(
        &self,
        c: &C,
        ids_in: &[String],
        user_id: &str,
        reason: pb::RevocationReason,
    ) -> Result<i64, IdentityError> {
        let now = self.now();
        let mut count = 0;
        let mut last = 0;
        for id in ids_in {
            if sessions::end(c, id, now.millis()).await? {
                count += 1;
                last = self
                    .append_revocation(
                        c,
                        Revocation::Session {
                            session_id: id.clone(),
                            user_id: user_id.to_owned(),
                        },
                        reason,
                    )
                    .await?;
            }
        }
        let _ = last;
        Ok(count)
    }

    /// Logout: ends the caller's session.
    pub(crate) async fn logout(
        &self,
        user_id: &str,
        session_id: &str,
    ) -> Result<(), IdentityError> {
        let tx = crate::store::begin(&self.db).await?;
        if sessions::is_users(&tx, session_id, user_id).await? {
            self.end_sessions(
                &tx,
                &[session_id.to_owned()],
                user_id,
                pb::RevocationReason::Logout,
            )
            .await?;
        }
        tx.commit().await?;
        self.notify_revocations();
        Ok(())
    }

    /// RevokeAccountAccess: revokes the member's API tokens for the account
    /// for good (one API_TOKEN event each). Their sessions are left alone:
    /// gateways refuse the account's calls from the membership they follow
    /// (MEMBER_SUSPENDED, NOT_A_MEMBER) while the session stays usable for
    /// the user's other accounts. Only tokens created at or before
    /// `change_time` (Unix ms; the membership change) are revoked, so a
    /// delayed or repeated delivery spares tokens made after a reactivation.
    /// Idempotent: tokens already revoked are left as they are, without a
    /// new event. Returns (tokens revoked, position).
    pub(crate) async fn revoke_account_access(
        &self,
        user_id: &UserId,
        account_id: &AccountId,
        reason: pb::RevocationReason,
        change_time: Option<i64>,
    ) -> Result<(i32, i64), IdentityError> {
        let tx = crate::store::begin(&self.db).await?;
        let (tokens, _) = self
            .revoke_api_tokens_of(
                &tx,
                user_id.as_str(),
                account_id.as_str(),
                "",
                reason,
                change_time,
            )
            .await?;
        tx.commit().await?;
        self.notify_revocations();
        Ok((
            i32::try_from(tokens).unwrap_or(i32::MAX),
            self.head_position().await?,
        ))
    }

    /// Revokes a member's API tokens for an account (those created at or
    /// before `created_until`, Unix ms, when given); returns (count, last
    /// position).
    pub(crate) async fn revoke_api_tokens_of<C: ConnectionTrait>(
        &self,
        c: &C,
        user_id: &str,
        account_id: &str,
        by: &str,
        reason: pb::RevocationReason,
        created_until: Option<i64>,
    ) -> Result<(i64, i64), IdentityError> {
        let now = self.now();
        let ids =
            api_tokens::unrevoked_of(c, user_id, account_id, created_until.unwrap_or(i64::MAX))
                .await?;
        let mut count = 0;
        let mut last = 0;
        for id in ids {
            if api_tokens::revoke(c, &id, by, now.millis()).await? {
                count += 1;
                last = self
                    .append_revocation(
                        c,
                        Revocation::ApiToken {
                            id,
                            user_id: user_id.to_owned(),
                            account_id: account_id.to_owned(),
                        },
                        reason,
                    )
                    .await?;
            }
        }
        Ok((count, last))
    }
}
