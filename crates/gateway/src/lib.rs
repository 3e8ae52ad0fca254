//! The gateway: the one public entry point of the suite.
//!
//! It routes each call by its gRPC service name to the owning service and
//! forwards the original request and response bytes, trailers included,
//! without decoding message bodies, so unary and streaming calls, deadlines
//! (`grpc-timeout`) and errors pass through unchanged. It answers health and
//! reflection (for the public services only) itself.
//!
//! Before forwarding it strips every client-supplied `x-tenancy-*` entry and
//! adds the caller's principal, signed. INTERNAL services are never routed.
//!
//! # Layout
//! - `proxy`: the routing table and the byte-forwarding HTTP/2 service.

mod proxy;

use std::sync::Arc;

use tenancy_runtime::config::{ConfigError, ServiceName};
use tenancy_runtime::shutdown::Shutdown;
use tenancy_runtime::{Context, Error};
use tokio::net::TcpListener;

pub use proxy::Gateway;

/// Builds the gateway from the configuration: upstream URLs of every service.
pub fn build(context: &Context) -> Result<Gateway, ConfigError> {
    let mut upstreams = Vec::new();
    for name in ServiceName::ALL {
        upstreams.push((name, context.config.service_urls(name)));
    }
    Gateway::new(context, &upstreams)
}

/// Serves the gateway on `listener` until `shutdown`.
pub async fn serve(
    gateway: Gateway,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), Error> {
    Arc::new(gateway).serve(listener, shutdown).await
}
