//! The delivery worker: claims due outbox messages with a lease, delivers
//! them concurrently, and records the outcome with retries and back-off.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use lettre::message::Mailbox;
use sea_orm::DatabaseConnection;
use tenancy_runtime::clock::SharedClock;
use tenancy_runtime::shutdown::Shutdown;
use tokio::sync::Notify;

use crate::domain::backoff::{self, AfterFailure};
use crate::mailer::{Mailer, SMTP_CONNECTIONS};
use crate::store::outbox::{self, Outcome};

/// How often the worker looks for due messages when nothing woke it.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Messages claimed per round.
const BATCH: u64 = 128;

/// The delivery worker of one service instance.
pub struct Worker {
    pub(crate) db: DatabaseConnection,
    pub(crate) clock: SharedClock,
    pub(crate) mailer: Arc<Mailer>,
    pub(crate) from: Mailbox,
    pub(crate) max_attempts: u32,
    pub(crate) retry_base_delay: Duration,
    pub(crate) wake: Arc<Notify>,
}

impl Worker {
    /// Delivers until `shutdown`. A delivery cut short by shutdown keeps its
    /// lease and is sent again when the lease expires (at least once).
    pub async fn run(self, shutdown: Shutdown) {
        let stop = shutdown.clone().wait();
        tokio::pin!(stop);
        loop {
            if shutdown.is_triggered() {
                break;
            }
            let delivered = tokio::select! {
                result = self.round() => result,
                () = &mut stop => break,
            };
            match delivered {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "outbox delivery round failed"),
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL_INTERVAL) => {}
                () = &mut stop => break,
            }
        }
        tracing::debug!("outbox worker stopped");
    }

    /// One round: claims due messages and delivers them; returns how many
    /// were claimed.
    pub async fn round(&self) -> Result<usize, tenancy_runtime::Error> {
        let now = self.clock.now();
        let claimed = outbox::claim_due(&self.db, now, backoff::LEASE, BATCH).await?;
        let n = claimed.len();
        futures::stream::iter(claimed)
            .for_each_concurrent(SMTP_CONNECTIONS as usize, |m| async move {
                let outcome = match self.mailer.send(&m, &self.from).await {
                    Ok(()) => Outcome::Sent,
                    Err(e) => {
                        let attempts = u32::try_from(m.attempts).unwrap_or(u32::MAX);
                        match backoff::after_failure(
                            attempts,
                            self.max_attempts,
                            self.retry_base_delay,
                            e.permanent,
                        ) {
                            AfterFailure::RetryAfter(delay) => {
                                tracing::info!(message_id = %m.id, attempts, error = %e.message, "delivery failed; will retry");
                                Outcome::Retry {
                                    at: self.clock.now().plus(delay),
                                    error: e.message,
                                }
                            }
                            AfterFailure::GiveUp => {
                                tracing::warn!(message_id = %m.id, attempts, error = %e.message, "delivery failed; giving up");
                                Outcome::Failed { error: e.message }
                            }
                        }
                    }
                };
                let now = self.clock.now();
                if let Err(error) = outbox::finish(&self.db, &m.id, m.attempts, outcome, now).await
                {
                    tracing::warn!(message_id = %m.id, %error, "could not record delivery outcome");
                }
            })
            .await;
        Ok(n)
    }
}
