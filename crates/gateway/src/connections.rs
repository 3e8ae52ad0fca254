//! The public port's connections: how many, from where, and for how long
//! one may stay without doing anything.
//!
//! Every open connection costs the gateway memory (~24 kB for an idle
//! HTTP/2 one) and a task, so a stranger must not be able to hold them by
//! the thousand:
//! - at most `gateway.max_connections` in all and
//!   `gateway.max_connections_per_address` from one address (IPv6 counted
//!   per /64, which one subscriber usually holds; trusted proxies are not
//!   limited per address, as every client behind them shares theirs): a
//!   connection beyond is closed at once, before any TLS;
//! - the TLS handshake and the first request must come within
//!   `gateway.handshake_timeout` (a connection that never speaks, or sends
//!   only the HTTP/2 preface, is closed);
//! - a connection with no call in flight for `gateway.idle_timeout` is
//!   closed gracefully (GOAWAY: clients reconnect when they next call);
//!   one with a call open (a Watch stream) is never idle;
//! - HTTP/2 pings every `gateway.keepalive_interval` find peers that
//!   vanished without closing (answer within `gateway.keepalive_timeout`
//!   or the connection is closed).

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use http_body::{Body as HttpBody, Frame};
use ipnet::IpNet;
use parking_lot::Mutex;
use tenancy_runtime::Metrics;
use tenancy_runtime::config::GatewayConfig;
use tenancy_runtime::metrics::{Counter, Gauge};
use tokio::time::Instant;

/// The public port's connection limits, shared by every connection.
pub(crate) struct ConnectionLimits {
    max_total: usize,
    max_per_address: u32,
    /// Proxies (`gateway.trusted_proxies`): not limited per address.
    exempt: Vec<IpNet>,
    open: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, u32>>,
    metrics: ConnectionMetrics,
}

/// Why a connection was closed by the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Closed {
    /// `gateway.max_connections` reached.
    MaxConnections,
    /// `gateway.max_connections_per_address` reached for its address.
    MaxPerAddress,
    /// No TLS handshake or no first request within `handshake_timeout`.
    HandshakeTimeout,
    /// No call in flight for `idle_timeout`.
    IdleTimeout,
}

impl ConnectionLimits {
    pub(crate) fn new(config: &GatewayConfig, metrics: &Metrics) -> Arc<Self> {
        Arc::new(Self {
            max_total: config.max_connections,
            max_per_address: config.max_connections_per_address,
            exempt: config.trusted_proxies.clone(),
            open: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
            metrics: ConnectionMetrics::new(metrics),
        })
    }

    /// Admits a connection from `peer`, or says which limit it is over
    /// (counted). The slot frees its place when dropped.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Closed> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.closed(Closed::MaxConnections);
            return Err(Closed::MaxConnections);
        }
        let key = (!self.exempt.iter().any(|net| net.contains(&peer)))
            .then(|| crate::client_ip::subscriber(peer));
        if let Some(key) = key {
            let mut per_address = self.per_address.lock();
            let count = per_address.entry(key).or_insert(0);
            if *count >= self.max_per_address {
                drop(per_address);
                self.open.fetch_sub(1, Ordering::AcqRel);
                self.closed(Closed::MaxPerAddress);
                return Err(Closed::MaxPerAddress);
            }
            *count += 1;
        }
        self.metrics.open.inc();
        Ok(Slot {
            limits: self.clone(),
            key,
        })
    }

    /// Counts a connection the gateway closed.
    pub(crate) fn closed(&self, why: Closed) {
        match why {
            Closed::MaxConnections => &self.metrics.max_connections,
            Closed::MaxPerAddress => &self.metrics.max_per_address,
            Closed::HandshakeTimeout => &self.metrics.handshake_timeout,
            Closed::IdleTimeout => &self.metrics.idle_timeout,
        }
        .inc();
    }
}

/// One admitted connection's place.
pub(crate) struct Slot {
    limits: Arc<ConnectionLimits>,
    key: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limits.open.fetch_sub(1, Ordering::AcqRel);
        self.limits.metrics.open.dec();
        if let Some(key) = self.key {
            let mut per_address = self.limits.per_address.lock();
            if let Some(count) = per_address.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    per_address.remove(&key);
                }
            }
        }
    }
}

/// What one connection is doing: calls in flight, and since when none
/// (or, before its first call, since it was accepted).
#[derive(Default)]
pub(crate) struct Activity {
    in_flight: AtomicUsize,
    since: Mutex<Option<Instant>>,
    /// Whether a call came at all (until then the handshake timeout
    /// applies, not the idle one).
    called: std::sync::atomic::AtomicBool,
    /// Signalled when the last call in flight ends: the idle clock starts
    /// then, and [`idle`] waits for it instead of polling.
    quiet: tokio::sync::Notify,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            since: Mutex::new(Some(Instant::now())),
            ..Self::default()
        })
    }

    /// A call arrived; it is in flight until the guard (held by its
    /// response body) is dropped.
    pub(crate) fn call(self: &Arc<Self>) -> CallGuard {
        self.called.store(true, Ordering::Release);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        CallGuard(self.clone())
    }

    /// When the connection is to be closed for doing nothing, given the
    /// limits: `None` while a call is in flight.
    fn deadline(&self, handshake: Duration, idle: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = (*self.since.lock())?;
        Some(if self.called.load(Ordering::Acquire) {
            since + idle
        } else {
            since + handshake
        })
    }
}

/// A call in flight on a connection.
pub(crate) struct CallGuard(Arc<Activity>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.0.since.lock() = Some(Instant::now());
            // One watcher per connection: a permit stored while it sleeps
            // on a deadline only costs it one more look.
            self.0.quiet.notify_one();
        }
    }
}

/// Waits until `activity` has been idle past its limit: resolves with why
/// the connection should close. Never resolves while calls are in flight.
pub(crate) async fn idle(activity: &Activity, handshake: Duration, idle: Duration) -> Closed {
    loop {
        match activity.deadline(handshake, idle) {
            Some(deadline) if Instant::now() >= deadline => {
                return if activity.called.load(Ordering::Acquire) {
                    Closed::IdleTimeout
                } else {
                    Closed::HandshakeTimeout
                };
            }
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            // A call is in flight: wait for the last one to end (which
            // restarts the clock). A call that ended between the look and
            // this wait left its permit, so the wait returns at once.
            None => activity.quiet.notified().await,
        }
    }
}

/// A response body that keeps its call counted as in flight until it is
/// done (dropped by the connection).
pub(crate) struct Tracked<B> {
    pub(crate) inner: B,
    pub(crate) _call: CallGuard,
}

impl<B: HttpBody + Unpin> HttpBody for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The connection metrics.
struct ConnectionMetrics {
    open: Gauge,
    max_connections: Counter,
    max_per_address: Counter,
    handshake_timeout: Counter,
    idle_timeout: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, tenancy_runtime::metrics::EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

impl ConnectionMetrics {
    fn new(metrics: &Metrics) -> Self {
        let family = metrics.counter_family::<ReasonLabel>(
            "tenancy_gateway_connections_closed",
            "Public connections the gateway closed: reason max_connections or max_connections_per_address (refused at accept), handshake_timeout (no TLS handshake or first call in time), idle_timeout (no call in flight for too long)",
        );
        let reason = |reason| family.get_or_create_owned(&ReasonLabel { reason });
        Self {
            open: metrics.gauge(
                "tenancy_gateway_connections",
                "Public connections open (admitted, not yet closed)",
            ),
            max_connections: reason("max_connections"),
            max_per_address: reason("max_connections_per_address"),
            handshake_timeout: reason("handshake_timeout"),
            idle_timeout: reason("idle_timeout"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_address: u32, exempt: &[&str]) -> Arc<ConnectionLimits> {
        let config = GatewayConfig {
            max_connections: total,
            max_connections_per_address: per_address,
            trusted_proxies: exempt.iter().map(|n| n.parse().unwrap()).collect(),
            ..GatewayConfig::default()
        };
        ConnectionLimits::new(&config, &Metrics::without_calls())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn one_address_cannot_take_more_than_its_share_and_a_closed_one_frees_it() {
        let limits = limits(10, 2, &[]);
        let a = limits.admit(ip("192.0.2.1")).unwrap();
        let _b = limits.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(
            limits.admit(ip("192.0.2.1")).err(),
            Some(Closed::MaxPerAddress)
        );
        let _other = limits.admit(ip("192.0.2.2")).unwrap();
        drop(a);
        assert!(limits.admit(ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn ipv6_addresses_of_one_slash_64_share_a_limit() {
        let limits = limits(10, 2, &[]);
        let _a = limits.admit(ip("2001:db8:1:2::1")).unwrap();
        let _b = limits.admit(ip("2001:db8:1:2:ffff::9")).unwrap();
        assert_eq!(
            limits.admit(ip("2001:db8:1:2::77")).err(),
            Some(Closed::MaxPerAddress)
        );
        assert!(limits.admit(ip("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn the_total_is_capped_and_trusted_proxies_only_by_it() {
        let limits = limits(3, 1, &["10.0.0.0/8"]);
        let _a = limits.admit(ip("10.0.0.5")).unwrap();
        let _b = limits.admit(ip("10.0.0.5")).unwrap();
        let _c = limits.admit(ip("10.0.0.5")).unwrap();
        assert_eq!(
            limits.admit(ip("192.0.2.1")).err(),
            Some(Closed::MaxConnections)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_with_no_call_in_flight() {
        let activity = Activity::new();
        let (handshake, idle_limit) = (Duration::from_secs(10), Duration::from_secs(60));
        // No call yet: the handshake limit.
        let started = Instant::now();
        assert_eq!(
            idle(&activity, handshake, idle_limit).await,
            Closed::HandshakeTimeout
        );
        assert_eq!(started.elapsed(), handshake);
        // A call in flight holds it open however long it runs.
        let call = activity.call();
        let waited = tokio::time::timeout(
            Duration::from_secs(600),
            idle(&activity, handshake, idle_limit),
        )
        .await;
        assert!(waited.is_err(), "closed with a call in flight");
        drop(call);
        let ended = Instant::now();
        assert_eq!(
            idle(&activity, handshake, idle_limit).await,
            Closed::IdleTimeout
        );
        assert_eq!(ended.elapsed(), idle_limit);
    }

    /// The watcher of a connection with a call in flight sleeps until the
    /// call ends, not on a timer: it is woken by the end of the call, and
    /// nothing wakes it before.
    #[tokio::test(start_paused = true)]
    async fn the_end_of_the_last_call_wakes_the_idle_watcher() {
        use std::future::Future as _;
        use std::sync::atomic::AtomicUsize;
        use std::task::{Wake, Waker};

        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let activity = Activity::new();
        let (handshake, idle_limit) = (Duration::from_secs(10), Duration::from_secs(60));
        let call = activity.call();
        let wakes = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let mut cx = TaskContext::from_waker(&waker);
        let watcher = idle(&activity, handshake, idle_limit);
        tokio::pin!(watcher);
        assert!(watcher.as_mut().poll(&mut cx).is_pending());
        // Hours pass with the call open: no timer of the watcher fires.
        tokio::time::advance(Duration::from_secs(3 * 3600)).await;
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0, "woken by a timer");
        drop(call);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "not woken by the end");
        assert!(watcher.as_mut().poll(&mut cx).is_pending());
        let ended = Instant::now();
        assert_eq!(watcher.await, Closed::IdleTimeout);
        assert_eq!(ended.elapsed(), idle_limit);
    }
}
