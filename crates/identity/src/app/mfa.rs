//! TOTP enrolment, MFA challenges, recovery codes, re-authentication,
//! account switching and the caller's own sessions.

use sea_orm::{ConnectionTrait, DatabaseTransaction};
use tenancy_proto::contacts::MessageTemplate;
use tenancy_proto::identity as pb;
use tenancy_runtime::ids::{self, AccountId};
use tenancy_runtime::principal::TokenKind;
use tenancy_runtime::secret::SecretToken;
use tenancy_runtime::{Error, Principal, Timestamp};

use super::revocations::Revocation;
use super::sessions::{AccessToken, Credentials};
use super::{App, Client};
use crate::domain::credentials::{
    RECOVERY_KEYED, new_recovery_codes, recovery_code_hash, rekeyed_recovery_code_hash,
};
use crate::domain::error::{IdentityError, Invalid};
use crate::domain::password::normalise;
use crate::domain::throttle::Counter;
use crate::domain::totp;
use crate::store::sessions::{self, SessionListing, SessionRow};
use crate::store::{mfa, users};

/// Pending enrolments are discarded after this long.
const ENROLLMENT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(900);
/// Wrong answers a challenge allows.
pub(crate) const CHALLENGE_ATTEMPTS: i32 = 5;

/// A second factor as presented.
pub(crate) enum Factor {
    Totp(String),
    Recovery(String),
    /// A passkey assertion (the browser's credential JSON).
    Passkey(String),
}

/// A TOTP enrolment begun: what the user's authenticator app needs.
pub(crate) struct Enrollment {
    /// The secret, base32.
    pub(crate) secret: String,
    /// The `otpauth://` URI.
    pub(crate) otpauth_uri: String,
    /// The URI as a QR code (PNG).
    pub(crate) qr_code_png: Vec<u8>,
    /// When the enrolment lapses unless confirmed.
    pub(crate) expire_time: Timestamp,
}

/// Where the next page of ListSessions / ListMemberSessions starts (after
/// this session), and for which user and account filter it was issued.
#[derive(serde::Serialize, serde::Deserialize)]
struct SessionCursor {
    user: String,
    account: String,
    time: i64,
    id: String,
}

impl App {
    /// The caller's live session, or UNAUTHENTICATED.
    pub(crate) async fn own_session(
        &self,
        user_id: &str,
        session_id: Option<&str>,
    ) -> Result<SessionRow, IdentityError> {
        let id = session_id.ok_or({
            IdentityError::PortalSessionRequired("this method needs a portal session")
        })?;
        match self.load_session(&self.db, id).await? {
            Some(s) if s.user_id == user_id && !s.revoked => Ok(s),
            _ => Err(IdentityError::SessionEnded),
        }
    }

    /// Checks a TOTP code and spends its time step: refused when that step
    /// is not after the last one the user had accepted ([`mfa::spend_step`]).
    pub(crate) async fn spend_totp<C: ConnectionTrait>(
        &self,
        c: &C,
        user_id: &str,
        sealed_secret: &str,
        code: &str,
        field: &str,
    ) -> Result<(), IdentityError> {
        let secret = self
            .secrets
            .open(sealed_secret, user_id)
            .map_err(Error::internal)?;
        let seconds = u64::try_from(self.now().seconds()).unwrap_or(0);
        let Some(step) = totp::matching_step(&secret, code, seconds) else {
            return Err(IdentityError::invalid(
                Invalid::SecondFactor,
                field,
                "wrong code",
            ));
        };
        if !mfa::spend_step(c, user_id, step, self.now().millis()).await? {
            return Err(IdentityError::invalid(
                Invalid::TotpCodeReused,
                field,
                "this code was already used; wait for the next one",
            ));
        }
        Ok(())
    }

    async fn spend_recovery<C: ConnectionTrait>(
        &self,
        c: &C,
        user_id: &str,
        code: &str,
        field: &str,
    ) -> Result<(), IdentityError> {
        let code_hash = recovery_code_hash(&self.secrets, user_id, code);
        if mfa::spend_recovery_code(c, user_id, code_hash, self.now().millis()).await? {
            Ok(())
        } else {
            Err(IdentityError::invalid(
                Invalid::SecondFactor,
                field,
                "wrong code",
            ))
        }
    }

    async fn totp_secret_of(&self, user_id: &str) -> Result<Option<String>, IdentityError> {
        Ok(users::totp_secret(&self.db, user_id).await?)
    }

    /// BeginTotpEnrollment.
    pub(crate) async fn begin_totp(&self, user_id: &str) -> Result<Enrollment, IdentityError> {
        let user = self.get_user(user_id).await?;
        if user.totp_enabled {
            return Err(IdentityError::TotpAlreadyEnabled);
        }
        let secret = totp::generate_secret();
        let (b32, uri, png) = totp::enrollment(&secret, &user.email).map_err(Error::internal)?;
        let sealed = self
            .secrets
            .seal(&secret, user_id)
            .map_err(Error::internal)?;
        let expire = self.now().plus(ENROLLMENT_LIFETIME);
        let tx = crate::store::begin(&self.db).await?;
        mfa::start_enrollment(&tx, user_id, sealed, expire.millis()).await?;
        tx.commit().await?;
        Ok(Enrollment {
            secret: b32,
            otpauth_uri: uri,
            qr_code_png: png,
            expire_time: expire,
        })
    }

    /// Re-keys recovery codes stored by earlier versions as plain SHA-256
    /// (what an offline search could reverse) into the keyed form, in one
    /// transaction; the codes users hold keep working. Run at start; how
    /// many there were.
    pub(crate) async fn rekey_recovery_codes(&self) -> Result<usize, IdentityError> {
        let tx = crate::store::begin(&self.db).await?;
        let legacy = mfa::recovery_codes_without_prefix(&tx, RECOVERY_KEYED).await?;
        for old in &legacy {
            mfa::rehash_recovery_code(&tx, old, rekeyed_recovery_code_hash(&self.secrets, old))
                .await?;
        }
        tx.commit().await?;
        Ok(legacy.len())
    }

    async fn store_recovery_codes<C: ConnectionTrait>(
        &self,
        c: &C,
        user_id: &str,
    ) -> Result<Vec<String>, IdentityError> {
        let codes = new_recovery_codes();
        let hashes = codes
            .iter()
            .map(|code| recovery_code_hash(&self.secrets, user_id, code))
            .collect();
        mfa::replace_recovery_codes(c, user_id, hashes).await?;
        Ok(codes)
    }

    /// ConfirmTotpEnrollment.
    pub(crate) async fn confirm_totp(
        &self,
        user_id: &str,
        session_id: Option<&str>,
        code: &str,
        ip: &str,
    ) -> Result<(Vec<String>, AccessToken), IdentityError> {
        let mut session = self.own_session(user_id, session_id).await?;
        let keys = [(format!("totp-enroll:{user_id}"), Counter::Pair)];
        // Counted before the code is checked: concurrent wrong codes cannot
        // all be checked.
        self.admit_attempt(&keys).await?;
        let tx = crate::store::begin(&self.db).await?;
        let checked = match mfa::pending_enrollment(&tx, user_id, self.now().millis()).await? {
            None => Err(IdentityError::TotpEnrollmentNotStarted),
            Some(sealed) => self
                .spend_totp(&tx, user_id, &sealed, code, "totp_code")
                .await
                .map(|()| sealed),
        };
        let sealed = match checked {
            Ok(sealed) => sealed,
            Err(e) => {
                // Outside the transaction (SQLite: one writer at a time).
                drop(tx);
                // Only a wrong code is a failure.
                if e.rule() != Some(Invalid::SecondFactor) {
                    self.refund_attempt(&keys).await?;
                }
                return Err(e);
            }
        };
        if !users::enable_totp(&tx, user_id, sealed, self.now().millis()).await? {
            return Err(IdentityError::TotpAlreadyEnabled);
        }
        mfa::end_enrollment(&tx, user_id).await?;
        let codes = self.store_recovery_codes(&tx, user_id).await?;
        sessions::set_amr(&tx, &session.id, "pwd otp").await?;
        self.commit_totp_change(tx, user_id, true, ip).await?;
        self.reset_failures(&keys[0].0).await?;
        session.amr = vec!["pwd".into(), "otp".into()];
        let access = self.access_token(&session).await?;
        Ok((codes, access))
    }

    /// Ends a change of the user's TOTP: appends the MFA event (gateways
    /// judge API tokens by it; a user with a passkey keeps 2FA), commits
    /// `tx`, wakes the watchers and tells the user.
    async fn commit_totp_change(
        &self,
        tx: DatabaseTransaction,
        user_id: &str,
        enabled: bool,
        ip: &str,
    ) -> Result<(), IdentityError> {
        let (reason, template) = if enabled {
            (
                pb::RevocationReason::TotpEnabled,
                MessageTemplate::SecurityTotpEnabled,
            )
        } else {
            (
                pb::RevocationReason::TotpDisabled,
                MessageTemplate::SecurityTotpDisabled,
            )
        };
        // Without TOTP a user with a passkey still has 2FA.
        let enabled = enabled || crate::store::passkeys::count(&tx, user_id).await? > 0;
        let event = Revocation::Mfa {
            user_id: user_id.to_owned(),
            enabled,
        };
        self.append_revocation(&tx, event, reason).await?;
        tx.commit().await?;
        self.notify_revocations();
        let security = [("security_url", self.portal_page("security"))];
        self.security_notice(user_id, template, ip, &security).await;
        Ok(())
    }

    /// CompleteMfa: answers a challenge and creates the session.
    pub(crate) async fn complete_mfa(
        &self,
        challenge: &str,
        factor: Option<Factor>,
        client: &Client,
    ) -> Result<Credentials, IdentityError> {
        let kind = match &factor {
            Some(Factor::Totp(_)) => "totp",
            Some(Factor::Recovery(_)) => "recovery_code",
            Some(Factor::Passkey(_)) => "passkey",
            None => "none",
        };
        let result = self.second_factor(challenge, factor, client).await;
        self.outcomes.mfa(kind, &result);
        result
    }

    async fn second_factor(
        &self,
        challenge: &str,
        factor: Option<Factor>,
        client: &Client,
    ) -> Result<Credentials, IdentityError> {
        let Some(factor) = factor else {
            return Err(IdentityError::invalid(
                Invalid::SecondFactorRequired,
                "second_factor",
                "give a TOTP or recovery code",
            ));
        };
        let hash = SecretToken::from_client(challenge.trim().to_owned()).hash();
        let now = self.now();
        let challenge = mfa::live_challenge(&self.db, &hash, now.millis())
            .await?
            .ok_or(IdentityError::MfaChallengeInvalid)?;
        if challenge.failures >= CHALLENGE_ATTEMPTS {
            return Err(IdentityError::MfaChallengeInvalid);
        }
        let mfa::Challenge {
            user_id,
            account_id,
            ..
        } = challenge;
        if let Factor::Passkey(json) = &factor {
            if !account_id.is_empty() {
                self.require_membership(
                    &user_id,
                    &account_id,
                    "",
                    client,
                    pb::LoginMethod::PasskeySecondFactor,
                )
                .await?;
            }
            return self
                .passkey_second_factor(user_id, account_id, &hash, json, client)
                .await;
        }
        let sealed = self
            .totp_secret_of(&user_id)
            .await?
            .ok_or(IdentityError::MfaChallengeInvalid)?;
        let method = match &factor {
            Factor::Totp(_) => pb::LoginMethod::Totp,
            // (A passkey was answered above.)
            Factor::Recovery(_) | Factor::Passkey(_) => pb::LoginMethod::RecoveryCode,
        };
        // The account the Login named must still be usable; checked before
        // the code, so a refusal spends neither code nor challenge.
        if !account_id.is_empty() {
            self.require_membership(&user_id, &account_id, "", client, method)
                .await?;
        }
        // The attempt is counted (per user, and on the challenge) before
        // the code is checked, so that concurrent wrong codes cannot all be
        // checked; a success gives the user's count back.
        let throttle_key = vec![(format!("mfa:{user_id}"), Counter::Email)];
        self.admit_attempt(&throttle_key).await?;
        if !mfa::count_challenge_attempt(&self.db, &hash, now.millis(), CHALLENGE_ATTEMPTS).await? {
            self.refund_attempt(&throttle_key).await?;
            return Err(IdentityError::MfaChallengeInvalid);
        }
        let tx = crate::store::begin(&self.db).await?;
        let result = match &factor {
            Factor::Totp(code) => {
                self.spend_totp(&tx, &user_id, &sealed, code, "totp_code")
                    .await
            }
            Factor::Recovery(code) | Factor::Passkey(code) => {
                self.spend_recovery(&tx, &user_id, code, "recovery_code")
                    .await
            }
        };
        if let Err(e) = result {
            drop(tx);
            if !matches!(e, IdentityError::Service(_)) {
                self.login_event(
                    &self.db,
                    &user_id,
                    &account_id,
                    "",
                    client,
                    method,
                    pb::LoginOutcome::FailureBadSecondFactor,
                )
                .await?;
            }
            return Err(e);
        }
        if !mfa::use_challenge(&tx, &hash, now.millis()).await? {
            return Err(IdentityError::MfaChallengeInvalid);
        }
        tx.commit().await?;
        self.refund_attempt(&throttle_key).await?;
        if let Factor::Recovery(_) = factor {
            self.recovery_code_notice(&user_id, &client.ip).await;
        }
        let account = if account_id.is_empty() {
            self.login_account(&user_id).await
        } else {
            Some(account_id)
        };
        self.create_session(
            &user_id,
            account,
            vec!["pwd".into(), "otp".into()],
            client,
            method,
        )
        .await
    }

    /// Reauthenticate: password plus second factor for 2FA users.
    pub(crate) async fn reauthenticate(
        &self,
        user_id: &str,
        session_id: Option<&str>,
        password: &str,
        factor: Option<Factor>,
        client: &Client,
    ) -> Result<AccessToken, IdentityError> {
        let mut session = self.own_session(user_id, session_id).await?;
        let keys = vec![(format!("reauth:{user_id}"), Counter::Pair)];
        // Counted before anything is checked (concurrent guesses cannot all
        // be checked); a success resets it.
        self.admit_attempt(&keys).await?;
        let hash = users::password_hash(&self.db, user_id).await?.flatten();
        let (ok, _) = self.hasher.verify(normalise(password), hash).await?;
        let account = session.account_id.clone().unwrap_or_default();
        // A failed attempt (counted already): recorded in the login history.
        let failed = async |outcome| {
            self.login_event(
                &self.db,
                user_id,
                &account,
                &session.id,
                client,
                pb::LoginMethod::Reauthenticate,
                outcome,
            )
            .await
        };
        if !ok {
            failed(pb::LoginOutcome::FailureBadCredentials).await?;
            return Err(IdentityError::invalid(
                Invalid::PasswordIncorrect,
                "password",
                "wrong password",
            ));
        }
        let mut amr = vec!["pwd".to_owned()];
        if let Some(sealed) = self.totp_secret_of(user_id).await? {
            let result = match &factor {
                None => Err(IdentityError::invalid(
                    Invalid::SecondFactorRequired,
                    "second_factor",
                    "give a TOTP or recovery code",
                )),
                Some(Factor::Totp(code)) => {
                    self.spend_totp(&self.db, user_id, &sealed, code, "totp_code")
                        .await
                }
                Some(Factor::Recovery(code)) => {
                    self.spend_recovery(&self.db, user_id, code, "recovery_code")
                        .await
                }
                // Reauthenticate takes codes only (the API gives no passkey).
                Some(Factor::Passkey(_)) => Err(IdentityError::invalid(
                    Invalid::SecondFactorRequired,
                    "second_factor",
                    "give a TOTP or recovery code",
                )),
            };
            if result.is_ok()
                && let Some(Factor::Recovery(_)) = &factor
            {
                self.recovery_code_notice(user_id, &client.ip).await;
            }
            if let Err(e) = result {
                if e.rule() == Some(Invalid::SecondFactorRequired) {
                    // No code was tried.
                    self.refund_attempt(&keys).await?;
                } else {
                    failed(pb::LoginOutcome::FailureBadSecondFactor).await?;
                }
                return Err(e);
            }
            amr.push("otp".into());
        }
        let now = self.now();
        sessions::reauthenticated(&self.db, &session.id, now.millis(), &amr.join(" ")).await?;
        self.reset_failures(&keys[0].0).await?;
        self.login_event(
            &self.db,
            user_id,
            &account,
            &session.id,
            client,
            pb::LoginMethod::Reauthenticate,
            pb::LoginOutcome::Success,
        )
        .await?;
        session.auth_time = now.millis();
        session.amr = amr;
        self.access_token(&session).await
    }

    /// The caller's portal session, authenticated within the reauth window:
    /// what sensitive changes need. `why` tells an API-token caller what
    /// it may not do.
    pub(crate) async fn recent_portal_session(
        &self,
        p: &Principal,
        why: &'static str,
    ) -> Result<SessionRow, IdentityError> {
        if p.token_kind != TokenKind::Portal {
            return Err(IdentityError::PortalSessionRequired(why));
        }
        let session = self.own_session(p.user()?, p.session_id.as_deref()).await?;
        self.require_recent(&session)?;
        Ok(session)
    }

    /// Refuses unless the session authenticated within the reauth window.
    pub(crate) fn require_recent(&self, session: &SessionRow) -> Result<(), IdentityError> {
        if Timestamp(session.auth_time).plus(self.auth.reauth_window) < self.now() {
            return Err(IdentityError::ReauthRequired);
        }
        Ok(())
    }

    /// SwitchAccount.
    pub(crate) async fn switch_account(
        &self,
        user_id: &str,
        session_id: Option<&str>,
        account_id: &AccountId,
        client: &Client,
    ) -> Result<AccessToken, IdentityError> {
        let account_id = account_id.to_string();
        let mut session = self.own_session(user_id, session_id).await?;
        self.require_membership(
            user_id,
            &account_id,
            &session.id,
            client,
            pb::LoginMethod::SwitchAccount,
        )
        .await?;
        let now = self.now();
        sessions::switch_account(&self.db, &session.id, &account_id, now.millis()).await?;
        users::set_last_account(&self.db, user_id, &account_id).await?;
        self.login_event(
            &self.db,
            user_id,
            &account_id,
            &session.id,
            client,
            pb::LoginMethod::SwitchAccount,
            pb::LoginOutcome::Success,
        )
        .await?;
        session.account_id = Some(account_id);
        self.access_token(&session).await
    }

    /// ListSessions / ListMemberSessions: a page of `size` of the user's
    /// live sessions (those selecting `account` when given), newest first,
    /// after `page_token` (bound to the user and account it was issued
    /// for); the token of the next page, empty on the last.
    pub(crate) async fn list_sessions(
        &self,
        user_id: &str,
        account: Option<&str>,
        size: u64,
        page_token: &str,
    ) -> Result<(Vec<SessionListing>, String), IdentityError> {
        let account_key = account.unwrap_or_default();
        let after = ids::decode_page_token_for::<SessionCursor>(page_token, |c| {
            c.user == user_id && c.account == account_key
        })?;
        let size = usize::try_from(size).unwrap_or(50);
        let limit = i64::try_from(size).unwrap_or(50) + 1;
        let mut page = sessions::list_open(
            &self.db,
            user_id,
            account,
            self.now().millis(),
            after.as_ref().map(|c| (c.time, c.id.as_str())),
            limit,
        )
        .await?;
        let mut next = String::new();
        if page.len() > size {
            page.truncate(size);
            if let Some(last) = page.last() {
                next = ids::encode_page_token(&SessionCursor {
                    user: user_id.to_owned(),
                    account: account_key.to_owned(),
                    time: last.create_time,
                    id: last.id.clone(),
                });
            }
        }
        Ok((page, next))
    }

    /// RevokeSession / RevokeOtherSessions.
    pub(crate) async fn revoke_own_sessions(
        &self,
        user_id: &str,
        only: Option<&str>,
        keep: Option<&str>,
    ) -> Result<i64, IdentityError> {
        let tx = crate::store::begin(&self.db).await?;
        let ids_in: Vec<String> = match only {
            Some(id) => {
                if !sessions::is_users(&tx, id, user_id).await? {
                    return Err(IdentityError::SessionNotFound);
                }
                vec![id.to_owned()]
            }
            None => sessions::open_ids(&tx, user_id, None, keep).await?,
        };
        let n = self
            .end_sessions(&tx, &ids_in, user_id, pb::RevocationReason::RevokedByUser)
            .await?;
        tx.commit().await?;
        self.notify_revocations();
        Ok(n)
    }

    /// The proof of DisableTotp / RegenerateRecoveryCodes: the password or
    /// a current TOTP code (attempt-limited).
    async fn prove(
        &self,
        user_id: &str,
        password: Option<&str>,
        code: Option<&str>,
    ) -> Result<String, IdentityError> {
        let sealed = self
            .totp_secret_of(user_id)
            .await?
            .ok_or(IdentityError::TotpNotEnabled)?;
        if password.is_none() && code.is_none() {
            return Err(IdentityError::invalid(
                Invalid::ProofRequired,
                "proof",
                "give the password or a TOTP code",
            ));
        }
        let keys = vec![(format!("reauth:{user_id}"), Counter::Pair)];
        // Counted before the proof is checked; a success resets it.
        self.admit_attempt(&keys).await?;
        let result = match (password, code) {
            (Some(p), _) => {
                let hash = users::password_hash(&self.db, user_id).await?.flatten();
                if self.hasher.verify(normalise(p), hash).await?.0 {
                    Ok(())
                } else {
                    Err(IdentityError::invalid(
                        Invalid::PasswordIncorrect,
                        "password",
                        "wrong password",
                    ))
                }
            }
            (None, Some(c)) => {
                self.spend_totp(&self.db, user_id, &sealed, c, "totp_code")
                    .await
            }
            (None, None) => Ok(()),
        };
        result?;
        self.reset_failures(&keys[0].0).await?;
        Ok(sealed)
    }

    /// DisableTotp.
    pub(crate) async fn disable_totp(
        &self,
        user_id: &str,
        session_id: Option<&str>,
        password: Option<&str>,
        code: Option<&str>,
        ip: &str,
    ) -> Result<AccessToken, IdentityError> {
        let mut session = self.own_session(user_id, session_id).await?;
        self.prove(user_id, password, code).await?;
        let now = self.now();
        let tx = crate::store::begin(&self.db).await?;
        users::disable_totp(&tx, user_id, now.millis()).await?;
        mfa::replace_recovery_codes(&tx, user_id, Vec::new()).await?;
        sessions::set_amr_of_user(&tx, user_id, "pwd").await?;
        self.append_revocation(
            &tx,
            super::revocations::Revocation::UserTokensBefore {
                user_id: user_id.to_owned(),
            },
            pb::RevocationReason::TotpDisabled,
        )
        .await?;
        self.commit_totp_change(tx, user_id, false, ip).await?;
        session.amr = vec!["pwd".into()];
        self.access_token(&session).await
    }

    /// RegenerateRecoveryCodes.
    pub(crate) async fn regenerate_recovery_codes(
        &self,
        user_id: &str,
        password: Option<&str>,
        code: Option<&str>,
    ) -> Result<Vec<String>, IdentityError> {
        self.prove(user_id, password, code).await?;
        let tx = crate::store::begin(&self.db).await?;
        let codes = self.store_recovery_codes(&tx, user_id).await?;
        tx.commit().await?;
        Ok(codes)
    }
}
