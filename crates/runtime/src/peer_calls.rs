//! The outbox of calls to other services that a rule depends on, one
//! implementation for every service that has one (account: identity's
//! RevokeAccountAccess; support: contacts' Notify).
//!
//! A change whose rule needs a side effect in another service writes the
//! call into the service's own table (`account_peer_calls`,
//! `support_peer_calls`, ...) with [`enqueue`], in the SAME transaction as
//! the change, so one never commits without the other. The request that
//! made the change then delivers its own call at once with
//! [`PeerCalls::deliver`] (as fast, and in the same order, as the direct
//! call it replaces); whatever it could not deliver, the
//! [`PeerCalls::run`] worker of any replica delivers later, retrying with
//! capped backoff until the peer acknowledges. A row is deleted only after
//! the peer acknowledged it.
//!
//! Several replicas share the table: a call is taken with a lease
//! (`lease_until`), claimed in one UPDATE (with `FOR UPDATE SKIP LOCKED` on
//! PostgreSQL; SQLite has one writer at a time), so two replicas do not
//! deliver the same call while the lease holds. A call can still be
//! delivered twice (a replica dies after the peer acknowledged but before
//! the row is deleted, or a delivery outlives its lease), so the receiving
//! side must be idempotent for every kind of call.
//!
//! A call the peer **refuses** (a gRPC code that says the request itself
//! is wrong, e.g. INVALID_ARGUMENT or FAILED_PRECONDITION, not that the
//! peer is unavailable) is a defect to fix, not a reason to drop a side
//! effect a rule depends on: it is kept and retried every
//! [`REFUSED_RETRY`], logged at ERROR each time, and counted, so an alert
//! fires (`tenancy_peer_call_attempts_total{outcome="refused"}`, and
//! `tenancy_peer_calls_oldest_age_seconds` growing). Once the cause is
//! fixed (a peer deployed, a row repaired) the next retry delivers it.
//!
//! Every table has the same shape (each service creates its own in a
//! migration of its own):
//!
//! ```sql
//! CREATE TABLE <service>_peer_calls (
//!     id TEXT PRIMARY KEY,
//!     call_kind INTEGER NOT NULL,   -- the Kind's number
//!     payload TEXT NOT NULL,        -- the call, as JSON
//!     create_time BIGINT NOT NULL,
//!     attempts INTEGER NOT NULL,
//!     due_time BIGINT NOT NULL,     -- wall-clock Unix ms
//!     lease_until BIGINT NULL,      -- set while one replica delivers it
//!     last_error TEXT NOT NULL
//! );
//! CREATE INDEX <service>_peer_calls_by_due ON <service>_peer_calls (due_time, id)
//! ```

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::clock::{Clock, SystemClock};
use crate::db::{self, get};
use crate::metrics::{Counter, EncodeLabelSet, Metrics};

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
/// The retry delay of a call the peer refused (see the module's notes).
pub const REFUSED_RETRY: Duration = Duration::from_secs(300);

/// Why a delivery failed: its message (kept in `last_error`), and whether
/// the peer refused the call (retried after [`REFUSED_RETRY`]) or was not
/// reached or failed (retried after the backoff).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    message: String,
    refused: bool,
}

impl Failure {
    /// A failure of the peer, or of reaching it: retried soon.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            refused: false,
        }
    }

    /// By its gRPC `code`: refused when the code says the call itself is
    /// wrong (retrying the same call cannot help until something changes).
    pub fn of_code(code: tonic::Code, message: impl Display) -> Self {
        use tonic::Code;
        Self {
            message: format!("{code:?}: {message}"),
            refused: matches!(
                code,
                Code::InvalidArgument
                    | Code::NotFound
                    | Code::AlreadyExists
                    | Code::PermissionDenied
                    | Code::FailedPrecondition
                    | Code::OutOfRange
                    | Code::Unimplemented
                    | Code::Unauthenticated
            ),
        }
    }
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        Self::of_code(status.code(), status.message())
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self::of_code(error.code(), &error.message)
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::transient(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Self::transient(message)
    }
}

/// A kind of call (its `call_kind` number and a name for logs) whose
/// payload is a `T`, written as JSON.
pub struct Kind<T> {
    number: i32,
    name: &'static str,
    payload: PhantomData<fn(T) -> T>,
}

impl<T> Kind<T> {
    /// The kind stored as `number` (never reused for another kind in the
    /// same table), logged as `name`.
    pub const fn new(number: i32, name: &'static str) -> Self {
        Self {
            number,
            name,
            payload: PhantomData,
        }
    }
}

impl<T> Clone for Kind<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Kind<T> {}

/// A call just written by [`enqueue`], leased to the writer until it
/// delivers it with [`PeerCalls::deliver`] after commit.
#[derive(Clone, Debug)]
pub struct Enqueued {
    id: String,
    kind: i32,
    payload: String,
}

impl Enqueued {
    /// The call's row id.
    pub fn id(&self) -> &str {
        &self.id
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

fn s(v: impl Into<String>) -> Value {
    Value::String(Some(v.into()))
}

fn i(v: i64) -> Value {
    Value::BigInt(Some(v))
}

/// The delay before attempt `attempts + 1`.
fn backoff_ms(attempts: i32) -> i64 {
    let shift = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
    BACKOFF_FIRST_MS
        .saturating_mul(1_i64 << shift)
        .min(BACKOFF_CAP_MS)
}

/// Writes `call` of `kind` into `table` in the caller's transaction `c`,
/// leased to the caller (who delivers it after commit with
/// [`PeerCalls::deliver`]).
pub async fn enqueue<C: ConnectionTrait, T: Serialize>(
    c: &C,
    table: &str,
    kind: Kind<T>,
    call: &T,
) -> Result<Enqueued, Error> {
    let id = crate::ids::new_id();
    let payload = serde_json::to_string(call)
        .map_err(|e| Error::internal(format!("{} payload: {e}", kind.name)))?;
    let now = wall_ms();
    db::exec(
        c,
        &format!(
            "INSERT INTO {table} (id, call_kind, payload, create_time, attempts, due_time, lease_until, last_error) \
             VALUES ($1, $2, $3, $4, 0, $4, $5, '')"
        ),
        vec![
            s(id.as_str()),
            Value::Int(Some(kind.number)),
            s(payload.as_str()),
            i(now),
            i(now + ms(LEASE)),
        ],
    )
    .await?;
    Ok(Enqueued {
        id,
        kind: kind.number,
        payload,
    })
}

/// How one kind of call is made: `Ok` once the peer acknowledged it.
type Delivery = Arc<dyn Fn(&str) -> BoxFuture<'static, Result<(), Failure>> + Send + Sync>;

/// One claimed call.
struct Claimed {
    id: String,
    kind: i32,
    payload: String,
    attempts: i32,
}

/// Delivery attempts by outcome.
#[derive(Clone)]
struct Attempts {
    delivered: Counter,
    retry: Counter,
    refused: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabel {
    table: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    table: &'static str,
    outcome: &'static str,
}

/// Delivers one service's outbox of calls; cheap to clone.
#[derive(Clone)]
pub struct PeerCalls {
    db: DatabaseConnection,
    table: &'static str,
    kinds: Arc<HashMap<i32, (&'static str, Delivery)>>,
    attempts: Attempts,
}

impl PeerCalls {
    /// The outbox in `table` of `db`, with no kind of call yet (see
    /// [`PeerCalls::on`]), measured in `metrics`: attempts by outcome, and
    /// (read at each scrape) the calls not acknowledged yet and the age of
    /// the oldest.
    pub fn new(db: DatabaseConnection, table: &'static str, metrics: &Metrics) -> Self {
        let outcomes = metrics.counter_family::<OutcomeLabel>(
            "tenancy_peer_call_attempts",
            "Deliveries of calls from a service's outbox to another service, by table and outcome: delivered (acknowledged), retry (peer unavailable or failing; retried within seconds), refused (the peer said the call is wrong; kept, retried every 5 minutes, and logged at ERROR: fix the cause)",
        );
        let outcome = |outcome| outcomes.get_or_create_owned(&OutcomeLabel { table, outcome });
        let attempts = Attempts {
            delivered: outcome("delivered"),
            retry: outcome("retry"),
            refused: outcome("refused"),
        };
        measure_backlog(metrics, db.clone(), table);
        Self {
            db,
            table,
            kinds: Arc::default(),
            attempts,
        }
    }

    /// Calls of `kind` are made by `deliver`, which answers `Ok` once the
    /// peer acknowledged the call and a [`Failure`] (its message kept in
    /// `last_error`) to retry it later.
    #[must_use]
    pub fn on<T, F, Fut, E>(mut self, kind: Kind<T>, deliver: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<Failure>,
    {
        let deliver = Arc::new(deliver);
        let delivery: Delivery = Arc::new(move |payload: &str| -> BoxFuture<'static, _> {
            let call = serde_json::from_str::<T>(payload);
            let deliver = deliver.clone();
            Box::pin(async move {
                match call {
                    Ok(call) => deliver(call).await.map_err(Into::into),
                    // A newer replica may read it: retried, not refused.
                    Err(e) => Err(Failure::transient(format!("unreadable payload: {e}"))),
                }
            })
        });
        Arc::make_mut(&mut self.kinds).insert(kind.number, (kind.name, delivery));
        self
    }

    /// Delivers the call that this replica just committed (and holds the
    /// lease of). On failure it is left to the worker, which retries after
    /// a backoff; the error is logged, not returned: the change is
    /// committed and the call will be made.
    pub async fn deliver(&self, call: Enqueued) {
        let claimed = Claimed {
            id: call.id,
            kind: call.kind,
            payload: call.payload,
            attempts: 0,
        };
        let result = self.call(&claimed).await;
        self.finish(&claimed, result).await;
    }

    /// Makes one call, within [`CALL_TIMEOUT`].
    async fn call(&self, call: &Claimed) -> Result<(), Failure> {
        let Some((_, deliver)) = self.kinds.get(&call.kind) else {
            // A newer replica may know it (a rolling upgrade).
            return Err(Failure::transient(format!(
                "unknown call kind {}",
                call.kind
            )));
        };
        tokio::time::timeout(CALL_TIMEOUT, deliver(&call.payload))
            .await
            .unwrap_or_else(|_| Err(Failure::transient("timed out")))
    }

    /// Records the outcome: deleted when acknowledged, else released for a
    /// retry after the backoff (or [`REFUSED_RETRY`] when refused).
    async fn finish(&self, call: &Claimed, result: Result<(), Failure>) {
        let table = self.table;
        let outcome = match &result {
            Ok(()) => {
                self.attempts.delivered.inc();
                db::exec(
                    &self.db,
                    &format!("DELETE FROM {table} WHERE id = $1"),
                    vec![s(call.id.as_str())],
                )
                .await
            }
            Err(failure) => {
                let kind = self
                    .kinds
                    .get(&call.kind)
                    .map_or("unknown", |(name, _)| name);
                let (attempts, error) = (call.attempts + 1, &failure.message);
                let delay = if failure.refused {
                    self.attempts.refused.inc();
                    tracing::error!(
                        table,
                        kind,
                        id = %call.id,
                        attempts,
                        %error,
                        "peer refused a call; it is kept and retried every 5 minutes until the cause is fixed"
                    );
                    ms(REFUSED_RETRY)
                } else {
                    self.attempts.retry.inc();
                    tracing::warn!(
                        table,
                        kind,
                        id = %call.id,
                        attempts,
                        %error,
                        "peer call not delivered yet; retrying"
                    );
                    backoff_ms(call.attempts)
                };
                db::exec(
                    &self.db,
                    &format!(
                        "UPDATE {table} SET attempts = attempts + 1, due_time = $2, lease_until = NULL, last_error = $3 WHERE id = $1"
                    ),
                    vec![
                        s(call.id.as_str()),
                        i(wall_ms() + delay),
                        s(error.chars().take(500).collect::<String>()),
                    ],
                )
                .await
            }
        };
        if let Err(error) = outcome {
            // The lease runs out and the call is delivered again: harmless.
            tracing::warn!(table, id = %call.id, %error, "could not record a peer call's outcome");
        }
    }

    /// Takes up to [`BATCH`] due calls no live lease holds.
    async fn claim(&self) -> Result<Vec<Claimed>, Error> {
        let now = wall_ms();
        let table = self.table;
        let skip_locked = if self.db.get_database_backend() == DbBackend::Postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        // The outer lease test is checked again on PostgreSQL after a row
        // lock wait, so a row another replica claimed meanwhile is skipped.
        let sql = format!(
            "UPDATE {table} SET lease_until = $1 WHERE id IN (\
             SELECT id FROM {table} WHERE due_time <= $2 AND (lease_until IS NULL OR lease_until <= $2) \
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
    pub async fn tick(&self) -> Result<usize, Error> {
        let calls = self.claim().await?;
        for call in &calls {
            let result = self.call(call).await;
            self.finish(call, result).await;
        }
        Ok(calls.len())
    }

    /// The worker: delivers due calls until aborted.
    pub async fn run(self) {
        loop {
            match self.tick().await {
                // A full batch: more may be due.
                Ok(taken) if taken >= usize::try_from(BATCH).unwrap_or(usize::MAX) => continue,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(table = self.table, %error, "peer call worker failed; retrying");
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Refreshes `table`'s backlog gauges whenever metrics are scraped.
fn measure_backlog(metrics: &Metrics, db: DatabaseConnection, table: &'static str) {
    let pending = metrics
        .gauge_family::<TableLabel>(
            "tenancy_peer_calls_pending",
            "Calls in a service's outbox to another service not acknowledged yet, by table",
        )
        .get_or_create_owned(&TableLabel { table });
    let oldest = metrics
        .gauge_f64_family::<TableLabel>(
            "tenancy_peer_calls_oldest_age_seconds",
            "Age of the oldest call in a service's outbox not acknowledged yet, by table (0 when there is none)",
        )
        .get_or_create_owned(&TableLabel { table });
    metrics.on_scrape(move || {
        let (db, pending, oldest) = (db.clone(), pending.clone(), oldest.clone());
        async move {
            match backlog(&db, table).await {
                Ok((count, first)) => {
                    pending.set(count);
                    let age_ms = first.map_or(0, |at| (wall_ms() - at).max(0));
                    oldest.set(age_ms as f64 / 1000.0);
                }
                Err(error) => {
                    tracing::warn!(table, %error, "metrics: cannot read the peer call backlog");
                }
            }
        }
    });
}

/// How many calls `table` holds, and when the oldest was written.
async fn backlog(db: &DatabaseConnection, table: &str) -> Result<(i64, Option<i64>), Error> {
    let row = db::one(
        db,
        &format!("SELECT COUNT(*) AS n, MIN(create_time) AS first FROM {table}"),
        vec![],
    )
    .await?;
    Ok(match row {
        Some(r) => (get(&r, "n")?, get(&r, "first")?),
        None => (0, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    #[test]
    fn backoff_doubles_from_100_ms_and_is_capped_at_5_s() {
        assert_eq!(backoff_ms(0), 100);
        assert_eq!(backoff_ms(1), 200);
        assert_eq!(backoff_ms(5), 3_200);
        assert_eq!(backoff_ms(6), 5_000);
        assert_eq!(backoff_ms(1_000), 5_000);
        assert_eq!(backoff_ms(-1), 100);
    }

    const PING: Kind<String> = Kind::new(1, "Ping");

    /// A database for one test: a table of its own on PostgreSQL when
    /// `TENANCY_TEST_DATABASE_URL` is set (as CI runs it), else a SQLite
    /// file.
    async fn outbox_table() -> (DatabaseConnection, &'static str) {
        let url = match std::env::var("TENANCY_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => {
                let dir = std::env::temp_dir()
                    .join(format!("tenancy-peer-calls-{}", crate::ids::new_id()));
                format!("sqlite://{}/t.db?mode=rwc", dir.display())
            }
        };
        let db = db::connect(&url, "test").await.unwrap();
        let table: &'static str = Box::leak(
            format!("peer_calls_t{}", crate::ids::new_id().replace('-', "")).into_boxed_str(),
        );
        db::exec(
            &db,
            &format!(
                "CREATE TABLE {table} (id TEXT PRIMARY KEY, call_kind INTEGER NOT NULL, payload TEXT NOT NULL, \
                 create_time BIGINT NOT NULL, attempts INTEGER NOT NULL, due_time BIGINT NOT NULL, \
                 lease_until BIGINT NULL, last_error TEXT NOT NULL)"
            ),
            vec![],
        )
        .await
        .unwrap();
        (db, table)
    }

    async fn rows(db: &DatabaseConnection, table: &str) -> Vec<(i32, Option<i64>, String)> {
        db::all(
            db,
            &format!("SELECT attempts, lease_until, last_error FROM {table} ORDER BY id"),
            vec![],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                get(r, "attempts").unwrap(),
                get(r, "lease_until").unwrap(),
                get(r, "last_error").unwrap(),
            )
        })
        .collect()
    }

    /// A call written with the change is delivered; while the peer refuses
    /// it stays, released with its error and backoff, and is not taken
    /// again before it is due; once acknowledged it is gone. A call
    /// another replica holds is not taken while its lease holds, and is
    /// once it ran out.
    #[tokio::test]
    async fn calls_are_kept_until_acknowledged_and_leases_are_respected() {
        let (db, table) = outbox_table().await;
        let up = Arc::new(AtomicBool::new(false));
        let delivered = Arc::new(AtomicUsize::new(0));
        let calls = PeerCalls::new(db.clone(), table, &Metrics::default()).on(PING, {
            let (up, delivered) = (up.clone(), delivered.clone());
            move |call: String| {
                let (up, delivered) = (up.clone(), delivered.clone());
                async move {
                    assert_eq!(call, "hello");
                    if !up.load(Ordering::SeqCst) {
                        return Err("peer down");
                    }
                    delivered.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            }
        });

        // Written in a transaction that rolls back: nothing.
        let txn = db::begin(&db).await.unwrap();
        enqueue(&txn, table, PING, &"hello".to_owned())
            .await
            .unwrap();
        txn.rollback().await.unwrap();
        assert!(rows(&db, table).await.is_empty());

        // Committed, leased to the writer: the worker leaves it alone.
        let txn = db::begin(&db).await.unwrap();
        let call = enqueue(&txn, table, PING, &"hello".to_owned())
            .await
            .unwrap();
        txn.commit().await.unwrap();
        assert_eq!(calls.tick().await.unwrap(), 0);

        // The peer is down: released with its error, due after 100 ms.
        calls.deliver(call).await;
        let after = rows(&db, table).await;
        assert_eq!(after.len(), 1);
        assert_eq!((after[0].0, after[0].1), (1, None));
        assert_eq!(after[0].2, "peer down");
        assert_eq!(calls.tick().await.unwrap(), 0, "taken before it was due");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(calls.tick().await.unwrap(), 1);
        assert_eq!(rows(&db, table).await[0].0, 2);

        // Up again: delivered once and deleted.
        up.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(calls.tick().await.unwrap(), 1);
        assert_eq!(delivered.load(Ordering::SeqCst), 1);
        assert!(rows(&db, table).await.is_empty());

        // Claimed by a replica that died: left alone while its lease
        // holds, taken and delivered once it ran out.
        let lease = wall_ms() + 300;
        db::exec(
            &db,
            &format!(
                "INSERT INTO {table} (id, call_kind, payload, create_time, attempts, due_time, lease_until, last_error) \
                 VALUES ('held', 1, '\"hello\"', 0, 0, 0, $1, '')"
            ),
            vec![i(lease)],
        )
        .await
        .unwrap();
        assert_eq!(calls.tick().await.unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(calls.tick().await.unwrap(), 1);
        assert_eq!(delivered.load(Ordering::SeqCst), 2);
        assert!(rows(&db, table).await.is_empty());

        // A kind this replica does not know and an unreadable payload are
        // kept (a newer replica may know it; an operator can look).
        db::exec(
            &db,
            &format!(
                "INSERT INTO {table} (id, call_kind, payload, create_time, attempts, due_time, lease_until, last_error) \
                 VALUES ('a', 9, '{{}}', 0, 0, 0, NULL, ''), ('b', 1, 'not json', 0, 0, 0, NULL, '')"
            ),
            vec![],
        )
        .await
        .unwrap();
        assert_eq!(calls.tick().await.unwrap(), 2);
        let kept = rows(&db, table).await;
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].2, "unknown call kind 9");
        assert!(kept[1].2.starts_with("unreadable payload"), "{kept:?}");
        db::exec(&db, &format!("DROP TABLE {table}"), vec![])
            .await
            .unwrap();
    }

    /// The value of the series of `metrics` whose name and labels begin
    /// with `series` (0 when absent).
    async fn series(metrics: &Metrics, series: &str) -> f64 {
        let text = metrics.render(crate::metrics::Format::Prometheus).await;
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0.0, |v| v.parse().unwrap())
    }

    /// A call the peer refuses (the call itself is wrong) is never
    /// dropped: kept with its error, due again only after
    /// [`REFUSED_RETRY`] (not the seconds of a transient failure), logged
    /// at ERROR and counted as refused; a transient failure is counted as
    /// a retry. The backlog gauges show what waits and for how long, and
    /// the call is delivered once the peer accepts it.
    #[tokio::test]
    async fn a_refused_call_is_kept_retried_slowly_counted_and_logged_at_error() {
        let (db, table) = outbox_table().await;
        let metrics = Metrics::default();
        // What the peer answers: a refusal, unavailable, or accepted.
        let answer = Arc::new(parking_lot::Mutex::new(Some(tonic::Code::InvalidArgument)));
        let calls = PeerCalls::new(db.clone(), table, &metrics).on(PING, {
            let answer = answer.clone();
            move |_: String| {
                let code = *answer.lock();
                async move {
                    match code {
                        Some(tonic::Code::InvalidArgument) => {
                            Err(Error::invalid_field("user_id", "no such thing"))
                        }
                        Some(_) => Err(Error::unavailable("peer down")),
                        None => Ok(()),
                    }
                }
            }
        });
        let pending = format!("tenancy_peer_calls_pending{{table=\"{table}\"}}");
        let oldest = format!("tenancy_peer_calls_oldest_age_seconds{{table=\"{table}\"}}");
        let outcome = |o: &str| {
            format!("tenancy_peer_call_attempts_total{{table=\"{table}\",outcome=\"{o}\"}}")
        };
        assert_eq!(series(&metrics, &pending).await, 0.0);

        let lines = crate::telemetry::LogLines::default();
        let logs =
            tracing::subscriber::set_default(crate::telemetry::json_logs_to("info", lines.clone()));
        let due_time = || async {
            let row = db::one(&db, &format!("SELECT due_time FROM {table}"), vec![]).await;
            get::<i64>(&row.unwrap().unwrap(), "due_time").unwrap()
        };
        let call = enqueue(&db, table, PING, &"x".to_owned()).await.unwrap();
        let before = wall_ms();
        calls.deliver(call).await;
        drop(logs);
        let logged = lines.json();
        let error = logged
            .iter()
            .find(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("peer refused a call"))
            })
            .unwrap_or_else(|| panic!("the refusal is not logged: {logged:?}"));
        assert_eq!(error["level"], "ERROR", "{error}");
        assert_eq!(error["table"], table, "{error}");
        let due = due_time().await;
        assert!(
            due >= before + ms(REFUSED_RETRY),
            "due in {} ms",
            due - before
        );
        let kept = rows(&db, table).await;
        assert_eq!(kept.len(), 1);
        assert!(kept[0].2.starts_with("InvalidArgument: "), "{kept:?}");
        assert_eq!(series(&metrics, &outcome("refused")).await, 1.0);
        assert_eq!(series(&metrics, &outcome("retry")).await, 0.0);
        assert_eq!(calls.tick().await.unwrap(), 0, "retried before 5 minutes");
        assert_eq!(series(&metrics, &pending).await, 1.0);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(series(&metrics, &oldest).await >= 1.0);

        // Made due (as 5 minutes passing would); the peer is unavailable
        // now: a transient failure, retried within the backoff.
        let due_now = format!("UPDATE {table} SET due_time = 0");
        db::exec(&db, &due_now, vec![]).await.unwrap();
        *answer.lock() = Some(tonic::Code::Unavailable);
        assert_eq!(calls.tick().await.unwrap(), 1);
        assert_eq!(series(&metrics, &outcome("retry")).await, 1.0);
        let due = due_time().await;
        assert!(
            due <= wall_ms() + BACKOFF_CAP_MS,
            "a transient failure waits at most the backoff cap"
        );

        // Accepted: delivered, deleted, nothing pending.
        db::exec(&db, &due_now, vec![]).await.unwrap();
        *answer.lock() = None;
        assert_eq!(calls.tick().await.unwrap(), 1);
        assert!(rows(&db, table).await.is_empty());
        assert_eq!(series(&metrics, &outcome("delivered")).await, 1.0);
        assert_eq!(series(&metrics, &pending).await, 0.0);
        assert_eq!(series(&metrics, &oldest).await, 0.0);
        db::exec(&db, &format!("DROP TABLE {table}"), vec![])
            .await
            .unwrap();
    }

    #[test]
    fn refusals_are_the_codes_that_say_the_call_itself_is_wrong() {
        use tonic::Code;
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::FailedPrecondition,
            Code::OutOfRange,
            Code::Unimplemented,
            Code::Unauthenticated,
        ] {
            assert!(Failure::of_code(code, "x").refused, "{code:?}");
        }
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Aborted,
            Code::Internal,
            Code::Unknown,
            Code::Cancelled,
            Code::DataLoss,
        ] {
            assert!(!Failure::of_code(code, "x").refused, "{code:?}");
        }
        assert!(!Failure::from("peer down").refused);
    }
}
