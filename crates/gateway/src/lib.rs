//! The gateway: the one public entry point of the suite.
//!
//! It decides every request locally — method rule from the .proto, token,
//! revocations, membership, role, IP allowlist, 2FA state, rate limits — from
//! state pushed to it by identity and account, then forwards the original
//! request and response bytes (trailers included, unary and streaming,
//! deadlines via `grpc-timeout`) to the owning service with the verified
//! principal signed in its metadata. INTERNAL services are never routed.
//!
//! # Layout
//! - `proxy`: routing table, per-call pipeline, byte forwarding.
//! - `policy`: the decision, a pure function.
//! - `credentials`: JWT and API-token resolution with caches.
//! - `id`: the 16-byte ids of the live state (users, accounts, sessions,
//!   tokens), parsed from and printed in the form the services issue.
//! - `jwt`: EdDSA-only access-token verification.
//! - `state`: revocations, memberships, settings.
//! - `sync`: the Watch streams that keep `state` current.
//! - `client_ip`: the client address behind trusted proxies.
//! - `limits`: rate limits.
//! - `usage`: last use of tokens and sessions, reported to identity.
//! - `metrics`: decisions, limits, token caches and streams, measured.

pub mod client_ip;
mod connections;
pub mod credentials;
pub mod id;
mod in_flight;
pub mod jwt;
pub mod limits;
pub mod metrics;
pub mod policy;
mod proxy;
pub mod state;
pub mod sync;
pub mod usage;

use std::sync::Arc;
use std::time::Duration;

use tenancy_runtime::config::{ConfigError, ServiceName};
use tenancy_runtime::shutdown::Shutdown;
use tenancy_runtime::{Context, Error};
use tokio::net::TcpListener;
use tonic_health::ServingStatus;

pub use proxy::Gateway;

/// Builds the gateway from the configuration: upstream URLs of every
/// service, identity for keys and tokens.
pub fn build(context: &Context) -> Result<Gateway, ConfigError> {
    let mut upstreams = Vec::new();
    for name in ServiceName::ALL {
        upstreams.push((name, context.config.service_urls(name)));
    }
    Gateway::new(
        context,
        &upstreams,
        context.channel_to(ServiceName::Identity)?,
    )
}

/// Longest wait for identity when reporting the last usage at shutdown.
const FINAL_USAGE_REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the gateway on `listener` until `shutdown`, following identity's
/// and account's streams and reporting usage meanwhile. Once the last call
/// has finished, reports the usage still pending (graceful shutdown loses
/// none).
pub async fn serve(
    context: &Context,
    gateway: Gateway,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), Error> {
    let gateway = Arc::new(gateway);
    let health = gateway.health.clone();
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    if let Some(address) = context.config.gateway.health_listen {
        tenancy_runtime::server::serve_health(address, health.clone(), shutdown.clone().wait())
            .await?;
    }
    let ready: sync::ReadinessHook = Arc::new(move |ready| {
        let health = health.clone();
        tokio::spawn(async move {
            let status = if ready {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            health.set_service_status("", status).await;
        });
    });
    let auth = context.service_auth();
    let identity = context
        .channel_to(ServiceName::Identity)
        .map_err(Error::internal)?;
    let account = context
        .channel_to(ServiceName::Account)
        .map_err(Error::internal)?;
    let usage_client: usage::IdentityClient =
        tenancy_proto::identity::identity_internal_service_client::IdentityInternalServiceClient::with_interceptor(identity.clone(), auth.clone());
    let usage = gateway.usage.clone();
    let reporter = {
        let (usage, client) = (usage.clone(), usage_client.clone());
        let interval = context.config.gateway.usage_report_interval;
        let shutdown = shutdown.clone();
        tokio::spawn(async move { usage.report_periodically(client, interval, shutdown).await })
    };
    tokio::spawn(sync::follow_revocations(
        gateway.state.clone(),
        gateway.clock.clone(),
        gateway.authenticator.clone(),
        tenancy_proto::identity::identity_internal_service_client::IdentityInternalServiceClient::with_interceptor(identity, auth.clone()),
        ready.clone(),
        metrics::Watch::new(&context.metrics, "revocations"),
        shutdown.clone(),
    ));
    tokio::spawn(sync::follow_policies(
        gateway.state.clone(),
        gateway.clock.clone(),
        tenancy_proto::account::account_internal_service_client::AccountInternalServiceClient::with_interceptor(account, auth),
        ready,
        metrics::Watch::new(&context.metrics, "policies"),
        shutdown.clone(),
    ));
    tokio::spawn(prune_periodically(gateway.clone(), shutdown.clone()));
    let served = gateway.serve(listener, shutdown).await;
    // A report in flight finishes first, so none is sent twice at once.
    let _ = reporter.await;
    let pending = usage.pending();
    if pending > 0 {
        match tokio::time::timeout(FINAL_USAGE_REPORT_TIMEOUT, usage.report(&usage_client)).await {
            Ok(true) => tracing::info!(credentials = pending, "usage reported at shutdown"),
            _ => tracing::warn!(credentials = pending, "usage not reported at shutdown"),
        }
    }
    served
}

async fn prune_periodically(gateway: Arc<Gateway>, shutdown: Shutdown) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(30)) => {}
            () = shutdown.clone().wait() => return,
        }
        let now = gateway.clock.now().millis();
        gateway.authenticator.prune(now);
        gateway.state.revocations.write().prune(now);
        gateway.limits_prune();
    }
}
