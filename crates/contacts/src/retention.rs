//! The retention job: removes delivered and failed outbox messages, unused
//! idempotency keys and old verification tokens once they are past their
//! retention (`mail.sent_retention`, `mail.failed_retention`).
//!
//! It runs at start and then every [`EVERY`] of the service's clock, which
//! it reads every [`TICK`], so a test that moves the injected clock sees a
//! run within a tick. Several replicas may run it at once: each run is a
//! set of idempotent deletes.

use std::time::Duration;

use sea_orm::DatabaseConnection;
use tenancy_runtime::clock::SharedClock;
use tenancy_runtime::shutdown::Shutdown;

use crate::domain::retention::Cutoffs;
use crate::store::{contacts, outbox};

/// Time between two runs (by the service's clock).
pub const EVERY: Duration = Duration::from_secs(3600);
/// How often the clock is looked at.
pub const TICK: Duration = Duration::from_millis(250);

/// The retention job of one service instance.
pub struct Retention {
    pub(crate) db: DatabaseConnection,
    pub(crate) clock: SharedClock,
    pub(crate) sent: Duration,
    pub(crate) failed: Duration,
}

impl Retention {
    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: Shutdown) {
        let stop = shutdown.wait();
        tokio::pin!(stop);
        let mut next = self.clock.now();
        loop {
            let now = self.clock.now();
            if now >= next {
                next = now.plus(EVERY);
                if let Err(error) = self.once(now).await {
                    tracing::warn!(%error, "outbox retention run failed");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                () = &mut stop => break,
            }
        }
    }

    /// One run at `now`.
    pub async fn once(
        &self,
        now: tenancy_runtime::Timestamp,
    ) -> Result<(), tenancy_runtime::Error> {
        let cutoffs = Cutoffs::at(now, self.sent, self.failed);
        let pruned = outbox::prune(&self.db, &cutoffs).await?;
        let tokens =
            contacts::prune_verification_tokens(&self.db, cutoffs.tokens_expired_before).await?;
        if pruned != outbox::Pruned::default() || tokens > 0 {
            tracing::info!(
                sent = pruned.sent,
                failed = pruned.failed,
                idempotency_keys = pruned.keys,
                verification_tokens = tokens,
                "retention: removed what was past its time"
            );
        }
        Ok(())
    }
}
