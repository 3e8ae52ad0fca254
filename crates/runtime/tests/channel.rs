//! `runtime::Channel` over replicas that fail in every way a replica can,
//! over real HTTP/2 with mutual TLS on loopback: which calls go where,
//! which are sent again, which never are, and how replicas leave and
//! rejoin the rotation.
//!
//! The replicas are small scripted HTTP/2 servers (not our services): the
//! point is to make one answer UNAVAILABLE after it received a write, drop
//! the connection with a request in flight, refuse streams with a GOAWAY,
//! or accept connections and never answer, on demand. The services
//! themselves, several replicas each, are exercised end to end in
//! `tests/it/replicas.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tenancy_proto::identity::identity_internal_service_client::IdentityInternalServiceClient;
use tenancy_proto::identity::{BatchGetUsersRequest, EnsureUserRequest, RecordUsageRequest};
use tenancy_runtime::config::{Config, ServiceName, TlsConfig};
use tenancy_runtime::replicas::ReplicaStatus;
use tenancy_runtime::service::channel_to;
use tenancy_runtime::tls::Caller;
use tenancy_runtime::tls::dev::DevPki;
use tenancy_runtime::{Channel, TlsParts};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
const READ: &str = "/tenancy.identity.v1.IdentityInternalService/BatchGetUsers";
const WRITE: &str = "/tenancy.identity.v1.IdentityInternalService/RecordUsage";
/// A write idempotent by contract (`rules::IDEMPOTENT_WRITES`).
const IDEMPOTENT: &str = "/tenancy.identity.v1.IdentityInternalService/EnsureUser";

/// Longer than ejection takes (a check a second, one second to answer),
/// with room for a loaded machine.
const EJECTION_WITHIN: Duration = Duration::from_secs(5);

fn tls() -> Arc<TlsParts> {
    static TLS: OnceLock<Arc<TlsParts>> = OnceLock::new();
    TLS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!(
            "tenancy-channel-test-{}",
            uuid::Uuid::new_v4().simple()
        ));
        DevPki::open(&dir).unwrap().issue_all().unwrap();
        Arc::new(TlsParts::new(&TlsConfig {
            ca_file: Some(dir.join("ca.pem")),
            cert_file: Some(dir.join("{part}.pem").display().to_string()),
            key_file: Some(dir.join("{part}.key").display().to_string()),
            reload_interval: None,
        }))
    })
    .clone()
}

/// What a scripted replica does with calls (health checks aside).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    /// Answers OK with an empty message.
    Answer,
    /// Answers UNAVAILABLE (after receiving the call).
    Unavailable,
    /// Receives the call, then drops the connection without an answer.
    DropConnection,
    /// Sends GOAWAY letting no stream through, a moment after each
    /// connection's handshake: streams are refused unprocessed.
    GoAway,
    /// Accepts TCP connections and never answers (not even TLS).
    Silent,
}

struct Script {
    behaviour: Mutex<Behaviour>,
    serving: AtomicBool,
    /// Stops answering anything, on open connections too (as a stopped
    /// process): the next stream to arrive freezes its connection, new
    /// connections are held without a handshake.
    frozen: AtomicBool,
    /// Paths of the calls received (health checks not counted).
    received: Mutex<Vec<String>>,
}

/// A scripted replica of "identity" on loopback.
struct Replica {
    address: SocketAddr,
    script: Arc<Script>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Replica {
    async fn start(behaviour: Behaviour) -> Self {
        let script = Arc::new(Script {
            behaviour: Mutex::new(behaviour),
            serving: AtomicBool::new(true),
            frozen: AtomicBool::new(false),
            received: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut replica = Self {
            address,
            script,
            server: None,
        };
        replica.serve(listener);
        replica
    }

    fn serve(&mut self, listener: TcpListener) {
        let script = self.script.clone();
        self.server = Some(tokio::spawn(async move {
            // Dropped with this task: every connection ends with it.
            let mut connections = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                connections.spawn(serve_connection(tcp, script.clone()));
            }
        }));
    }

    /// Ends the listener and every connection, as a killed process does.
    async fn kill(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// Serves again on the same port.
    async fn restart(&mut self) {
        let listener = TcpListener::bind(self.address).await.unwrap();
        self.serve(listener);
    }

    fn freeze(&self) {
        self.script.frozen.store(true, Ordering::Relaxed);
    }

    fn set_serving(&self, serving: bool) {
        self.script.serving.store(serving, Ordering::Relaxed);
    }

    fn received(&self) -> Vec<String> {
        self.script.received.lock().clone()
    }

    fn url(&self) -> String {
        format!("https://{}", self.address)
    }
}

async fn serve_connection(tcp: tokio::net::TcpStream, script: Arc<Script>) {
    let behaviour = *script.behaviour.lock();
    if behaviour == Behaviour::Silent || script.frozen.load(Ordering::Relaxed) {
        let _held = tcp;
        return std::future::pending::<()>().await;
    }
    let tls = tls().part(Caller::Identity).unwrap();
    let Ok(stream) = tls.accept(tcp).await else {
        return;
    };
    let Ok(mut connection) = h2::server::handshake(stream).await else {
        return;
    };
    if behaviour == Behaviour::GoAway {
        // The client sends its streams meanwhile; none is accepted.
        tokio::time::sleep(Duration::from_millis(100)).await;
        connection.abrupt_shutdown(h2::Reason::NO_ERROR);
        let _ = poll_fn(|cx| connection.poll_closed(cx)).await;
        return;
    }
    while let Some(Ok((request, mut respond))) = connection.accept().await {
        if script.frozen.load(Ordering::Relaxed) {
            let _held = (connection, request, respond);
            return std::future::pending::<()>().await;
        }
        let path = request.uri().path().to_owned();
        if path == HEALTH_CHECK {
            // HealthCheckResponse { status: SERVING (1) or NOT_SERVING (2) }
            if script.serving.load(Ordering::Relaxed) {
                answer(&mut respond, &[0, 0, 0, 0, 2, 8, 1]);
            } else {
                answer(&mut respond, &[0, 0, 0, 0, 2, 8, 2]);
            }
            continue;
        }
        script.received.lock().push(path);
        match *script.behaviour.lock() {
            Behaviour::Answer => answer(&mut respond, &[0, 0, 0, 0, 0]),
            Behaviour::Unavailable => {
                let response = http::Response::builder()
                    .header("content-type", "application/grpc")
                    .header("grpc-status", "14")
                    .header("grpc-message", "scripted")
                    .body(())
                    .unwrap();
                let _ = respond.send_response(response, true);
            }
            Behaviour::DropConnection => return,
            Behaviour::GoAway | Behaviour::Silent => {}
        }
    }
}

/// An OK answer carrying `message` (a gRPC frame).
fn answer(respond: &mut h2::server::SendResponse<Bytes>, message: &'static [u8]) {
    let response = http::Response::builder()
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let Ok(mut send) = respond.send_response(response, false) else {
        return;
    };
    let _ = send.send_data(Bytes::from_static(message), false);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    let _ = send.send_trailers(trailers);
}

/// A channel from account to identity at `replicas`, as services build it.
fn channel(replicas: &[&Replica]) -> Channel {
    let mut config = Config::default();
    config.identity.url = Some(
        replicas
            .iter()
            .map(|r| r.url())
            .collect::<Vec<_>>()
            .join(","),
    );
    config.request_timeout = Duration::from_secs(10);
    channel_to(&config, &tls(), Caller::Account, ServiceName::Identity).unwrap()
}

type Client = IdentityInternalServiceClient<Channel>;

/// Two scripted replicas, a channel over them (round-robin starting at
/// the first) and a client on it.
async fn pair(first: Behaviour, second: Behaviour) -> (Replica, Replica, Channel, Client) {
    let a = Replica::start(first).await;
    let b = Replica::start(second).await;
    let channel = channel(&[&a, &b]);
    let client = Client::new(channel.clone());
    (a, b, channel, client)
}

async fn read(client: &mut Client) -> Result<(), tonic::Status> {
    client
        .batch_get_users(BatchGetUsersRequest::default())
        .await
        .map(drop)
}

async fn write(client: &mut Client) -> Result<(), tonic::Status> {
    client
        .record_usage(RecordUsageRequest::default())
        .await
        .map(drop)
}

async fn idempotent_write(client: &mut Client) -> Result<(), tonic::Status> {
    client
        .ensure_user(EnsureUserRequest::default())
        .await
        .map(drop)
}

/// Polls `channel`'s view of replica `index` until `healthy`, for at most
/// `limit`; returns how long it took.
async fn until_healthy(
    channel: &Channel,
    index: usize,
    healthy: bool,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let status: Vec<ReplicaStatus> = channel.replicas();
        if status[index].healthy == healthy {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "replica {index} not {} after {limit:?}: {status:?}",
            if healthy { "healthy" } else { "ejected" }
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn calls_are_spread_over_the_replicas() {
    let (a, b, _, mut client) = pair(Behaviour::Answer, Behaviour::Answer).await;
    for _ in 0..10 {
        read(&mut client).await.unwrap();
        write(&mut client).await.unwrap();
    }
    assert_eq!(a.received().len(), 10);
    assert_eq!(b.received().len(), 10);
}

/// A killed replica costs no call: a write that finds its port closed goes
/// to the other replica (nothing was sent), the dead one leaves the
/// rotation at once, and once it serves again it is back within a check
/// and gets calls again.
#[tokio::test]
async fn a_dead_replica_costs_no_call_and_rejoins_once_it_serves_again() {
    let (mut a, b, channel, mut client) = pair(Behaviour::Answer, Behaviour::Answer).await;
    write(&mut client).await.unwrap();
    write(&mut client).await.unwrap();
    assert_eq!((a.received().len(), b.received().len()), (1, 1));

    a.kill().await;
    // The client's connection task notices the closed connection (a call
    // already in flight in that instant would be lost, as with any kill).
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..20 {
        write(&mut client).await.unwrap();
    }
    assert_eq!(a.received().len(), 1);
    assert_eq!(b.received().len(), 21);
    assert!(!channel.replicas()[0].healthy, "{:?}", channel.replicas());

    a.restart().await;
    let back = until_healthy(&channel, 0, true, EJECTION_WITHIN).await;
    println!("restarted replica back in rotation after {back:?}");
    for _ in 0..20 {
        write(&mut client).await.unwrap();
    }
    // One call before the kill, then about half of twenty.
    let calls = a.received().len() - 1;
    assert!(calls >= 8, "{calls}: {:?}", channel.replicas());
}

/// A replica that answers NOT_SERVING leaves the rotation within a check
/// and gets no calls; SERVING again brings it back.
#[tokio::test]
async fn health_checks_take_a_replica_out_and_bring_it_back() {
    let (a, _b, channel, mut client) = pair(Behaviour::Answer, Behaviour::Answer).await;
    read(&mut client).await.unwrap();

    a.set_serving(false);
    let out = until_healthy(&channel, 0, false, EJECTION_WITHIN).await;
    println!("NOT_SERVING replica ejected after {out:?}");
    let before = a.received().len();
    for _ in 0..20 {
        read(&mut client).await.unwrap();
    }
    assert_eq!(a.received().len(), before, "an ejected replica got calls");

    a.set_serving(true);
    until_healthy(&channel, 0, true, EJECTION_WITHIN).await;
    for _ in 0..20 {
        read(&mut client).await.unwrap();
    }
    assert!(a.received().len() >= before + 8);
}

/// A one-shot channel (an operator's command) checks nothing in the
/// background: a replica answering NOT_SERVING stays in rotation, and the
/// calls still reach it.
#[tokio::test]
async fn a_one_shot_channel_runs_no_health_checks() {
    let a = Replica::start(Behaviour::Answer).await;
    a.set_serving(false);
    let channel = channel(&[&a]).one_shot();
    let mut client = Client::new(channel.clone());
    read(&mut client).await.unwrap();
    tokio::time::sleep(EJECTION_WITHIN).await;
    assert!(channel.replicas()[0].healthy, "{:?}", channel.replicas());
    read(&mut client).await.unwrap();
    assert_eq!(a.received().len(), 2);
}

/// When every replica is out of rotation, calls still try them all
/// rather than fail without trying.
#[tokio::test]
async fn with_no_healthy_replica_every_one_is_still_tried() {
    let (a, b, channel, mut client) = pair(Behaviour::Answer, Behaviour::Answer).await;
    read(&mut client).await.unwrap();
    a.set_serving(false);
    b.set_serving(false);
    until_healthy(&channel, 0, false, EJECTION_WITHIN).await;
    until_healthy(&channel, 1, false, EJECTION_WITHIN).await;
    for _ in 0..10 {
        read(&mut client).await.unwrap();
        write(&mut client).await.unwrap();
    }
    assert!(a.received().len() >= 5 && b.received().len() >= 5);
}

/// A read answered UNAVAILABLE is asked again of the other replica; a
/// write answered UNAVAILABLE reached a replica, so it is not.
#[tokio::test]
async fn unavailable_reads_are_asked_again_elsewhere_writes_never() {
    let (a, b, channel, mut client) = pair(Behaviour::Unavailable, Behaviour::Answer).await;

    // Round-robin starts at the first replica.
    read(&mut client).await.unwrap();
    assert_eq!(a.received(), [READ]);
    assert_eq!(b.received(), [READ]);

    // The next call starts at b; the one after at a again.
    write(&mut client).await.unwrap();
    let status = write(&mut client).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "scripted", "the replica's own answer");
    assert_eq!(a.received(), [READ, WRITE]);
    assert_eq!(b.received(), [READ, WRITE], "the write was sent again");
    // Answering is not being down: no ejection.
    assert!(channel.replicas()[0].healthy);
}

/// A connection lost after a call went out: a read is asked again
/// elsewhere, a write is not (the replica may have done it).
#[tokio::test]
async fn a_connection_lost_in_flight_repeats_reads_not_writes() {
    let (a, b, channel, mut client) = pair(Behaviour::DropConnection, Behaviour::Answer).await;

    let status = write(&mut client).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(a.received(), [WRITE]);
    assert!(b.received().is_empty(), "the write was sent again");
    assert!(!channel.replicas()[0].healthy, "a lost connection ejects");

    // Back in rotation (its checks pass), a read meets the same fate and
    // is answered by b.
    until_healthy(&channel, 0, true, EJECTION_WITHIN).await;
    let mut answered = 0;
    while a.received().len() < 2 {
        read(&mut client).await.unwrap();
        answered += 1;
        assert!(answered < 10, "no read reached a");
    }
    assert_eq!(a.received(), [WRITE, READ]);
    assert_eq!(b.received().len(), answered);
}

/// A write idempotent by contract (EnsureUser) is repeated like a read:
/// answered UNAVAILABLE, or its connection lost in flight, it is asked of
/// the other replica, so the change that needs it goes on (an invitation
/// failed SERVICE_UNAVAILABLE in the fault suite otherwise).
#[tokio::test]
async fn idempotent_writes_are_asked_again_elsewhere_like_reads() {
    let (a, b, _, mut client) = pair(Behaviour::Unavailable, Behaviour::Answer).await;
    idempotent_write(&mut client).await.unwrap();
    assert_eq!(a.received(), [IDEMPOTENT]);
    assert_eq!(
        b.received(),
        [IDEMPOTENT],
        "answered UNAVAILABLE, asked again"
    );

    let (c, d, _, mut client) = pair(Behaviour::DropConnection, Behaviour::Answer).await;
    idempotent_write(&mut client).await.unwrap();
    assert_eq!(c.received(), [IDEMPOTENT]);
    assert_eq!(d.received(), [IDEMPOTENT], "connection lost, asked again");
}

/// Streams a replica refuses unprocessed (GOAWAY) are safe to send again,
/// writes included.
#[tokio::test]
async fn streams_refused_unprocessed_are_sent_again_even_writes() {
    let (a, b, channel, mut client) = pair(Behaviour::GoAway, Behaviour::Answer).await;
    write(&mut client).await.unwrap();
    assert!(a.received().is_empty());
    assert_eq!(b.received(), [WRITE]);
    let status = channel.replicas();
    assert!(status[0].sent >= 1, "the write went to a first: {status:?}");
}

/// A replica that accepts connections and never answers holds a call for
/// the connect timeout (2 s) at most; the call then goes to the other
/// replica, and later calls skip the silent one without waiting.
#[tokio::test]
async fn a_silent_replica_delays_one_call_by_the_connect_timeout_then_none() {
    let (_a, b, channel, mut client) = pair(Behaviour::Silent, Behaviour::Answer).await;
    let started = Instant::now();
    write(&mut client).await.unwrap();
    let first = started.elapsed();
    assert!(
        first >= Duration::from_millis(1900) && first < Duration::from_secs(6),
        "{first:?}"
    );
    assert!(!channel.replicas()[0].healthy);
    let started = Instant::now();
    for _ in 0..10 {
        write(&mut client).await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(b.received().len(), 11);
    println!("first call {first:?}, ten more {:?}", started.elapsed());
}

/// Retries stay within the caller's deadline: with every replica silent,
/// a call with a 300 ms deadline ends then, not after a connect timeout
/// per replica.
#[tokio::test]
async fn retries_respect_the_callers_deadline() {
    let (_a, _b, _, mut client) = pair(Behaviour::Silent, Behaviour::Silent).await;
    let mut request = tonic::Request::new(RecordUsageRequest::default());
    request.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let status = client.record_usage(request).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(status.code(), tonic::Code::Cancelled, "{status:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

/// Calls waiting for the same silent replica's connection share one
/// connect timeout instead of queueing for one each.
#[tokio::test]
async fn calls_waiting_on_one_silent_replica_share_its_connect_timeout() {
    let a = Replica::start(Behaviour::Silent).await;
    let b = Replica::start(Behaviour::Answer).await;
    let channel = channel(&[&a, &b]);
    let started = Instant::now();
    let mut calls = JoinSet::new();
    for _ in 0..8 {
        let mut client = Client::new(channel.clone());
        calls.spawn(async move { write(&mut client).await });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap().unwrap();
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(b.received().len(), 8);
}

/// A URL naming a host stands for the addresses it resolves to (a
/// Kubernetes headless Service: one per ready pod), each a replica of its
/// own: here `localhost`, which resolves to the loopback address the
/// replica listens on (and maybe `::1`, where nothing listens: ejected).
#[tokio::test]
async fn a_host_name_is_resolved_into_one_replica_per_address() {
    let a = Replica::start(Behaviour::Answer).await;
    let mut config = Config::default();
    config.identity.url = Some(format!("https://localhost:{}", a.address.port()));
    let channel = channel_to(&config, &tls(), Caller::Account, ServiceName::Identity).unwrap();
    let mut client = Client::new(channel.clone());
    write(&mut client).await.unwrap();
    let resolved = format!("127.0.0.1:{}", a.address.port());
    let started = Instant::now();
    while !channel.replicas().iter().any(|r| r.authority == resolved) {
        assert!(
            started.elapsed() < EJECTION_WITHIN,
            "not resolved: {:?}",
            channel.replicas()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let replicas = channel.replicas();
    assert!(
        replicas
            .iter()
            .all(|r| !r.authority.starts_with("localhost")),
        "{replicas:?}"
    );
    for _ in 0..10 {
        write(&mut client).await.unwrap();
    }
    assert_eq!(a.received().len(), 11);
    let status = channel.replicas();
    let used = status.iter().find(|r| r.authority == resolved).unwrap();
    assert!(used.sent >= 10, "{status:?}");
}

/// A replica that stops answering with calls in flight on its connection
/// (a stopped process): those calls do not wait for their deadline (10 s
/// here). At the replica's second silent health check its connection is
/// closed: a read in flight is asked again of the other replica, a write
/// fails UNAVAILABLE (it may have arrived).
#[tokio::test]
async fn calls_stuck_on_a_replica_that_stopped_answering_end_at_its_second_silent_check() {
    let (a, b, channel, mut client) = pair(Behaviour::Answer, Behaviour::Answer).await;
    // Connections up, round-robin back at a.
    read(&mut client).await.unwrap();
    read(&mut client).await.unwrap();
    a.freeze();

    let started = Instant::now();
    read(&mut client).await.unwrap();
    let took = started.elapsed();
    println!("read stuck on a frozen replica answered by the other after {took:?}");
    assert!(took < Duration::from_secs(7), "{took:?}");
    assert_eq!(b.received(), [READ, READ]);
    assert!(!channel.replicas()[0].healthy);

    // The same for a write, on a fresh pair (a is out of rotation here).
    let (c, d, _, mut client) = pair(Behaviour::Answer, Behaviour::Answer).await;
    read(&mut client).await.unwrap();
    read(&mut client).await.unwrap();
    c.freeze();
    let started = Instant::now();
    let status = write(&mut client).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(took < Duration::from_secs(7), "{took:?}");
    assert_eq!(d.received(), [READ], "the write was sent again");
}
