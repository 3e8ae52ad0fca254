//! What a Tenancy service is to the process that runs it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::clock::SharedClock;
use crate::config::{Config, ConfigError, ServiceName, TlsConfig};
use crate::error::Error;
use crate::metrics::{Metrics, ObservedBody};
use crate::principal::{PrincipalKey, ServiceAuth};
use crate::rules::MethodRules;
use crate::server::ServerOptions;
use crate::shutdown::Shutdown;
use crate::tls::{Caller, Connector, PartTls, caller_name};

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
    /// balanced over its configured URLs. Calls fail with UNAVAILABLE while
    /// it is down, and succeed again once it is back.
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
/// `tls`) to the service `name`, balanced over its configured URLs.
pub fn channel_to(
    config: &Config,
    tls: &Arc<TlsParts>,
    part: Caller,
    name: ServiceName,
) -> Result<Channel, ConfigError> {
    let setting = format!("{}.url", name.as_str());
    let urls = config.service_urls(name);
    if urls.is_empty() {
        return Err(ConfigError::new(setting, "no URL"));
    }
    let dialer = LazyConnector {
        tls: tls.clone(),
        part,
        server: name.caller(),
    };
    let replicas = urls
        .into_iter()
        .map(|url| {
            tonic::transport::Endpoint::from_shared(url.clone())
                .map(|e| {
                    e.connect_timeout(CONNECT_TIMEOUT)
                        .timeout(config.request_timeout)
                        .connect_with_connector_lazy(dialer.clone())
                })
                .map_err(|e| ConfigError::new(&setting, format_args!("{url:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Channel::balance(replicas))
}

/// Longest wait for another part to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Dials with the calling part's certificate, loading it on first use (so
/// commands that never call, like `migrate`, need none).
#[derive(Clone)]
struct LazyConnector {
    tls: Arc<TlsParts>,
    part: Caller,
    server: Caller,
}

impl tower::Service<http::Uri> for LazyConnector {
    type Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;
    type Error = std::io::Error;
    type Future = BoxFuture<std::io::Result<Self::Response>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let loaded = self
            .tls
            .part(self.part)
            .map_err(|e| std::io::Error::other(e.to_string()));
        let server = self.server;
        Box::pin(async move {
            let mut connector = Connector::new(loaded?, server, CONNECT_TIMEOUT);
            tower::Service::call(&mut connector, uri).await
        })
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A channel to one service, round-robin over its replicas (one HTTP/2
/// connection each, over mutual TLS). What generated clients are built on.
/// Records the client-side gRPC metrics of its calls when
/// [`measured`](Self::measured).
#[derive(Clone)]
pub struct Channel {
    replicas: Arc<[tonic::transport::Channel]>,
    next: Arc<AtomicUsize>,
    /// The replica made ready for the next call.
    ready: Option<tonic::transport::Channel>,
    calls: Option<Arc<crate::metrics::Calls>>,
}

impl Channel {
    /// Balances over `replicas` (at least one).
    pub fn balance(replicas: Vec<tonic::transport::Channel>) -> Self {
        Self {
            replicas: replicas.into(),
            next: Arc::new(AtomicUsize::new(0)),
            ready: None,
            calls: None,
        }
    }

    /// The same channel, recording `grpc_client_*` of the calls `part`
    /// makes into `metrics` (when it records calls).
    pub fn measured(mut self, metrics: &Metrics, part: &'static str) -> Self {
        self.calls = metrics.grpc().map(|grpc| grpc.client(part));
        self
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Channel {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.ready.is_none() {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            self.ready = self.replicas.get(n % self.replicas.len().max(1)).cloned();
        }
        match self.ready.as_mut() {
            Some(replica) => tower::Service::poll_ready(replica, cx),
            // No replica at all: `channel_to` refuses that.
            None => Poll::Pending,
        }
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let call = self
            .calls
            .as_ref()
            .map(|calls| calls.method(request.uri().path()).start());
        let response: Self::Future = match self.ready.take() {
            Some(mut replica) => Box::pin(tower::Service::call(&mut replica, request)),
            None => {
                let mut first = self.replicas[0].clone();
                Box::pin(async move {
                    futures::future::poll_fn(|cx| tower::Service::poll_ready(&mut first, cx))
                        .await?;
                    tower::Service::call(&mut first, request).await
                })
            }
        };
        let Some(call) = call else {
            return response;
        };
        Box::pin(async move {
            match response.await {
                Ok(response) => Ok(crate::metrics::observe(call, response)
                    .map(|body: ObservedBody<_>| tonic::body::Body::new(body))),
                Err(error) => {
                    // Not sent, or no answer: what tonic reports as UNAVAILABLE.
                    call.end(tonic::Code::Unavailable);
                    Err(error)
                }
            }
        })
    }
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
