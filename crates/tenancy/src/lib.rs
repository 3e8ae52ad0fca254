//! Running Tenancy: the whole suite in one process, or one part of it.
//!
//! `tenancy serve` starts every service on its own loopback port with its own
//! SQLite file under the data directory, and the gateway on the public port.
//! `tenancy serve <service>` runs one part, for production deployments where
//! each runs in its own container against PostgreSQL.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use tenancy_runtime::config::{Config, ConfigError, ServiceName};
use tenancy_runtime::rules::MethodRules;
use tenancy_runtime::shutdown::{self, Shutdown, ShutdownTrigger};
use tenancy_runtime::{
    Context, Error, PrincipalKey, SystemClock, TenancyService, clock::SharedClock,
};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// The parts `tenancy serve <part>` can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Every service and the gateway, in one process.
    All,
    /// Users, logins, sessions, tokens.
    Identity,
    /// Accounts, members, policies.
    Account,
    /// Contacts, notifications, outbox.
    Contacts,
    /// Support tickets.
    Support,
    /// The public entry point.
    Gateway,
}

impl Part {
    fn services(self) -> Vec<ServiceName> {
        match self {
            Self::All => ServiceName::ALL.to_vec(),
            Self::Identity => vec![ServiceName::Identity],
            Self::Account => vec![ServiceName::Account],
            Self::Contacts => vec![ServiceName::Contacts],
            Self::Support => vec![ServiceName::Support],
            Self::Gateway => Vec::new(),
        }
    }

    fn has_gateway(self) -> bool {
        matches!(self, Self::All | Self::Gateway)
    }
}

/// A running suite (or part): where it listens and how to stop it.
pub struct Running {
    /// Where the gateway listens, when it runs.
    pub gateway: Option<SocketAddr>,
    /// Where each running service listens.
    pub services: Vec<(ServiceName, SocketAddr)>,
    trigger: ShutdownTrigger,
    tasks: JoinSet<(&'static str, Result<(), Error>)>,
}

impl Running {
    /// Where a running service listens.
    pub fn service(&self, name: ServiceName) -> Option<SocketAddr> {
        self.services
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| *a)
    }

    /// A record of where parts listen, running nothing (for tests that
    /// start parts separately and hand helpers one view of them).
    pub fn listing(services: Vec<(ServiceName, SocketAddr)>) -> Self {
        let (trigger, _) = shutdown::channel();
        Self {
            gateway: None,
            services,
            trigger,
            tasks: JoinSet::new(),
        }
    }

    /// A handle that stops everything.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.trigger.subscribe()
    }

    /// Runs until `stop` resolves or a part fails, then shuts down the rest
    /// gracefully. Returns the first failure.
    pub async fn run_until(
        mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), Error> {
        let mut first_error = None;
        tokio::select! {
            () = stop => {},
            Some(joined) = self.tasks.join_next() => {
                first_error = task_error(joined);
            }
        }
        self.trigger.trigger();
        while let Some(joined) = self.tasks.join_next().await {
            if first_error.is_none() {
                first_error = task_error(joined);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Stops everything and waits for it.
    pub async fn stop(self) -> Result<(), Error> {
        self.run_until(async {}).await
    }
}

fn task_error(
    joined: Result<(&'static str, Result<(), Error>), tokio::task::JoinError>,
) -> Option<Error> {
    match joined {
        Ok((_, Ok(()))) => None,
        Ok((part, Err(e))) => {
            tracing::error!(part, error = %e, "stopped with an error");
            Some(e)
        }
        Err(e) => Some(Error::internal(e)),
    }
}

/// The principal key: configured, or (for the all-in-one suite) generated
/// once and kept in the data directory so restarts keep it.
pub fn principal_key(config: &Config, part: Part) -> Result<PrincipalKey, ConfigError> {
    if let Some(key) = config.principal_key()? {
        return Ok(key);
    }
    if part != Part::All {
        return Err(ConfigError::new(
            "principal_key",
            "required when running one part alone (set TENANCY_PRINCIPAL_KEY to the same value everywhere)",
        ));
    }
    let path = config.data_dir.join("principal.key");
    let io_error =
        |e: std::io::Error| ConfigError::new("data_dir", format_args!("{}: {e}", path.display()));
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(io_error)?;
        return PrincipalKey::parse(&text).ok_or_else(|| {
            ConfigError::new(
                "data_dir",
                format_args!("{} is not a valid key", path.display()),
            )
        });
    }
    let key = PrincipalKey::generate();
    write_private(&path, &key.to_hex()).map_err(io_error)?;
    Ok(key)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

async fn bind(address: SocketAddr, setting: &str) -> Result<TcpListener, ConfigError> {
    TcpListener::bind(address)
        .await
        .map_err(|e| ConfigError::new(setting, format_args!("cannot listen on {address}: {e}")))
}

/// Everything that can go wrong before serving: bad settings, unreachable
/// databases, ports in use.
pub type StartError = ConfigError;

/// Opens and starts `part` with `config` and `clock`. Every listener is bound
/// and every database migrated before anything serves, so a bad setting
/// fails fast with its name.
pub async fn start(
    mut config: Config,
    part: Part,
    clock: SharedClock,
) -> Result<Running, StartError> {
    if part == Part::All {
        create_data_dir(&config)?;
    }
    let key = principal_key(&config, part)?;
    let rules = MethodRules::tenancy().map_err(|e| ConfigError::new("proto", e))?;

    let mut listeners = Vec::new();
    for name in part.services() {
        let listener = bind(
            config.service(name).listen,
            &format!("{}.listen", name.as_str()),
        )
        .await?;
        let address = listener
            .local_addr()
            .map_err(|e| ConfigError::new("listen", e))?;
        // In one process, services reach each other where they really listen.
        if part == Part::All {
            config.service_mut(name).url = Some(format!("http://{address}"));
        }
        listeners.push((name, listener, address));
    }
    let gateway_listener = if part.has_gateway() {
        Some(bind(config.gateway.listen, "gateway.listen").await?)
    } else {
        None
    };

    let context = Context {
        config: Arc::new(config),
        key,
        clock,
        rules: Arc::new(rules),
    };
    let (trigger, _) = shutdown::channel();
    // With the gateway in this process, the services stop only once it has
    // stopped: its last calls, and its last usage report to identity, still
    // find them serving.
    let (services_trigger, _) = shutdown::channel();
    let services_trigger = Arc::new(services_trigger);
    if !part.has_gateway() {
        let (stop, services_trigger) = (trigger.subscribe(), services_trigger.clone());
        tokio::spawn(async move {
            stop.wait().await;
            services_trigger.trigger();
        });
    }
    let mut opened = Vec::new();
    for (name, listener, address) in listeners {
        let stop = services_trigger.subscribe();
        let serve = match name {
            ServiceName::Identity => {
                open_service::<tenancy_identity::IdentityService>(&context, listener, stop).await?
            }
            ServiceName::Account => {
                open_service::<tenancy_account::AccountService>(&context, listener, stop).await?
            }
            ServiceName::Contacts => {
                open_service::<tenancy_contacts::ContactsService>(&context, listener, stop).await?
            }
            ServiceName::Support => {
                open_service::<tenancy_support::SupportService>(&context, listener, stop).await?
            }
        };
        opened.push((name, address, serve));
    }

    let mut tasks = JoinSet::new();
    let mut services = Vec::new();
    for (name, address, serve) in opened {
        tracing::info!(service = name.as_str(), %address, "listening");
        services.push((name, address));
        tasks.spawn(async move { (name.as_str(), serve.await) });
    }
    let mut gateway = None;
    if let Some(listener) = gateway_listener {
        let address = listener
            .local_addr()
            .map_err(|e| ConfigError::new("gateway.listen", e))?;
        let built = tenancy_gateway::build(&context)?;
        let stop = trigger.subscribe();
        tracing::info!(%address, "gateway listening");
        let gateway_context = context.clone();
        let services_trigger = services_trigger.clone();
        tasks.spawn(async move {
            let served = tenancy_gateway::serve(&gateway_context, built, listener, stop).await;
            services_trigger.trigger();
            ("gateway", served)
        });
        gateway = Some(address);
    }
    Ok(Running {
        gateway,
        services,
        trigger,
        tasks,
    })
}

/// Opens a service (database connected and migrated) and returns the
/// future that serves it.
async fn open_service<S: TenancyService>(
    context: &Context,
    listener: TcpListener,
    stop: Shutdown,
) -> Result<BoxFuture<'static, Result<(), Error>>, ConfigError> {
    let service = S::open(context.clone()).await?;
    Ok(Box::pin(service.serve(listener, stop)))
}

/// The all-in-one suite keeps its SQLite files and keys in `data_dir`.
fn create_data_dir(config: &Config) -> Result<(), ConfigError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        ConfigError::new(
            "data_dir",
            format_args!("{}: {e}", config.data_dir.display()),
        )
    })
}

/// Runs the migrations of `part` and returns.
pub async fn migrate(config: &Config, part: Part) -> Result<(), ConfigError> {
    let context = Context {
        config: Arc::new(config.clone()),
        key: PrincipalKey::generate(),
        clock: Arc::new(SystemClock),
        rules: Arc::new(MethodRules::default()),
    };
    if part == Part::All {
        create_data_dir(config)?;
    }
    for name in part.services() {
        match name {
            ServiceName::Identity => {
                drop(tenancy_identity::IdentityService::open(context.clone()).await?)
            }
            ServiceName::Account => {
                drop(tenancy_account::AccountService::open(context.clone()).await?)
            }
            ServiceName::Contacts => {
                drop(tenancy_contacts::ContactsService::open(context.clone()).await?)
            }
            ServiceName::Support => {
                drop(tenancy_support::SupportService::open(context.clone()).await?)
            }
        }
        println!("tenancy: {} migrated", name.as_str());
    }
    Ok(())
}
