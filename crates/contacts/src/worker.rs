//! The delivery worker: claims due outbox messages in batches with a lease,
//! delivers them over several SMTP connections at once, and records the
//! outcomes in batches, with retries and back-off.
//!
//! The three stages overlap: the next batch is claimed while the previous
//! one is still being sent, and outcomes are written by a recorder that
//! takes whatever has finished since its last write (one transaction per
//! write), so under load a write covers many messages and when idle each
//! outcome is written at once.
//!
//! Guarantees: a message is sent at least once (an outcome not recorded,
//! because of a crash or a failed write, leaves the message SENDING until
//! its lease ends, and it is sent again, with the same Message-ID so a
//! receiver can drop the duplicate); never twice at the same time (claims
//! are exclusive, see [`outbox::claim_due`]); never lost (the row stays
//! until delivered or given up).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use lettre::message::Mailbox;
use sea_orm::DatabaseConnection;
use tenancy_runtime::clock::SharedClock;
use tenancy_runtime::metrics::{Counter, EncodeLabelSet, Metrics, OutcomeLabel};
use tenancy_runtime::shutdown::Shutdown;
use tokio::sync::{Notify, mpsc};
use zeroize::Zeroize as _;

use crate::domain::backoff::{self, AfterFailure};
use crate::domain::outbox::{Channel, Message};
use crate::domain::plaintext;
use crate::domain::templates::SECRET_PLACEHOLDER;
use crate::mailer::{Mailer, SendError};
use crate::sms::SmsSender;
use crate::store::outbox::{self, Finished, Outcome};

/// How often the worker looks for due messages when nothing woke it.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Messages claimed per query, per concurrent delivery.
const CLAIM_PER_CONNECTION: usize = 8;
/// Most outcomes written in one transaction.
const RECORD_BATCH: usize = 256;
/// How long deliveries already under way may finish after shutdown; what
/// is still in flight then is sent again after its lease.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The delivery worker of one service instance.
pub struct Worker {
    pub(crate) db: DatabaseConnection,
    pub(crate) clock: SharedClock,
    pub(crate) mailer: Arc<Mailer>,
    pub(crate) sms: Arc<SmsSender>,
    pub(crate) secrets: tenancy_runtime::secret::SecretBox,
    pub(crate) from: Mailbox,
    pub(crate) max_attempts: u32,
    pub(crate) retry_base_delay: Duration,
    /// Deliveries in flight at once (the SMTP pool holds as many connections).
    pub(crate) concurrency: usize,
    pub(crate) wake: Arc<Notify>,
    pub(crate) deliveries: Deliveries,
}

/// Delivery attempts by outcome.
#[derive(Clone)]
pub(crate) struct Deliveries {
    sent: Counter,
    retry: Counter,
    failed: Counter,
}

impl Deliveries {
    pub(crate) fn new(metrics: &Metrics) -> Self {
        let family = metrics.counter_family::<OutcomeLabel>(
            "tenancy_contacts_deliveries",
            "Email delivery attempts by outcome: sent, retry (failed, tried again later), failed (given up: permanent failure or out of attempts)",
        );
        let outcome = |outcome| family.get_or_create_owned(&OutcomeLabel { outcome });
        Self {
            sent: outcome("sent"),
            retry: outcome("retry"),
            failed: outcome("failed"),
        }
    }
}

/// Refreshes the outbox's backlog gauges whenever metrics are scraped.
pub(crate) fn measure_backlog(metrics: &Metrics, db: DatabaseConnection, clock: SharedClock) {
    let messages = metrics.gauge_family::<StateLabel>(
        "tenancy_contacts_outbox_messages",
        "Outbox messages not delivered yet, by state: pending (waiting, or waiting for a retry) and sending (claimed by a worker)",
    );
    let oldest = metrics.gauge_f64(
        "tenancy_contacts_outbox_oldest_age_seconds",
        "Age of the oldest outbox message not delivered yet (0 when there is none)",
    );
    metrics.on_scrape(move || {
        let (db, clock, messages, oldest) =
            (db.clone(), clock.clone(), messages.clone(), oldest.clone());
        async move {
            match outbox::backlog(&db).await {
                Ok(backlog) => {
                    messages
                        .get_or_create(&StateLabel { state: "pending" })
                        .set(backlog.pending);
                    messages
                        .get_or_create(&StateLabel { state: "sending" })
                        .set(backlog.sending);
                    let age = backlog
                        .oldest_created_at
                        .map_or(0, |at| (clock.now().millis() - at).max(0));
                    oldest.set(age as f64 / 1000.0);
                }
                Err(error) => tracing::warn!(%error, "metrics: cannot read the outbox backlog"),
            }
        }
    });
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

impl Worker {
    /// Delivers until `shutdown`. After shutdown nothing more is claimed;
    /// deliveries under way get [`SHUTDOWN_GRACE`] to finish and be
    /// recorded.
    pub async fn run(self, shutdown: Shutdown) {
        let stop = shutdown.clone().wait();
        tokio::pin!(stop);
        loop {
            if shutdown.is_triggered() {
                break;
            }
            let drain = self.drain(&shutdown);
            tokio::pin!(drain);
            let claimed = tokio::select! {
                n = &mut drain => n,
                () = &mut stop => {
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, drain).await;
                    break;
                }
            };
            if claimed > 0 {
                continue;
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL_INTERVAL) => {}
                () = &mut stop => break,
            }
        }
        tracing::debug!("outbox worker stopped");
    }

    /// Delivers due messages until none is left (or shutdown); returns how
    /// many were claimed.
    pub async fn drain(&self, shutdown: &Shutdown) -> usize {
        let batch = self.concurrency.saturating_mul(CLAIM_PER_CONNECTION).max(1);
        let (claims, to_send) = mpsc::channel::<Message>(batch);
        let (outcomes, received) = mpsc::channel::<Finished>(batch);
        let claim = async move {
            let mut claimed = 0;
            while !shutdown.is_triggered() {
                let now = self.clock.now();
                let due = match outbox::claim_due(&self.db, now, backoff::LEASE, batch as u64).await
                {
                    Ok(due) => due,
                    Err(error) => {
                        tracing::warn!(%error, "could not claim outbox messages");
                        break;
                    }
                };
                claimed += due.len();
                let exhausted = due.len() < batch;
                for m in due {
                    // The receiver lives until every claim is taken.
                    let _ = claims.send(m).await;
                }
                if exhausted {
                    break;
                }
            }
            claimed
        };
        let deliver = async move {
            tokio_stream::wrappers::ReceiverStream::new(to_send)
                .for_each_concurrent(self.concurrency, |m| {
                    let outcomes = outcomes.clone();
                    async move {
                        let outcome = self.attempt(&m).await;
                        let finished = Finished {
                            id: m.id,
                            attempts: m.attempts,
                            outcome,
                        };
                        // The recorder lives until every sender is gone.
                        let _ = outcomes.send(finished).await;
                    }
                })
                .await;
            drop(outcomes);
        };
        let (claimed, (), ()) = tokio::join!(claim, deliver, self.record(received));
        claimed
    }

    /// Sends one claimed message; what to record.
    async fn attempt(&self, m: &Message) -> Outcome {
        let Err(e) = self.deliver(m).await else {
            self.deliveries.sent.inc();
            return Outcome::Sent;
        };
        let attempts = u32::try_from(m.attempts).unwrap_or(u32::MAX);
        match backoff::after_failure(
            attempts,
            self.max_attempts,
            self.retry_base_delay,
            e.permanent,
        ) {
            AfterFailure::RetryAfter(delay) => {
                self.deliveries.retry.inc();
                tracing::info!(message_id = %m.id, attempts, error = %e.message, "delivery failed; will retry");
                Outcome::Retry {
                    at: self.clock.now().plus(delay),
                    error: e.message,
                }
            }
            AfterFailure::GiveUp => {
                self.deliveries.failed.inc();
                tracing::warn!(message_id = %m.id, attempts, error = %e.message, "delivery failed; giving up");
                Outcome::Failed { error: e.message }
            }
        }
    }

    /// Sends one message by its channel, with its secret (if it carries
    /// one) put in place of the placeholder for this attempt only; the
    /// opened secret and the bodies holding it are wiped once sent.
    async fn deliver(&self, m: &Message) -> Result<(), SendError> {
        let secret = crate::outbox::open_secret(&self.db, &self.secrets, m)
            .await
            .map_err(|message| SendError {
                permanent: true,
                message,
            })?;
        match secret {
            None => self.send(m).await,
            Some(secret) => self.send(&WithSecret::new(m, &secret).0).await,
        }
    }

    async fn send(&self, m: &Message) -> Result<(), SendError> {
        if m.channel == Channel::Sms {
            self.sms.send(&m.id, &m.to_phone, &m.body_text).await
        } else {
            self.mailer.send(m, &self.from).await
        }
    }

    /// Writes outcomes as they arrive, each write taking all that are
    /// waiting (up to [`RECORD_BATCH`]), until every sender is gone.
    async fn record(&self, mut received: mpsc::Receiver<Finished>) {
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        while received.recv_many(&mut batch, RECORD_BATCH).await > 0 {
            if let Err(error) = outbox::finish_all(&self.db, &batch, self.clock.now()).await {
                // Left SENDING: sent again when the lease ends.
                tracing::warn!(%error, count = batch.len(), "could not record delivery outcomes");
            }
            batch.clear();
        }
    }
}

/// A message with its secret in its bodies, which are wiped when it is
/// dropped (also when a delivery is cancelled half-way).
struct WithSecret(Message);

impl WithSecret {
    fn new(m: &Message, secret: &str) -> Self {
        let fill = |body: &str, secret: &str| {
            std::mem::take(&mut *plaintext::substitute(
                body,
                SECRET_PLACEHOLDER,
                secret,
            ))
        };
        let mut filled = m.clone();
        filled.body_text = fill(&m.body_text, secret);
        filled.body_html = fill(&m.body_html, &plaintext::escape_html(secret));
        Self(filled)
    }
}

impl Drop for WithSecret {
    fn drop(&mut self) {
        self.0.body_text.zeroize();
        self.0.body_html.zeroize();
    }
}
