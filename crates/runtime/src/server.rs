//! A Tenancy gRPC server: the service's routes plus what every server has.
//!
//! Layers, outermost first, and why they sit there:
//! 1. tonic's request timeout, so no handler outlives `request_timeout`
//!    (streams are bounded by their own deadline, not this one);
//! 2. [`PrincipalLayer`], which refuses a non-PUBLIC call without a valid
//!    signed principal before any handler or database is touched, and hands
//!    handlers the verified [`Principal`] in the request extensions;
//! 3. the routes: the service's own, health, and reflection (v1 and v1alpha,
//!    so grpcurl 1.8 works).

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
    PRINCIPAL_HEADER, Principal, PrincipalError, PrincipalKey, REQUEST_ID, SIGNATURE_HEADER,
    role_at_least,
};
use crate::rules::MethodRules;

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
    let server = tonic::transport::Server::builder()
        .timeout(options.request_timeout)
        .layer(PrincipalLayer::new(&options))
        .add_routes(routes)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        // Without TCP_NODELAY, a response's headers, data and trailers wait
        // on Nagle's algorithm and the client's delayed ACK: ~40 ms a call.
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.clone(),
        );
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
    let builder = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tenancy_proto::FILE_DESCRIPTOR_SET)
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
                key: options.key.clone(),
                rules: options.rules.clone(),
                clock: options.clock.clone(),
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
    key: Option<PrincipalKey>,
    rules: Arc<MethodRules>,
    clock: SharedClock,
}

impl PrincipalCheck {
    /// `Ok(None)` for paths that are not Tenancy methods (health,
    /// reflection, unknown: tonic answers those itself).
    fn decide(&self, path: &str, headers: &http::HeaderMap) -> Result<Option<Principal>, Error> {
        let Some(method) = self.rules.method(path) else {
            return Ok(None);
        };
        let Some(rule) = method.rule.as_ref() else {
            return Err(Error::new(
                Reason::AccessRuleMissing,
                "method has no access rule",
            ));
        };
        let verified = match &self.key {
            Some(key) => key.verify(
                headers.get(PRINCIPAL_HEADER).map(|v| v.as_bytes()),
                headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes()),
                self.clock.now(),
            ),
            None => Err(PrincipalError::Missing),
        };
        let audience = rule.audience();
        let principal = match (audience, verified) {
            (_, Ok(principal)) => principal,
            (Audience::Public, Err(PrincipalError::Missing)) => {
                Principal::anonymous(None, uuid::Uuid::new_v4().to_string())
            }
            (_, Err(PrincipalError::Missing)) => {
                return Err(Error::new(
                    Reason::PrincipalMissing,
                    "this method needs a caller verified by the gateway",
                ));
            }
            (_, Err(e)) => return Err(Error::new(Reason::PrincipalInvalid, e.to_string())),
        };
        let denied = |reason, message| Err(Error::new(reason, message));
        match audience {
            Audience::Unspecified => {
                return denied(Reason::AccessRuleMissing, "method has no audience");
            }
            Audience::Public => {}
            Audience::Internal if !principal.is_service() => {
                return denied(
                    Reason::MethodInternalOnly,
                    "only Tenancy services may call this method",
                );
            }
            Audience::Internal => {}
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
        let decision = self.check.decide(&path, request.headers());
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
                let span = tracing::info_span!(
                    "grpc",
                    method = %path,
                    request_id = %principal.request_id,
                    user = principal.user_id.as_deref().unwrap_or("-"),
                    account = principal.account_id.as_deref().unwrap_or("-"),
                );
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
