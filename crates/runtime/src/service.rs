//! What a Tenancy service is to the process that runs it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;

use crate::clock::SharedClock;
use crate::config::{Config, ConfigError, ServiceName, TlsConfig};
use crate::error::Error;
use crate::metrics::{Metrics, ObservedBody};
use crate::principal::{PrincipalKey, ServiceAuth};
use crate::replicas::{Replayable, ReplicaSet, ReplicaStatus};
use crate::rules::MethodRules;
use crate::server::ServerOptions;
use crate::shutdown::Shutdown;
use crate::tls::{Caller, PartTls, caller_name};
use crate::upstream::{Dialer, Failure, UpstreamBody};

/// Everything a part is started with: configuration, the shared key, time,
/// the method rules, and which part it is (whose certificate it presents).
#[derive(Clone)]
pub struct Context {
    /// The loaded configuration.
    pub config: Arc<Config>,
    /// The principal key shared by gateway and services.
    pub key: PrincipalKey,
    /// Time.
    pub clock: SharedClock,
    /// The access rules of every method.
    pub rules: Arc<MethodRules>,
    /// Every part's mutual-TLS material, loaded once per part.
    pub tls: Arc<TlsParts>,
    /// The part this context runs: its certificate is presented.
    pub part: Caller,
    /// The process's metrics (one registry for every part in it).
    pub metrics: Metrics,
}

/// Each part's mutual-TLS material, loaded from `tls.*` on first use and
/// kept (and watched for changes) from then on.
pub struct TlsParts {
    config: TlsConfig,
    loaded: parking_lot::Mutex<HashMap<Caller, Arc<PartTls>>>,
}

impl TlsParts {
    /// Material of the parts `config` describes.
    pub fn new(config: &TlsConfig) -> Self {
        Self {
            config: config.clone(),
            loaded: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// The material of `part`, loaded now if it was not yet.
    pub fn part(&self, part: Caller) -> Result<Arc<PartTls>, ConfigError> {
        if let Some(loaded) = self.loaded.lock().get(&part) {
            return Ok(loaded.clone());
        }
        let name = caller_name(part);
        let files = self.config.files(name)?;
        let loaded = Arc::new(
            PartTls::load(part, &files, self.config.reload_interval())
                .map_err(|e| ConfigError::new("tls.cert_file", format_args!("{name}: {e}")))?,
        );
        Ok(self.loaded.lock().entry(part).or_insert(loaded).clone())
    }
}

impl Context {
    /// The same context, for another part of the process.
    pub fn for_part(&self, part: Caller) -> Self {
        Self {
            part,
            ..self.clone()
        }
    }

    /// This part's mutual-TLS material.
    pub fn part_tls(&self) -> Result<Arc<PartTls>, ConfigError> {
        self.tls.part(self.part)
    }

    /// The options of this service's gRPC server.
    pub fn server_options(&self) -> Result<ServerOptions, Error> {
        let health_listen = ServiceName::ALL
            .into_iter()
            .find(|name| name.caller() == self.part)
            .and_then(|name| self.config.service(name).health_listen);
        Ok(ServerOptions {
            request_timeout: self.config.request_timeout,
            key: Some(self.key.clone()),
            rules: self.rules.clone(),
            clock: self.clock.clone(),
            tls: self.part_tls().map_err(Error::internal)?,
            health_listen,
            metrics: self.metrics.clone(),
        })
    }

    /// The interceptor that marks this service's calls to other services.
    pub fn service_auth(&self) -> ServiceAuth {
        ServiceAuth::new()
    }

    /// A lazily-connecting channel to another service over mutual TLS,
    /// over its healthy replicas (see [`Channel`]).
    pub fn channel_to(&self, name: ServiceName) -> Result<Channel, ConfigError> {
        channel_to(&self.config, &self.tls, self.part, name)
            .map(|c| c.measured(&self.metrics, caller_name(self.part)))
    }

    /// Connects to this service's database (`<service>.database_url`),
    /// migrates it with `M`, and measures it (see
    /// [`Metrics::watch_database`]).
    pub async fn open_database<M: sea_orm_migration::MigratorTrait>(
        &self,
        name: ServiceName,
    ) -> Result<sea_orm::DatabaseConnection, ConfigError> {
        let url = self.config.database_url(name);
        let setting = format!("{}.database_url", name.as_str());
        let mut db = crate::db::open::<M>(&url, &setting).await?;
        self.metrics.watch_database(name.as_str(), &mut db);
        Ok(db)
    }
}

/// A lazily-connecting channel from `part` (presenting its certificate from
/// `tls`) to the service `name`, over its configured URLs (`<name>.url`).
pub fn channel_to(
    config: &Config,
    tls: &Arc<TlsParts>,
    part: Caller,
    name: ServiceName,
) -> Result<Channel, ConfigError> {
    let dialer = Dialer::new(tls.clone(), part, name.caller(), CONNECT_TIMEOUT);
    let replicas = ReplicaSet::new(name, &config.service_urls(name), &dialer)?;
    Ok(Channel::new(replicas, config.request_timeout))
}

/// Longest wait for another part to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A boxed, sendable future.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The access rules compiled into this binary: which methods only read and
/// which stream requests, for retries.
static METHODS: LazyLock<MethodRules> =
    LazyLock::new(|| MethodRules::tenancy().unwrap_or_default());

/// A channel to one service over its replicas (one HTTP/2 connection each,
/// over mutual TLS): what generated clients are built on.
///
/// Calls go round-robin over the replicas that pass their health checks
/// ([`crate::replicas`]). A call that fails is sent to another replica
/// when that is safe:
/// - it never left (no connection, or the connection took no new stream),
///   or the replica refused it unprocessed (REFUSED_STREAM, GOAWAY): any
///   method;
/// - it is a read (`rules::is_read_only`), or a write idempotent by
///   contract (`rules::IDEMPOTENT_WRITES`), and the replica answered
///   UNAVAILABLE or the connection broke before the answer.
///
/// Any other write that may have reached a replica is never sent again. Each
/// replica is tried at most once per call, within the call's deadline
/// (its `grpc-timeout`, at most `request_timeout`; past it the call ends
/// CANCELLED, as tonic's own channel did). When every attempt failed the
/// call ends UNAVAILABLE.
///
/// Records the client-side gRPC metrics of its calls when
/// [`measured`](Self::measured).
#[derive(Clone)]
pub struct Channel {
    replicas: Arc<ReplicaSet>,
    timeout: Duration,
    calls: Option<Arc<crate::metrics::Calls>>,
}

impl Channel {
    /// A channel over `replicas`, calls bounded by `timeout`.
    pub fn new(replicas: Arc<ReplicaSet>, timeout: Duration) -> Self {
        Self {
            replicas,
            timeout,
            calls: None,
        }
    }

    /// The same channel, for a one-shot client: no background health
    /// checks ([`ReplicaSet::without_checks`]).
    pub fn one_shot(self) -> Self {
        self.replicas.without_checks();
        self
    }

    /// The same channel, recording `grpc_client_*` of the calls `part`
    /// makes into `metrics` (when it records calls).
    pub fn measured(mut self, metrics: &Metrics, part: &'static str) -> Self {
        self.calls = metrics.grpc().map(|grpc| grpc.client(part));
        self
    }

    /// Each replica as this channel sees it: healthy or not, calls sent.
    pub fn replicas(&self) -> Vec<ReplicaStatus> {
        self.replicas.status()
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Channel {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::codegen::StdError;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        let span = crate::telemetry::client_span(request.uri().path());
        crate::telemetry::inject(&span, request.headers_mut());
        let timeout = grpc_timeout(request.headers()).map_or(self.timeout, |t| t.min(self.timeout));
        let deadline = tokio::time::Instant::now() + timeout;
        let replicas = self.replicas.clone();
        let call = self
            .calls
            .as_ref()
            .map(|calls| calls.method(request.uri().path()).start());
        Box::pin(tracing::Instrument::instrument(
            async move {
                let answer = match tokio::time::timeout_at(deadline, attempts(&replicas, request))
                    .await
                {
                    Ok(answer) => answer,
                    Err(_) => Err(Box::new(tonic::TimeoutExpired(())) as tonic::codegen::StdError),
                };
                let Some(call) = call else {
                    return answer;
                };
                match answer {
                    Ok(response) => Ok(crate::metrics::observe(call, response)
                        .map(|body: ObservedBody<_>| tonic::body::Body::new(body))),
                    Err(error) => {
                        // What the caller's client reports: our UNAVAILABLE, or
                        // tonic's CANCELLED for the deadline.
                        let code = error
                            .downcast_ref::<tonic::Status>()
                            .map_or(tonic::Code::Cancelled, tonic::Status::code);
                        call.end(code);
                        Err(error)
                    }
                }
            },
            span,
        ))
    }
}

/// A call's request body: kept whole to be sent again, or streamed once.
enum Payload {
    Replayable(Bytes),
    Once(Option<tonic::body::Body>),
}

/// Tries the replicas in [`ReplicaSet::order`] until one answers or a
/// failure may not be repeated.
async fn attempts(
    replicas: &Arc<ReplicaSet>,
    request: http::Request<tonic::body::Body>,
) -> Result<http::Response<tonic::body::Body>, tonic::codegen::StdError> {
    let method = METHODS.method(request.uri().path());
    // Client streams are sent as they come; every other request is one
    // message, already encoded.
    let replayable = method.is_some_and(|m| !m.client_streaming);
    let repeatable = method.is_some_and(|m| m.repeatable);
    let (parts, body) = request.into_parts();
    let mut payload = if replayable {
        Payload::Replayable(http_body_util::BodyExt::collect(body).await?.to_bytes())
    } else {
        Payload::Once(Some(body))
    };
    let mut last: Option<Result<http::Response<UpstreamBody>, String>> = None;
    for replica in replicas.order() {
        let ready = match replica.connection().ready().await {
            Ok(ready) => ready,
            Err(error) => {
                // Nothing was sent: the next replica gets the call.
                replica.eject(&error);
                last = Some(Err(error.to_string()));
                continue;
            }
        };
        let body = match &mut payload {
            Payload::Replayable(bytes) => tonic::body::Body::new(Replayable(Some(bytes.clone()))),
            Payload::Once(body) => match body.take() {
                Some(body) => body,
                None => break,
            },
        };
        let mut attempt = http::Request::new(body);
        *attempt.method_mut() = parts.method.clone();
        *attempt.uri_mut() = parts.uri.clone();
        *attempt.version_mut() = parts.version;
        *attempt.headers_mut() = parts.headers.clone();
        replica.note_sent();
        match ready.send(attempt).await {
            Ok(response) => {
                if repeatable && replayable && grpc_status(response.headers()) == Some(UNAVAILABLE)
                {
                    // A read (or an idempotent write) may be asked again;
                    // kept in case no one else answers.
                    last = Some(Ok(response));
                    continue;
                }
                return Ok(response.map(response_body));
            }
            Err(failure) => {
                if failure.is_transport() {
                    replica.eject(&failure);
                }
                let again = replayable
                    && match failure {
                        Failure::NotSent(_) | Failure::Refused(_) => true,
                        Failure::Lost(_) => repeatable,
                    };
                tracing::debug!(
                    service = replicas.service().as_str(),
                    method = parts.uri.path(),
                    replica = %replica.connection().authority(),
                    %failure,
                    again,
                    "call failed"
                );
                last = Some(Err(failure.to_string()));
                if !again {
                    break;
                }
            }
        }
    }
    match last {
        Some(Ok(response)) => Ok(response.map(response_body)),
        Some(Err(cause)) => {
            let service = replicas.service().as_str();
            tracing::warn!(service, method = parts.uri.path(), %cause, "no replica answered");
            Err(Box::new(tonic::Status::from(
                Error::unavailable(format!("{service} is not available"))
                    .with_metadata("service", service),
            )))
        }
        None => Err(Box::new(tonic::Status::from(Error::unavailable(
            "no replica to call",
        )))),
    }
}

/// `grpc-status` UNAVAILABLE.
const UNAVAILABLE: i32 = tonic::Code::Unavailable as i32;

fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// A response body for tonic: a connection lost mid-answer is UNAVAILABLE
/// (tonic would make UNKNOWN of it); other stream errors tonic maps itself.
fn response_body(body: UpstreamBody) -> tonic::body::Body {
    tonic::body::Body::new(http_body_util::BodyExt::map_err(
        body,
        |error: h2::Error| -> tonic::codegen::StdError {
            if error.is_io() || error.is_go_away() {
                Box::new(tonic::Status::from(Error::unavailable(format!(
                    "connection lost: {error}"
                ))))
            } else {
                Box::new(error)
            }
        },
    ))
}

/// The `grpc-timeout` of a request (`<digits><unit>`, gRPC over HTTP/2).
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// A Tenancy service: opened (database connected and migrated), then served.
pub trait TenancyService: Sized + Send + 'static {
    /// Which service this is.
    const NAME: ServiceName;

    /// Connects to the database and runs migrations; errors name the setting.
    fn open(context: Context) -> impl Future<Output = Result<Self, ConfigError>> + Send;

    /// Serves on `listener` until `shutdown`.
    fn serve(
        self,
        listener: TcpListener,
        shutdown: Shutdown,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout_of(value: &str) -> Option<Duration> {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-timeout", value.parse().unwrap());
        grpc_timeout(&headers)
    }

    #[test]
    fn grpc_timeouts_are_read_in_every_unit_and_junk_is_ignored() {
        assert_eq!(timeout_of("3S"), Some(Duration::from_secs(3)));
        assert_eq!(timeout_of("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout_of("2M"), Some(Duration::from_secs(120)));
        assert_eq!(timeout_of("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(timeout_of("7u"), Some(Duration::from_micros(7)));
        assert_eq!(timeout_of("9n"), Some(Duration::from_nanos(9)));
        for junk in ["", "S", "10", "10x", "123456789S", "-1S", "1.5S"] {
            assert_eq!(timeout_of(junk), None, "{junk:?}");
        }
        assert_eq!(grpc_timeout(&http::HeaderMap::new()), None);
    }
}
