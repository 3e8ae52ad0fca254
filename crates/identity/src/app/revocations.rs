//! The revocation log: every revocation gets a position; gateways stream
//! the backlog then live changes (WatchRevocations). Appends take the
//! head row's lock, so positions commit in order across replicas; watchers
//! wake at once for appends of this replica and, on PostgreSQL, of every
//! replica (`NOTIFY` at commit), and poll as a fallback.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use sea_orm::ConnectionTrait;
use tenancy_proto::identity as pb;
use tenancy_runtime::{Error, Timestamp};

use super::App;
use crate::domain::error::{IdentityError, Invalid};
use crate::store::revocations::{self, StoredEvent};

/// Heartbeat after this long without other messages.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// A watcher rebuilding its state (from 0, or after a reset) is sent the
/// events whose effect ended at most this long ago: more than a gateway's
/// verification leeway (30 s) and clock skew, so it gets every cut-off it
/// would still hold.
const REBUILD_ENDED_MARGIN_MS: i64 = 60_000;
/// …and every event created at most this long ago: a gateway holds a
/// session's revocation at least an hour after it was made, whatever its
/// `expire_time`.
const REBUILD_SESSION_HOLD_MS: i64 = 3_600_000;

/// What is revoked (or, for `Mfa`, changed) — one event of the log.
#[derive(Clone, Debug)]
pub(crate) enum Revocation {
    Session {
        session_id: String,
        user_id: String,
    },
    /// Every access token of the user issued before the event (`rev` claim
    /// below its position).
    UserTokensBefore {
        user_id: String,
    },
    /// Every access token of the user for the account issued before the
    /// event.
    UserAccount {
        user_id: String,
        account_id: String,
    },
    ApiToken {
        id: String,
        user_id: String,
        account_id: String,
    },
    SigningKeys {
        withdrawn: Vec<String>,
    },
    /// The user turned 2FA on or off: gateways judge the user's API tokens
    /// by it under enforced 2FA.
    Mfa {
        user_id: String,
        enabled: bool,
    },
}

/// What a revocation watcher receives, in order.
pub(crate) enum WatchItem {
    /// The position asked for is past the head: start again from here.
    Reset {
        /// The oldest position kept.
        oldest_position: i64,
    },
    /// One event of the log.
    Event(StoredEvent),
    /// Consecutive events of the catch-up (the watcher asked for batches):
    /// never empty.
    Batch(Vec<StoredEvent>),
    /// The backlog is delivered; live events follow.
    CaughtUp {
        /// The last position delivered.
        head_position: i64,
    },
    /// Nothing happened for a while.
    Heartbeat {
        /// The last position delivered.
        head_position: i64,
        /// The time now.
        time: Timestamp,
    },
}

impl App {
    /// Appends an event inside the caller's transaction; returns its position.
    pub(crate) async fn append_revocation<C: ConnectionTrait>(
        &self,
        c: &C,
        what: Revocation,
        reason: pb::RevocationReason,
    ) -> Result<i64, IdentityError> {
        let now = self.now();
        let position = revocations::next_position(c)
            .await?
            .ok_or_else(|| Error::internal("revocation head missing"))?;
        let lifetime = self.auth.access_token_lifetime;
        // A cut-off can matter only while a token issued before it lives.
        let cut_off_expiry = Some(now.plus(lifetime).millis());
        let event = StoredEvent {
            position,
            create_time: now.millis(),
            reason: reason as i32,
            ..StoredEvent::default()
        };
        let event = match what {
            Revocation::Session {
                session_id,
                user_id,
            } => StoredEvent {
                kind: "session".into(),
                subject: session_id,
                user_id,
                expire_time: cut_off_expiry,
                ..event
            },
            Revocation::UserTokensBefore { user_id } => StoredEvent {
                kind: "user_tokens_before".into(),
                user_id,
                expire_time: cut_off_expiry,
                ..event
            },
            Revocation::UserAccount {
                user_id,
                account_id,
            } => StoredEvent {
                kind: "user_account".into(),
                user_id,
                account_id,
                expire_time: cut_off_expiry,
                ..event
            },
            Revocation::ApiToken {
                id,
                user_id,
                account_id,
            } => StoredEvent {
                kind: "api_token".into(),
                subject: id,
                user_id,
                account_id,
                ..event
            },
            Revocation::SigningKeys { withdrawn } => StoredEvent {
                kind: "signing_keys".into(),
                kids: withdrawn.join(","),
                ..event
            },
            Revocation::Mfa { user_id, enabled } => StoredEvent {
                kind: "mfa".into(),
                subject: if enabled { "on" } else { "off" }.to_owned(),
                user_id,
                ..event
            },
        };
        revocations::insert(c, event).await?;
        tenancy_runtime::db::notify(c, revocations::CHANNEL).await?;
        Ok(position)
    }

    /// Wakes this replica's watchers (after a commit).
    pub(crate) fn notify_revocations(&self) {
        self.signal.notify_waiters();
    }

    async fn events_after(&self, position: i64) -> Result<Vec<StoredEvent>, IdentityError> {
        Ok(revocations::after(&self.db, position).await?)
    }

    pub(crate) async fn head_position(&self) -> Result<i64, IdentityError> {
        Ok(revocations::head(&self.db).await?)
    }

    /// WatchRevocations: backlog (in batches if `batched`), `caught_up`,
    /// then live events and heartbeats.
    pub(crate) async fn watch_revocations(
        self: Arc<Self>,
        from: i64,
        batched: bool,
    ) -> Result<Pin<Box<dyn Stream<Item = WatchItem> + Send>>, IdentityError> {
        if from < 0 {
            return Err(IdentityError::invalid(
                Invalid::Position,
                "from_position",
                "must not be negative",
            ));
        }
        let head = self.head_position().await?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let app = self;
        tokio::spawn(async move {
            let send = |item: WatchItem| {
                let tx = tx.clone();
                async move { tx.send(item).await.is_ok() }
            };
            // A page of the catch-up: one batch, or one message per event.
            // Returns the last position sent (the page is never empty).
            let send_page = |events: Vec<StoredEvent>| {
                let tx = tx.clone();
                async move {
                    let last = events.last().map_or(0, |e| e.position);
                    if batched {
                        tx.send(WatchItem::Batch(events)).await.ok()?;
                    } else {
                        for e in events {
                            tx.send(WatchItem::Event(e)).await.ok()?;
                        }
                    }
                    Some(last)
                }
            };
            let poll = tenancy_runtime::db::follow_poll_interval(&app.db);
            let signal = app.signal.clone();
            // Created before each look, so a wake-up during it is not lost.
            let mut notified = std::pin::pin!(signal.notified());
            let mut last = from;
            // A resume position beyond the head, or whose successor was
            // pruned (the watcher fell behind by more than the retention),
            // gets a reset: the watcher rebuilds its state, as from 0.
            let oldest = if from > head {
                match crate::store::prune::oldest(&app.db).await {
                    Ok(oldest) => Some(oldest.unwrap_or(head + 1)),
                    Err(_) => return,
                }
            } else if from > 0 {
                match revocations::first_after(&app.db, from).await {
                    Ok(first) => tenancy_runtime::db::pruned_after(from, first),
                    Err(_) => return,
                }
            } else {
                None
            };
            if let Some(oldest) = oldest
                && !send(WatchItem::Reset {
                    oldest_position: oldest,
                })
                .await
            {
                return;
            }
            if from == 0 || oldest.is_some() {
                // A rebuild gets, up to the head, only the events that can
                // still matter (the rest of a week's log would be dropped
                // by the watcher as it arrives), then the head as its
                // position.
                let now = app.now().millis();
                last = 0;
                loop {
                    match revocations::in_effect_after(
                        &app.db,
                        last,
                        head,
                        now - REBUILD_ENDED_MARGIN_MS,
                        now - REBUILD_SESSION_HOLD_MS,
                    )
                    .await
                    {
                        Ok(events) if events.is_empty() => break,
                        Ok(events) => match send_page(events).await {
                            Some(sent) => last = sent,
                            None => return,
                        },
                        Err(_) => return,
                    }
                }
                last = head;
            }
            // Backlog (what was appended since, for a rebuild). Entries
            // pruned between two reads get a reset, then every entry kept.
            loop {
                match app.events_after(last).await {
                    Ok(events) if events.is_empty() => break,
                    Ok(events) => {
                        if let Some(oldest) = pruned_after(last, &events)
                            && !send(WatchItem::Reset {
                                oldest_position: oldest,
                            })
                            .await
                        {
                            return;
                        }
                        match send_page(events).await {
                            Some(sent) => last = sent,
                            None => return,
                        }
                    }
                    Err(_) => return,
                }
            }
            if !send(WatchItem::CaughtUp {
                head_position: last,
            })
            .await
            {
                return;
            }
            let mut quiet_since = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    () = notified.as_mut() => {}
                    () = tokio::time::sleep(poll) => {}
                    () = tx.closed() => return,
                }
                notified.set(signal.notified());
                match app.events_after(last).await {
                    // Pruned under a live watcher: end the stream; it
                    // resumes and gets the reset with the backlog.
                    Ok(events) if pruned_after(last, &events).is_some() => return,
                    Ok(events) => {
                        for e in events {
                            last = e.position;
                            quiet_since = tokio::time::Instant::now();
                            if !send(WatchItem::Event(e)).await {
                                return;
                            }
                        }
                    }
                    Err(_) => return,
                }
                if quiet_since.elapsed() >= HEARTBEAT {
                    quiet_since = tokio::time::Instant::now();
                    let beat = WatchItem::Heartbeat {
                        head_position: last,
                        time: app.now(),
                    };
                    if !send(beat).await {
                        return;
                    }
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

/// When entries right after `last` were pruned: the oldest position kept
/// (see [`tenancy_runtime::db::pruned_after`]).
fn pruned_after(last: i64, events: &[StoredEvent]) -> Option<i64> {
    tenancy_runtime::db::pruned_after(last, events.first().map(|e| e.position))
}
