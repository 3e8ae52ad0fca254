//! Routing by gRPC service name and forwarding of raw HTTP/2 bytes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::uri::{Authority, Scheme};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tenancy_proto::auth::Audience;
use tenancy_runtime::config::{ConfigError, ServiceName};
use tenancy_runtime::principal::{Principal, PrincipalKey, strip_reserved};
use tenancy_runtime::rules::MethodRules;
use tenancy_runtime::shutdown::Shutdown;
use tenancy_runtime::{Context, Error, clock::SharedClock};
use tokio::net::TcpListener;
use tonic::body::Body;
use tower::ServiceExt as _;

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

/// One service's upstream addresses, used round-robin.
struct Upstream {
    authorities: Vec<Authority>,
    next: AtomicUsize,
}

impl Upstream {
    fn pick(&self) -> Option<&Authority> {
        if self.authorities.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.authorities.len();
        self.authorities.get(i)
    }
}

/// The gateway's routing table and HTTP/2 client.
pub struct Gateway {
    /// gRPC service name → its owner's upstream.
    routes: HashMap<&'static str, Arc<Upstream>>,
    rules: Arc<MethodRules>,
    key: PrincipalKey,
    clock: SharedClock,
    client: Client<HttpConnector, Body>,
    /// Health and reflection, answered here.
    local: tonic::service::Routes,
}

impl Gateway {
    /// A gateway forwarding to `upstreams` (service → URLs).
    pub fn new(
        context: &Context,
        upstreams: &[(ServiceName, Vec<String>)],
    ) -> Result<Self, ConfigError> {
        let mut by_service = HashMap::new();
        for (name, urls) in upstreams {
            let setting = format!("{}.url", name.as_str());
            let authorities = urls
                .iter()
                .map(|url| {
                    url.parse::<http::Uri>()
                        .ok()
                        .and_then(|uri| uri.authority().cloned())
                        .ok_or_else(|| {
                            ConfigError::new(&setting, format_args!("not a URL: {url:?}"))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            by_service.insert(
                *name,
                Arc::new(Upstream {
                    authorities,
                    next: AtomicUsize::new(0),
                }),
            );
        }
        let mut routes = HashMap::new();
        for (service, owner) in OWNERS {
            if let Some(upstream) = by_service.get(owner) {
                routes.insert(*service, upstream.clone());
            }
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector);
        let (health_reporter, health) = tonic_health::server::health_reporter();
        drop(health_reporter);
        let (reflection_v1, reflection_v1alpha) =
            tenancy_runtime::server::reflection(tenancy_proto::PUBLIC_SERVICES)
                .map_err(|e| ConfigError::new("gateway", e))?;
        let local = tonic::service::Routes::new(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        Ok(Self {
            routes,
            rules: context.rules.clone(),
            key: context.key.clone(),
            clock: context.clock.clone(),
            client,
            local,
        })
    }

    /// Accepts HTTP/2 connections until `shutdown`, then lets in-flight
    /// calls finish.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: Shutdown,
    ) -> Result<(), Error> {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
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
            let _ = stream.set_nodelay(true);
            let gateway = self.clone();
            let service = hyper::service::service_fn(move |request| {
                let gateway = gateway.clone();
                async move { Ok::<_, Infallible>(gateway.handle(request, peer).await) }
            });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "connection ended");
                }
            });
        }
        graceful.shutdown().await;
        Ok(())
    }

    async fn handle(
        &self,
        mut request: http::Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> http::Response<Body> {
        let path = request.uri().path().to_owned();
        let service = path.split('/').nth(1).unwrap_or_default();
        if service == "grpc.health.v1.Health" || service.starts_with("grpc.reflection.") {
            return match self.local.clone().oneshot(request.map(Body::new)).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
        }
        let Some(upstream) = self.routes.get(service) else {
            return unimplemented(&path);
        };
        // Default deny: a method of a routed service without a rule, or an
        // INTERNAL one, is not reachable from outside.
        match self.rules.rule(&path) {
            Some(rule)
                if rule.audience() != Audience::Internal
                    && rule.audience() != Audience::Unspecified => {}
            _ => return unimplemented(&path),
        }
        let Some(authority) = upstream.pick() else {
            return status(Error::unavailable("no upstream configured"));
        };

        let headers = request.headers_mut();
        strip_reserved(headers);
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut principal = Principal::anonymous(Some(peer.ip()), request_id);
        principal.user_agent = headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        self.key
            .sign(&principal, self.clock.now())
            .insert_into(headers);

        let mut parts = request.uri().clone().into_parts();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(authority.clone());
        match http::Uri::from_parts(parts) {
            Ok(uri) => *request.uri_mut() = uri,
            Err(_) => return status(Error::invalid_field("path", "not a valid gRPC path")),
        }
        match self.client.request(request.map(Body::new)).await {
            Ok(response) => response.map(Body::new),
            Err(error) => {
                tracing::warn!(%error, upstream = %authority, "upstream call failed");
                status(Error::unavailable(format!("{service} is unavailable")))
            }
        }
    }
}

fn unimplemented(path: &str) -> http::Response<Body> {
    tonic::Status::unimplemented(format!("unknown method {path}")).into_http()
}

fn status(error: Error) -> http::Response<Body> {
    tonic::Status::from(error).into_http()
}
