//! The account service's use cases: one function per use case, each one
//! transaction, taking and returning domain and store types (no proto).
//! Audit and policy-log entries are written here, with the change.
//!
//! Here: member changes ([`members`]), invitations, accounts, security
//! settings and support access, the service catalogue, recorded audit
//! events. The read-only lists are `api/` over `store/` reads.

use std::collections::HashMap;
use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tenancy_proto::account as pb;
use tenancy_runtime::Principal;
use tenancy_runtime::clock::SharedClock;
use tenancy_runtime::config::Config;
use tenancy_runtime::ids::{AccountId, UserId};
use tenancy_runtime::peer_calls::PeerCalls;
use tokio::sync::Notify;

use crate::cache::AccessCache;
use crate::peers::{Peers, UserInfo};
use crate::store::AuditRow;

pub(crate) mod accounts;
pub(crate) mod audit;
pub(crate) mod invitations;
pub(crate) mod members;
pub(crate) mod policy;
pub(crate) mod security;
pub(crate) mod services;

/// How long an idempotency key (`request_id`) is remembered.
pub(crate) const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// RFC 3339 (UTC, seconds) of Unix milliseconds.
pub(crate) fn rfc3339(ms: i64) -> String {
    tenancy_runtime::Timestamp(ms).rfc3339()
}

/// A short fingerprint of serializable parts: of a request, for
/// idempotency keys, and of list filters, carried in page tokens so a
/// token is refused with other filters.
pub(crate) fn fingerprint(parts: &impl serde::Serialize) -> String {
    let text = serde_json::to_string(parts).unwrap_or_default();
    tenancy_runtime::secret::sha256_hex(text.as_bytes())[..16].to_owned()
}

/// What every use case works with; cheap to clone (the database handle is
/// a pool).
#[derive(Clone)]
pub(crate) struct App {
    pub(crate) db: DatabaseConnection,
    pub(crate) clock: SharedClock,
    pub(crate) peers: Peers,
    /// The outbox of calls to identity a rule depends on.
    pub(crate) peer_calls: PeerCalls,
    pub(crate) config: Arc<Config>,
    /// Woken after every commit that appended to the policy log, so local
    /// WatchPolicies streams send at once (other replicas poll).
    pub(crate) policy_changed: Arc<Notify>,
    /// What CheckAccess needs, in memory; dropped per account after every
    /// commit that changes access (see `crate::cache`).
    pub(crate) cache: Arc<AccessCache>,
}

impl App {
    /// The service clock, Unix milliseconds.
    pub(crate) fn now(&self) -> i64 {
        self.clock.now().millis()
    }

    /// The users of `ids` from identity; empty when identity is down (lists
    /// and emails still work, without names).
    pub(crate) async fn users_or_empty(&self, ids: &[UserId]) -> HashMap<UserId, UserInfo> {
        match self.peers.users(ids).await {
            Ok(users) => users,
            Err(error) => {
                tracing::warn!(%error, "member profiles unavailable");
                Default::default()
            }
        }
    }

    /// An audit event by `principal` (a user, staff, or a service).
    pub(crate) fn audit(
        &self,
        principal: &Principal,
        account_id: &AccountId,
        action: &str,
        target: (&str, &str),
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> AuditRow {
        // The audit action is the stable `event` a SIEM matches
        // (`member.change_role`, `member.suspend`, `security_settings.update`, …).
        tracing::info!(
            event = action,
            account_id = %account_id,
            actor_id = principal.user_id.as_deref().unwrap_or_default(),
            target_type = target.0,
            target_id = target.1,
            "account change"
        );
        AuditRow {
            id: tenancy_runtime::ids::new_id(),
            account_id: account_id.to_string(),
            time: self.now(),
            actor_kind: if principal.staff {
                pb::ActorKind::Staff as i32
            } else if principal.user_id.is_some() {
                pb::ActorKind::User as i32
            } else {
                pb::ActorKind::Service as i32
            },
            // A service's calls are recorded under the name its
            // certificate gives it (e.g. `billing`).
            actor_id: principal
                .user_id
                .clone()
                .or_else(|| {
                    principal
                        .caller
                        .map(|c| tenancy_runtime::tls::caller_name(c).to_owned())
                })
                .unwrap_or_default(),
            actor_display_name: String::new(),
            token_kind: principal.token_kind as i32,
            client_ip: principal
                .client_ip
                .map(|ip| ip.to_string())
                .unwrap_or_default(),
            user_agent: principal.user_agent.chars().take(500).collect(),
            action: action.to_owned(),
            target_type: target.0.to_owned(),
            target_id: target.1.to_owned(),
            before: before.map(|v| v.to_string()),
            after: after.map(|v| v.to_string()),
            request_id: principal.request_id.clone(),
        }
    }

    /// After the commit of a transaction that appended to the policy log
    /// for `account_id`: drops the account from the access cache (so this
    /// replica answers from the new state at once) and wakes local policy
    /// watchers.
    pub(crate) fn policy_committed(&self, account_id: &AccountId) {
        self.cache.invalidate(account_id);
        self.policy_changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
    }
}
