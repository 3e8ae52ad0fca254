//! The identity use cases, one function each: it runs the domain rules,
//! reads and writes through `store/` in one transaction, and returns plain
//! values (`api/` renders them). Security notices and revocation-log
//! events are written here. The remaining proto types are the wire enums
//! of login methods, outcomes and revocation reasons.

pub(crate) mod admin;
pub(crate) mod keys;
pub(crate) mod mfa;
pub(crate) mod notices;
pub(crate) mod passkeys;
pub(crate) mod phone;
pub(crate) mod revocations;
pub(crate) mod selection;
pub(crate) mod sessions;
pub(crate) mod ssh;
pub(crate) mod tokens;
pub(crate) mod unlock;
pub(crate) mod users;

use std::collections::HashMap;
use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tenancy_proto::contacts::MessageTemplate;
use tenancy_runtime::Timestamp;
use tenancy_runtime::clock::SharedClock;
use tenancy_runtime::config::{AuthConfig, MailConfig};

use crate::domain::error::IdentityError;
use crate::domain::password::Hasher;
use crate::domain::totp::SecretBox;
use crate::peers::{Mailer, OutgoingEmail};

/// Who is calling, as the gateway saw them.
#[derive(Clone, Debug, Default)]
pub(crate) struct Client {
    pub(crate) ip: String,
    pub(crate) user_agent: String,
}

/// Everything the use cases need.
pub(crate) struct App {
    pub(crate) db: DatabaseConnection,
    pub(crate) clock: SharedClock,
    pub(crate) auth: AuthConfig,
    pub(crate) mail: MailConfig,
    pub(crate) hasher: Hasher,
    pub(crate) secrets: SecretBox,
    pub(crate) mailer: Arc<dyn Mailer>,
    pub(crate) accounts: Arc<dyn crate::peers::Accounts>,
    /// Wakes this replica's revocation watchers.
    pub(crate) signal: Arc<tokio::sync::Notify>,
    /// Logins and second factors by outcome.
    pub(crate) outcomes: crate::metrics::Outcomes,
    /// The WebAuthn relying party (passkeys).
    pub(crate) webauthn: webauthn_rs::Webauthn,
    /// The CAs a registering authenticator's attestation must chain to
    /// (`auth.webauthn_attestation = "ca"`); `None`: any authenticator.
    pub(crate) attestation_cas: Option<webauthn_rs::prelude::AttestationCaList>,
}

impl App {
    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Queues an email; failures are logged, never shown with content.
    pub(crate) async fn send(
        &self,
        key: String,
        to: &str,
        to_name: &str,
        template: MessageTemplate,
        data: &[(&str, String)],
    ) -> Result<(), IdentityError> {
        let data: HashMap<String, String> = data
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        self.mailer
            .send(OutgoingEmail {
                idempotency_key: key,
                to: to.to_owned(),
                to_name: to_name.to_owned(),
                template,
                data,
            })
            .await?;
        Ok(())
    }
}

impl App {
    /// Sends a security notice about a committed change to the user's
    /// address. The change stands whatever happens to the mail, so a
    /// failure is logged (without content), not returned.
    pub(crate) async fn security_notice(
        &self,
        user_id: &str,
        template: MessageTemplate,
        ip: &str,
        extra: &[(&str, String)],
    ) {
        let user = match self.load_user(&self.db, user_id).await {
            Ok(Some(user)) => user,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "security notice: user not loaded");
                return;
            }
        };
        let now = self.now();
        let ip = if ip.trim().is_empty() {
            "an unknown address"
        } else {
            ip
        };
        let mut data = vec![("change_time", time_text(now)), ("ip", ip.to_owned())];
        data.extend(extra.iter().cloned());
        // One message per event: two events in the same millisecond (two
        // logins from new networks) are two notices.
        // (The template is on the message; keys are at most 128 bytes.)
        let key = format!(
            "identity:notice:{user_id}:{}",
            tenancy_runtime::ids::new_id()
        );
        if let Err(error) = self
            .send(key, &user.email, &user.name, template, &data)
            .await
        {
            tracing::warn!(%error, template = template.as_str_name(), "security notice not queued");
        }
    }

    /// A portal page, for links in notices.
    pub(crate) fn portal_page(&self, path: &str) -> String {
        format!("{}/{path}", self.mail.portal_url.trim_end_matches('/'))
    }
}

/// A `Timestamp` as RFC 3339 UTC text for email templates.
pub(crate) fn time_text(t: Timestamp) -> String {
    t.rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_render_as_utc_text() {
        assert_eq!(time_text(Timestamp(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            time_text(Timestamp(1_700_000_000_000)),
            "2023-11-14T22:13:20Z"
        );
    }
}
