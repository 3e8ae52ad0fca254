//! What the gateway measures, beside the standard gRPC metrics of its
//! public port (README: Operations). Every label is a name from a fixed
//! set: a decision's reason comes from the code's error reasons, never
//! from a request.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use tenancy_runtime::Metrics;
use tenancy_runtime::metrics::{Counter, EncodeLabelSet, Family, Gauge, Histogram, MethodCalls};

/// A decision's labels: `decision` (`allowed`, `refused`) and the refusal's
/// `reason` and gRPC `code` (`none` and `OK` when allowed).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
    reason: &'static str,
    code: &'static str,
}

/// Which limit refused a call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: &'static str,
}

/// Which token cache, and whether it knew the token.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    kind: &'static str,
    result: &'static str,
}

/// Which stream of state the gateway follows.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabel {
    stream: &'static str,
}

/// The gateway's decisions.
#[derive(Clone)]
pub(crate) struct Decisions {
    allowed: Counter,
    family: Family<DecisionLabels, Counter>,
}

impl Decisions {
    pub(crate) fn new(metrics: &Metrics) -> Self {
        let family = metrics.counter_family::<DecisionLabels>(
            "tenancy_gateway_decisions",
            "Calls the gateway decided: allowed, or refused with the reason and code the client got (every refusal before forwarding: unknown method, rate limits, credentials, policy)",
        );
        Self {
            allowed: family.get_or_create_owned(&DecisionLabels {
                decision: "allowed",
                reason: "none",
                code: "OK",
            }),
            family,
        }
    }

    pub(crate) fn allowed(&self) {
        self.allowed.inc();
    }

    pub(crate) fn refused(&self, error: &tenancy_runtime::Error) {
        self.family
            .get_or_create(&DecisionLabels {
                decision: "refused",
                reason: error.reason.as_str(),
                code: tenancy_runtime::metrics::code_name(error.code()),
            })
            .inc();
    }
}

/// Refusals by rate or concurrency limits.
#[derive(Clone, Default)]
pub(crate) struct Limits {
    /// Rate-limited PUBLIC calls per client address (login, sign-up, …).
    pub(crate) client_address: Counter,
    /// Authenticated calls per user.
    pub(crate) user: Counter,
    /// Calls in flight to one service (`gateway.upstream_concurrency`).
    pub(crate) upstream: Counter,
    /// Calls in flight for one user (`gateway.max_calls_per_user`).
    pub(crate) user_concurrency: Counter,
    /// Calls in flight for one account (`gateway.max_calls_per_account`).
    pub(crate) account_concurrency: Counter,
    /// Uncached API tokens from an address whose introspections failed
    /// too often (`gateway.api_token_failure_burst`).
    pub(crate) api_token_failures: Counter,
}

impl Limits {
    pub(crate) fn new(metrics: &Metrics) -> Self {
        let family = metrics.counter_family::<LimitLabel>(
            "tenancy_gateway_rate_limited",
            "Calls refused by a limit: client_address (rate-limited PUBLIC methods per address), user (authenticated calls per user), upstream_concurrency (calls in flight to one service), user_concurrency and account_concurrency (calls in flight for one user or one account), api_token_failures (uncached API tokens from an address whose introspections failed too often)",
        );
        let limit = |limit| family.get_or_create_owned(&LimitLabel { limit });
        Self {
            client_address: limit("client_address"),
            user: limit("user"),
            upstream: limit("upstream_concurrency"),
            user_concurrency: limit("user_concurrency"),
            account_concurrency: limit("account_concurrency"),
            api_token_failures: limit("api_token_failures"),
        }
    }
}

/// Lookups in the token caches.
#[derive(Clone, Default)]
pub(crate) struct TokenCache {
    pub(crate) portal_hit: Counter,
    pub(crate) portal_miss: Counter,
    pub(crate) api_hit: Counter,
    pub(crate) api_miss: Counter,
}

impl TokenCache {
    pub(crate) fn new(metrics: &Metrics) -> Self {
        let family = metrics.counter_family::<CacheLabels>(
            "tenancy_gateway_token_cache_lookups",
            "Credential lookups in the gateway's caches: kind portal (access tokens, verified once) or api (API tokens, introspected once; remembered refusals count as hits), result hit or miss",
        );
        let get = |kind, result| family.get_or_create_owned(&CacheLabels { kind, result });
        Self {
            portal_hit: get("portal", "hit"),
            portal_miss: get("portal", "miss"),
            api_hit: get("api", "hit"),
            api_miss: get("api", "miss"),
        }
    }

    /// Gauges of the caches' sizes, read by `entries` when scraped.
    pub(crate) fn entries(
        metrics: &Metrics,
        entries: impl Fn() -> Option<(usize, usize)> + Send + Sync + 'static,
    ) {
        let gauge = metrics.gauge_family::<KindLabel>(
            "tenancy_gateway_token_cache_entries",
            "Tokens in the gateway's caches, by kind (portal, api)",
        );
        metrics.on_scrape(move || {
            if let Some((portal, api)) = entries() {
                let wide = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
                gauge
                    .get_or_create(&KindLabel { kind: "portal" })
                    .set(wide(portal));
                gauge
                    .get_or_create(&KindLabel { kind: "api" })
                    .set(wide(api));
            }
            std::future::ready(())
        });
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// One followed stream (identity's revocations, account's policies).
#[derive(Clone)]
pub struct Watch {
    caught_up: Gauge,
    behind: Gauge,
    events: Counter,
    reconnects: Counter,
    delay: Histogram,
    /// Newest position the server announced, and the last one applied.
    head: Arc<AtomicI64>,
    applied: Arc<AtomicI64>,
    /// When the last message and the last event arrived (ms since `epoch`;
    /// -1: never).
    last_message: Arc<AtomicI64>,
    last_event: Arc<AtomicI64>,
    epoch: Instant,
}

impl Watch {
    /// The metrics of `stream` (`revocations` or `policies`).
    pub fn new(metrics: &Metrics, stream: &'static str) -> Self {
        let labels = StreamLabel { stream };
        let caught_up = metrics
            .gauge_family::<StreamLabel>(
                "tenancy_gateway_watch_caught_up",
                "1 while the gateway's copy of the stream is caught up (it decides authenticated calls only while both streams are), 0 while catching up or reconnecting",
            )
            .get_or_create_owned(&labels);
        let behind = metrics
            .gauge_family::<StreamLabel>(
                "tenancy_gateway_watch_events_behind",
                "Log positions between the newest the server announced (catch-up end, heartbeats) and the last the gateway applied: at most this many events (positions have gaps)",
            )
            .get_or_create_owned(&labels);
        let events = metrics
            .counter_family::<StreamLabel>(
                "tenancy_gateway_watch_events",
                "Events the gateway applied from the stream",
            )
            .get_or_create_owned(&labels);
        let reconnects = metrics
            .counter_family::<StreamLabel>(
                "tenancy_gateway_watch_reconnects",
                "Times the stream ended or could not be opened and the gateway reconnected",
            )
            .get_or_create_owned(&labels);
        let delay = metrics
            .seconds_histogram_family::<StreamLabel>(
                "tenancy_gateway_watch_event_delay_seconds",
                "Time from an event's commit (the server's clock) to the gateway applying it",
            )
            .get_or_create_owned(&labels);
        let watch = Self {
            caught_up,
            behind,
            events,
            reconnects,
            delay,
            head: Arc::new(AtomicI64::new(0)),
            applied: Arc::new(AtomicI64::new(0)),
            last_message: Arc::new(AtomicI64::new(-1)),
            last_event: Arc::new(AtomicI64::new(-1)),
            epoch: Instant::now(),
        };
        let since_message = metrics
            .gauge_f64_family::<StreamLabel>(
                "tenancy_gateway_watch_seconds_since_last_message",
                "Seconds since the stream's last message, heartbeats included (servers send one every 15 s; past 45 s the gateway reconnects)",
            )
            .get_or_create_owned(&labels);
        let since_event = metrics
            .gauge_f64_family::<StreamLabel>(
                "tenancy_gateway_watch_seconds_since_last_event",
                "Seconds since the stream's last event (not heartbeats); since the gateway started when none came yet",
            )
            .get_or_create_owned(&labels);
        let position = metrics
            .gauge_family::<StreamLabel>(
                "tenancy_gateway_watch_position",
                "The log position the gateway's copy of the stream is at (the last event applied; 0 while rebuilding from a reset or snapshot)",
            )
            .get_or_create_owned(&labels);
        let (last_message, last_event, applied, epoch) = (
            watch.last_message.clone(),
            watch.last_event.clone(),
            watch.applied.clone(),
            watch.epoch,
        );
        metrics.on_scrape(move || {
            let now = i64::try_from(epoch.elapsed().as_millis()).unwrap_or(i64::MAX);
            let since = |at: &AtomicI64| {
                let at = at.load(Ordering::Relaxed).max(0);
                (now - at) as f64 / 1000.0
            };
            since_message.set(since(&last_message));
            since_event.set(since(&last_event));
            position.set(applied.load(Ordering::Relaxed));
            std::future::ready(())
        });
        watch
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    fn update_behind(&self) {
        let head = self.head.load(Ordering::Relaxed);
        let applied = self.applied.load(Ordering::Relaxed);
        self.behind.set((head - applied).max(0));
    }

    /// Any message arrived.
    pub(crate) fn message(&self) {
        self.last_message.store(self.now_ms(), Ordering::Relaxed);
    }

    /// An event at `position`, committed at `committed_ms` (Unix ms; 0:
    /// unknown), was applied at `now_ms` (Unix ms).
    pub(crate) fn applied(&self, position: i64, committed_ms: i64, now_ms: i64) {
        self.events.inc();
        self.last_event.store(self.now_ms(), Ordering::Relaxed);
        if committed_ms > 0 {
            self.delay
                .observe((now_ms - committed_ms).max(0) as f64 / 1000.0);
        }
        self.applied.store(position, Ordering::Relaxed);
        self.head.fetch_max(position, Ordering::Relaxed);
        self.update_behind();
    }

    /// The server announced `head` as its newest position.
    pub(crate) fn head(&self, head: i64) {
        self.head.fetch_max(head, Ordering::Relaxed);
        self.update_behind();
    }

    /// The stream (re)starts from `position`.
    pub(crate) fn resumed_from(&self, position: i64) {
        self.applied.store(position, Ordering::Relaxed);
        self.head.store(position, Ordering::Relaxed);
        self.update_behind();
    }

    /// Caught up (true) or not (false).
    pub(crate) fn caught_up(&self, caught_up: bool) {
        self.caught_up.set(i64::from(caught_up));
    }

    /// The stream ended or could not be opened.
    pub(crate) fn reconnect(&self) {
        self.reconnects.inc();
        self.caught_up(false);
    }
}

/// A routed method's call metrics, when calls are recorded: as the
/// gateway's public port served it, and as the gateway called the service.
#[derive(Clone, Default)]
pub(crate) struct RouteCalls {
    pub(crate) server: Option<Arc<MethodCalls>>,
    pub(crate) client: Option<Arc<MethodCalls>>,
}

impl RouteCalls {
    pub(crate) fn of(metrics: &Metrics, path: &str) -> Self {
        match metrics.grpc() {
            Some(grpc) => Self {
                server: Some(grpc.server("gateway").method(path).clone()),
                client: Some(grpc.client("gateway").method(path).clone()),
            },
            None => Self::default(),
        }
    }
}
