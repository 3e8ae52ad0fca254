//! Passkeys (WebAuthn): registration, listing, renaming and deleting, the
//! passkey as the second factor of a login, and passwordless login with a
//! discoverable passkey.
//!
//! webauthn-rs runs every check of a ceremony (challenge, origin, rp id,
//! user presence and verification, signature, signature counter); this
//! module keeps its state server side (`identity_passkey_ceremonies`),
//! single use and expiring, bound to the session (registration), the MFA
//! challenge (second factor) or the login token (passwordless) it was
//! issued for, and applies our rules around it.

use std::time::Duration;

use base64::Engine as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tenancy_proto::contacts::MessageTemplate;
use tenancy_proto::identity as pb;
use tenancy_runtime::config::{AuthConfig, ConfigError, WebauthnAttestation};
use tenancy_runtime::ids::{self, AccountId, UserId};
use tenancy_runtime::secret::SecretToken;
use tenancy_runtime::{Error, Principal, Timestamp};
use webauthn_rs::prelude::{
    AttestationCaList, AttestedPasskeyRegistration, AuthenticationResult,
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
    WebauthnError,
};
use webauthn_rs_proto::ResidentKeyRequirement;

use super::revocations::Revocation;
use super::sessions::{AccessToken, Credentials};
use super::{App, Client};
use crate::domain::error::{IdentityError, Invalid};
use crate::domain::profile::parse_label;
use crate::domain::throttle::Counter;
use crate::store::passkeys::{self, PasskeyRow};
use crate::store::sessions::{self, SessionRow};
use crate::store::{mfa, users};

/// Passkeys a user may have.
pub(crate) const MAX_PASSKEYS: i64 = 10;
/// How long a ceremony's challenge lives.
const CEREMONY_LIFETIME: Duration = Duration::from_secs(300);
/// The largest credential JSON accepted (a browser's is about 1–2 KiB).
pub(crate) const MAX_CREDENTIAL_JSON: usize = 16 * 1024;
/// Unfinished passwordless logins one client address may hold.
const MAX_LOGINS_PER_ADDRESS: i64 = 20;

/// The relying party from `auth.webauthn_rp_id` and `auth.webauthn_origins`.
pub(crate) fn relying_party(auth: &AuthConfig) -> Result<Webauthn, ConfigError> {
    const ORIGINS: &str = "auth.webauthn_origins";
    let origins = auth
        .webauthn_origins
        .iter()
        .map(|o| Url::parse(o).map_err(|e| ConfigError::new(ORIGINS, format_args!("{o}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = origins.first() else {
        return Err(ConfigError::new(ORIGINS, "name at least one origin"));
    };
    let mut builder = WebauthnBuilder::new(&auth.webauthn_rp_id, first).map_err(|e| {
        ConfigError::new(
            "auth.webauthn_rp_id",
            format_args!("{e} (the rp id must be the origins' host or a suffix of it)"),
        )
    })?;
    for origin in &origins[1..] {
        if !origin.domain().is_some_and(|d| {
            d == auth.webauthn_rp_id || d.ends_with(&format!(".{}", auth.webauthn_rp_id))
        }) {
            return Err(ConfigError::new(
                ORIGINS,
                format_args!("{origin} is not within the rp id {}", auth.webauthn_rp_id),
            ));
        }
        builder = builder.append_allowed_origin(origin);
    }
    builder
        .rp_name(&auth.webauthn_rp_id)
        .timeout(CEREMONY_LIFETIME)
        .build()
        .map_err(|e| ConfigError::new(ORIGINS, e))
}

/// The attestation CAs a registering authenticator must chain to, from
/// `auth.webauthn_attestation` and `auth.webauthn_attestation_ca_file`;
/// `None` when any authenticator may register.
pub(crate) fn attestation_cas(auth: &AuthConfig) -> Result<Option<AttestationCaList>, ConfigError> {
    const FILE: &str = "auth.webauthn_attestation_ca_file";
    const END: &str = "-----END CERTIFICATE-----";
    if auth.webauthn_attestation == WebauthnAttestation::None {
        return Ok(None);
    }
    let Some(path) = &auth.webauthn_attestation_ca_file else {
        return Err(ConfigError::new(
            FILE,
            "name the PEM file of the attestation CAs (auth.webauthn_attestation is \"ca\")",
        ));
    };
    let pem = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(FILE, format_args!("{}: {e}", path.display())))?;
    let mut cas = AttestationCaList::default();
    for (n, block) in pem.split_inclusive(END).enumerate() {
        let Some(begin) = block.find("-----BEGIN CERTIFICATE-----") else {
            continue;
        };
        let one = AttestationCaList::try_from(&block.as_bytes()[begin..]).map_err(|e| {
            ConfigError::new(
                FILE,
                format_args!("{}: certificate {}: {e}", path.display(), n + 1),
            )
        })?;
        cas.union(&one);
    }
    if cas.is_empty() {
        return Err(ConfigError::new(
            FILE,
            format_args!("{}: no PEM certificate in it", path.display()),
        ));
    }
    Ok(Some(cas))
}

/// What a passkey proves, as an RFC 8176 amr value: a synced passkey is a
/// software-secured key, a device-bound one hardware-secured.
fn amr_of(backup_eligible: bool) -> &'static str {
    if backup_eligible { "swk" } else { "hwk" }
}

/// A credential id as stored: base64url without padding.
fn credential_key(id: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

/// The user handle a passkey stores: the user's id (a UUID) as 16 bytes.
fn user_handle(user_id: &str) -> Result<Uuid, IdentityError> {
    Uuid::parse_str(user_id).map_err(|e| IdentityError::Service(Error::internal(e)))
}

/// Parses the browser's credential JSON given in `field`.
fn parse_credential<T: DeserializeOwned>(field: &str, json: &str) -> Result<T, IdentityError> {
    if json.len() > MAX_CREDENTIAL_JSON {
        return Err(IdentityError::invalid(
            Invalid::Passkey,
            field,
            format!("at most {MAX_CREDENTIAL_JSON} bytes"),
        ));
    }
    serde_json::from_str(json).map_err(|e| {
        IdentityError::invalid(
            Invalid::Passkey,
            field,
            format!("not a WebAuthn PublicKeyCredential as JSON: {e}"),
        )
    })
}

fn to_json<T: Serialize>(value: &T) -> Result<String, IdentityError> {
    serde_json::to_string(value).map_err(|e| IdentityError::Service(Error::internal(e)))
}

fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, IdentityError> {
    serde_json::from_str(text).map_err(|e| IdentityError::Service(Error::internal(e)))
}

fn internal(e: WebauthnError) -> IdentityError {
    IdentityError::Service(Error::internal(e))
}

/// Whether the authenticator said the credential may be synced.
fn backup_eligible(passkey: &Passkey) -> bool {
    serde_json::to_value(passkey)
        .ok()
        .and_then(|v| v.pointer("/cred/backup_eligible").and_then(|b| b.as_bool()))
        .unwrap_or(false)
}

/// How checking an assertion against a stored passkey ended.
enum Assertion {
    /// Verified; the passkey's new state is stored.
    Verified {
        /// The amr value it proves.
        amr: &'static str,
    },
    /// Its counter went backwards: now marked suspect.
    Cloned,
    /// Refused by a check (why, for the client).
    Refused(String),
}

impl App {
    /// Checks `result` (webauthn-rs's verdict on an assertion of `row`):
    /// a pass stores the new counter (refused if the passkey was marked
    /// suspect meanwhile), a counter going backwards marks it suspect.
    async fn settle_assertion<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        row: &PasskeyRow,
        result: Result<AuthenticationResult, WebauthnError>,
    ) -> Result<Assertion, IdentityError> {
        match result {
            Ok(verdict) => {
                let mut passkey: Passkey = from_json(&row.credential)?;
                passkey.update_credential(&verdict);
                let stored =
                    passkeys::used(c, &row.id, &to_json(&passkey)?, self.now().millis()).await?;
                Ok(if stored {
                    Assertion::Verified {
                        amr: amr_of(verdict.backup_eligible()),
                    }
                } else {
                    Assertion::Cloned
                })
            }
            Err(WebauthnError::CredentialPossibleCompromise) => {
                passkeys::mark_suspect(c, &row.id).await?;
                Ok(Assertion::Cloned)
            }
            Err(e) => Ok(Assertion::Refused(e.to_string())),
        }
    }

    /// Tells the user about a passkey (`event`: added, removed, suspect).
    async fn passkey_notice(&self, user_id: &str, event: &str, name: &str, ip: &str) {
        let data = [
            ("event", event.to_owned()),
            ("passkey_name", name.to_owned()),
            ("security_url", self.portal_page("security")),
        ];
        self.security_notice(user_id, MessageTemplate::SecurityPasskey, ip, &data)
            .await;
    }

    /// PASSKEY_SUSPECT for `row`, telling the user when it was just marked.
    async fn suspect(&self, row: &PasskeyRow, ip: &str) -> IdentityError {
        if !row.suspect {
            self.passkey_notice(&row.user_id, "suspect", &row.name, ip)
                .await;
        }
        IdentityError::PasskeySuspect
    }

    /// BeginPasskeyRegistration: the creation options as JSON and when they
    /// lapse.
    pub(crate) async fn begin_passkey_registration(
        &self,
        p: &Principal,
        client: &Client,
    ) -> Result<(String, Timestamp), IdentityError> {
        let session = self
            .recent_portal_session(p, "passkeys are registered in a portal session")
            .await?;
        let user = self.get_user(&session.user_id).await?;
        let existing = passkeys::of_user(&self.db, &user.id).await?;
        if i64::try_from(existing.len()).unwrap_or(i64::MAX) >= MAX_PASSKEYS {
            return Err(IdentityError::PasskeyLimitReached {
                limit: MAX_PASSKEYS,
            });
        }
        let exclude = existing
            .iter()
            .map(|row| from_json::<Passkey>(&row.credential).map(|p| p.cred_id().clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let handle = user_handle(&user.id)?;
        let (mut options, state) = match &self.attestation_cas {
            None => {
                let (options, state) = self
                    .webauthn
                    .start_passkey_registration(handle, &user.email, &user.name, Some(exclude))
                    .map_err(internal)?;
                (options, to_json(&state)?)
            }
            Some(cas) => {
                let (options, state) = self
                    .webauthn
                    .start_attested_passkey_registration(
                        handle,
                        &user.email,
                        &user.name,
                        Some(exclude),
                        cas.clone(),
                        None,
                    )
                    .map_err(internal)?;
                (options, to_json(&state)?)
            }
        };
        // Discoverable credentials (passwordless login) where the
        // authenticator can keep one; others still register.
        if let Some(selection) = options.public_key.authenticator_selection.as_mut() {
            selection.resident_key = Some(ResidentKeyRequirement::Preferred);
        }
        let now = self.now();
        let expire = now.plus(CEREMONY_LIFETIME);
        let tx = crate::store::begin(&self.db).await?;
        passkeys::put_ceremony(
            &tx,
            &format!("reg:{}", user.id),
            &user.id,
            &session.id,
            &client.ip,
            &state,
            now.millis(),
            expire.millis(),
        )
        .await?;
        tx.commit().await?;
        Ok((to_json(&options)?, expire))
    }

    /// FinishPasskeyRegistration.
    pub(crate) async fn finish_passkey_registration(
        &self,
        p: &Principal,
        name: &str,
        credential_json: &str,
        client: &Client,
    ) -> Result<(PasskeyRow, AccessToken), IdentityError> {
        let mut session = self
            .recent_portal_session(p, "passkeys are registered in a portal session")
            .await?;
        let user_id = session.user_id.clone();
        let name = parse_label("name", name)?;
        let credential: RegisterPublicKeyCredential =
            parse_credential("credential_json", credential_json)?;
        let now = self.now();
        let tx = crate::store::begin(&self.db).await?;
        // Bound to the session that began it: another session of the same
        // user cannot finish (nor spend) it.
        let Some(ceremony) =
            passkeys::take_ceremony(&tx, &format!("reg:{user_id}"), now.millis()).await?
        else {
            return Err(IdentityError::PasskeyChallengeInvalid);
        };
        if ceremony.session_id != session.id {
            return Err(IdentityError::PasskeyChallengeInvalid);
        }
        // A ceremony begun under the other `auth.webauthn_attestation`
        // (before a restart) does not parse as this one's state: spent.
        let verdict = match &self.attestation_cas {
            None => serde_json::from_str::<PasskeyRegistration>(&ceremony.state)
                .ok()
                .map(|state| {
                    self.webauthn
                        .finish_passkey_registration(&credential, &state)
                }),
            Some(_) => serde_json::from_str::<AttestedPasskeyRegistration>(&ceremony.state)
                .ok()
                .map(|state| {
                    self.webauthn
                        .finish_attested_passkey_registration(&credential, &state)
                        .map(Passkey::from)
                }),
        };
        let Some(verdict) = verdict else {
            tx.commit().await?;
            return Err(IdentityError::PasskeyChallengeInvalid);
        };
        let passkey = match verdict {
            Ok(passkey) => passkey,
            Err(e) => {
                // The challenge is spent either way.
                tx.commit().await?;
                let message = match self.attestation_cas {
                    None => e.to_string(),
                    Some(_) => format!(
                        "{e} (only authenticators attested by a CA this service trusts may register)"
                    ),
                };
                return Err(IdentityError::invalid(
                    Invalid::Passkey,
                    "credential_json",
                    message,
                ));
            }
        };
        let before = passkeys::count(&tx, &user_id).await?;
        if before >= MAX_PASSKEYS {
            return Err(IdentityError::PasskeyLimitReached {
                limit: MAX_PASSKEYS,
            });
        }
        let credential_id = credential_key(passkey.cred_id());
        if passkeys::by_credential(&tx, &credential_id)
            .await?
            .is_some()
        {
            return Err(IdentityError::PasskeyExists);
        }
        let row = PasskeyRow {
            id: ids::new_id(),
            user_id: user_id.clone(),
            name,
            credential_id,
            credential: to_json(&passkey)?,
            backup_eligible: backup_eligible(&passkey),
            suspect: false,
            create_time: now.millis(),
            last_use_time: None,
        };
        if let Err(e) = passkeys::insert(&tx, &row).await {
            return Err(if tenancy_runtime::db::is_unique_violation(&e) {
                IdentityError::PasskeyExists
            } else {
                e.into()
            });
        }
        let had_mfa = before > 0 || users::totp_secret(&tx, &user_id).await?.is_some();
        // The ceremony verified the user with the new key: the session has
        // used it.
        let amr = amr_of(row.backup_eligible).to_owned();
        if !session.amr.contains(&amr) {
            session.amr.push(amr);
        }
        sessions::set_amr(&tx, &session.id, &session.amr.join(" ")).await?;
        if !had_mfa {
            let event = Revocation::Mfa {
                user_id: user_id.clone(),
                enabled: true,
            };
            self.append_revocation(&tx, event, pb::RevocationReason::PasskeyAdded)
                .await?;
        }
        tx.commit().await?;
        self.notify_revocations();
        self.passkey_notice(&user_id, "added", &row.name, &client.ip)
            .await;
        let access = self.access_token(&session).await?;
        Ok((row, access))
    }

    /// ListPasskeys.
    pub(crate) async fn list_passkeys(
        &self,
        user_id: &str,
    ) -> Result<Vec<PasskeyRow>, IdentityError> {
        Ok(passkeys::of_user(&self.db, user_id).await?)
    }

    /// RenamePasskey.
    pub(crate) async fn rename_passkey(
        &self,
        user_id: &str,
        id: &str,
        name: &str,
    ) -> Result<PasskeyRow, IdentityError> {
        let name = parse_label("name", name)?;
        if !passkeys::rename(&self.db, user_id, id, &name).await? {
            return Err(IdentityError::PasskeyNotFound);
        }
        passkeys::of_user_by_id(&self.db, user_id, id)
            .await?
            .ok_or(IdentityError::PasskeyNotFound)
    }

    /// DeletePasskey.
    pub(crate) async fn delete_passkey(
        &self,
        p: &Principal,
        id: &str,
        client: &Client,
    ) -> Result<AccessToken, IdentityError> {
        let mut session = self
            .recent_portal_session(p, "passkeys are deleted in a portal session")
            .await?;
        let user_id = session.user_id.clone();
        let Some(row) = passkeys::of_user_by_id(&self.db, &user_id, id).await? else {
            return Err(IdentityError::PasskeyNotFound);
        };
        let last = self.is_last_factor(&user_id).await?;
        if last {
            self.refuse_under_enforcement(&session).await?;
        }
        let tx = crate::store::begin(&self.db).await?;
        if !passkeys::delete(&tx, &user_id, id).await? {
            return Err(IdentityError::PasskeyNotFound);
        }
        // Another factor may have gone meanwhile: judged again in the
        // transaction that removes this one.
        let last = passkeys::count(&tx, &user_id).await? == 0
            && users::totp_secret(&tx, &user_id).await?.is_none();
        if last {
            sessions::set_amr_of_user(&tx, &user_id, "pwd").await?;
            self.append_revocation(
                &tx,
                Revocation::UserTokensBefore {
                    user_id: user_id.clone(),
                },
                pb::RevocationReason::PasskeyRemoved,
            )
            .await?;
            self.append_revocation(
                &tx,
                Revocation::Mfa {
                    user_id: user_id.clone(),
                    enabled: false,
                },
                pb::RevocationReason::PasskeyRemoved,
            )
            .await?;
            session.amr = vec!["pwd".into()];
        }
        tx.commit().await?;
        self.notify_revocations();
        self.passkey_notice(&user_id, "removed", &row.name, &client.ip)
            .await;
        self.access_token(&session).await
    }

    /// Whether the user's only second factor is one passkey.
    async fn is_last_factor(&self, user_id: &str) -> Result<bool, IdentityError> {
        Ok(passkeys::count(&self.db, user_id).await? <= 1
            && users::totp_secret(&self.db, user_id).await?.is_none())
    }

    /// LAST_FACTOR_REQUIRED while the session's account enforces 2FA on
    /// the user and their deadline has passed.
    async fn refuse_under_enforcement(&self, session: &SessionRow) -> Result<(), IdentityError> {
        let Some(account) = session.account_id.as_deref() else {
            return Ok(());
        };
        let deadline = self
            .accounts
            .mfa_deadline(
                &UserId::trusted(session.user_id.clone()),
                &AccountId::trusted(account.to_owned()),
            )
            .await?;
        if deadline.is_some_and(|d| d <= self.now()) {
            return Err(IdentityError::LastFactorRequired);
        }
        Ok(())
    }

    /// The request options of an MFA challenge for a user with passkeys
    /// (none when every passkey is suspect), bound to the challenge.
    pub(crate) async fn passkey_challenge(
        &self,
        user_id: &str,
        challenge_hash: &str,
        client: &Client,
        expire: Timestamp,
    ) -> Result<Option<String>, IdentityError> {
        let usable = passkeys::of_user(&self.db, user_id)
            .await?
            .iter()
            .filter(|row| !row.suspect)
            .map(|row| from_json::<Passkey>(&row.credential))
            .collect::<Result<Vec<_>, _>>()?;
        if usable.is_empty() {
            return Ok(None);
        }
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(&usable)
            .map_err(internal)?;
        passkeys::put_ceremony(
            &self.db,
            &format!("mfa:{challenge_hash}"),
            user_id,
            "",
            &client.ip,
            &to_json(&state)?,
            self.now().millis(),
            expire.millis(),
        )
        .await?;
        Ok(Some(to_json(&options)?))
    }

    /// Answers an MFA challenge with a passkey assertion: the second factor
    /// of [`Self::complete_mfa`].
    pub(crate) async fn passkey_second_factor(
        &self,
        user_id: String,
        account_id: String,
        challenge_hash: &str,
        json: &str,
        client: &Client,
    ) -> Result<Credentials, IdentityError> {
        const FIELD: &str = "passkey_credential_json";
        let method = pb::LoginMethod::PasskeySecondFactor;
        let credential: PublicKeyCredential = parse_credential(FIELD, json)?;
        let now = self.now();
        // Counted (per user) before the assertion is checked; given back
        // unless the assertion is refused.
        let throttle_key = vec![(format!("mfa:{user_id}"), Counter::Email)];
        self.admit_attempt(&throttle_key).await?;
        let tx = crate::store::begin(&self.db).await?;
        let ceremony =
            passkeys::take_ceremony(&tx, &format!("mfa:{challenge_hash}"), now.millis()).await?;
        let Some(ceremony) = ceremony.filter(|c| c.user_id == user_id) else {
            drop(tx);
            self.refund_attempt(&throttle_key).await?;
            return Err(IdentityError::MfaChallengeInvalid);
        };
        let state: PasskeyAuthentication = from_json(&ceremony.state)?;
        let row = passkeys::by_credential(&tx, &credential_key(credential.get_credential_id()))
            .await?
            .filter(|row| row.user_id == user_id);
        let outcome = match &row {
            None => Assertion::Refused("not a passkey of this user".into()),
            Some(row) if row.suspect => Assertion::Cloned,
            Some(row) => {
                let result = self
                    .webauthn
                    .finish_passkey_authentication(&credential, &state);
                self.settle_assertion(&tx, row, result).await?
            }
        };
        let amr = match outcome {
            Assertion::Verified { amr } => amr,
            refused => {
                // The ceremony is spent (and a suspect mark kept) either way.
                tx.commit().await?;
                mfa::count_challenge_attempt(
                    &self.db,
                    challenge_hash,
                    now.millis(),
                    super::mfa::CHALLENGE_ATTEMPTS,
                )
                .await?;
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
                return Err(match (refused, row) {
                    (Assertion::Cloned, Some(row)) => self.suspect(&row, &client.ip).await,
                    (Assertion::Refused(why), _) => {
                        IdentityError::invalid(Invalid::SecondFactor, FIELD, why)
                    }
                    _ => IdentityError::invalid(Invalid::SecondFactor, FIELD, "refused"),
                });
            }
        };
        if !mfa::use_challenge(&tx, challenge_hash, now.millis()).await? {
            drop(tx);
            self.refund_attempt(&throttle_key).await?;
            return Err(IdentityError::MfaChallengeInvalid);
        }
        tx.commit().await?;
        self.refund_attempt(&throttle_key).await?;
        let account = if account_id.is_empty() {
            self.login_account(&user_id).await
        } else {
            Some(account_id)
        };
        self.create_session(
            &user_id,
            account,
            vec!["pwd".into(), amr.into()],
            client,
            method,
        )
        .await
    }

    /// BeginPasskeyLogin: a login token, the request options as JSON and
    /// when they lapse.
    pub(crate) async fn begin_passkey_login(
        &self,
        client: &Client,
    ) -> Result<(String, String, Timestamp), IdentityError> {
        // Refused while the per-address login cap refuses; only read
        // (beginning checks no secret, so it counts no attempt and writes
        // no counter).
        self.check_not_blocked(&[(format!("ip:{}", client.ip), Counter::Ip)])
            .await?;
        let now = self.now();
        if passkeys::live_from(&self.db, &client.ip, "login:", now.millis()).await?
            >= MAX_LOGINS_PER_ADDRESS
        {
            return Err(IdentityError::Throttled {
                retry_after: Duration::from_secs(30),
            });
        }
        let (mut options, state) = self
            .webauthn
            .start_discoverable_authentication()
            .map_err(internal)?;
        // The portal chooses how to ask (a button or autofill).
        options.mediation = None;
        let token = SecretToken::generate("tnp_");
        let expire = now.plus(CEREMONY_LIFETIME);
        passkeys::put_ceremony(
            &self.db,
            &format!("login:{}", token.hash()),
            "",
            "",
            &client.ip,
            &to_json(&state)?,
            now.millis(),
            expire.millis(),
        )
        .await?;
        Ok((token.expose().to_owned(), to_json(&options)?, expire))
    }

    /// FinishPasskeyLogin: a session, as Login makes one.
    pub(crate) async fn finish_passkey_login(
        &self,
        login_token: &str,
        json: &str,
        account_id: &str,
        client: &Client,
    ) -> Result<Credentials, IdentityError> {
        let method = pb::LoginMethod::Passkey;
        let account = super::sessions::login_account(account_id)?;
        let credential: PublicKeyCredential = parse_credential("credential_json", json)?;
        // Counted as a failure until it succeeds, on the same per-address
        // cap as password logins.
        let per_ip = (format!("ip:{}", client.ip), Counter::Ip);
        if let Some(blocked) = self.admit(std::slice::from_ref(&per_ip), &[]).await? {
            return Err(blocked.error(self.now()));
        }
        let hash = SecretToken::from_client(login_token.trim().to_owned()).hash();
        let now = self.now();
        let tx = crate::store::begin(&self.db).await?;
        let Some(ceremony) =
            passkeys::take_ceremony(&tx, &format!("login:{hash}"), now.millis()).await?
        else {
            return Err(IdentityError::CredentialsInvalid);
        };
        let state: DiscoverableAuthentication = from_json(&ceremony.state)?;
        let row = match self
            .webauthn
            .identify_discoverable_authentication(&credential)
        {
            Ok((handle, credential_id)) => {
                passkeys::by_credential(&tx, &credential_key(credential_id))
                    .await?
                    .filter(|row| Uuid::parse_str(&row.user_id).is_ok_and(|u| u == handle))
            }
            Err(_) => None,
        };
        // The ceremony is spent whatever follows.
        tx.commit().await?;
        let Some(row) = row else {
            return Err(IdentityError::CredentialsInvalid);
        };
        let per_user = vec![(format!("pkl:{}", row.user_id), Counter::Email)];
        // A refusal once the user is known is in their login history.
        let failed = async |outcome| {
            self.login_event(
                &self.db,
                &row.user_id,
                account.as_deref().unwrap_or_default(),
                "",
                client,
                method,
                outcome,
            )
            .await
        };
        // Counted per user before the assertion is checked; cleared when
        // it is right.
        if let Some(blocked) = self.admit(&per_user, &[]).await? {
            failed(pb::LoginOutcome::FailureThrottled).await?;
            return Err(blocked.error(self.now()));
        }
        let tx = crate::store::begin(&self.db).await?;
        let outcome = if row.suspect {
            Assertion::Cloned
        } else {
            let passkey: Passkey = from_json(&row.credential)?;
            let result =
                self.webauthn
                    .finish_discoverable_authentication_v2(&credential, state, &passkey);
            self.settle_assertion(&tx, &row, result).await?
        };
        tx.commit().await?;
        let amr = match outcome {
            Assertion::Verified { amr } => amr,
            refused => {
                failed(pb::LoginOutcome::FailureBadCredentials).await?;
                return Err(match refused {
                    Assertion::Cloned => self.suspect(&row, &client.ip).await,
                    _ => IdentityError::CredentialsInvalid,
                });
            }
        };
        self.attempt_succeeded(Some(&per_user[0].0), &[per_ip])
            .await?;
        let user = self.get_user(&row.user_id).await?;
        if !user.email_verified {
            return Err(IdentityError::EmailNotVerified);
        }
        if let Some(account) = &account {
            self.require_membership(&user.id, account, "", client, method)
                .await?;
        }
        let account = match account {
            Some(account) => Some(account),
            None => self.login_account(&user.id).await,
        };
        self.create_session(
            &user.id,
            account,
            vec![amr.into(), "mfa".into()],
            client,
            method,
        )
        .await
    }
}
