//! Users: sign-up, email verification, internal creation and lookup.

use std::time::Duration;

use sea_orm::ConnectionTrait;
use tenancy_proto::contacts::MessageTemplate;
use tenancy_proto::identity as pb;
use tenancy_runtime::principal::TokenKind;
use tenancy_runtime::secret::{SecretToken, sha256_hex};
use tenancy_runtime::{Error, Principal, Timestamp, ids};

use super::{App, USER_COLUMNS, time_text, user_from_row};
use crate::domain::error::{IdentityError, Invalid};
use crate::domain::password::check_new_password;
use crate::domain::profile::{Email, parse_email, parse_name};
use tenancy_runtime::db::{all, exec, get, one};

/// Verification links are valid this long.
pub(crate) const VERIFY_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Password-reset links are valid this long.
pub(crate) const RESET_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Purpose of a verification token.
pub(crate) const VERIFY: &str = "verify";
/// Purpose of a reset token.
pub(crate) const RESET: &str = "reset";

impl App {
    pub(crate) async fn load_user<C: ConnectionTrait>(
        &self,
        c: &C,
        user_id: &str,
    ) -> Result<Option<pb::User>, IdentityError> {
        let row = one(
            c,
            &format!("SELECT {USER_COLUMNS} FROM identity_users WHERE id = $1"),
            vec![user_id.into()],
        )
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub(crate) async fn user_by_email<C: ConnectionTrait>(
        &self,
        c: &C,
        email: &Email,
    ) -> Result<Option<pb::User>, IdentityError> {
        let row = one(
            c,
            &format!("SELECT {USER_COLUMNS} FROM identity_users WHERE email_key = $1"),
            vec![email.key.clone().into()],
        )
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// The caller's own profile.
    pub(crate) async fn get_user(&self, user_id: &str) -> Result<pb::User, IdentityError> {
        self.load_user(&self.db, user_id)
            .await?
            .ok_or(IdentityError::UserNotFound)
    }

    /// Stores a single-use email token and returns its secret.
    pub(crate) async fn new_email_token<C: ConnectionTrait>(
        &self,
        c: &C,
        user_id: &str,
        purpose: &str,
        email: &str,
        lifetime: Duration,
    ) -> Result<(String, Timestamp), IdentityError> {
        let token = SecretToken::generate(if purpose == VERIFY { "tnv_" } else { "tnp_" });
        let now = self.now();
        let expire = now.plus(lifetime);
        exec(
            c,
            "INSERT INTO identity_email_tokens (token_hash, user_id, purpose, email, create_time, expire_time) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            vec![
                token.hash().into(),
                user_id.into(),
                purpose.into(),
                email.into(),
                now.millis().into(),
                expire.millis().into(),
            ],
        )
        .await?;
        Ok((token.expose().to_owned(), expire))
    }

    /// Sends a verification link for `email` to `email`.
    pub(crate) async fn send_verification(
        &self,
        user_id: &str,
        email: &str,
        name: &str,
    ) -> Result<(), IdentityError> {
        let (token, expire) = self
            .new_email_token(&self.db, user_id, VERIFY, email, VERIFY_TOKEN_LIFETIME)
            .await?;
        exec(
            &self.db,
            "UPDATE identity_users SET last_verification_sent = $1 WHERE id = $2",
            vec![self.now().millis().into(), user_id.into()],
        )
        .await?;
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

    /// Sends a password-reset link to a user.
    pub(crate) async fn send_reset(&self, user: &pb::User, ip: &str) -> Result<(), IdentityError> {
        let (token, expire) = self
            .new_email_token(&self.db, &user.id, RESET, &user.email, RESET_TOKEN_LIFETIME)
            .await?;
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

    /// SignUp: the same answer whether or not the email is taken.
    pub(crate) async fn sign_up(
        &self,
        email: &str,
        password: &str,
        name: &str,
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
        let (Some(email), Some(name), Some(password)) = (email, name, password) else {
            return Err(IdentityError::several(violations));
        };
        // Hash before looking: a taken address answers in the same time.
        let hash = self.hasher.hash(password).await?;
        let now = self.now();
        let id = ids::new_id();
        let inserted = exec(
            &self.db,
            "INSERT INTO identity_users (id, email, email_key, name, password_hash, \
             password_update_time, create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6, $6, $6) \
             ON CONFLICT (email_key) DO NOTHING",
            vec![
                id.clone().into(),
                email.address.clone().into(),
                email.key.clone().into(),
                name.clone().into(),
                hash.into(),
                now.millis().into(),
            ],
        )
        .await?;
        if inserted == 1 {
            return self.send_verification(&id, &email.address, &name).await;
        }
        let Some(existing) = self.user_by_email(&self.db, &email).await? else {
            return Ok(());
        };
        if existing.email_verified {
            // The owner learns someone tried; the link lets them reset.
            self.send_reset(&existing, ip).await
        } else {
            self.send_verification(&existing.id, &existing.email, &existing.name)
                .await
        }
    }

    /// VerifyEmail: spends the token and verifies or switches the address.
    pub(crate) async fn verify_email(&self, token: &str) -> Result<String, IdentityError> {
        let hash = SecretToken::from_client(token.trim().to_owned()).hash();
        let now = self.now();
        let tx = crate::store::begin(&self.db).await?;
        let spent = exec(
            &tx,
            "UPDATE identity_email_tokens SET used_time = $1 WHERE token_hash = $2 \
             AND purpose = $3 AND used_time IS NULL AND expire_time > $1",
            vec![now.millis().into(), hash.clone().into(), VERIFY.into()],
        )
        .await?;
        let row = one(
            &tx,
            "SELECT user_id, email, expire_time, used_time FROM identity_email_tokens \
             WHERE token_hash = $1 AND purpose = $2",
            vec![hash.into(), VERIFY.into()],
        )
        .await?;
        let Some(row) = row else {
            return Err(IdentityError::invalid(
                Invalid::EmailToken,
                "token",
                "unknown or used",
            ));
        };
        if spent == 0 {
            let used: Option<i64> = get(&row, "used_time")?;
            return Err(if used.is_none() {
                IdentityError::invalid(Invalid::EmailTokenExpired, "token", "expired")
            } else {
                IdentityError::invalid(Invalid::EmailToken, "token", "unknown or used")
            });
        }
        let user_id: String = get(&row, "user_id")?;
        let address: String = get(&row, "email")?;
        let key = address.to_lowercase();
        let user = one(
            &tx,
            "SELECT email_key, pending_email FROM identity_users WHERE id = $1",
            vec![user_id.clone().into()],
        )
        .await?
        .ok_or_else(|| IdentityError::invalid(Invalid::EmailToken, "token", "unknown or used"))?;
        let current_key: String = get(&user, "email_key")?;
        let pending: String = get(&user, "pending_email")?;
        if current_key == key {
            exec(
                &tx,
                "UPDATE identity_users SET email_verified = TRUE, update_time = $1 WHERE id = $2",
                vec![now.millis().into(), user_id.into()],
            )
            .await?;
        } else if pending.to_lowercase() == key {
            let changed = exec(
                &tx,
                "UPDATE identity_users SET email = $1, email_key = $2, pending_email = '', \
                 email_verified = TRUE, update_time = $3 WHERE id = $4",
                vec![
                    address.clone().into(),
                    key.into(),
                    now.millis().into(),
                    user_id.into(),
                ],
            )
            .await;
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
    ) -> Result<pb::User, IdentityError> {
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
            if p.token_kind != TokenKind::Portal {
                return Err(IdentityError::PortalSessionRequired(
                    "the email is changed in a portal session",
                ));
            }
            let session = self.own_session(&user_id, p.session_id.as_deref()).await?;
            self.require_recent(&session)?;
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
        exec(
            &self.db,
            "UPDATE identity_users SET name = COALESCE($1, name), \
             pending_email = COALESCE($2, pending_email), update_time = $3 WHERE id = $4",
            vec![
                name.into(),
                pending.clone().into(),
                now.millis().into(),
                user_id.clone().into(),
            ],
        )
        .await?;
        let after = self.get_user(&user_id).await?;
        if let Some(new_email) = pending.filter(|e| !e.is_empty()) {
            self.send_verification(&user_id, &new_email, &after.name)
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
    ) -> Result<(pb::User, bool), IdentityError> {
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
        let inserted = exec(
            &self.db,
            "INSERT INTO identity_users (id, email, email_key, name, create_time, update_time) \
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (email_key) DO NOTHING",
            vec![
                ids::new_id().into(),
                email.address.clone().into(),
                email.key.clone().into(),
                name.into(),
                now.millis().into(),
            ],
        )
        .await?;
        let user = self
            .user_by_email(&self.db, &email)
            .await?
            .ok_or_else(|| Error::internal("ensured user vanished"))?;
        Ok((user, inserted == 1))
    }

    /// BatchGetUsers: in request order, unknown ids left out.
    pub(crate) async fn batch_get_users(
        &self,
        ids_in: &[String],
    ) -> Result<Vec<pb::User>, IdentityError> {
        if ids_in.len() > 500 {
            return Err(IdentityError::invalid(
                Invalid::ListTooLong,
                "user_ids",
                "at most 500 ids",
            ));
        }
        let mut wanted: Vec<String> = Vec::new();
        for (i, raw) in ids_in.iter().enumerate() {
            let id = ids::parse_id(&format!("user_ids[{i}]"), raw)
                .map_err(|e| IdentityError::bad_id(Invalid::UserId, e))?;
            if !wanted.contains(&id) {
                wanted.push(id);
            }
        }
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (1..=wanted.len()).map(|i| format!("${i}")).collect();
        let rows = all(
            &self.db,
            &format!(
                "SELECT {USER_COLUMNS} FROM identity_users WHERE id IN ({})",
                placeholders.join(", ")
            ),
            wanted.iter().map(|s| s.clone().into()).collect(),
        )
        .await?;
        let mut users = rows
            .iter()
            .map(user_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        users.sort_by_key(|u| wanted.iter().position(|w| *w == u.id));
        Ok(users)
    }

    /// SetInitialPassword: only for users without one; verifies the email.
    pub(crate) async fn set_initial_password(
        &self,
        user_id: &str,
        password: &str,
        name: &str,
    ) -> Result<pb::User, IdentityError> {
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
        let updated = exec(
            &self.db,
            "UPDATE identity_users SET password_hash = $1, password_update_time = $2, \
             update_time = $2, email_verified = TRUE, name = COALESCE($3, name) \
             WHERE id = $4 AND password_hash IS NULL",
            vec![
                hash.into(),
                now.millis().into(),
                name.into(),
                user_id.clone().into(),
            ],
        )
        .await?;
        if updated == 0 {
            return Err(IdentityError::PasswordAlreadySet);
        }
        self.get_user(&user_id).await
    }
}
