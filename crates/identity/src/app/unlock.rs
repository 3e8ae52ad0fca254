//! Logins the per-email cap does not hold back: from a network the user
//! created a session from before, or with a one-time unlock link emailed
//! to the user when the cap refused them elsewhere.

use std::sync::Arc;
use std::time::Duration;

use tenancy_proto::contacts::MessageTemplate;
use tenancy_runtime::ids::UserId;
use tenancy_runtime::secret::{SecretToken, sha256_hex};

use super::{App, Client, time_text};
use crate::domain::error::IdentityError;
use crate::domain::network::{KNOWN_FOR, login_network};
use crate::store::email_tokens::{self, Purpose};
use crate::store::networks;
use crate::store::users::LoginRow;

/// How long an unlock link works.
pub(crate) const UNLOCK_LINK_LIFETIME: Duration = Duration::from_secs(3600);

impl App {
    /// Whether `user_id` created a session from `client`'s network within
    /// [`KNOWN_FOR`].
    pub(crate) async fn known_network(
        &self,
        user_id: &str,
        client: &Client,
    ) -> Result<bool, IdentityError> {
        let since = self.now().minus(KNOWN_FOR).millis();
        Ok(networks::last_seen(
            &self.db,
            &UserId::trusted(user_id),
            &login_network(&client.ip),
        )
        .await?
        .is_some_and(|last| since < last))
    }

    /// The hash of `token` if it is an unused, unexpired unlock link of
    /// `user_id` ("" or anything else: `None`).
    pub(crate) async fn live_unlock_link(
        &self,
        token: &str,
        user_id: &str,
    ) -> Result<Option<String>, IdentityError> {
        let token = token.trim();
        if token.is_empty() {
            return Ok(None);
        }
        let hash = SecretToken::from_client(token.to_owned()).hash();
        let link = email_tokens::find(&self.db, &hash, Purpose::Unlock).await?;
        Ok(link
            .filter(|l| {
                l.user_id == user_id && l.used_time.is_none() && l.expire_time > self.now().millis()
            })
            .map(|_| hash))
    }

    /// Uses an unlock link up (a login with it succeeded).
    pub(crate) async fn spend_unlock_link(&self, hash: &str) -> Result<(), IdentityError> {
        email_tokens::spend_live(&self.db, hash, Purpose::Unlock, self.now().millis()).await?;
        Ok(())
    }

    /// Sends `user` an unlock link ([`Self::send_unlock_link`]) in the
    /// background: the refused login answers without waiting for the
    /// notice counter, the token or the mailer, so a refusal takes no
    /// longer for a known user than for an unknown one.
    pub(crate) fn queue_unlock_link(self: &Arc<Self>, user: LoginRow, client: Client) {
        let app = Arc::clone(self);
        tokio::spawn(async move { app.send_unlock_link(&user, &client).await });
    }

    /// Emails the user a one-time link that lets their next login skip the
    /// per-email cap, which has just refused a login for them from an
    /// address they never created a session from. Anyone can trigger this,
    /// so at most [`NOTICE_CAP`](crate::domain::throttle::NOTICE_CAP) per
    /// user per hour (later refusals send nothing). Failures are logged,
    /// never returned: the client sees the same refusal either way.
    async fn send_unlock_link(&self, user: &LoginRow, client: &Client) {
        if !self.notice_allowed("login-unlock", &user.id).await {
            return;
        }
        let sent = async {
            let (token, expire) = self
                .new_email_token(
                    &self.db,
                    &user.id,
                    Purpose::Unlock,
                    &user.email,
                    None,
                    UNLOCK_LINK_LIFETIME,
                )
                .await?;
            let url = format!(
                "{}/login?unlock_token={token}",
                self.mail.portal_url.trim_end_matches('/')
            );
            let ip = if client.ip.trim().is_empty() {
                "an unknown address".to_owned()
            } else {
                client.ip.clone()
            };
            let body = format!(
                "Many wrong passwords were tried for your account, so signing in from new \
                 addresses is paused for up to an hour (the latest attempt came from {ip}). \
                 Your usual devices and networks are not affected. To sign in from here now, \
                 use the link below (it works once, until {}). If it was not you trying, \
                 nothing is needed: your password was not accepted.",
                time_text(expire)
            );
            self.send(
                format!("identity:unlock:{}", &sha256_hex(token.as_bytes())[..32]),
                &user.email,
                &user.name,
                MessageTemplate::GenericNotification,
                &[
                    ("subject", "Sign-in from new addresses paused".to_owned()),
                    ("body", body),
                    ("action_url", url),
                    ("action_label", "Sign in".to_owned()),
                ],
            )
            .await
        };
        if let Err(error) = sent.await {
            tracing::warn!(%error, "unlock link not sent");
        }
    }
}
