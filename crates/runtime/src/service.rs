//! What a Tenancy service is to the process that runs it.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::clock::SharedClock;
use crate::config::{Config, ConfigError, ServiceName};
use crate::error::Error;
use crate::principal::{PrincipalKey, ServiceAuth};
use crate::rules::MethodRules;
use crate::server::ServerOptions;
use crate::shutdown::Shutdown;

/// Everything a service is started with: configuration, the shared key,
/// time, and the method rules.
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
}

impl Context {
    /// The options of this service's gRPC server.
    pub fn server_options(&self) -> ServerOptions {
        ServerOptions {
            request_timeout: self.config.request_timeout,
            key: Some(self.key.clone()),
            rules: self.rules.clone(),
            clock: self.clock.clone(),
        }
    }

    /// The interceptor that signs this service's calls to other services.
    pub fn service_auth(&self) -> ServiceAuth {
        ServiceAuth::new(self.key.clone(), self.clock.clone())
    }

    /// A lazily-connecting channel to another service, balanced over its
    /// configured URLs. Calls fail with UNAVAILABLE while it is down, and
    /// succeed again once it is back.
    pub fn channel_to(&self, name: ServiceName) -> Result<tonic::transport::Channel, ConfigError> {
        let setting = format!("{}.url", name.as_str());
        let endpoints = self
            .config
            .service_urls(name)
            .into_iter()
            .map(|url| {
                tonic::transport::Endpoint::from_shared(url.clone())
                    .map(|e| {
                        e.connect_timeout(std::time::Duration::from_secs(2))
                            .timeout(self.config.request_timeout)
                            .tcp_nodelay(true)
                    })
                    .map_err(|e| ConfigError::new(&setting, format_args!("{url:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(ConfigError::new(setting, "no URL"));
        }
        Ok(tonic::transport::Channel::balance_list(
            endpoints.into_iter(),
        ))
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
