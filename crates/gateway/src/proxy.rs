//! Routing by gRPC method, the decision, and forwarding of raw HTTP/2 bytes.
//!
//! Per call, in order and why:
//! 1. route lookup: unknown methods, methods without a rule and INTERNAL
//!    services are UNIMPLEMENTED (default deny, no existence leak);
//! 2. client address (TCP peer or trusted proxies' `x-forwarded-for`);
//! 3. per-address rate limit on rate-limited PUBLIC methods — before any
//!    work, so floods stay cheap;
//! 4. credential (cached JWT or API token) and the policy decision;
//! 5. per-user rate limit, then a slot in the upstream's concurrency limit;
//! 6. client `x-tenancy-*` stripped, the signed principal added, bytes
//!    forwarded; the access line is written when the trailers pass.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use http_body::{Body as HttpBody, Frame};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tenancy_proto::auth::Audience;
use tenancy_runtime::config::{ConfigError, ServiceName};
use tenancy_runtime::metrics::{Call as CallMetrics, GrpcServerLayer, GrpcServerService};
use tenancy_runtime::principal::{Call, CallIds, PrincipalKey, strip_reserved};
use tenancy_runtime::replicas::ReplicaSet;
use tenancy_runtime::server::{Undecodable, UndecodableLayer};
use tenancy_runtime::shutdown::Shutdown;
use tenancy_runtime::telemetry::ServerCall;
use tenancy_runtime::tls::PublicTls;
use tenancy_runtime::upstream::{Dialer, UpstreamBody};
use tenancy_runtime::{Context, Error, Reason, clock::SharedClock};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tower::ServiceExt as _;

use crate::client_ip::client_ip;
use crate::connections::{Activity, Closed, ConnectionLimits, Slot, Tracked};
use crate::credentials::Authenticator;
use crate::id::Id;
use crate::in_flight::{Held, InFlight};
use crate::limits::RateLimits;
use crate::metrics::{Decisions, RouteCalls};
use crate::policy::{self, Credential, MethodPolicy};
use crate::state::{FastMap, LiveState};
use crate::usage::UsageRecorder;

/// gRPC services of the Tenancy protocol and the server that owns each.
const OWNERS: &[(&str, ServiceName)] = &[
    ("tenancy.identity.v1.IdentityService", ServiceName::Identity),
    ("tenancy.account.v1.AccountService", ServiceName::Account),
    ("tenancy.contacts.v1.ContactsService", ServiceName::Contacts),
    ("tenancy.support.v1.SupportService", ServiceName::Support),
    (
        "tenancy.support.v1.SupportStaffService",
        ServiceName::Support,
    ),
];

/// One service's replicas (health-checked, used round-robin among the
/// healthy ones: `tenancy_runtime::replicas`) and its concurrency limit.
struct Upstream {
    replicas: Arc<ReplicaSet>,
    slots: Arc<Semaphore>,
}

/// A routable method.
struct Route {
    policy: MethodPolicy,
    upstream: Arc<Upstream>,
    /// Server streams are decided again whenever the live state changes.
    server_streaming: bool,
    /// The method's gRPC metrics, when calls are recorded.
    calls: RouteCalls,
}

/// The gateway: routing table, decision state, upstream connections.
pub struct Gateway {
    routes: FastMap<String, Route>,
    pub(crate) state: Arc<LiveState>,
    pub(crate) authenticator: Arc<Authenticator>,
    limits: RateLimits,
    trusted_proxies: Vec<ipnet::IpNet>,
    key: PrincipalKey,
    pub(crate) clock: SharedClock,
    /// Uses of tokens and sessions, reported to identity in batches.
    pub(crate) usage: Arc<UsageRecorder>,
    /// Health and reflection, answered here.
    local: GrpcServerService<Undecodable<tonic::service::Routes>>,
    pub(crate) health: tonic_health::server::HealthReporter,
    request_ids: RequestIds,
    /// One id per signed principal: services refuse a repeated one.
    call_ids: CallIds,
    /// The public port's certificate; `None` serves plaintext.
    public_tls: Option<PublicTls>,
    /// The public port's connection limits.
    connections: Arc<ConnectionLimits>,
    /// Calls in flight per user (`gateway.max_calls_per_user`).
    users_in_flight: Arc<InFlight<Id>>,
    /// Calls in flight per account (`gateway.max_calls_per_account`).
    accounts_in_flight: Arc<InFlight<Id>>,
    /// Timeouts and keepalive of public connections.
    connection_config: tenancy_runtime::config::GatewayConfig,
    decisions: Decisions,
    /// The metrics of paths that are no route.
    unknown_calls: RouteCalls,
}

/// Request ids: a random per-process prefix and a counter. Unique across
/// gateways and restarts without a random draw (a syscall) per call.
struct RequestIds {
    prefix: String,
    next: std::sync::atomic::AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        Self {
            prefix: uuid::Uuid::new_v4().simple().to_string()[..16].to_owned(),
            next: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn next(&self) -> String {
        format!(
            "{}-{:x}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

impl Gateway {
    /// The live state it decides from (sync state and sizes, for the
    /// growth benchmark and diagnostics).
    pub fn state(&self) -> &Arc<LiveState> {
        &self.state
    }

    /// Its token caches (the growth benchmark fills them).
    pub fn authenticator(&self) -> &Arc<Authenticator> {
        &self.authenticator
    }

    /// A gateway forwarding to `upstreams` (service → URLs) and asking
    /// identity at `identity` for keys and API tokens.
    pub fn new(
        context: &Context,
        upstreams: &[(ServiceName, Vec<String>)],
        identity: tenancy_runtime::Channel,
    ) -> Result<Self, ConfigError> {
        let config = &context.config;
        // The gateway's certificate, checked now rather than at the first
        // call.
        context
            .part_tls()
            .map_err(|e| ConfigError::new(e.setting, e.message))?;
        let public_tls = public_tls(config)?;
        let mut by_service = HashMap::new();
        for (name, urls) in upstreams {
            let dialer = Dialer::new(
                context.tls.clone(),
                context.part,
                name.caller(),
                UPSTREAM_CONNECT_TIMEOUT,
            );
            by_service.insert(
                *name,
                Arc::new(Upstream {
                    replicas: ReplicaSet::new(*name, urls, &dialer)?,
                    slots: Arc::new(Semaphore::new(config.gateway.upstream_concurrency.max(1))),
                }),
            );
        }
        let mut routes = FastMap::default();
        for method in context.rules.methods() {
            let Some(owner) = OWNERS
                .iter()
                .find(|(s, _)| *s == method.service)
                .map(|(_, o)| o)
            else {
                continue;
            };
            let (Some(rule), Some(upstream)) = (method.rule.clone(), by_service.get(owner)) else {
                continue;
            };
            if matches!(rule.audience(), Audience::Internal | Audience::Unspecified) {
                continue;
            }
            let name = method.path.rsplit('/').next().unwrap_or_default();
            routes.insert(
                method.path.clone(),
                Route {
                    policy: MethodPolicy::new(name, rule),
                    upstream: upstream.clone(),
                    server_streaming: method.server_streaming,
                    calls: RouteCalls::of(&context.metrics, &method.path),
                },
            );
        }
        let (health, health_service) = tonic_health::server::health_reporter();
        let (reflection_v1, reflection_v1alpha) =
            tenancy_runtime::server::reflection(tenancy_proto::PUBLIC_SERVICES)
                .map_err(|e| ConfigError::new("gateway", e))?;
        let local = tonic::service::Routes::new(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        // What the gateway decodes itself answers undecodable requests as
        // the services do.
        let local = tower::Layer::layer(
            &GrpcServerLayer::new(&context.metrics, "gateway", Some(config.request_timeout)),
            tower::Layer::layer(&UndecodableLayer, local),
        );
        let authenticator = Authenticator::new(
            &config.auth.issuer,
            &config.auth.audience,
            identity,
            context.service_auth(),
            crate::credentials::Signer {
                key: context.key.clone(),
                clock: context.clock.clone(),
                ids: CallIds::default(),
            },
        )
        .measured(&context.metrics)
        .caching_at_most(config.gateway.max_cached_tokens);
        let limits = RateLimits::new(&config.gateway).measured(&context.metrics);
        let authenticator = authenticator
            .limiting_failures(&config.gateway, limits.refused().api_token_failures.clone());
        let authenticator = Arc::new(authenticator);
        let cached = Arc::downgrade(&authenticator);
        crate::metrics::TokenCache::entries(&context.metrics, move || {
            cached.upgrade().map(|a| a.cached())
        });
        Ok(Self {
            routes,
            state: Arc::new(LiveState::default()),
            authenticator,
            limits,
            trusted_proxies: config.gateway.trusted_proxies.clone(),
            key: context.key.clone(),
            clock: context.clock.clone(),
            usage: Arc::new(UsageRecorder::default()),
            local,
            health,
            request_ids: RequestIds::new(),
            call_ids: CallIds::default(),
            public_tls,
            connections: ConnectionLimits::new(&config.gateway, &context.metrics),
            users_in_flight: InFlight::new(config.gateway.max_calls_per_user),
            accounts_in_flight: InFlight::new(config.gateway.max_calls_per_account),
            connection_config: config.gateway.clone(),
            decisions: Decisions::new(&context.metrics),
            unknown_calls: RouteCalls::of(&context.metrics, ""),
        })
    }

    /// Accepts HTTP/2 connections (over TLS when the public port has a
    /// certificate) until `shutdown`, within the connection limits
    /// ([`crate::connections`]), then lets in-flight calls finish.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: Shutdown,
    ) -> Result<(), Error> {
        let config = self.connection_config.clone();
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .max_header_list_size(64 * 1024)
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Some(config.keepalive_interval))
            .keep_alive_timeout(config.keepalive_timeout);
        // Each connection's task holds a sender: when all are gone, every
        // connection has ended.
        let (alive, mut all_ended) = tokio::sync::mpsc::channel::<()>(1);
        let stop = shutdown.clone().wait();
        tokio::pin!(stop);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        continue;
                    }
                },
                () = &mut stop => break,
            };
            let Ok(slot) = self.connections.admit(peer.ip()) else {
                // Over a limit: closed before any TLS (counted).
                continue;
            };
            let _ = stream.set_nodelay(true);
            let activity = Activity::new();
            let gateway = self.clone();
            let calls = activity.clone();
            let service = hyper::service::service_fn(move |request| {
                let gateway = gateway.clone();
                let call = calls.call();
                async move {
                    let response = gateway.handle(request, peer).await;
                    Ok::<_, Infallible>(
                        response.map(|inner| Body::new(Tracked { inner, _call: call })),
                    )
                }
            });
            let connection = Connection {
                builder: builder.clone(),
                activity,
                limits: self.connections.clone(),
                config: config.clone(),
                shutdown: shutdown.clone(),
                _slot: slot,
                _alive: alive.clone(),
            };
            let gateway = self.clone();
            // The handshake runs in the connection's task: a slow client
            // delays nobody else.
            tokio::spawn(async move {
                match &gateway.public_tls {
                    Some(tls) => {
                        let handshake =
                            tokio::time::timeout(config.handshake_timeout, tls.accept(stream));
                        match handshake.await {
                            Ok(Ok(stream)) => connection.drive(stream, service).await,
                            Ok(Err(error)) => {
                                tracing::debug!(%peer, %error, "TLS handshake failed");
                            }
                            Err(_) => connection.limits.closed(Closed::HandshakeTimeout),
                        }
                    }
                    None => connection.drive(stream, service).await,
                }
            });
        }
        // Streams through the gateway never end by themselves: after the
        // grace period the rest are cut off.
        drop(alive);
        if tokio::time::timeout(tenancy_runtime::server::SHUTDOWN_GRACE, all_ended.recv())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace period over; cutting remaining calls");
        }
        Ok(())
    }

    async fn handle(
        &self,
        request: http::Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> http::Response<Body> {
        let path = request.uri().path();
        let service = path.split('/').nth(1).unwrap_or_default();
        if service == "grpc.health.v1.Health" || service.starts_with("grpc.reflection.") {
            return match self.local.clone().oneshot(request.map(Body::new)).await {
                Ok(response) => response.map(Body::new),
                Err(never) => match never {},
            };
        }
        let started = Instant::now();
        let route = self.routes.get_key_value(path);
        let calls = route.map_or(&self.unknown_calls, |(_, r)| &r.calls);
        let ip = client_ip(
            peer.ip(),
            request
                .headers()
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok()),
            &self.trusted_proxies,
        );
        let request_id = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
            .map_or_else(|| self.request_ids.next(), str::to_owned);
        // The call in the client's trace (its `traceparent` the parent),
        // passed on to the service (in `admit`); a span only when spans are
        // exported.
        let call = ServerCall::start(path, "gateway", &request_id, request.headers());
        let log = AccessLog {
            method: path.to_owned(),
            trace_id: call.trace_id(),
            ip,
            request_id: request_id.clone(),
            user: String::new(),
            started,
            call: calls.server.as_ref().map(|m| m.start_at(started)),
            upstream: None,
        };
        // Unique per call: sent as a never-indexed HPACK literal, as
        // indexing it would only churn the client's header table.
        let echoed = http::HeaderValue::from_str(&log.request_id)
            .ok()
            .map(|mut id| {
                id.set_sensitive(true);
                id
            });
        let decided = async {
            match self.admit(route, request, ip, request_id, &call).await {
                Ok((request, permit, user, stream)) => {
                    call.record_user(&user);
                    self.decisions.allowed();
                    let log = AccessLog {
                        user,
                        upstream: calls.client.as_ref().map(|m| m.start()),
                        ..log
                    };
                    self.forward(request, permit, log, stream, &call).await
                }
                Err(error) => {
                    self.decisions.refused(&error);
                    log.finish(error.code() as i32);
                    tonic::Status::from(error).into_http()
                }
            }
        };
        let mut response = call.instrument(decided).await;
        // The client can quote it when reporting a problem.
        if let Some(id) = echoed {
            response.headers_mut().insert("x-request-id", id);
        }
        response
    }

    /// Decides the call; on success returns the request to forward (with
    /// its signed principal) and the upstream slot it holds.
    async fn admit(
        &self,
        route: Option<(&String, &Route)>,
        mut request: http::Request<hyper::body::Incoming>,
        ip: std::net::IpAddr,
        request_id: String,
        call: &ServerCall,
    ) -> Result<
        (
            http::Request<hyper::body::Incoming>,
            (Slots, Arc<ReplicaSet>),
            String,
            Option<OpenStreamGuard>,
        ),
        Error,
    > {
        let path = request.uri().path();
        let Some((method, route)) = route else {
            return Err(Error::new(
                Reason::MethodUnknown,
                format!("unknown method {path}"),
            ));
        };
        let now = self.clock.now().millis();
        let public = route.policy.rule.audience() == Audience::Public;
        if public && route.policy.rule.rate_limited {
            self.limits.check_public(ip)?;
        }
        let credential = if public {
            None
        } else {
            self.authenticator
                .authenticate(request.headers().get(http::header::AUTHORIZATION), ip, now)
                .await?
        };
        let mut principal =
            policy::decide(&route.policy, credential.as_ref(), &self.state, ip, now)?;
        let user = principal.user_id.clone().unwrap_or_default();
        if let Some(credential) = &credential {
            self.limits.check_principal(credential.user())?;
            self.usage.record(
                credential,
                ip,
                request.headers().get(http::header::USER_AGENT),
                now,
            );
        }
        // One customer's calls cannot take every upstream slot.
        let callers = match &credential {
            Some(credential) => self.hold_caller_slots(credential, &principal)?,
            None => CallerSlots::default(),
        };
        let stream = match (&credential, route.server_streaming) {
            (Some(credential), true) => {
                let (id, ended) = self
                    .state
                    .streams
                    .open(route.policy.clone(), *credential, ip);
                Some(OpenStreamGuard {
                    id,
                    ended,
                    state: self.state.clone(),
                })
            }
            _ => None,
        };
        let permit = route
            .upstream
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                self.limits.refused().upstream.inc();
                Error::throttled(Reason::UpstreamBusy, std::time::Duration::from_millis(100))
            })?;
        let replicas = route.upstream.replicas.clone();

        principal.request_id = request_id;
        let headers = request.headers_mut();
        principal.user_agent = headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        // Credentials stay at the gateway: services trust the principal.
        headers.remove(http::header::AUTHORIZATION);
        strip_reserved(headers);
        // The service's span is a child of this call.
        call.inject(headers);
        // Good for this one call of this method only.
        self.key
            .sign(
                &principal,
                Call {
                    method,
                    id: self.call_ids.next(),
                },
                self.clock.now(),
            )
            .insert_into(headers);
        let slots = Slots {
            _upstream: permit,
            _callers: callers,
        };
        Ok((request, (slots, replicas), user, stream))
    }

    /// Sends the call to the next healthy replica; one that cannot be
    /// reached (nothing sent) is ejected and the next one tried. A call that
    /// went out is never sent twice: its body is streamed from the client.
    async fn forward(
        &self,
        request: http::Request<hyper::body::Incoming>,
        (permit, replicas): (Slots, Arc<ReplicaSet>),
        log: AccessLog,
        stream: Option<OpenStreamGuard>,
        call: &ServerCall,
    ) -> http::Response<Body> {
        let mut ready = None;
        for replica in replicas.order() {
            match replica.connection().ready().await {
                Ok(sender) => {
                    replica.note_sent();
                    ready = Some((replica, sender));
                    break;
                }
                Err(error) => replica.eject(&error),
            }
        }
        let Some((replica, ready)) = ready else {
            log.span(call).in_scope(|| {
                tracing::warn!(
                    service = replicas.service().as_str(),
                    "no upstream replica reachable"
                );
            });
            let error = Error::unavailable("the service is unavailable; retry");
            log.finish(error.code() as i32);
            return tonic::Status::from(error).into_http();
        };
        match ready.send(request).await {
            Ok(response) => {
                // Trailers-only responses carry the status in the headers.
                let header_status = grpc_status(response.headers());
                response.map(|incoming| {
                    Body::new(Observed {
                        inner: incoming,
                        log: Some(log),
                        status: header_status,
                        stream,
                        ended: false,
                        _permit: permit,
                    })
                })
            }
            Err(failure) => {
                log.span(call).in_scope(|| {
                    tracing::warn!(%failure, upstream = %replica.connection().authority(), "upstream call failed");
                });
                if failure.is_transport() {
                    replica.eject(&failure);
                }
                let error = Error::unavailable("the service is unavailable; retry");
                log.finish(error.code() as i32);
                tonic::Status::from(error).into_http()
            }
        }
    }
}

/// Longest wait for a replica to accept a connection: one that drops
/// packets must not hold callers until the kernel gives up on the SYN
/// (minutes). The call then goes to the next replica, and the one that
/// did not answer is out of rotation until a health check passes.
const UPSTREAM_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The public port's TLS: a certificate from files, or plaintext, which is
/// refused on a non-loopback address unless explicitly allowed.
fn public_tls(config: &tenancy_runtime::config::Config) -> Result<Option<PublicTls>, ConfigError> {
    let interval = config.tls.reload_interval();
    let config = &config.gateway;
    match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => PublicTls::load(cert, key, interval)
            .map(Some)
            .map_err(|e| ConfigError::new("gateway.tls_cert_file", e)),
        (Some(_), None) => Err(ConfigError::new(
            "gateway.tls_key_file",
            "required with gateway.tls_cert_file",
        )),
        (None, Some(_)) => Err(ConfigError::new(
            "gateway.tls_cert_file",
            "required with gateway.tls_key_file",
        )),
        (None, None) if config.listen.ip().is_loopback() || config.allow_plaintext => Ok(None),
        (None, None) => Err(ConfigError::new(
            "gateway.listen",
            format_args!(
                "{} is not a loopback address: set gateway.tls_cert_file and gateway.tls_key_file, or gateway.allow_plaintext = true behind a TLS-terminating load balancer",
                config.listen
            ),
        )),
    }
}

impl Gateway {
    /// Places for one more call of the caller's user and of the account
    /// the principal passes on (if any), or RESOURCE_EXHAUSTED
    /// `CONCURRENCY_LIMITED` naming the limit. Keyed by the 16-byte ids of
    /// the credential: nothing is allocated on this path.
    fn hold_caller_slots(
        &self,
        credential: &Credential,
        principal: &tenancy_runtime::Principal,
    ) -> Result<CallerSlots, Error> {
        let refused = |limit: &str| {
            Error::throttled(
                Reason::ConcurrencyLimited,
                std::time::Duration::from_secs(1),
            )
            .with_metadata("limit", limit)
        };
        let user = self
            .users_in_flight
            .enter(credential.user())
            .ok_or_else(|| {
                self.limits.refused().user_concurrency.inc();
                refused("user")
            })?;
        // The principal names the credential's account only while the
        // caller may act in it (policy::decide); then it counts there.
        let account = match principal.account_id.as_ref().and(credential.account()) {
            Some(account) => Some(self.accounts_in_flight.enter(account).ok_or_else(|| {
                self.limits.refused().account_concurrency.inc();
                refused("account")
            })?),
            None => None,
        };
        Ok(CallerSlots {
            _user: Some(user),
            _account: account,
        })
    }

    pub(crate) fn limits_prune(&self) {
        self.limits.prune();
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// What a forwarded call holds until its response ends: its upstream slot
/// and its places among its user's and account's calls in flight.
struct Slots {
    _upstream: OwnedSemaphorePermit,
    _callers: CallerSlots,
}

/// A call's places among its user's and its account's calls in flight.
#[derive(Default)]
struct CallerSlots {
    _user: Option<Held<Id>>,
    _account: Option<Held<Id>>,
}

/// One admitted public connection and what it needs to be served.
struct Connection {
    builder: hyper::server::conn::http2::Builder<TokioExecutor>,
    activity: Arc<Activity>,
    limits: Arc<ConnectionLimits>,
    config: tenancy_runtime::config::GatewayConfig,
    shutdown: Shutdown,
    /// Its place among the connection limits, freed when it ends.
    _slot: Slot,
    /// Held until it ends (see `serve`).
    _alive: tokio::sync::mpsc::Sender<()>,
}

impl Connection {
    /// Serves HTTP/2 on `io` until the client closes, the gateway shuts
    /// down, or the connection stays without a call past its limits
    /// ([`crate::connections::idle`]). Shutdown and the idle timeout end it
    /// gracefully (GOAWAY, calls in flight finish); a connection that never
    /// called is closed outright at the handshake timeout.
    async fn drive<I, S>(self, io: I, service: S)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        S: hyper::service::HttpService<hyper::body::Incoming, ResBody = Body> + Send,
        S::Future: Send + 'static,
    {
        let connection = self.builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let stop = self.shutdown.clone().wait();
        tokio::pin!(stop);
        let idle = crate::connections::idle(
            &self.activity,
            self.config.handshake_timeout,
            self.config.idle_timeout,
        );
        tokio::pin!(idle);
        let mut closing = false;
        loop {
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(error) = served {
                        tracing::debug!(%error, "connection ended");
                    }
                    return;
                }
                () = &mut stop, if !closing => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                why = &mut idle, if !closing => {
                    self.limits.closed(why);
                    if why == Closed::HandshakeTimeout {
                        // It never called: nothing to finish, and one that
                        // has not even sent the preface would not read a
                        // GOAWAY. Dropping it closes the socket.
                        return;
                    }
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// The access line of one call: method, principal, address, code, latency.
/// Never a token. Ends the call's gRPC metrics too: as served, and as
/// forwarded (`upstream`, once it was).
struct AccessLog {
    method: String,
    /// The call's trace id.
    trace_id: String,
    ip: std::net::IpAddr,
    request_id: String,
    user: String,
    started: Instant,
    call: Option<CallMetrics>,
    upstream: Option<CallMetrics>,
}

impl AccessLog {
    /// The span a warning about this call is written in (see
    /// [`ServerCall::log_span`]).
    fn span(&self, call: &ServerCall) -> tracing::Span {
        call.log_span(&self.user)
    }

    fn finish(mut self, code: i32) {
        let grpc_code = tonic::Code::from_i32(code);
        for call in [self.call.take(), self.upstream.take()]
            .into_iter()
            .flatten()
        {
            call.end(grpc_code);
        }
        tracing::info!(
            target: "tenancy_gateway::access",
            method = %self.method,
            user = %self.user,
            ip = %self.ip,
            request_id = %self.request_id,
            trace_id = %self.trace_id,
            code,
            latency_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "call"
        );
    }
}

/// An open server stream's registration: ended with a refusal when the
/// live state no longer allows it; forgotten when dropped.
struct OpenStreamGuard {
    id: u64,
    ended: tokio::sync::oneshot::Receiver<Error>,
    state: Arc<LiveState>,
}

impl Drop for OpenStreamGuard {
    fn drop(&mut self) {
        self.state.streams.close(self.id);
    }
}

/// The upstream's response body, passed through untouched; notes the
/// grpc-status from the trailers for the access line and releases the
/// upstream slot when the call ends. A server stream whose caller is no
/// longer allowed ends here with the refusal in its trailers (dropping the
/// upstream half cancels the call at the service).
struct Observed {
    inner: UpstreamBody,
    log: Option<AccessLog>,
    status: Option<i32>,
    stream: Option<OpenStreamGuard>,
    ended: bool,
    _permit: Slots,
}

impl HttpBody for Observed {
    type Data = hyper::body::Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.ended {
            if let Some(log) = self.log.take() {
                log.finish(self.status.unwrap_or(tonic::Code::Unknown as i32));
            }
            return Poll::Ready(None);
        }
        if let Some(guard) = self.stream.as_mut() {
            match Pin::new(&mut guard.ended).poll(cx) {
                Poll::Ready(Ok(error)) => {
                    self.ended = true;
                    self.stream = None;
                    let status = tonic::Status::from(error);
                    self.status = Some(status.code() as i32);
                    tracing::info!(code = ?status.code(), "stream ended: no longer allowed");
                    let mut trailers = status.into_http::<()>().into_parts().0.headers;
                    trailers.remove(http::header::CONTENT_TYPE);
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                // Registration gone (gateway shutting down): pass through.
                Poll::Ready(Err(_)) => self.stream = None,
                Poll::Pending => {}
            }
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    self.status = grpc_status(trailers).or(self.status);
                }
            }
            Poll::Ready(None) => {
                if let Some(log) = self.log.take() {
                    log.finish(self.status.unwrap_or(tonic::Code::Unknown as i32));
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        // A call the client abandoned still gets its access line.
        if let Some(log) = self.log.take() {
            log.finish(self.status.unwrap_or(tonic::Code::Cancelled as i32));
        }
    }
}
