//! Users: sign-up, email verification, internal creation and lookup.

use std::time::Duration;

use sea_orm::ConnectionTrait;
use tenancy_proto::contacts::MessageTemplate;
use tenancy_runtime::ids::UserId;
use tenancy_runtime::secret::{SecretToken, sha256_hex};
use tenancy_runtime::{Error, Principal, Timestamp, ids};

use super::{App, time_text};
use crate::domain::error::{IdentityError, Invalid};
use crate::domain::password::check_new_password;
use crate::domain::phone::parse_phone;
use crate::domain::profile::{Email, parse_email, parse_label, parse_name};
use crate::store::email_tokens::{self, PendingSignUp, Purpose};
use crate::store::users::{self, NewUser, UserRow};

/// Verification links are valid this long.
pub(crate) const VERIFY_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Password-reset links are valid this long.
pub(crate) const RESET_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

impl App {
    pub(crate) async fn load_user<C: ConnectionTrait>(
        &self,
        c: &C,
        user_id: &str,
    ) -> Result<Option<UserRow>, IdentityError> {
        Ok(users::by_id(c, user_id).await?)
    }

    pub(crate) async fn user_by_email<C: ConnectionTrait>(
        &self,
        c: &C,
        email: &Email,
    ) -> Result<Option<UserRow>, IdentityError> {
        Ok(users::by_email_key(c, &email.key).await?)
    }

    /// The caller's own profile.
    pub(crate) async fn get_user(&self, user_id: &str) -> Result<UserRow, IdentityError> {
        self.load_user(&self.db, user_id)
            .await?
            .ok_or(IdentityError::UserNotFound)
    }

    /// Stores a single-use email token (for `sign_up`, if any) and
    /// returns its secret.
    pub(crate) async fn new_email_token<C: ConnectionTrait>(
        &self,
        c: &C,
        user_id: &str,
        purpose: Purpose,
        email: &str,
        sign_up: Option<&PendingSignUp>,
        lifetime: Duration,
    ) -> Result<(String, Timestamp), IdentityError> {
        let token = SecretToken::generate(match purpose {
            Purpose::Verify => "tnv_",
            Purpose::Reset => "tnp_",
            Purpose::Unlock => "tnu_",
        });
        let now = self.now();
        let expire = now.plus(lifetime);
        email_tokens::insert(
            c,
            token.hash(),
            user_id,
            purpose,
            email,
            sign_up,
            now.millis(),
            expire.millis(),
        )
        .await?;
        Ok((token.expose().to_owned(), expire))
    }

    /// Sends a verification link for `email` to `email`; following it
    /// gives the user the credentials of `sign_up`, if any. Nothing is
    /// made or sent once the address had its share of links this window
    /// ([`App::mail_allowed`]). Earlier sign-ups' links stay valid (each
    /// only for its own credentials): a later sign-up, perhaps an
    /// attacker's, cannot void the link the address's owner got.
    pub(crate) async fn send_verification(
        &self,
        user_id: &str,
        email: &str,
        name: &str,
        sign_up: Option<&PendingSignUp>,
    ) -> Result<(), IdentityError> {
        if !self.mail_allowed(email).await? {
            return Ok(());
        }
        let (token, expire) = self
            .new_email_token(
                &self.db,
                user_id,
                Purpose::Verify,
                email,
                sign_up,
                VERIFY_TOKEN_LIFETIME,
            )
            .await?;
        users::mark_verification_sent(&self.db, user_id, self.now().millis()).await?;
        let url = format!(
            "{}/verify-email?token={token}",
            self.mail.portal_url.trim_end_matches('/')
        );
        self.send(
            format!("identity:verify:{}", &sha256_hex(token.as_bytes())[..32]),
            email,
            name,
            MessageTemplate::EmailVerification,
            &[("verify_url", url), ("expire_time", time_text(expire))],
        )
        .await
    }

    /// Sends a password-reset link to a user: only the newest link works
    /// (earlier unused ones are spent), and nothing is made or sent once
    /// the address had its share of links this window
    /// ([`App::mail_allowed`]; its earlier link then stays valid).
    pub(crate) async fn send_reset(&self, user: &UserRow, ip: &str) -> Result<(), IdentityError> {
        if !self.mail_allowed(&user.email).await? {
            return Ok(());
        }
        let tx = crate::store::begin(&self.db).await?;
        // One reset at a time per user: each voids the links before it.
        users::lock(&tx, &user.id).await?;
        email_tokens::spend_all_of(&tx, &user.id, Purpose::Reset, self.now().millis()).await?;
        let (token, expire) = self
            .new_email_token(
                &tx,
                &user.id,
                Purpose::Reset,
                &user.email,
                None,
                RESET_TOKEN_LIFETIME,
            )
            .await?;
        tx.commit().await?;
        let url = format!(
            "{}/reset-password?token={token}",
            self.mail.portal_url.trim_end_matches('/')
        );
        self.send(
            format!("identity:reset:{}", &sha256_hex(token.as_bytes())[..32]),
            &user.email,
            &user.name,
            MessageTemplate::PasswordReset,
            &[
                ("reset_url", url),
                ("expire_time", time_text(expire)),
                ("request_ip", ip.to_owned()),
            ],
        )
        .await
    }

    /// Sends an unverified user a new link for their newest unused
    /// sign-up (a login with that sign-up's password asks for it).
    pub(crate) async fn resend_sign_up(
        &self,
        user_id: &str,
        email: &str,
        name: &str,
    ) -> Result<(), IdentityError> {
        let sign_up = email_tokens::newest_sign_up(&self.db, user_id).await?;
        let name = sign_up.as_ref().map_or(name, |s| s.name.as_str());
        self.send_verification(user_id, email, name, sign_up.as_ref())
            .await
    }

    /// SignUp: the same answer whether or not the email is taken. The
    /// password and name wait on the verification link sent for this
    /// sign-up and become the user's only when it is followed: whoever
    /// signed up for the address before (or an owner who added the person
    /// as a member) gets no say over the credentials of the one who
    /// proves it. A verified address gets a password-reset link instead.
    pub(crate) async fn sign_up(
        &self,
        email: &str,
        password: &str,
        name: &str,
        phone: &str,
        ip: &str,
    ) -> Result<(), IdentityError> {
        let mut violations = Vec::new();
        let email = parse_email("email", email)
            .map_err(|e| violations.push(e))
            .ok();
        let name = parse_name("name", name, 1)
            .map_err(|e| violations.push(e))
            .ok();
        let password = check_new_password(
            "password",
            password,
            self.auth.password_min_chars,
            email.as_ref().map(|e| e.local.as_str()),
        )
        .map_err(|e| violations.push(e))
        .ok();
        // Optional; kept unverified on the sign-up's link, and sent its code
        // only once the address is proved: an anonymous call never makes us
        // send an SMS (SMS pumping).
        let phone = if phone.trim().is_empty() {
            Some(String::new())
        } else {
            parse_phone("phone", phone)
                .map_err(|e| violations.push(e))
                .ok()
        };
        let (Some(email), Some(name), Some(password), Some(phone)) = (email, name, password, phone)
        else {
            return Err(IdentityError::several(violations));
        };
        // Hash before looking: a taken address answers in the same time.
        let hash = self.hasher.hash(password).await?;
        let now = self.now();
        let id = UserId::new();
        let new = NewUser {
            id: &id,
            email: &email.address,
            email_key: &email.key,
            name: &name,
        };
        users::insert(&self.db, new, now.millis()).await?;
        let Some(user) = self.user_by_email(&self.db, &email).await? else {
            return Ok(());
        };
        if user.email_verified {
            // The owner learns someone tried; the link lets them reset.
            return self.send_reset(&user, ip).await;
        }
        let sign_up = PendingSignUp {
            password_hash: hash,
            name,
            phone,
        };
        self.send_verification(&user.id, &user.email, &sign_up.name, Some(&sign_up))
            .await
    }

    /// VerifyEmail: spends the token and verifies or switches the address.
    pub(crate) async fn verify_email(&self, token: &str) -> Result<String, IdentityError> {
        let hash = SecretToken::from_client(token.trim().to_owned()).hash();
        let now = self.now();
        let tx = crate::store::begin(&self.db).await?;
        // Read before spending: spending clears the sign-up's credentials.
        let found = email_tokens::find(&tx, &hash, Purpose::Verify).await?;
        let spent = email_tokens::spend_live(&tx, &hash, Purpose::Verify, now.millis()).await?;
        let Some(link) = found else {
            return Err(IdentityError::invalid(
                Invalid::EmailToken,
                "token",
                "unknown or used",
            ));
        };
        if !spent {
            return Err(if link.used_time.is_none() {
                IdentityError::invalid(Invalid::EmailTokenExpired, "token", "expired")
            } else {
                IdentityError::invalid(Invalid::EmailToken, "token", "unknown or used")
            });
        }
        let user_id = link.user_id;
        let address = link.email;
        // The phone number the activated sign-up gave, if any.
        let mut phone = None;
        let key = address.to_lowercase();
        let (current_key, pending) = users::email_keys(&tx, &user_id).await?.ok_or_else(|| {
            IdentityError::invalid(Invalid::EmailToken, "token", "unknown or used")
        })?;
        if let (true, Some(sign_up)) = (current_key == key, &link.sign_up) {
            // This sign-up's credentials, and no other's: every other
            // sign-up's link dies with it. A user verified meanwhile (by
            // another link, a reset or an invitation) keeps theirs.
            let activated = users::activate_sign_up(
                &tx,
                &user_id,
                &sign_up.password_hash,
                &sign_up.name,
                now.millis(),
            )
            .await?;
            if !activated {
                return Err(IdentityError::invalid(
                    Invalid::EmailToken,
                    "token",
                    "unknown or used",
                ));
            }
            email_tokens::spend_sign_ups(&tx, &user_id, now.millis()).await?;
            phone = Some(sign_up.phone.clone()).filter(|p| !p.is_empty());
        } else if current_key == key {
            users::mark_verified(&tx, &user_id, now.millis()).await?;
        } else if pending.to_lowercase() == key {
            let changed = users::switch_email(&tx, &user_id, &address, &key, now.millis()).await;
            match changed {
                Err(e) if tenancy_runtime::db::is_unique_violation(&e) => {
                    return Err(IdentityError::EmailTaken);
                }
                other => {
                    other?;
                }
            }
        } else {
            return Err(IdentityError::invalid(
                Invalid::EmailToken,
                "token",
                "unknown or used",
            ));
        }
        tx.commit().await?;
        if let Some(phone) = phone {
            // The address is proved: the sign-up's number gets its code as
            // StartPhoneVerification sends one (ConfirmPhone verifies it).
            // The address stays verified if sending fails; the user can ask
            // for a code again.
            if let Err(error) = self.send_phone_code(&user_id, phone).await {
                tracing::warn!(%error, "the sign-up's phone code was not sent");
            }
        }
        Ok(address)
    }

    /// UpdateMe: the name changes at once; a new email becomes
    /// `pending_email`, gets a verification link (VerifyEmail switches it),
    /// and the current address gets a notice. An email change needs a
    /// portal session with recent authentication. Whether the new address
    /// is taken is not revealed here (VerifyEmail refuses it later).
    pub(crate) async fn update_me(
        &self,
        p: &Principal,
        name: Option<&str>,
        email: Option<&str>,
    ) -> Result<UserRow, IdentityError> {
        let user_id = p.user()?.to_owned();
        let mut violations = Vec::new();
        let name = name
            .map(|n| parse_name("user.name", n, 1))
            .transpose()
            .map_err(|e| violations.push(e))
            .ok()
            .flatten();
        let email = email
            .map(|e| parse_email("user.email", e))
            .transpose()
            .map_err(|e| violations.push(e))
            .ok()
            .flatten();
        if !violations.is_empty() {
            return Err(IdentityError::several(violations));
        }
        if email.is_some() {
            self.recent_portal_session(p, "the email is changed in a portal session")
                .await?;
        }
        let now = self.now();
        let before = self
            .load_user(&self.db, &user_id)
            .await?
            .ok_or(IdentityError::UserNotFound)?;
        // The same address (case-insensitively) cancels a pending change.
        let pending = email.as_ref().map(|e| {
            if e.key == before.email.to_lowercase() {
                String::new()
            } else {
                e.address.clone()
            }
        });
        users::update_profile(&self.db, &user_id, name, pending.clone(), now.millis()).await?;
        let after = self.get_user(&user_id).await?;
        if let Some(new_email) = pending.filter(|e| !e.is_empty()) {
            self.send_verification(&user_id, &new_email, &after.name, None)
                .await?;
            self.send(
                format!("identity:email-change:{user_id}:{}", now.millis()),
                &before.email,
                &after.name,
                MessageTemplate::SecurityEmailChanged,
                &[
                    ("old_email", before.email.clone()),
                    ("new_email", new_email),
                    ("change_time", time_text(now)),
                    (
                        "ip",
                        p.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                    ),
                ],
            )
            .await?;
        }
        Ok(after)
    }

    /// EnsureUser: idempotent by email; concurrent calls create one user.
    pub(crate) async fn ensure_user(
        &self,
        email: &str,
        name: &str,
    ) -> Result<(UserRow, bool), IdentityError> {
        let email = parse_email("email", email);
        let name = parse_name("name", name, 0);
        let (email, name) = match (email, name) {
            (Ok(e), Ok(n)) => (e, n),
            (e, n) => {
                return Err(IdentityError::several(
                    e.err().into_iter().chain(n.err()).collect(),
                ));
            }
        };
        let now = self.now();
        let new = NewUser {
            id: &UserId::new(),
            email: &email.address,
            email_key: &email.key,
            name: &name,
        };
        let inserted = users::insert(&self.db, new, now.millis()).await?;
        let user = self
            .user_by_email(&self.db, &email)
            .await?
            .ok_or_else(|| Error::internal("ensured user vanished"))?;
        Ok((user, inserted))
    }

    /// CreateApiUser: the user behind a new API member of `account_id`.
    pub(crate) async fn create_api_user(
        &self,
        account_id: &str,
        name: &str,
    ) -> Result<UserRow, IdentityError> {
        let account = tenancy_runtime::ids::AccountId::parse("account_id", account_id)
            .map_err(|e| IdentityError::bad_id(Invalid::AccountId, e));
        let name = parse_label("name", name);
        let (account, name) = match (account, name) {
            (Ok(a), Ok(n)) => (a, n),
            (a, n) => {
                return Err(IdentityError::several(
                    a.err().into_iter().chain(n.err()).collect(),
                ));
            }
        };
        let id = UserId::new();
        users::insert_api_user(
            &self.db,
            id.as_str(),
            account.as_str(),
            &name,
            self.now().millis(),
        )
        .await?;
        users::by_id(&self.db, id.as_str())
            .await?
            .ok_or_else(|| Error::internal("created API user vanished").into())
    }

    /// BatchGetUsers: in request order, unknown ids left out.
    pub(crate) async fn batch_get_users(
        &self,
        ids_in: &[String],
    ) -> Result<Vec<UserRow>, IdentityError> {
        if ids_in.len() > 500 {
            return Err(IdentityError::invalid(
                Invalid::ListTooLong,
                "user_ids",
                "at most 500 ids",
            ));
        }
        let mut wanted: Vec<UserId> = Vec::new();
        for (i, raw) in ids_in.iter().enumerate() {
            let id = UserId::parse(&format!("user_ids[{i}]"), raw)
                .map_err(|e| IdentityError::bad_id(Invalid::UserId, e))?;
            if !wanted.contains(&id) {
                wanted.push(id);
            }
        }
        let mut users = users::by_ids(&self.db, &wanted).await?;
        users.sort_by_key(|u| wanted.iter().position(|w| w.as_str() == u.id));
        Ok(users)
    }

    /// SetInitialPassword: only for users without one; verifies the email.
    pub(crate) async fn set_initial_password(
        &self,
        user_id: &str,
        password: &str,
        name: &str,
    ) -> Result<UserRow, IdentityError> {
        let user_id = ids::parse_id("user_id", user_id)
            .map_err(|e| IdentityError::bad_id(Invalid::UserId, e))?;
        let user = self
            .load_user(&self.db, &user_id)
            .await?
            .ok_or(IdentityError::UserNotFound)?;
        if user.password_set {
            return Err(IdentityError::PasswordAlreadySet);
        }
        let name = if name.trim().is_empty() {
            None
        } else {
            Some(parse_name("name", name, 1)?)
        };
        let local = parse_email("email", &user.email).ok().map(|e| e.local);
        let password = check_new_password(
            "password",
            password,
            self.auth.password_min_chars,
            local.as_deref(),
        )?;
        let hash = self.hasher.hash(password).await?;
        let now = self.now();
        let tx = crate::store::begin(&self.db).await?;
        if !users::set_initial_password(&tx, &user_id, hash, name, now.millis()).await? {
            return Err(IdentityError::PasswordAlreadySet);
        }
        // The address is proved: no sign-up's credentials may replace
        // these later.
        email_tokens::spend_sign_ups(&tx, &user_id, now.millis()).await?;
        tx.commit().await?;
        self.get_user(&user_id).await
    }
}
