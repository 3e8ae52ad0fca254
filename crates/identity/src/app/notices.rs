//! Security notices that need more than one line at their call site: the
//! new-address notice (which networks a user logged in from), the
//! per-user bound on notices an attacker could trigger repeatedly, and the
//! per-recipient bound on links anyone can have sent.

use sea_orm::ConnectionTrait;
use tenancy_proto::contacts::MessageTemplate;

use super::{App, Client, time_text};
use crate::domain::error::IdentityError;
use crate::domain::network::{KNOWN_FOR, login_network};
use crate::domain::throttle::Counter;
use crate::store::{mail_quota, mfa, networks, users};
use tenancy_runtime::ids::UserId;

impl App {
    /// Remembers that `user_id` creates a session from `client`'s network
    /// (in `c`'s transaction, before the session's `last_login_time` is
    /// written) and says whether that deserves the new-address notice: the
    /// user logged in before, but not from this network within
    /// [`KNOWN_FOR`].
    pub(crate) async fn note_login_network<C: ConnectionTrait>(
        &self,
        c: &C,
        user_id: &str,
        client: &Client,
    ) -> Result<bool, IdentityError> {
        let now = self.now();
        let network = login_network(&client.ip);
        let user = UserId::trusted(user_id);
        let logged_in_before = users::last_login_time(c, &user).await?.is_some();
        let forget_until = now.minus(KNOWN_FOR).millis();
        let known = networks::last_seen(c, &user, &network)
            .await?
            .is_some_and(|last| forget_until < last);
        // Networks no longer known are forgotten: a user's rows stay few.
        networks::remember(c, &user, &network, now.millis(), forget_until).await?;
        Ok(logged_in_before && !known)
    }

    /// Sends the new-address notice for a session just created.
    pub(crate) async fn new_login_notice(&self, user_id: &str, client: &Client) {
        if !self.notice_allowed("new-login", user_id).await {
            return;
        }
        let user_agent = if client.user_agent.trim().is_empty() {
            "an unknown client".to_owned()
        } else {
            client.user_agent.clone()
        };
        self.security_notice(
            user_id,
            MessageTemplate::SecurityNewLogin,
            &client.ip,
            &[
                ("login_time", time_text(self.now())),
                ("user_agent", user_agent),
                ("sessions_url", self.portal_page("security/sessions")),
            ],
        )
        .await;
    }

    /// Tells the user that one of their recovery codes was just spent.
    pub(crate) async fn recovery_code_notice(&self, user_id: &str, ip: &str) {
        let remaining = mfa::recovery_codes_left(&self.db, user_id)
            .await
            .ok()
            .map_or_else(|| "some".to_owned(), |n| n.to_string());
        self.security_notice(
            user_id,
            MessageTemplate::SecurityRecoveryCodeUsed,
            ip,
            &[
                ("codes_remaining", remaining),
                ("security_url", self.portal_page("security")),
            ],
        )
        .await;
    }

    /// Counts one notice of `kind` to `user_id`; false once the user got
    /// [`NOTICE_CAP`](crate::domain::throttle::NOTICE_CAP) of them this
    /// hour (those are dropped: the user has been warned already). A
    /// database failure lets the notice through.
    pub(crate) async fn notice_allowed(&self, kind: &str, user_id: &str) -> bool {
        let keys = [(format!("notice:{kind}:{user_id}"), Counter::Notice)];
        self.admit(&keys, &[])
            .await
            .map(|blocked| blocked.is_none())
            .unwrap_or_else(|error| {
                tracing::warn!(%error, kind, "notice counter unavailable; sending");
                true
            })
    }

    /// Counts one link to `email` that a caller who proved nothing may have
    /// asked for; false once the address got `mail.max_per_recipient` of
    /// them within `mail.recipient_window` (the caller is answered the
    /// same, and nothing is made or sent).
    pub(crate) async fn mail_allowed(&self, email: &str) -> Result<bool, IdentityError> {
        let window = i64::try_from(self.mail.recipient_window.as_millis()).unwrap_or(i64::MAX / 4);
        let key = email.trim().to_lowercase();
        let n = mail_quota::count(&self.db, &key, self.now().millis(), window).await?;
        let allowed = n <= i64::from(self.mail.max_per_recipient);
        if !allowed {
            tracing::info!(
                sent = n - 1,
                "link to an address over its hourly bound not sent"
            );
        }
        Ok(allowed)
    }
}
