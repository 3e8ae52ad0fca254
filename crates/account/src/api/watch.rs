//! WatchPolicies: the policy change log streamed to gateways.

use std::pin::Pin;
use std::time::Duration;

use base64::Engine as _;
use futures::Stream;
use prost::Message as _;
use tenancy_proto::account as pb;
use tenancy_runtime::Error;
use tokio::sync::mpsc;

use super::{Api, membership_state, settings_pb, ts};
use crate::store::{self, policy_kind};

/// The stream type of WatchPolicies.
pub(crate) type PolicyStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchPoliciesResponse, tonic::Status>> + Send>>;

/// Idle time after which a heartbeat is sent.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// Snapshot and backlog batch size.
const BATCH: u64 = 1000;

/// What [`Api::backlog`] did.
enum Backlog {
    /// Sent every entry; the last position sent.
    Sent(i64),
    /// Entries right after the position were pruned: the watcher needs a
    /// snapshot.
    Pruned,
}

/// What [`Api::catch_up`] sent.
enum CaughtUpBy {
    /// The entries after the position asked for; the last position sent.
    Backlog(i64),
    /// A snapshot (it ends with its own caught_up); its position.
    Snapshot(i64),
}

impl CaughtUpBy {
    /// The last position sent.
    fn position(&self) -> i64 {
        match *self {
            Self::Backlog(position) | Self::Snapshot(position) => position,
        }
    }
}

type Tx = mpsc::Sender<Result<pb::WatchPoliciesResponse, tonic::Status>>;

/// One WatchPolicies stream: where to send, and how.
struct Watcher {
    /// The stream's messages.
    tx: Tx,
    /// Snapshots in [`pb::PolicySnapshotBatch`]es (the watcher asked).
    batched: bool,
}

/// Most entries of each kind in one snapshot batch.
const BATCH_ENTRIES: usize = 1000;
/// A snapshot batch is sent once its entries reach this many bytes
/// (allowlists make settings up to a few KiB each), well below a gRPC
/// client's 4 MiB message limit.
const BATCH_BYTES: usize = 1 << 20;

/// The snapshot batch being filled.
#[derive(Default)]
struct SnapshotBatch {
    /// What it holds.
    batch: pb::PolicySnapshotBatch,
    /// Its entries' encoded size so far.
    bytes: usize,
}

impl SnapshotBatch {
    /// Adds an account's settings; returns the batch to send once full.
    fn add_settings(&mut self, settings: pb::SecuritySettings) -> Option<pb::PolicySnapshotBatch> {
        self.bytes += settings.encoded_len();
        self.batch.security_settings.push(settings);
        self.full()
    }

    /// Adds a membership; returns the batch to send once full.
    fn add_membership(
        &mut self,
        membership: pb::MembershipState,
    ) -> Option<pb::PolicySnapshotBatch> {
        self.bytes += membership.encoded_len();
        self.batch.memberships.push(membership);
        self.full()
    }

    fn full(&mut self) -> Option<pb::PolicySnapshotBatch> {
        let full = self.bytes >= BATCH_BYTES
            || self.batch.security_settings.len() >= BATCH_ENTRIES
            || self.batch.memberships.len() >= BATCH_ENTRIES;
        if full { self.take() } else { None }
    }

    /// What it holds, if anything, leaving it empty.
    fn take(&mut self) -> Option<pb::PolicySnapshotBatch> {
        self.bytes = 0;
        let batch = std::mem::take(&mut self.batch);
        (!batch.security_settings.is_empty() || !batch.memberships.is_empty()).then_some(batch)
    }
}

fn decode(kind: i32, payload: &str) -> Option<pb::watch_policies_response::Event> {
    use pb::watch_policies_response::Event;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()?;
    match kind {
        policy_kind::MEMBERSHIP_CHANGED => pb::MembershipState::decode(bytes.as_slice())
            .ok()
            .map(Event::MembershipChanged),
        policy_kind::MEMBERSHIP_REMOVED => pb::MembershipRemoved::decode(bytes.as_slice())
            .ok()
            .map(Event::MembershipRemoved),
        policy_kind::SECURITY_SETTINGS_CHANGED => pb::SecuritySettings::decode(bytes.as_slice())
            .ok()
            .map(Event::SecuritySettingsChanged),
        _ => None,
    }
}

impl Api {
    pub(super) async fn do_watch_policies(
        &self,
        req: pb::WatchPoliciesRequest,
    ) -> Result<PolicyStream, Error> {
        if req.from_position < 0 {
            return Err(Error::invalid_field(
                "from_position",
                "must not be negative",
            ));
        }
        let (tx, rx) = mpsc::channel(256);
        let api = self.clone();
        let watcher = Watcher {
            tx,
            batched: req.batched_snapshot,
        };
        tokio::spawn(async move {
            let tx = &watcher.tx;
            if let Err(error) = api.watch(req.from_position, &watcher).await {
                let _ = tx.send(Err(tonic::Status::from(error))).await;
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn watch(&self, from: i64, watcher: &Watcher) -> Result<(), Error> {
        let tx = &watcher.tx;
        let head = store::policy_head(&self.db).await?;
        let cause = if from == 0 {
            Some(pb::PolicyResetCause::Requested)
        } else if from > head {
            Some(pb::PolicyResetCause::PositionUnknown)
        } else {
            None
        };
        let mut last = match cause {
            Some(cause) => self.snapshot(cause, watcher).await?,
            None => self.resume(from, watcher).await?,
        };
        let mut idle = tokio::time::Instant::now();
        // Other replicas' appends: woken by their NOTIFY on PostgreSQL,
        // else seen by this poll.
        let poll = tenancy_runtime::db::follow_poll_interval(&self.db);
        loop {
            let notified = self.policy_changed.notified();
            // Entries after `last` pruned under a live watcher (it fell
            // behind by more than the retention): a snapshot, as on resume.
            let sent = self.catch_up(last, watcher).await?.position();
            if sent != last {
                last = sent;
                idle = tokio::time::Instant::now();
            } else if idle.elapsed() >= HEARTBEAT {
                self.send(
                    tx,
                    last,
                    pb::watch_policies_response::Event::Heartbeat(pb::Heartbeat {}),
                )
                .await?;
                idle = tokio::time::Instant::now();
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(poll) => {}
                _ = tx.closed() => return Ok(()),
            }
        }
    }

    /// Resumes after `from`: the backlog and caught_up, or a snapshot (see
    /// [`Api::catch_up`]). Returns the last position sent.
    async fn resume(&self, from: i64, watcher: &Watcher) -> Result<i64, Error> {
        match self.catch_up(from, watcher).await? {
            CaughtUpBy::Backlog(last) => {
                self.send(
                    &watcher.tx,
                    last,
                    pb::watch_policies_response::Event::CaughtUp(pb::CaughtUp { snapshot: false }),
                )
                .await?;
                Ok(last)
            }
            CaughtUpBy::Snapshot(position) => Ok(position),
        }
    }

    /// Sends every entry after `after`, or, when entries right after it
    /// were pruned (the watcher fell behind by more than the retention, on
    /// resuming or while following), a snapshot (POSITION_EXPIRED): the one
    /// place a pruned backlog turns into a snapshot.
    async fn catch_up(&self, after: i64, watcher: &Watcher) -> Result<CaughtUpBy, Error> {
        Ok(match self.backlog(after, &watcher.tx).await? {
            Backlog::Sent(last) => CaughtUpBy::Backlog(last),
            Backlog::Pruned => CaughtUpBy::Snapshot(
                self.snapshot(pb::PolicyResetCause::PositionExpired, watcher)
                    .await?,
            ),
        })
    }

    async fn send(
        &self,
        tx: &Tx,
        position: i64,
        event: pb::watch_policies_response::Event,
    ) -> Result<(), Error> {
        self.send_at(tx, position, self.now(), event).await
    }

    async fn send_at(
        &self,
        tx: &Tx,
        position: i64,
        time: i64,
        event: pb::watch_policies_response::Event,
    ) -> Result<(), Error> {
        tx.send(Ok(pb::WatchPoliciesResponse {
            position,
            time: Some(ts(time)),
            event: Some(event),
        }))
        .await
        .map_err(|_| Error::unavailable("watcher went away"))
    }

    /// Sends every entry after `after`, up to where entries right after the
    /// last one sent turn out pruned (checked on the entries read, so a
    /// prune between two reads cannot skip any).
    async fn backlog(&self, after: i64, tx: &Tx) -> Result<Backlog, Error> {
        let mut last = after;
        loop {
            let entries = store::policy_after(&self.db, last, BATCH).await?;
            let count = entries.len() as u64;
            for entry in entries {
                if tenancy_runtime::db::pruned_after(last, Some(entry.position)).is_some() {
                    return Ok(Backlog::Pruned);
                }
                if let Some(event) = decode(entry.kind, &entry.payload) {
                    self.send_at(tx, entry.position, entry.time, event).await?;
                }
                last = entry.position;
            }
            if count < BATCH {
                return Ok(Backlog::Sent(last));
            }
        }
    }

    /// Sends a reset, the current state at one position (in batches if the
    /// watcher asked for them), and caught_up.
    async fn snapshot(&self, cause: pb::PolicyResetCause, watcher: &Watcher) -> Result<i64, Error> {
        use pb::watch_policies_response::Event;
        let tx = &watcher.tx;
        let txn = store::begin_snapshot(&self.db).await?;
        let position = store::policy_head(&txn).await?;
        self.send(
            tx,
            position,
            Event::Reset(pb::PolicyReset {
                cause: cause as i32,
            }),
        )
        .await?;
        let mut batch = SnapshotBatch::default();
        let mut after = String::new();
        loop {
            let accounts = store::settings_after(&txn, &after, BATCH).await?;
            let count = accounts.len() as u64;
            for a in accounts {
                after = a.id.to_string();
                let settings = settings_pb(&a);
                if watcher.batched {
                    if let Some(full) = batch.add_settings(settings) {
                        self.send(tx, position, Event::SnapshotBatch(full)).await?;
                    }
                } else {
                    self.send(tx, position, Event::SecuritySettingsChanged(settings))
                        .await?;
                }
            }
            if count < BATCH {
                break;
            }
        }
        let (mut a_after, mut u_after) = (String::new(), String::new());
        loop {
            let members = store::live_members_after(&txn, (&a_after, &u_after), BATCH).await?;
            let count = members.len() as u64;
            for m in members {
                a_after = m.account_id.to_string();
                u_after = m.user_id.to_string();
                let membership = membership_state(&m);
                if watcher.batched {
                    if let Some(full) = batch.add_membership(membership) {
                        self.send(tx, position, Event::SnapshotBatch(full)).await?;
                    }
                } else {
                    self.send(tx, position, Event::MembershipChanged(membership))
                        .await?;
                }
            }
            if count < BATCH {
                break;
            }
        }
        txn.commit().await?;
        if let Some(rest) = batch.take() {
            self.send(tx, position, Event::SnapshotBatch(rest)).await?;
        }
        self.send(
            tx,
            position,
            Event::CaughtUp(pb::CaughtUp { snapshot: true }),
        )
        .await?;
        Ok(position)
    }
}
