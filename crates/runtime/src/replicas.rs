//! The replicas of one service as a caller sees them: which there are,
//! which are healthy, which one the next call goes to, and the health
//! checks that decide it. One implementation for the gateway's upstreams
//! and for the [`Channel`](crate::Channel)s between services.
//!
//! - The replicas are the configured URLs (`<service>.url`, comma-
//!   separated). A URL naming a host rather than an address (a Kubernetes
//!   headless Service: one address per ready pod) stands for every address
//!   it resolves to, looked up again every [`RESOLVE_INTERVAL`]: new ones
//!   join, vanished ones leave once their calls are done; a failed lookup
//!   keeps what there was.
//! - Every replica is checked every [`CHECK_INTERVAL`] with a gRPC health
//!   `Check` over the connection calls use; no answer within
//!   [`CHECK_TIMEOUT`], or anything but SERVING, ejects it, and the next
//!   SERVING answer admits it again. A dead replica is out within a second
//!   (connection refused) or two (no answer); calls stuck on one that
//!   stopped answering fail at its second silent check.
//! - A call that cannot reach a replica (connect refused, connection lost)
//!   ejects it at once, without waiting for its next check.
//! - Calls go round-robin over the healthy replicas; a call that has to try
//!   again goes to the next one, healthy ones first. When none is healthy,
//!   every replica is tried rather than failing without trying.
//!
//! Checks and lookups start with the first call and stop once the set is
//! dropped.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Duration;

use http::uri::Authority;
use parking_lot::RwLock;

use crate::config::{ConfigError, ServiceName};
use crate::service::BoxFuture;
use crate::upstream::{Connection, Dialer};

/// How often every replica's health is checked.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How long a health check may take before the replica counts as down.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// How often host names in `<service>.url` are looked up again.
pub const RESOLVE_INTERVAL: Duration = Duration::from_secs(5);

/// Most replicas of one service a caller keeps (configured URLs and the
/// addresses they resolve to together); more are left out, with a warning.
pub const MAX_REPLICAS: usize = 64;

/// One replica: its connection, whether it is in rotation, and how many
/// calls were sent to it.
pub struct Replica {
    service: ServiceName,
    /// Which configured URL it comes from.
    source: usize,
    connection: Arc<Connection>,
    healthy: AtomicBool,
    sent: AtomicU64,
    /// No longer listed (its host name stopped resolving to it): its checks
    /// end.
    retired: AtomicBool,
}

impl Replica {
    /// Its connection.
    pub fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }

    /// Whether it is in rotation.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Counts a call sent to it.
    pub fn note_sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes it out of rotation until a health check passes again: a call
    /// could not reach it.
    pub fn eject(&self, why: &dyn std::fmt::Display) {
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                service = self.service.as_str(),
                replica = %self.connection.authority(),
                reason = %why,
                "replica ejected: a call could not reach it"
            );
        }
    }

    /// Records a health check's outcome; logs changes.
    fn set_healthy(&self, healthy: bool, why: &str) {
        if self.healthy.swap(healthy, Ordering::Relaxed) == healthy {
            return;
        }
        let (service, replica) = (self.service.as_str(), self.connection.authority());
        if healthy {
            tracing::info!(service, %replica, "replica healthy again: back in rotation");
        } else {
            tracing::warn!(service, %replica, reason = why, "replica ejected: health check failed");
        }
    }
}

/// What a caller can see of one replica (for logs, tests and operators).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// `host:port`: an address, or a host name not resolved yet.
    pub authority: String,
    /// In rotation: its last health check passed and no call failed to
    /// reach it since.
    pub healthy: bool,
    /// Calls sent to it so far (attempts, retries included).
    pub sent: u64,
}

/// A configured URL: an address, or a host name standing for every address
/// it resolves to.
struct Source {
    authority: Authority,
    named: bool,
}

type Members = Arc<[Arc<Replica>]>;

/// The replicas of one service.
pub struct ReplicaSet {
    service: ServiceName,
    sources: Box<[Source]>,
    dialer: Dialer,
    members: RwLock<Members>,
    next: AtomicUsize,
    started: AtomicBool,
}

impl ReplicaSet {
    /// The replicas at `urls` (`https://host:port`, the scheme ignored),
    /// dialed with `dialer`. Errors name `<service>.url`.
    pub fn new(
        service: ServiceName,
        urls: &[String],
        dialer: &Dialer,
    ) -> Result<Arc<Self>, ConfigError> {
        let setting = format!("{}.url", service.as_str());
        if urls.is_empty() {
            return Err(ConfigError::new(setting, "no URL"));
        }
        if urls.len() > MAX_REPLICAS {
            return Err(ConfigError::new(
                setting,
                format_args!("{} URLs; at most {MAX_REPLICAS}", urls.len()),
            ));
        }
        let sources = urls
            .iter()
            .map(|url| {
                let authority = url
                    .parse::<http::Uri>()
                    .ok()
                    .and_then(|uri| uri.authority().cloned())
                    .filter(|a| a.port_u16().is_some())
                    .ok_or_else(|| {
                        ConfigError::new(&setting, format_args!("not a URL with a port: {url:?}"))
                    })?;
                let host = authority
                    .host()
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let named = host.parse::<std::net::IpAddr>().is_err();
                Ok(Source { authority, named })
            })
            .collect::<Result<Box<[_]>, ConfigError>>()?;
        let set = Self {
            service,
            sources,
            dialer: dialer.clone(),
            members: RwLock::new(Arc::from([])),
            next: AtomicUsize::new(0),
            started: AtomicBool::new(false),
        };
        // Until a lookup says otherwise, a host name is one replica, dialed
        // by name.
        let members: Vec<Arc<Replica>> = set
            .sources
            .iter()
            .enumerate()
            .map(|(source, s)| set.replica(source, s.authority.clone()))
            .collect();
        *set.members.write() = members.into();
        Ok(Arc::new(set))
    }

    fn replica(&self, source: usize, authority: Authority) -> Arc<Replica> {
        Arc::new(Replica {
            service: self.service,
            source,
            connection: Connection::new(authority, self.dialer.clone()),
            healthy: AtomicBool::new(true),
            sent: AtomicU64::new(0),
            retired: AtomicBool::new(false),
        })
    }

    /// Never checks its replicas in the background nor looks names up: for
    /// a one-shot client (an operator's command), whose few calls try every
    /// replica anyway and which ends before a check could tell anything
    /// (a check cut short as the process exits would only log a false
    /// ejection).
    pub fn without_checks(&self) {
        self.started.store(true, Ordering::Release);
    }

    /// Which service these are replicas of.
    pub fn service(&self) -> ServiceName {
        self.service
    }

    /// The replicas to try for one call, each once: the healthy ones
    /// round-robin from the next position, then the others (so every
    /// replica is tried when none is healthy). Starts the health checks
    /// and lookups on first use.
    pub fn order(self: &Arc<Self>) -> Order {
        self.start();
        let members = self.members.read().clone();
        let n = members.len().max(1);
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let healthy = members
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_healthy())
            .fold(0u64, |mask, (i, _)| mask | (1 << i));
        Order {
            members,
            start,
            healthy,
            step: 0,
        }
    }

    /// Every replica's state.
    pub fn status(&self) -> Vec<ReplicaStatus> {
        self.members
            .read()
            .iter()
            .map(|r| ReplicaStatus {
                authority: r.connection.authority().to_string(),
                healthy: r.is_healthy(),
                sent: r.sent.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Spawns the checks of every replica (one task each, so one that never
    /// answers delays nobody else's) and, when a URL names a host, the
    /// lookups; once, if a tokio runtime is there.
    fn start(self: &Arc<Self>) {
        if self.started.load(Ordering::Relaxed) || self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.started.store(false, Ordering::Release);
            return;
        };
        for replica in self.members.read().iter() {
            runtime.spawn(check_loop(Arc::downgrade(replica)));
        }
        if self.sources.iter().any(|s| s.named) {
            runtime.spawn(resolve_loop(Arc::downgrade(self)));
        }
    }

    /// Replaces the replicas of named sources with the addresses `lookups`
    /// found (`None`: the lookup failed; keep what there was). Replicas
    /// still listed are kept as they are (connection, health); returns the
    /// new ones, to be checked.
    fn update(&self, lookups: &[Option<Vec<SocketAddr>>]) -> Vec<Arc<Replica>> {
        let current = self.members.read().clone();
        let mut members: Vec<Arc<Replica>> = Vec::new();
        let mut added = Vec::new();
        for (source, s) in self.sources.iter().enumerate() {
            let found = lookups.get(source).and_then(Option::as_ref);
            match found {
                Some(addresses) if s.named && !addresses.is_empty() => {
                    for address in addresses {
                        let Ok(authority) = address.to_string().parse::<Authority>() else {
                            continue;
                        };
                        match current
                            .iter()
                            .find(|r| r.source == source && *r.connection.authority() == authority)
                        {
                            Some(kept) => members.push(kept.clone()),
                            None => {
                                let new = self.replica(source, authority);
                                added.push(new.clone());
                                members.push(new);
                            }
                        }
                    }
                }
                _ => members.extend(current.iter().filter(|r| r.source == source).cloned()),
            }
        }
        if members.len() > MAX_REPLICAS {
            tracing::warn!(
                service = self.service.as_str(),
                found = members.len(),
                "more replicas than {MAX_REPLICAS}; the rest get no calls"
            );
            members.truncate(MAX_REPLICAS);
            added.retain(|a| members.iter().any(|m| Arc::ptr_eq(a, m)));
        }
        let unchanged = members.len() == current.len()
            && members
                .iter()
                .zip(current.iter())
                .all(|(a, b)| Arc::ptr_eq(a, b));
        if unchanged {
            return Vec::new();
        }
        for gone in current
            .iter()
            .filter(|r| !members.iter().any(|m| Arc::ptr_eq(m, r)))
        {
            gone.retired.store(true, Ordering::Relaxed);
        }
        let authorities: Vec<String> = members
            .iter()
            .map(|r| r.connection.authority().to_string())
            .collect();
        tracing::info!(service = self.service.as_str(), replicas = ?authorities, "replicas changed");
        *self.members.write() = members.into();
        added
    }
}

/// Looks the named sources up every [`RESOLVE_INTERVAL`] (first at once)
/// until the set is dropped.
async fn resolve_loop(set: Weak<ReplicaSet>) {
    loop {
        let Some(strong) = set.upgrade() else {
            return;
        };
        let mut lookups = Vec::with_capacity(strong.sources.len());
        for source in strong.sources.iter() {
            lookups.push(if source.named {
                lookup(&source.authority).await
            } else {
                None
            });
        }
        for added in strong.update(&lookups) {
            tokio::spawn(check_loop(Arc::downgrade(&added)));
        }
        drop(strong);
        tokio::time::sleep(RESOLVE_INTERVAL).await;
    }
}

/// The addresses `authority` resolves to, sorted; `None` when the lookup
/// fails or finds none.
async fn lookup(authority: &Authority) -> Option<Vec<SocketAddr>> {
    let found = tokio::time::timeout(
        RESOLVE_INTERVAL,
        tokio::net::lookup_host(authority.as_str()),
    )
    .await;
    match found {
        Ok(Ok(addresses)) => {
            let mut addresses: Vec<SocketAddr> = addresses.collect();
            addresses.sort_unstable();
            addresses.dedup();
            (!addresses.is_empty()).then_some(addresses)
        }
        Ok(Err(error)) => {
            tracing::warn!(host = %authority, %error, "lookup failed; keeping the replicas known");
            None
        }
        Err(_) => {
            tracing::warn!(host = %authority, "lookup timed out; keeping the replicas known");
            None
        }
    }
}

/// Checks `replica` every [`CHECK_INTERVAL`] until it is retired or gone.
///
/// A replica that stops answering (hung, or packets dropped) is ejected at
/// its first silent check, and its connection set aside so the next check
/// and call dial afresh; calls already in flight on it are left to finish.
/// Silent at the next check too, the set-aside connection is closed: those
/// calls fail (reads are asked again elsewhere) within about three seconds
/// instead of at their deadlines, and streams on it reconnect elsewhere.
async fn check_loop(replica: Weak<Replica>) {
    let mut silent = 0u32;
    loop {
        let Some(strong) = replica.upgrade() else {
            return;
        };
        if strong.retired.load(Ordering::Relaxed) {
            return;
        }
        match check(&strong.connection).await {
            Ok(()) => {
                silent = 0;
                strong.connection.keep();
                strong.set_healthy(true, "");
            }
            Err(Unhealthy::Answered(status)) => {
                silent = 0;
                strong.connection.keep();
                strong.set_healthy(false, &status);
            }
            Err(Unhealthy::Silent(why)) => {
                silent += 1;
                if silent >= 2 {
                    strong.connection.abandon();
                }
                strong.connection.reset();
                strong.set_healthy(false, &why);
            }
        }
        drop(strong);
        tokio::time::sleep(CHECK_INTERVAL).await;
    }
}

/// Why a health check failed.
enum Unhealthy {
    /// The replica answered, but not SERVING.
    Answered(String),
    /// No answer: unreachable, connection lost, or too slow.
    Silent(String),
}

/// One gRPC health `Check` of the whole server (service `""`).
async fn check(connection: &Arc<Connection>) -> Result<(), Unhealthy> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let mut client = HealthClient::new(Direct(connection.clone()));
    match tokio::time::timeout(CHECK_TIMEOUT, client.check(HealthCheckRequest::default())).await {
        Err(_) => Err(Unhealthy::Silent("no answer in time".to_owned())),
        Ok(Ok(response)) => match response.into_inner().status() {
            ServingStatus::Serving => Ok(()),
            other => Err(Unhealthy::Answered(other.as_str_name().to_owned())),
        },
        Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
            Err(Unhealthy::Silent(status.message().to_owned()))
        }
        Ok(Err(status)) => Err(Unhealthy::Answered(format!("{:?}", status.code()))),
    }
}

/// Calls straight to one replica's connection, once (for health checks).
#[derive(Clone)]
struct Direct(Arc<Connection>);

impl tower::Service<http::Request<tonic::body::Body>> for Direct {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::codegen::StdError;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let connection = self.0.clone();
        Box::pin(async move {
            let unavailable = |e: &dyn std::fmt::Display| {
                Box::new(tonic::Status::from(crate::Error::unavailable(
                    e.to_string(),
                )))
            };
            let ready = connection.ready().await.map_err(|e| unavailable(&e))?;
            let response = ready.send(request).await.map_err(|e| unavailable(&e))?;
            Ok(response.map(tonic::body::Body::new))
        })
    }
}

/// The order in which one call tries the replicas: each once, healthy ones
/// (as they were when the call started) first.
pub struct Order {
    members: Members,
    start: usize,
    healthy: u64,
    step: usize,
}

impl Iterator for Order {
    type Item = Arc<Replica>;

    fn next(&mut self) -> Option<Arc<Replica>> {
        let n = self.members.len();
        // Steps 0..n visit the healthy ones, n..2n the others.
        while self.step < 2 * n {
            let pass_healthy = self.step < n;
            let index = (self.start + self.step % n) % n;
            self.step += 1;
            if ((self.healthy >> index) & 1 == 1) == pass_healthy {
                return self.members.get(index).cloned();
            }
        }
        None
    }
}

/// A request body sent whole, and again on a retry: a gRPC request with
/// one message, already in memory.
#[derive(Clone, Debug, Default)]
pub struct Replayable(pub Option<bytes::Bytes>);

impl http_body::Body for Replayable {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        Poll::Ready(self.0.take().map(|data| Ok(http_body::Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::Caller;

    fn set_of(urls: &[String]) -> Arc<ReplicaSet> {
        let tls = Arc::new(crate::TlsParts::new(&Default::default()));
        let dialer = Dialer::new(tls, Caller::Gateway, Caller::Identity, CHECK_TIMEOUT);
        ReplicaSet::new(ServiceName::Identity, urls, &dialer).unwrap()
    }

    fn set(n: usize) -> Arc<ReplicaSet> {
        let urls: Vec<String> = (0..n)
            .map(|i| format!("https://127.0.0.1:{}", 1000 + i))
            .collect();
        set_of(&urls)
    }

    /// Replica `index` of `set` (in configured order).
    fn nth(set: &ReplicaSet, index: usize) -> Arc<Replica> {
        set.members.read()[index].clone()
    }

    fn index_of(set: &ReplicaSet, replica: &Arc<Replica>) -> usize {
        set.members
            .read()
            .iter()
            .position(|r| Arc::ptr_eq(r, replica))
            .unwrap()
    }

    /// The replica each of `calls` calls would go to first.
    fn firsts(set: &Arc<ReplicaSet>, calls: usize) -> Vec<usize> {
        (0..calls)
            .map(|_| index_of(set, &set.order().next().unwrap()))
            .collect()
    }

    #[test]
    fn calls_go_round_robin_over_healthy_replicas() {
        let set = set(3);
        assert_eq!(firsts(&set, 6), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn an_ejected_replica_gets_no_calls_and_a_passed_check_brings_it_back() {
        let set = set(3);
        nth(&set, 1).eject(&"connection refused");
        let firsts = firsts(&set, 30);
        assert!(!firsts.contains(&1), "{firsts:?}");
        // The load stays spread over the other two.
        let zeros = firsts.iter().filter(|&&i| i == 0).count();
        assert!((10..=20).contains(&zeros), "{firsts:?}");
        assert!(!set.status()[1].healthy);

        nth(&set, 1).set_healthy(true, "");
        assert!(super::tests::firsts(&set, 3).contains(&1));
        assert!(set.status().iter().all(|r| r.healthy));
    }

    #[test]
    fn a_retry_tries_every_other_replica_once_healthy_ones_first() {
        let set = set(4);
        nth(&set, 0).eject(&"down");
        nth(&set, 2).set_healthy(false, "NOT_SERVING");
        for _ in 0..8 {
            let order: Vec<usize> = set.order().map(|r| index_of(&set, &r)).collect();
            assert_eq!(order.len(), 4, "{order:?}");
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2, 3], "each once: {order:?}");
            let (healthy, ejected) = order.split_at(2);
            assert!(healthy.iter().all(|i| [1, 3].contains(i)), "{order:?}");
            assert!(ejected.iter().all(|i| [0, 2].contains(i)), "{order:?}");
        }
    }

    #[test]
    fn when_no_replica_is_healthy_every_one_is_still_tried() {
        let set = set(2);
        nth(&set, 0).eject(&"down");
        nth(&set, 1).eject(&"down");
        assert_eq!(set.order().count(), 2);
        // Still spread round-robin, not always the first.
        let firsts = firsts(&set, 4);
        assert!(firsts.contains(&0) && firsts.contains(&1), "{firsts:?}");
    }

    #[test]
    fn a_single_replica_is_always_tried() {
        let set = set(1);
        assert_eq!(set.order().count(), 1);
        nth(&set, 0).eject(&"down");
        assert_eq!(set.order().count(), 1);
    }

    #[test]
    fn the_list_of_urls_is_checked() {
        let tls = Arc::new(crate::TlsParts::new(&Default::default()));
        let dialer = Dialer::new(tls, Caller::Gateway, Caller::Identity, CHECK_TIMEOUT);
        for urls in [
            vec![],
            vec!["no url".to_owned()],
            vec!["https://identity".to_owned()],
            (0..=MAX_REPLICAS)
                .map(|i| format!("https://10.0.0.1:{}", 2000 + i))
                .collect(),
        ] {
            let error = ReplicaSet::new(ServiceName::Account, &urls, &dialer)
                .err()
                .unwrap();
            assert_eq!(error.setting, "account.url", "{urls:?}");
        }
    }

    fn addresses(list: &[&str]) -> Option<Vec<SocketAddr>> {
        Some(list.iter().map(|a| a.parse().unwrap()).collect())
    }

    /// A host name stands for every address it resolves to: new addresses
    /// join, vanished ones leave (retired, so their checks stop), kept ones
    /// keep their connection and health, and a failed lookup changes
    /// nothing. Addresses in the configuration stay as they are.
    #[test]
    fn a_host_name_stands_for_the_addresses_it_resolves_to() {
        let set = set_of(&[
            "https://identity:50061".to_owned(),
            "https://10.0.0.9:50061".to_owned(),
        ]);
        let authorities = |set: &ReplicaSet| -> Vec<String> {
            set.status().into_iter().map(|s| s.authority).collect()
        };
        assert_eq!(authorities(&set), ["identity:50061", "10.0.0.9:50061"]);
        let unresolved = nth(&set, 0);

        let added = set.update(&[addresses(&["10.1.0.1:50061", "10.1.0.2:50061"]), None]);
        assert_eq!(added.len(), 2);
        assert_eq!(
            authorities(&set),
            ["10.1.0.1:50061", "10.1.0.2:50061", "10.0.0.9:50061"]
        );
        assert!(unresolved.retired.load(Ordering::Relaxed));
        let kept = nth(&set, 1);
        kept.eject(&"down");

        // One pod replaced by another; the lookup of the address is ignored.
        let added = set.update(&[
            addresses(&["10.1.0.2:50061", "10.1.0.3:50061"]),
            addresses(&["10.9.9.9:1"]),
        ]);
        assert_eq!(added.len(), 1);
        assert_eq!(
            authorities(&set),
            ["10.1.0.2:50061", "10.1.0.3:50061", "10.0.0.9:50061"]
        );
        assert!(Arc::ptr_eq(&nth(&set, 0), &kept), "kept as it was");
        assert!(!set.status()[0].healthy);

        // DNS trouble: nothing changes.
        assert!(set.update(&[None, None]).is_empty());
        assert!(set.update(&[Some(Vec::new()), None]).is_empty());
        assert_eq!(set.status().len(), 3);
        assert!(
            set.update(&[addresses(&["10.1.0.2:50061", "10.1.0.3:50061"]), None])
                .is_empty()
        );
    }
}
