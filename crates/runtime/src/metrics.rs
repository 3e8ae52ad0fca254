//! Prometheus metrics: one registry per process, served as text at
//! `/metrics` on `metrics_listen`, a plain-HTTP port of its own (never the
//! public or a service port).
//!
//! - [`Metrics`]: the registry. A part registers what it measures when it
//!   opens; a name registered again returns the metric already there, so
//!   the parts of `tenancy serve` (or two gateways in one test) share it.
//!   Values that are only read when scraped (database pools, the outbox's
//!   depth, the age of a stream's last message) come from hooks run before
//!   each scrape ([`Metrics::on_scrape`]).
//! - The standard gRPC metrics, named as go-grpc-prometheus names them so
//!   existing dashboards work: `grpc_server_started_total`,
//!   `grpc_server_handled_total`, `grpc_server_handling_seconds` from
//!   [`GrpcServerLayer`] on every server (and from the gateway's own
//!   pipeline on its public port), and `grpc_client_*` from every
//!   [`Channel`](crate::Channel). A call counts as started when it arrives
//!   (a stream when it opens) and as handled when its status is sent (a
//!   stream when it ends); a call the client abandons is `Canceled`, one
//!   past its deadline `DeadlineExceeded`.
//! - [`serve`]: the HTTP endpoint.
//!
//! Labels are names from fixed sets, never ids: a method's labels come
//! from the methods this binary knows (any other path is `unknown`), codes
//! from the 17 gRPC codes, reasons from the code's error reasons. So the
//! number of series is bounded whatever clients send.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use prometheus_client::registry::{Metric, Registry};
use tokio::net::TcpListener;

pub use prometheus_client::encoding::EncodeLabelSet;
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::Histogram;

use crate::rules::MethodRules;

/// A gauge of fractional values (seconds, ratios).
pub type GaugeF64 = Gauge<f64, std::sync::atomic::AtomicU64>;

/// A family of histograms made by a plain function (its buckets).
pub type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type Hook = Arc<dyn Fn() -> BoxFuture<()> + Send + Sync>;

/// Longest a scrape waits for its hooks (a database under load); values a
/// hook did not refresh in time are served as they were.
const SCRAPE_HOOK_TIMEOUT: Duration = Duration::from_secs(3);

/// The process's metrics. Cheap to clone; clones share the registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    state: parking_lot::Mutex<State>,
    hooks: parking_lot::Mutex<Vec<Hook>>,
    /// The per-call gRPC metrics; unset where nothing serves metrics.
    grpc: OnceLock<Arc<GrpcMetrics>>,
}

struct State {
    registry: Registry,
    /// Every registered metric by name, to hand out the same one again.
    registered: HashMap<String, Box<dyn Any + Send + Sync>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::without_calls()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("calls", &self.inner.grpc.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry that also records every gRPC call of the methods in
    /// `rules` (and of health and reflection).
    pub fn new(rules: &MethodRules) -> Self {
        let metrics = Self::without_calls();
        let grpc = Arc::new(GrpcMetrics::new(&metrics, rules));
        let _ = metrics.inner.grpc.set(grpc);
        metrics
    }

    /// A registry without the per-call gRPC metrics, for processes that
    /// serve no metrics (`metrics_listen` unset, commands): the parts'
    /// counters still count (an atomic add each), nobody reads them, and
    /// calls are not timed.
    pub fn without_calls() -> Self {
        Self {
            inner: Arc::new(Inner {
                state: parking_lot::Mutex::new(State {
                    registry: Registry::default(),
                    registered: HashMap::new(),
                }),
                hooks: parking_lot::Mutex::new(Vec::new()),
                grpc: OnceLock::new(),
            }),
        }
    }

    /// The per-call gRPC metrics, when recorded.
    pub fn grpc(&self) -> Option<&Arc<GrpcMetrics>> {
        self.inner.grpc.get()
    }

    /// The metric registered as `name`, registering `make()` first if there
    /// is none. Counter names leave out `_total` (it is added when
    /// encoded). A name taken by a metric of another type is a bug: the
    /// new metric then works but is not served (and the error is logged).
    pub fn register<M: Metric + Clone>(
        &self,
        name: &str,
        help: &str,
        make: impl FnOnce() -> M,
    ) -> M {
        let mut state = self.inner.state.lock();
        if let Some(existing) = state.registered.get(name) {
            if let Some(metric) = existing.downcast_ref::<M>() {
                return metric.clone();
            }
            tracing::error!(name, "metric registered twice with different types");
            return make();
        }
        let metric = make();
        state.registry.register(name, help, metric.clone());
        state
            .registered
            .insert(name.to_owned(), Box::new(metric.clone()));
        metric
    }

    /// A counter (`name` without `_total`).
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        self.register(name, help, Counter::default)
    }

    /// A family of counters by labels `L`.
    pub fn counter_family<L: Labels>(&self, name: &str, help: &str) -> Family<L, Counter> {
        self.register(name, help, Family::default)
    }

    /// A gauge of whole numbers.
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        self.register(name, help, Gauge::default)
    }

    /// A gauge of fractional numbers.
    pub fn gauge_f64(&self, name: &str, help: &str) -> GaugeF64 {
        self.register(name, help, GaugeF64::default)
    }

    /// A family of whole-number gauges by labels `L`.
    pub fn gauge_family<L: Labels>(&self, name: &str, help: &str) -> Family<L, Gauge> {
        self.register(name, help, Family::default)
    }

    /// A family of fractional gauges by labels `L`.
    pub fn gauge_f64_family<L: Labels>(&self, name: &str, help: &str) -> Family<L, GaugeF64> {
        self.register(name, help, Family::default)
    }

    /// A histogram of durations in seconds ([`latency_histogram`]'s
    /// buckets).
    pub fn seconds_histogram(&self, name: &str, help: &str) -> Histogram {
        self.register(name, help, latency_histogram)
    }

    /// A family of histograms of durations in seconds by labels `L`.
    pub fn seconds_histogram_family<L: Labels>(
        &self,
        name: &str,
        help: &str,
    ) -> HistogramFamily<L> {
        self.register(name, help, || {
            Family::new_with_constructor(latency_histogram as fn() -> Histogram)
        })
    }

    /// Runs `hook` before every scrape (all hooks at once, for at most
    /// [`SCRAPE_HOOK_TIMEOUT`]): for values that cost a query or a lock to
    /// read, so they are read only when someone looks.
    pub fn on_scrape<F, Fut>(&self, hook: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.inner
            .hooks
            .lock()
            .push(Arc::new(move || Box::pin(hook()) as BoxFuture<()>));
    }

    /// Refreshes what hooks measure, then encodes every metric in `format`.
    pub async fn render(&self, format: Format) -> String {
        let hooks: Vec<Hook> = self.inner.hooks.lock().clone();
        let refresh = futures::future::join_all(hooks.iter().map(|hook| hook()));
        if tokio::time::timeout(SCRAPE_HOOK_TIMEOUT, refresh)
            .await
            .is_err()
        {
            tracing::warn!("metrics: a scrape hook took too long; serving earlier values");
        }
        self.encode(format)
    }

    /// Encodes every metric as it is now, in `format`.
    pub fn encode(&self, format: Format) -> String {
        let state = self.inner.state.lock();
        let mut out = String::new();
        let encoded = match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &state.registry)
            }
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &state.registry)
            }
        };
        if let Err(error) = encoded {
            tracing::error!(%error, "metrics: encoding failed");
        }
        out
    }

    /// Measures the database of `service`: query time and failures (every
    /// statement, from sea-orm's metric callback), and, when scraped, the
    /// connection pool's connections in use, idle, and its maximum.
    pub fn watch_database(&self, service: &'static str, db: &mut sea_orm::DatabaseConnection) {
        let labels = ServiceLabel { service };
        let seconds = self
            .seconds_histogram_family::<ServiceLabel>(
                "tenancy_db_query_seconds",
                "Time a database statement took to run, once it had a connection (sea-orm's measure: waiting for a pool connection is not included)",
            )
            .get_or_create_owned(&labels);
        let failures = self
            .counter_family::<ServiceLabel>(
                "tenancy_db_query_errors",
                "Database statements that failed",
            )
            .get_or_create_owned(&labels);
        db.set_metric_callback(move |info| {
            seconds.observe(info.elapsed.as_secs_f64());
            if info.failed {
                failures.inc();
            }
        });
        let connections = self.gauge_family::<PoolLabels>(
            "tenancy_db_pool_connections",
            "Connections of the database pool by state: in_use (handed to a statement or transaction) or idle",
        );
        let max = self
            .gauge_family::<ServiceLabel>(
                "tenancy_db_pool_max_connections",
                "Most connections the database pool opens; statements wait for one when all are in use",
            )
            .get_or_create_owned(&labels);
        let db = db.clone();
        self.on_scrape(move || {
            let (size, idle, most) = pool_stats(&db);
            connections
                .get_or_create(&PoolLabels {
                    service,
                    state: "in_use",
                })
                .set(size.saturating_sub(idle));
            connections
                .get_or_create(&PoolLabels {
                    service,
                    state: "idle",
                })
                .set(idle);
            max.set(most);
            std::future::ready(())
        });
    }
}

/// (connections open, idle, maximum) of a sea-orm pool.
fn pool_stats(db: &sea_orm::DatabaseConnection) -> (i64, i64, i64) {
    let wide = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (
                i64::from(pool.size()),
                wide(pool.num_idle()),
                i64::from(pool.options().get_max_connections()),
            )
        }
        sea_orm::DbBackend::Sqlite => {
            let pool = db.get_sqlite_connection_pool();
            (
                i64::from(pool.size()),
                wide(pool.num_idle()),
                i64::from(pool.options().get_max_connections()),
            )
        }
        _ => (0, 0, 0),
    }
}

/// What a label set must be.
pub trait Labels:
    EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static
{
}

impl<T> Labels for T where
    T: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static
{
}

/// Labels naming a service (`identity`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    /// The service.
    pub service: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    service: &'static str,
    state: &'static str,
}

/// Labels of one outcome (a login's, a delivery's, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// The outcome, from a fixed set.
    pub outcome: &'static str,
}

/// Buckets for durations: 0.5 ms to 10 s (calls through the gateway take
/// well under a millisecond, argon2 tens of milliseconds, streams longer
/// than any bucket).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram with [`LATENCY_BUCKETS`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The text formats of a scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4 (`text/plain; version=0.0.4`).
    Prometheus,
    /// OpenMetrics text 1.0, for scrapers that ask for it.
    OpenMetrics,
}

impl Format {
    /// The format a scraper's `Accept` header asks for.
    pub fn from_accept(accept: Option<&str>) -> Self {
        if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    /// The `Content-Type` of the format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Serves `metrics` as Prometheus text at `/metrics` on `listener`, over
/// plain HTTP/1.1, until `shutdown` (in a task of its own).
pub fn serve(
    listener: TcpListener,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "metrics: accept failed");
                        continue;
                    }
                },
                () = &mut shutdown => return,
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&metrics, &request).await) }
                });
                let served = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
                if let Err(error) = served {
                    tracing::debug!(%error, "metrics: connection ended");
                }
            });
        }
    });
}

async fn answer<B>(
    metrics: &Metrics,
    request: &http::Request<B>,
) -> http::Response<http_body_util::Full<Bytes>> {
    let text = |status: http::StatusCode, body: &'static str| {
        let mut response = http::Response::new(http_body_util::Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
    };
    if request.uri().path() != "/metrics" {
        return text(
            http::StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics\n",
        );
    }
    if request.method() != http::Method::GET && request.method() != http::Method::HEAD {
        let mut response = text(http::StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
        response.headers_mut().insert(
            http::header::ALLOW,
            http::HeaderValue::from_static("GET, HEAD"),
        );
        return response;
    }
    let format = Format::from_accept(
        request
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    let body = metrics.render(format).await;
    let mut response = http::Response::new(http_body_util::Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(format.content_type()),
    );
    response
}

// --- gRPC calls ---------------------------------------------------------

/// A method's labels: `grpc_type` (unary, client_stream, server_stream,
/// bidi_stream), `grpc_service`, `grpc_method`, and the `part` that served
/// or made the call (`gateway`, `identity`, …: in `tenancy serve` every
/// part shares one registry, and the gateway and identity both serve
/// GetMe).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    grpc_type: &'static str,
    grpc_service: &'static str,
    grpc_method: &'static str,
    part: &'static str,
}

/// A method's labels and a status code (`OK`, `NotFound`, … as Go names
/// them).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    grpc_type: &'static str,
    grpc_service: &'static str,
    grpc_method: &'static str,
    grpc_code: &'static str,
    part: &'static str,
}

/// gRPC codes as Go's `codes.Code.String()` writes them, which is what
/// dashboards built on go-grpc-prometheus match.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// The label value of a gRPC code.
pub fn code_name(code: tonic::Code) -> &'static str {
    CODE_NAMES.get(code as usize).copied().unwrap_or("Unknown")
}

/// The families of one side (server or client).
#[derive(Clone)]
struct Families {
    started: Family<MethodLabels, Counter>,
    handled: Family<CodeLabels, Counter>,
    seconds: HistogramFamily<MethodLabels>,
}

/// The per-call metrics of one part on one side (server or client), by
/// method.
pub struct Calls {
    methods: HashMap<&'static str, Arc<MethodCalls>>,
    unknown: Arc<MethodCalls>,
}

impl Calls {
    fn new(
        families: &Families,
        part: &'static str,
        table: &[(&'static str, MethodLabels)],
    ) -> Self {
        let method = |labels: &MethodLabels| {
            Arc::new(MethodCalls {
                labels: MethodLabels {
                    part,
                    ..labels.clone()
                },
                families: families.clone(),
                started: OnceLock::new(),
                seconds: OnceLock::new(),
                handled: std::array::from_fn(|_| OnceLock::new()),
            })
        };
        Self {
            methods: table
                .iter()
                .map(|(path, labels)| (*path, method(labels)))
                .collect(),
            unknown: method(&MethodLabels {
                grpc_type: "unary",
                grpc_service: "unknown",
                grpc_method: "unknown",
                part,
            }),
        }
    }

    /// The metrics of the method at `path` (`unknown` for a path that is
    /// not one of ours).
    pub fn method(&self, path: &str) -> &Arc<MethodCalls> {
        self.methods.get(path).unwrap_or(&self.unknown)
    }
}

/// The per-call gRPC metrics of a process, both sides, by part.
pub struct GrpcMetrics {
    server: Families,
    client: Families,
    table: Vec<(&'static str, MethodLabels)>,
    parts: parking_lot::Mutex<HashMap<(bool, &'static str), Arc<Calls>>>,
}

impl GrpcMetrics {
    fn new(metrics: &Metrics, rules: &MethodRules) -> Self {
        Self {
            server: Families::new(metrics, "server"),
            client: Families::new(metrics, "client"),
            table: method_table(rules),
            parts: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// The calls `part` serves.
    pub fn server(&self, part: &'static str) -> Arc<Calls> {
        self.calls(true, part)
    }

    /// The calls `part` makes.
    pub fn client(&self, part: &'static str) -> Arc<Calls> {
        self.calls(false, part)
    }

    fn calls(&self, server: bool, part: &'static str) -> Arc<Calls> {
        self.parts
            .lock()
            .entry((server, part))
            .or_insert_with(|| {
                let families = if server { &self.server } else { &self.client };
                Arc::new(Calls::new(families, part, &self.table))
            })
            .clone()
    }
}

impl Families {
    fn new(metrics: &Metrics, side: &str) -> Self {
        let (who, started, handled) = match side {
            "server" => (
                "on the server",
                "RPCs started on the server (a stream when it opens)",
                "RPCs completed on the server, by status code (a stream when it ends)",
            ),
            _ => (
                "by the client",
                "RPCs started by the client (a stream when it opens)",
                "RPCs completed by the client, by status code (a stream when it ends)",
            ),
        };
        Self {
            started: metrics.counter_family(&format!("grpc_{side}_started"), started),
            handled: metrics.counter_family(&format!("grpc_{side}_handled"), handled),
            seconds: metrics.seconds_histogram_family(
                &format!("grpc_{side}_handling_seconds"),
                &format!("Time from an RPC's start to its status {who} (a stream's whole life)"),
            ),
        }
    }
}

/// Every method this binary knows, with its labels: the Tenancy methods,
/// health and reflection.
fn method_table(rules: &MethodRules) -> Vec<(&'static str, MethodLabels)> {
    let mut table: Vec<(&'static str, MethodLabels)> = rules
        .methods()
        .map(|m| {
            let name = m.path.rsplit('/').next().unwrap_or_default();
            (
                intern(&m.path),
                MethodLabels {
                    grpc_type: grpc_type(m.client_streaming, m.server_streaming),
                    grpc_service: intern(&m.service),
                    grpc_method: intern(name),
                    part: "",
                },
            )
        })
        .collect();
    for (service, method, client, server) in [
        ("grpc.health.v1.Health", "Check", false, false),
        ("grpc.health.v1.Health", "Watch", false, true),
        (
            "grpc.reflection.v1.ServerReflection",
            "ServerReflectionInfo",
            true,
            true,
        ),
        (
            "grpc.reflection.v1alpha.ServerReflection",
            "ServerReflectionInfo",
            true,
            true,
        ),
    ] {
        table.push((
            intern(&format!("/{service}/{method}")),
            MethodLabels {
                grpc_type: grpc_type(client, server),
                grpc_service: service,
                grpc_method: method,
                part: "",
            },
        ));
    }
    table
}

fn grpc_type(client_streaming: bool, server_streaming: bool) -> &'static str {
    match (client_streaming, server_streaming) {
        (false, false) => "unary",
        (true, false) => "client_stream",
        (false, true) => "server_stream",
        (true, true) => "bidi_stream",
    }
}

/// `text` as a `&'static str`, leaked once per distinct text in the
/// process (method names: a few hundred bytes, however many registries).
fn intern(text: &str) -> &'static str {
    static INTERNED: OnceLock<parking_lot::Mutex<std::collections::HashSet<&'static str>>> =
        OnceLock::new();
    let mut interned = INTERNED.get_or_init(Default::default).lock();
    if let Some(known) = interned.get(text) {
        return known;
    }
    let leaked: &'static str = Box::leak(text.to_owned().into_boxed_str());
    interned.insert(leaked);
    leaked
}

/// One method's series on one side, made on first use (methods never
/// called add no series).
pub struct MethodCalls {
    labels: MethodLabels,
    families: Families,
    started: OnceLock<Counter>,
    seconds: OnceLock<Histogram>,
    handled: [OnceLock<Counter>; 17],
}

impl MethodCalls {
    /// Counts a call as started now.
    pub fn start(self: &Arc<Self>) -> Call {
        self.start_at(Instant::now())
    }

    /// Counts a call as started at `at` (when the caller already took the
    /// time).
    pub fn start_at(self: &Arc<Self>, at: Instant) -> Call {
        self.started
            .get_or_init(|| self.families.started.get_or_create_owned(&self.labels))
            .inc();
        Call {
            method: Some(self.clone()),
            started: at,
            deadline: None,
        }
    }

    fn finish(&self, started: Instant, code: tonic::Code) {
        let index = (code as usize).min(CODE_NAMES.len() - 1);
        self.handled[index]
            .get_or_init(|| {
                self.families.handled.get_or_create_owned(&CodeLabels {
                    grpc_type: self.labels.grpc_type,
                    grpc_service: self.labels.grpc_service,
                    grpc_method: self.labels.grpc_method,
                    grpc_code: code_name(code),
                    part: self.labels.part,
                })
            })
            .inc();
        self.seconds
            .get_or_init(|| self.families.seconds.get_or_create_owned(&self.labels))
            .observe(started.elapsed().as_secs_f64());
    }
}

/// A call in progress. [`Call::end`] counts it as handled with its code;
/// dropped without that, it counts as `DeadlineExceeded` if its deadline
/// had passed, else `Canceled` (the client went away).
pub struct Call {
    method: Option<Arc<MethodCalls>>,
    started: Instant,
    deadline: Option<Instant>,
}

impl Call {
    /// The call ends with `code`.
    pub fn end(mut self, code: tonic::Code) {
        if let Some(method) = self.method.take() {
            method.finish(self.started, code);
        }
    }

    /// Marks when the call's deadline passes.
    pub fn with_deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if let Some(method) = self.method.take() {
            let code = match self.deadline {
                Some(deadline) if Instant::now() >= deadline => tonic::Code::DeadlineExceeded,
                _ => tonic::Code::Cancelled,
            };
            method.finish(self.started, code);
        }
    }
}

/// The `grpc-status` of a response's headers or trailers.
pub fn grpc_status(headers: &http::HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
}

/// When a call received now must end: the earlier of the server's own
/// limit and the client's `grpc-timeout`.
fn deadline_of(headers: &http::HeaderMap, limit: Option<Duration>) -> Option<Instant> {
    let asked = headers
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout);
    let timeout = match (asked, limit) {
        (Some(a), Some(l)) => Some(a.min(l)),
        (a, l) => a.or(l),
    };
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// A `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Follows a response: a status in its headers (trailers-only) ends the
/// call at once, otherwise its body's trailers do.
pub fn observe<B>(call: Call, response: http::Response<B>) -> http::Response<ObservedBody<B>> {
    match grpc_status(response.headers()) {
        Some(code) => {
            call.end(code);
            response.map(|body| ObservedBody {
                inner: body,
                call: None,
            })
        }
        None => response.map(|body| ObservedBody {
            inner: body,
            call: Some(call),
        }),
    }
}

/// A response body passed through untouched; its trailers' `grpc-status`
/// ends the [`Call`].
pub struct ObservedBody<B> {
    inner: B,
    call: Option<Call>,
}

impl<B> ObservedBody<B> {
    /// A body observed by nobody.
    pub fn unobserved(inner: B) -> Self {
        Self { inner, call: None }
    }
}

impl<B> HttpBody for ObservedBody<B>
where
    B: HttpBody + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if self.call.is_some() {
            let code = match &polled {
                Poll::Ready(Some(Ok(frame))) => frame
                    .trailers_ref()
                    .map(|t| grpc_status(t).unwrap_or(tonic::Code::Unknown)),
                Poll::Ready(Some(Err(_))) | Poll::Ready(None) => Some(tonic::Code::Unknown),
                Poll::Pending => None,
            };
            if let Some(code) = code
                && let Some(call) = self.call.take()
            {
                call.end(code);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Records the server-side gRPC metrics of every call (see the module
/// documentation); outermost on every server, so refusals before any
/// handler count too.
#[derive(Clone)]
pub struct GrpcServerLayer {
    calls: Option<Arc<Calls>>,
    timeout: Option<Duration>,
}

impl GrpcServerLayer {
    /// A layer recording the calls `part` serves into `metrics` (nothing
    /// when it records no calls); `timeout` is the server's own limit on
    /// unary calls.
    pub fn new(metrics: &Metrics, part: &'static str, timeout: Option<Duration>) -> Self {
        Self {
            calls: metrics.grpc().map(|grpc| grpc.server(part)),
            timeout,
        }
    }
}

impl<S> tower::Layer<S> for GrpcServerLayer {
    type Service = GrpcServerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcServerService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`GrpcServerLayer`] wraps.
#[derive(Clone)]
pub struct GrpcServerService<S> {
    inner: S,
    layer: GrpcServerLayer,
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for GrpcServerService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = http::Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = self.layer.calls.as_ref().map(|calls| {
            calls
                .method(request.uri().path())
                .start()
                .with_deadline(deadline_of(request.headers(), self.layer.timeout))
        });
        let future = self.inner.call(request);
        Box::pin(async move {
            // Dropped before an answer (deadline, client gone): `call`
            // drops with it and counts that.
            let response = future.await?;
            Ok(match call {
                Some(call) => observe(call, response),
                None => response.map(ObservedBody::unobserved),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit_and_nonsense_does_not() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
        for bad in ["", "m", "123456789S", "10x", "-1S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_name_registered_twice_is_one_metric() {
        let metrics = Metrics::without_calls();
        let a = metrics.counter("tenancy_test_things", "Things");
        let b = metrics.counter("tenancy_test_things", "Things");
        a.inc();
        assert_eq!(b.get(), 1);
        let text = metrics.encode(Format::Prometheus);
        assert_eq!(text.matches("# TYPE tenancy_test_things_total").count(), 1);
        assert!(text.contains("tenancy_test_things_total 1"), "{text}");
    }

    #[test]
    fn unknown_paths_share_one_series_and_known_ones_carry_their_names() {
        let rules = MethodRules::tenancy().unwrap();
        let metrics = Metrics::new(&rules);
        let grpc = metrics.grpc().unwrap().server("identity");
        for n in 0..50 {
            grpc.method(&format!("/made.up.Service{n}/Method{n}"))
                .start()
                .end(tonic::Code::Unimplemented);
        }
        grpc.method("/tenancy.identity.v1.IdentityService/GetMe")
            .start()
            .end(tonic::Code::Ok);
        drop(grpc.method("/grpc.health.v1.Health/Watch").start());
        let text = metrics.encode(Format::Prometheus);
        assert!(text.contains(
            r#"grpc_server_handled_total{grpc_type="unary",grpc_service="unknown",grpc_method="unknown",grpc_code="Unimplemented",part="identity"} 50"#
        ), "{text}");
        assert!(text.contains(
            r#"grpc_server_handled_total{grpc_type="unary",grpc_service="tenancy.identity.v1.IdentityService",grpc_method="GetMe",grpc_code="OK",part="identity"} 1"#
        ), "{text}");
        assert!(text.contains(
            r#"grpc_server_handled_total{grpc_type="server_stream",grpc_service="grpc.health.v1.Health",grpc_method="Watch",grpc_code="Canceled",part="identity"} 1"#
        ), "{text}");
        assert!(!text.contains("made.up"), "{text}");
    }

    /// A body of two data frames, then trailers with `grpc-status: 5`.
    struct Frames(Vec<Frame<Bytes>>);

    impl HttpBody for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut TaskContext<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(if self.0.is_empty() {
                None
            } else {
                Some(Ok(self.0.remove(0)))
            })
        }
    }

    #[tokio::test]
    async fn a_streamed_response_is_handled_with_its_trailers_status_and_an_abandoned_one_canceled()
    {
        use http_body_util::BodyExt as _;
        let rules = MethodRules::tenancy().unwrap();
        let metrics = Metrics::new(&rules);
        let calls = metrics.grpc().unwrap().server("account");
        let method = calls.method("/tenancy.account.v1.AccountService/GetAccount");
        let frames = || {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("5"));
            Frames(vec![
                Frame::data(Bytes::from_static(b"a")),
                Frame::data(Bytes::from_static(b"b")),
                Frame::trailers(trailers),
            ])
        };
        let whole = observe(method.start(), http::Response::new(frames()));
        whole.into_body().collect().await.unwrap();
        let mut abandoned = observe(method.start(), http::Response::new(frames())).into_body();
        abandoned.frame().await.unwrap().unwrap();
        drop(abandoned);
        let text = metrics.encode(Format::Prometheus);
        for (code, n) in [("NotFound", 1), ("Canceled", 1)] {
            let line = format!(
                r#"grpc_server_handled_total{{grpc_type="unary",grpc_service="tenancy.account.v1.AccountService",grpc_method="GetAccount",grpc_code="{code}",part="account"}} {n}"#
            );
            assert!(text.contains(&line), "{line} in {text}");
        }
    }

    #[test]
    fn code_names_are_gos() {
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(code_name(tonic::Code::Cancelled), "Canceled");
        assert_eq!(code_name(tonic::Code::Unauthenticated), "Unauthenticated");
    }
}
