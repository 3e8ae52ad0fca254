//! Account's calls to other services that a rule depends on, made through
//! the one outbox of `tenancy_runtime::peer_calls` (table
//! `account_peer_calls`): today a member losing access must lose their API
//! tokens for the account in identity, for good. The call is written in the
//! SAME transaction as the membership change, delivered by the request
//! right after commit (the RPC answers after identity acknowledged, when
//! identity is up) and otherwise by the worker of any replica, until
//! identity acknowledges.
//!
//! A repeated delivery is harmless: RevokeAccountAccess is idempotent and
//! carries the change's time, so a late or repeated delivery revokes
//! nothing created after it.

use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde::{Deserialize, Serialize};
use tenancy_proto::identity::RevocationReason;
use tenancy_runtime::ids::{AccountId, UserId};
use tenancy_runtime::peer_calls::{self, Enqueued, Kind, PeerCalls};
use tenancy_runtime::{Error, Metrics};

use crate::peers::Peers;

/// Account's outbox of calls.
const TABLE: &str = "account_peer_calls";

/// identity's RevokeAccountAccess (`call_kind` 1).
const REVOKE_ACCOUNT_ACCESS: Kind<RevokeAccess> = Kind::new(1, "RevokeAccountAccess");

/// A RevokeAccountAccess call to make.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RevokeAccess {
    /// The member.
    pub(crate) user_id: String,
    /// The account.
    pub(crate) account_id: String,
    /// MEMBER_SUSPENDED, MEMBER_REVOKED or MEMBER_LEFT.
    pub(crate) reason: i32,
    /// When the membership change was made (service clock, Unix ms).
    pub(crate) change_time: i64,
}

impl RevokeAccess {
    /// The call for a member who lost access by `reason` at `change_time`.
    pub(crate) fn new(
        user_id: &UserId,
        account_id: &AccountId,
        reason: RevocationReason,
        change_time: i64,
    ) -> Self {
        Self {
            user_id: user_id.to_string(),
            account_id: account_id.to_string(),
            reason: reason as i32,
            change_time,
        }
    }
}

/// Writes a RevokeAccountAccess call in the caller's transaction `c`,
/// leased to the caller, who delivers it after commit with
/// [`PeerCalls::deliver`].
pub(crate) async fn enqueue<C: ConnectionTrait>(
    c: &C,
    call: &RevokeAccess,
) -> Result<Enqueued, Error> {
    peer_calls::enqueue(c, TABLE, REVOKE_ACCOUNT_ACCESS, call).await
}

/// Account's outbox in `db`, delivered to identity through `peers`,
/// measured in `metrics`.
pub(crate) fn outbox(db: DatabaseConnection, peers: Peers, metrics: &Metrics) -> PeerCalls {
    PeerCalls::new(db, TABLE, metrics).on(REVOKE_ACCOUNT_ACCESS, move |call: RevokeAccess| {
        let peers = peers.clone();
        async move {
            let reason =
                RevocationReason::try_from(call.reason).unwrap_or(RevocationReason::MemberRevoked);
            peers
                .revoke_account_access(&call.user_id, &call.account_id, reason, call.change_time)
                .await
        }
    })
}
