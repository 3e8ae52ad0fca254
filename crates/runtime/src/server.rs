//! A Tenancy gRPC server: the service's routes plus what every server has.
//!
//! Layers, outermost first, and why they sit there:
//! 1. tonic's request timeout, so no handler outlives `request_timeout`
//!    (streams are bounded by their own deadline, not this one);
//! 2. the gRPC metrics ([`GrpcServerLayer`](crate::metrics::GrpcServerLayer)),
//!    so every call counts, refusals before any handler included;
//! 3. [`UndecodableLayer`], which turns tonic's own refusals of a request
//!    it could not decode (INTERNAL with the decoder's words, OUT_OF_RANGE
//!    for an oversize message) into the catalogue's INVALID_ARGUMENT
//!    `MESSAGE_MALFORMED` and RESOURCE_EXHAUSTED `MESSAGE_TOO_LARGE`;
//! 4. [`PrincipalLayer`], which decides who may call before any handler or
//!    database is touched: INTERNAL methods only the callers their rule
//!    names (as their mutual-TLS certificates name them), every other
//!    method only the gateway, with a valid principal signed for this method
//!    and never used before; it hands handlers the verified [`Principal`]
//!    in the request extensions;
//! 5. the routes: the service's own, health, and reflection (v1 and v1alpha,
//!    so grpcurl 1.8 works).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::error::Reason;
use tenancy_proto::auth::{Audience, Role};
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_health::ServingStatus;

use crate::clock::SharedClock;
use crate::error::Error;
use crate::principal::{
    PRINCIPAL_HEADER, Principal, PrincipalError, PrincipalKey, REQUEST_ID, REQUEST_ID_HEADER,
    ReplayCache, SIGNATURE_HEADER, Use, role_at_least,
};
use crate::rules::MethodRules;
use crate::tls::{Caller, PartTls, PeerInfo};

/// What a server needs besides its routes.
#[derive(Clone)]
pub struct ServerOptions {
    /// The longest a unary call may run.
    pub request_timeout: Duration,
    /// The key principals are signed with; without one, only PUBLIC calls
    /// are served.
    pub key: Option<PrincipalKey>,
    /// The method rules (which methods are PUBLIC, INTERNAL, …).
    pub rules: Arc<MethodRules>,
    /// The clock signatures are checked against.
    pub clock: SharedClock,
    /// This part's certificate: the server accepts only mutual-TLS clients
    /// with a certificate from the same CA.
    pub tls: Arc<PartTls>,
    /// Where to serve gRPC health alone, in plaintext, for probes that
    /// cannot do mutual TLS (Kubernetes).
    pub health_listen: Option<std::net::SocketAddr>,
    /// Where the server's gRPC metrics go.
    pub metrics: crate::metrics::Metrics,
}

/// Serves `routes` (whose gRPC service names are `service_names`) with
/// health, reflection and principal verification on `listener` until
/// `shutdown` resolves, then finishes in-flight calls.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    service_names: &[&str],
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    for name in service_names {
        health_reporter
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }
    let (reflection_v1, reflection_v1alpha) = reflection(service_names)?;

    let shutdown = futures::FutureExt::shared(shutdown);
    if let Some(address) = options.health_listen {
        serve_health(address, health_reporter.clone(), shutdown.clone()).await?;
    }
    let server = tonic::transport::Server::builder()
        .timeout(options.request_timeout)
        .layer(crate::metrics::GrpcServerLayer::new(
            &options.metrics,
            crate::tls::caller_name(options.tls.caller()),
            Some(options.request_timeout),
        ))
        .layer(UndecodableLayer)
        .layer(PrincipalLayer::new(&options))
        .add_routes(routes)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(options.tls.incoming(listener), shutdown.clone());
    // Graceful shutdown waits for in-flight calls, and a Watch stream never
    // ends by itself: after the grace period the rest are cut off (clients
    // resume their streams elsewhere).
    tokio::select! {
        served = server => served.map_err(Error::internal),
        () = async {
            shutdown.await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("shutdown grace period over; cutting remaining calls");
            Ok(())
        }
    }
}

/// Serves gRPC health alone on `address`, in plaintext, until `shutdown`,
/// answering what `reporter` reports.
pub async fn serve_health(
    address: std::net::SocketAddr,
    reporter: tonic_health::server::HealthReporter,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| Error::internal(format!("health_listen: cannot listen on {address}: {e}")))?;
    let service = tonic_health::pb::health_server::HealthServer::new(
        tonic_health::server::HealthService::from_health_reporter(reporter),
    );
    tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                shutdown,
            )
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, "health port stopped");
        }
    });
    Ok(())
}

/// How long in-flight calls may finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Reflection for `service_names` and health, in both protocol versions.
pub fn reflection(
    service_names: &[&str],
) -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    Error,
> {
    let files = served_descriptor_set(service_names)?;
    let builder = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(files)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health");
        for name in service_names {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    let v1 = builder().build_v1().map_err(Error::internal)?;
    let v1alpha = builder().build_v1alpha().map_err(Error::internal)?;
    Ok((v1, v1alpha))
}

/// [`descriptor_set_of`] the Tenancy protocol for `service_names`, made
/// once per distinct set of names (a handful per process) and kept.
fn served_descriptor_set(service_names: &[&str]) -> Result<&'static [u8], Error> {
    type Made = parking_lot::Mutex<HashMap<Vec<String>, &'static [u8]>>;
    static MADE: std::sync::OnceLock<Made> = std::sync::OnceLock::new();
    let key: Vec<String> = service_names.iter().map(|s| (*s).to_owned()).collect();
    let mut made = MADE.get_or_init(Made::default).lock();
    if let Some(files) = made.get(&key) {
        return Ok(files);
    }
    let files: &'static [u8] = Box::leak(
        descriptor_set_of(tenancy_proto::FILE_DESCRIPTOR_SET, service_names)?.into_boxed_slice(),
    );
    made.insert(key, files);
    Ok(files)
}

/// The files of an encoded `FileDescriptorSet` that define `service_names`,
/// and the error catalogue ([`tenancy_proto::ERRORS_FILE`]: every error
/// names one of its reasons), with those they import, transitively, as an
/// encoded set: what reflection describes. A server describes nothing else
/// (the gateway no internal service, nor a message only an internal service
/// uses). Files are kept byte for byte, custom options (the access rules
/// and the reasons' codes) included.
pub fn descriptor_set_of(set: &[u8], service_names: &[&str]) -> Result<Vec<u8>, Error> {
    use prost::Message as _;
    // A FileDescriptorSet is `repeated FileDescriptorProto file = 1`: walk
    // the entries on the wire, so unknown fields survive untouched.
    let mut files: Vec<(&[u8], prost_types::FileDescriptorProto)> = Vec::new();
    let mut rest = set;
    while !rest.is_empty() {
        let key = prost::encoding::decode_varint(&mut rest).map_err(Error::internal)?;
        let length = prost::encoding::decode_varint(&mut rest).map_err(Error::internal)?;
        let length = usize::try_from(length).map_err(Error::internal)?;
        if key != (1 << 3 | 2) || length > rest.len() {
            return Err(Error::internal("not an encoded FileDescriptorSet"));
        }
        let (file, tail) = rest.split_at(length);
        rest = tail;
        files.push((
            file,
            prost_types::FileDescriptorProto::decode(file).map_err(Error::internal)?,
        ));
    }
    let full_name = |file: &prost_types::FileDescriptorProto, service: &str| {
        format!("{}.{service}", file.package())
    };
    let mut wanted: Vec<&str> = files
        .iter()
        .filter(|(_, file)| {
            file.service
                .iter()
                .any(|s| service_names.contains(&full_name(file, s.name()).as_str()))
        })
        .map(|(_, file)| file.name())
        .collect();
    if files
        .iter()
        .any(|(_, file)| file.name() == tenancy_proto::ERRORS_FILE)
    {
        wanted.push(tenancy_proto::ERRORS_FILE);
    }
    let mut i = 0;
    while i < wanted.len() {
        if let Some((_, file)) = files.iter().find(|(_, f)| f.name() == wanted[i]) {
            for dependency in &file.dependency {
                if !wanted.contains(&dependency.as_str()) {
                    wanted.push(dependency);
                }
            }
        }
        i += 1;
    }
    let mut out = Vec::with_capacity(set.len());
    for (bytes, file) in &files {
        if wanted.contains(&file.name()) {
            prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut out);
            prost::encoding::encode_varint(bytes.len() as u64, &mut out);
            out.extend_from_slice(bytes);
        }
    }
    Ok(out)
}

/// Answers requests tonic could not decode as the catalogue says, not as
/// tonic does.
///
/// Tonic refuses a request message it cannot decode before any handler
/// runs: bad protobuf (prost's `DecodeError`), broken framing (a
/// compression flag without `grpc-encoding`, a truncated frame, no message
/// at all) as INTERNAL with the decoder's description, an oversize message
/// as OUT_OF_RANGE, an oversize decompressed one as RESOURCE_EXHAUSTED —
/// all client mistakes, none with an `ErrorInfo`. Those answers are
/// trailers-only responses (the status in the headers) without
/// `grpc-status-details-bin`; every answer of ours carries the details (the
/// one [`Error`] → `Status` mapping), so such a response with one of those
/// codes can only be tonic's. It becomes INVALID_ARGUMENT
/// `MESSAGE_MALFORMED` or RESOURCE_EXHAUSTED `MESSAGE_TOO_LARGE` with a
/// plain message; the decoder's words go to the debug log only. Every
/// server uses it ([`serve`]), the gateway for what it answers itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct UndecodableLayer;

impl<S> tower::Layer<S> for UndecodableLayer {
    type Service = Undecodable<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Undecodable { inner }
    }
}

/// The service [`UndecodableLayer`] wraps.
#[derive(Clone, Debug)]
pub struct Undecodable<S> {
    inner: S,
}

/// The refusal to send instead of tonic's answer in `headers`, if it is one
/// of tonic's refusals of an undecodable request.
fn undecodable(headers: &http::HeaderMap) -> Option<Error> {
    if headers.contains_key("grpc-status-details-bin") {
        return None;
    }
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from_i32)?;
    let error = match code {
        // The whole message is at fault: the violation names no field of
        // it, but the request itself.
        tonic::Code::Internal => Error::invalid(
            Reason::MessageMalformed,
            "request",
            "not a valid message of this method's request type",
        ),
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => Error::new(
            Reason::MessageTooLarge,
            "the request message is larger than this server accepts",
        ),
        _ => return None,
    };
    tracing::debug!(
        ?code,
        decoder = headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default(),
        "request not decoded"
    );
    Some(error)
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for Undecodable<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(match undecodable(response.headers()) {
                Some(error) => tonic::Status::from(error).into_http(),
                None => response,
            })
        })
    }
}

/// Verifies the forwarded principal of every call to a Tenancy method.
#[derive(Clone)]
pub struct PrincipalLayer {
    check: Arc<PrincipalCheck>,
}

impl PrincipalLayer {
    /// A layer checking against `options`.
    pub fn new(options: &ServerOptions) -> Self {
        Self {
            check: Arc::new(PrincipalCheck {
                part: crate::tls::caller_name(options.tls.caller()),
                key: options.key.clone(),
                rules: options.rules.clone(),
                clock: options.clock.clone(),
                replays: ReplayCache::default(),
            }),
        }
    }
}

impl<S> tower::Layer<S> for PrincipalLayer {
    type Service = PrincipalService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PrincipalService {
            inner,
            check: self.check.clone(),
        }
    }
}

struct PrincipalCheck {
    /// Who serves (for spans).
    part: &'static str,
    key: Option<PrincipalKey>,
    rules: Arc<MethodRules>,
    clock: SharedClock,
    replays: ReplayCache,
}

/// The request id a service-to-service call passes on, if it is sane.
fn request_id_of(headers: &http::HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

impl PrincipalCheck {
    /// `Ok(None)` for paths that are not Tenancy methods (health,
    /// reflection, unknown: tonic answers those itself).
    fn decide(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        peer: Option<&PeerInfo>,
    ) -> Result<Option<Principal>, Error> {
        let Some(method) = self.rules.method(path) else {
            return Ok(None);
        };
        let Some(rule) = method.rule.as_ref() else {
            return Err(Error::new(
                Reason::AccessRuleMissing,
                "method has no access rule",
            ));
        };
        let Some(caller) = peer.map(|p| p.caller) else {
            return Err(Error::new(
                Reason::CallerUnknown,
                "this server needs a client certificate",
            ));
        };
        let audience = rule.audience();
        if audience == Audience::Internal {
            // The caller is the one its certificate names; metadata claims
            // nothing here.
            if !rule.callers().any(|allowed| allowed == caller) {
                let name = crate::tls::caller_name(caller);
                return Err(Error::new(
                    Reason::CallerNotAllowed,
                    format!("{name} may not call this method"),
                )
                .with_metadata("caller", name));
            }
            let mut principal = Principal::service(request_id_of(headers));
            principal.caller = Some(caller);
            return Ok(Some(principal));
        }
        // Client calls reach services through the gateway only (and, but
        // for PUBLIC methods, from the operator's command line), so its
        // throttles and rate limits cannot be bypassed.
        let forwarder = caller == Caller::Gateway
            || (caller == Caller::Operator && audience != Audience::Public);
        if !forwarder {
            return Err(Error::new(
                Reason::GatewayOnly,
                "this method is served through the gateway only",
            ));
        }
        let now = self.clock.now();
        let verified = match &self.key {
            Some(key) => key.verify(
                headers.get(PRINCIPAL_HEADER).map(|v| v.as_bytes()),
                headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes()),
                now,
            ),
            None => Err(PrincipalError::Missing),
        };
        let verified = match verified {
            Ok(verified) => verified,
            Err(PrincipalError::Missing) => {
                return Err(Error::new(
                    Reason::PrincipalMissing,
                    "this method needs a caller verified by the gateway",
                ));
            }
            Err(e) => return Err(Error::new(Reason::PrincipalInvalid, e.to_string())),
        };
        if verified.method != path {
            return Err(Error::new(
                Reason::PrincipalWrongMethod,
                "the principal was signed for another method",
            ));
        }
        match self
            .replays
            .first_use(&verified.call_id, verified.expires_at_ms, now.millis())
        {
            Use::First => {}
            Use::Repeated => {
                return Err(Error::new(
                    Reason::PrincipalReplayed,
                    "the principal was used before",
                ));
            }
            Use::Full => {
                return Err(Error::unavailable(
                    "too many calls in flight to check for replays; retry",
                ));
            }
        }
        let principal = verified.principal;
        let denied = |reason, message| Err(Error::new(reason, message));
        match audience {
            Audience::Unspecified => {
                return denied(Reason::AccessRuleMissing, "method has no audience");
            }
            Audience::Public | Audience::Internal => {}
            _ if principal.user_id.is_none() => {
                return Err(Error::new(Reason::UserRequired, "this method needs a user"));
            }
            Audience::User => {}
            Audience::Staff if !principal.staff => {
                return denied(
                    Reason::StaffRequired,
                    "only the support team may call this method",
                );
            }
            Audience::Staff => {}
            Audience::Account => {
                let staff_ok = rule.staff_allowed && principal.staff;
                if !staff_ok {
                    if principal.account_id.is_none() {
                        return denied(Reason::AccountRequired, "select an account first");
                    }
                    if !role_at_least(principal.role, rule.min_role()) {
                        return Err(Error::role_too_low(
                            rule.min_role(),
                            "your role in this account does not allow this",
                        ));
                    }
                }
            }
        }
        Ok(Some(principal))
    }
}

/// The service [`PrincipalLayer`] wraps around the routes.
#[derive(Clone)]
pub struct PrincipalService<S> {
    inner: S,
    check: Arc<PrincipalCheck>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, ResBody> tower::Service<http::Request<B>> for PrincipalService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let decision = self.check.decide(
            &path,
            request.headers(),
            request.extensions().get::<PeerInfo>(),
        );
        // Take the service that was made ready, leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        match decision {
            Err(error) => {
                tracing::debug!(method = %path, reason = %error.reason, "refused");
                Box::pin(async move { Ok(tonic::Status::from(error).into_http()) })
            }
            Ok(None) => Box::pin(inner.call(request)),
            Ok(Some(principal)) => {
                let span =
                    crate::telemetry::server_span(&path, self.check.part, &principal.request_id);
                span.record("user", principal.user_id.as_deref().unwrap_or("-"));
                span.record("account", principal.account_id.as_deref().unwrap_or("-"));
                crate::telemetry::accept_parent(&span, request.headers());
                let request_id = principal.request_id.clone();
                request.extensions_mut().insert(principal);
                let future = inner.call(request);
                Box::pin(tracing::Instrument::instrument(
                    REQUEST_ID.scope(request_id, future),
                    span,
                ))
            }
        }
    }
}

/// The verified principal of a request; every Tenancy method has one once
/// [`PrincipalLayer`] let it through.
pub fn principal<T>(request: &tonic::Request<T>) -> Result<&Principal, Error> {
    request
        .extensions()
        .get::<Principal>()
        .ok_or_else(|| Error::new(Reason::PrincipalMissing, "no verified caller"))
}

impl Principal {
    /// The calling user, or UNAUTHENTICATED.
    pub fn user(&self) -> Result<&str, Error> {
        self.user_id
            .as_deref()
            .ok_or_else(|| Error::new(Reason::UserRequired, "this method needs a user"))
    }

    /// The selected account, or PERMISSION_DENIED.
    pub fn account(&self) -> Result<&str, Error> {
        self.account_id
            .as_deref()
            .ok_or_else(|| Error::new(Reason::AccountRequired, "select an account first"))
    }

    /// Whether the caller is an OWNER of the selected account.
    pub fn is_owner(&self) -> bool {
        self.role == Role::Owner
    }
}
