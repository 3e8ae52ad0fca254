//! The outbox of calls to other services that a rule depends on.
//!
//! A change whose rule needs a side effect in another service (today: a
//! member losing access must lose their API tokens for the account in
//! identity, for good) writes the call into `account_peer_calls` in the
//! SAME transaction as the change, so one never commits without the other.
//! The request that made the change then delivers its own call at once
//! (as fast, and in the same order, as the direct call it replaces: the
//! RPC answers after identity acknowledged, when identity is up); whatever
//! it could not deliver, the [`run`] worker of any replica delivers later,
//! retrying with capped backoff until the peer acknowledges. A row is
//! deleted only after the peer acknowledged it.
//!
//! Several replicas share the table: a call is taken with a lease
//! (`lease_until`), claimed in one UPDATE (with `FOR UPDATE SKIP LOCKED` on
//! PostgreSQL; SQLite has one writer at a time), so two replicas do not
//! deliver the same call while the lease holds. A call can still be
//! delivered twice (a replica dies after the peer acknowledged but before
//! the row is deleted, or a delivery outlives its lease); that is harmless:
//! RevokeAccountAccess is idempotent and carries the change's time, so a
//! late or repeated delivery revokes nothing created after it.

use std::time::Duration;
use tenancy_runtime::db::{self, get};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};
use serde::{Deserialize, Serialize};
use tenancy_proto::identity::RevocationReason;
use tenancy_runtime::Error;
use tenancy_runtime::clock::{Clock, SystemClock};
use tenancy_runtime::ids::{AccountId, UserId};

use crate::peers::Peers;
use crate::store::{i, n, s};

/// Calls taken per claim.
const BATCH: i64 = 50;
/// How long a claimed call is reserved for the replica that took it; more
/// than [`CALL_TIMEOUT`], so a live delivery never loses its lease.
const LEASE: Duration = Duration::from_secs(30);
/// The longest one delivery may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the worker looks for due calls (its own retries, and calls a
/// replica that died could not deliver once their lease ran out).
const POLL: Duration = Duration::from_millis(500);
/// Retry delays: 100 ms doubling, capped.
const BACKOFF_FIRST_MS: i64 = 100;
const BACKOFF_CAP_MS: i64 = 5_000;

/// Kinds of calls (`call_kind`).
mod kind {
    /// identity's RevokeAccountAccess; payload [`super::RevokeAccess`].
    pub(super) const REVOKE_ACCOUNT_ACCESS: i32 = 1;
}

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

/// Wall-clock Unix milliseconds: leases and retries are operational time,
/// shared by replicas, not the service's (possibly manual) business clock.
fn wall_ms() -> i64 {
    SystemClock.now().millis()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The delay before attempt `attempts + 1`.
fn backoff_ms(attempts: i32) -> i64 {
    let shift = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
    BACKOFF_FIRST_MS
        .saturating_mul(1_i64 << shift)
        .min(BACKOFF_CAP_MS)
}

/// Writes a RevokeAccountAccess call in the caller's transaction `c`,
/// leased to the caller (who delivers it after commit with [`PeerCalls::deliver`]);
/// returns its id.
pub(crate) async fn enqueue<C: ConnectionTrait>(
    c: &C,
    call: &RevokeAccess,
) -> Result<String, Error> {
    let id = tenancy_runtime::ids::new_id();
    let payload = serde_json::to_string(call)
        .map_err(|e| Error::internal(format!("peer call payload: {e}")))?;
    let now = wall_ms();
    db::exec(
        c,
        "INSERT INTO account_peer_calls (id, call_kind, payload, create_time, attempts, due_time, lease_until, last_error) \
         VALUES ($1, $2, $3, $4, 0, $4, $5, '')",
        vec![
            s(id.as_str()),
            n(kind::REVOKE_ACCOUNT_ACCESS),
            s(payload),
            i(now),
            i(now + ms(LEASE)),
        ],
    )
    .await?;
    Ok(id)
}

/// One claimed call.
struct Claimed {
    id: String,
    kind: i32,
    payload: String,
    attempts: i32,
}

/// Delivers the outbox; cheap to clone.
#[derive(Clone)]
pub(crate) struct PeerCalls {
    db: DatabaseConnection,
    peers: Peers,
}

impl PeerCalls {
    /// The outbox of `db`, delivered to `peers`.
    pub(crate) fn new(db: DatabaseConnection, peers: Peers) -> Self {
        Self { db, peers }
    }

    /// The clients the calls are made with.
    pub(crate) fn peers(&self) -> &Peers {
        &self.peers
    }

    /// Delivers the call `id` that this replica just committed (and holds
    /// the lease of). On failure it is left to the worker, which retries
    /// after a backoff; the error is logged, not returned: the change is
    /// committed and the call will be made.
    pub(crate) async fn deliver(&self, id: &str, call: &RevokeAccess) {
        let claimed = Claimed {
            id: id.to_owned(),
            kind: kind::REVOKE_ACCOUNT_ACCESS,
            payload: String::new(),
            attempts: 0,
        };
        self.finish(&claimed, self.call(call).await).await;
    }

    /// Makes one call.
    async fn call(&self, call: &RevokeAccess) -> Result<(), String> {
        let reason =
            RevocationReason::try_from(call.reason).unwrap_or(RevocationReason::MemberRevoked);
        let result = tokio::time::timeout(
            CALL_TIMEOUT,
            self.peers.revoke_account_access(
                &call.user_id,
                &call.account_id,
                reason,
                call.change_time,
            ),
        )
        .await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
            Err(_) => Err("timed out".to_owned()),
        }
    }

    /// Records the outcome: deleted when acknowledged, else released for a
    /// retry after the backoff.
    async fn finish(&self, call: &Claimed, result: Result<(), String>) {
        let outcome = match &result {
            Ok(()) => {
                db::exec(
                    &self.db,
                    "DELETE FROM account_peer_calls WHERE id = $1",
                    vec![s(call.id.as_str())],
                )
                .await
            }
            Err(error) => {
                tracing::warn!(
                    id = %call.id,
                    attempts = call.attempts + 1,
                    %error,
                    "RevokeAccountAccess not delivered yet; retrying (gateways deny from the policy log meanwhile)"
                );
                db::exec(
                    &self.db,
                    "UPDATE account_peer_calls SET attempts = attempts + 1, due_time = $2, lease_until = NULL, last_error = $3 WHERE id = $1",
                    vec![
                        s(call.id.as_str()),
                        i(wall_ms() + backoff_ms(call.attempts)),
                        s(error.chars().take(500).collect::<String>()),
                    ],
                )
                .await
            }
        };
        if let Err(error) = outcome {
            // The lease runs out and the call is delivered again: harmless.
            tracing::warn!(id = %call.id, %error, "could not record a peer call's outcome");
        }
    }

    /// Takes up to [`BATCH`] due calls no live lease holds.
    async fn claim(&self) -> Result<Vec<Claimed>, Error> {
        let now = wall_ms();
        let skip_locked = if self.db.get_database_backend() == DbBackend::Postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        // The outer lease test is checked again on PostgreSQL after a row
        // lock wait, so a row another replica claimed meanwhile is skipped.
        let sql = format!(
            "UPDATE account_peer_calls SET lease_until = $1 WHERE id IN (\
             SELECT id FROM account_peer_calls WHERE due_time <= $2 AND (lease_until IS NULL OR lease_until <= $2) \
             ORDER BY due_time, id LIMIT $3{skip_locked}) \
             AND (lease_until IS NULL OR lease_until <= $2) \
             RETURNING id, call_kind, payload, attempts"
        );
        let rows = db::all(&self.db, &sql, vec![i(now + ms(LEASE)), i(now), i(BATCH)]).await?;
        rows.iter()
            .map(|r| {
                Ok(Claimed {
                    id: get(r, "id")?,
                    kind: get(r, "call_kind")?,
                    payload: get(r, "payload")?,
                    attempts: get(r, "attempts")?,
                })
            })
            .collect()
    }

    /// One pass: claims and delivers due calls; returns how many it took.
    pub(crate) async fn tick(&self) -> Result<usize, Error> {
        let calls = self.claim().await?;
        for call in &calls {
            let result = match call.kind {
                kind::REVOKE_ACCOUNT_ACCESS => match serde_json::from_str(&call.payload) {
                    Ok(revoke) => self.call(&revoke).await,
                    Err(e) => Err(format!("unreadable payload: {e}")),
                },
                other => Err(format!("unknown call kind {other}")),
            };
            self.finish(call, result).await;
        }
        Ok(calls.len())
    }
}

/// The worker: delivers due calls until aborted.
pub(crate) async fn run(calls: PeerCalls) {
    loop {
        match calls.tick().await {
            // A full batch: more may be due.
            Ok(taken) if taken >= usize::try_from(BATCH).unwrap_or(usize::MAX) => continue,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "peer call worker failed; retrying"),
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_100_ms_and_is_capped_at_5_s() {
        assert_eq!(backoff_ms(0), 100);
        assert_eq!(backoff_ms(1), 200);
        assert_eq!(backoff_ms(5), 3_200);
        assert_eq!(backoff_ms(6), 5_000);
        assert_eq!(backoff_ms(1_000), 5_000);
        assert_eq!(backoff_ms(-1), 100);
    }
}
