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
use tenancy_runtime::tls::{Caller, dev::DevPki};
use tenancy_runtime::{
    Context, Error, Metrics, PrincipalKey, SystemClock, TenancyService, TlsParts,
    clock::SharedClock,
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
    /// The OpenTelemetry `service.name` of a process running this part:
    /// `tenancy` for the whole suite, `tenancy-<part>` otherwise.
    pub fn service_name(self) -> &'static str {
        match self {
            Self::All => "tenancy",
            Self::Identity => "tenancy-identity",
            Self::Account => "tenancy-account",
            Self::Contacts => "tenancy-contacts",
            Self::Support => "tenancy-support",
            Self::Gateway => "tenancy-gateway",
        }
    }

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
    /// Whether the gateway's port serves TLS (else plaintext).
    pub gateway_tls: bool,
    /// Where each running service listens.
    pub services: Vec<(ServiceName, SocketAddr)>,
    /// Where Prometheus metrics are served (`/metrics`), when they are.
    pub metrics: Option<SocketAddr>,
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
            gateway_tls: false,
            services,
            metrics: None,
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

/// Whether a command may create what the data directory lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keys {
    /// `tenancy serve` and `tenancy migrate` of the whole suite: generate
    /// the key once and keep it in the data directory.
    CreateInDataDir,
    /// Other commands: use the key where the suite keeps it, or refuse.
    Existing,
}

/// The principal key, from the one place every command reads it: the
/// `principal_key` setting, or (for the all-in-one suite) the data
/// directory's `principal.key`. Only `keys = CreateInDataDir` writes a new
/// one there; otherwise a missing key is an error naming the setting,
/// never a key made up for the occasion (a command that sealed data with
/// one would leave it unreadable).
pub fn principal_key(config: &Config, part: Part, keys: Keys) -> Result<PrincipalKey, ConfigError> {
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
        let accepted = config.principal_keys_accepted()?;
        return PrincipalKey::parse(&text)
            .map(|key| key.also_accepting(accepted))
            .ok_or_else(|| {
                ConfigError::new(
                    "data_dir",
                    format_args!("{} is not a valid key", path.display()),
                )
            });
    }
    if keys == Keys::Existing {
        return Err(ConfigError::new(
            "principal_key",
            format_args!(
                "not set, and {} does not exist (start `tenancy serve` once, or set TENANCY_PRINCIPAL_KEY)",
                path.display()
            ),
        ));
    }
    let key = PrincipalKey::generate();
    write_private(&path, &key.to_hex()).map_err(io_error)?;
    Ok(key)
}

/// Where the all-in-one suite keeps its development CA and certificates.
pub fn dev_tls_dir(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("tls")
}

/// Fills `config.tls` for the all-in-one suite when it is unset: a
/// throw-away CA in `data_dir/tls` (kept across restarts, so a `grpcurl
/// -cacert` path stays valid) and a certificate for every part, issued
/// afresh (`keys = CreateInDataDir`), or those already there (`Existing`).
/// A part run alone needs `tls.*` set.
pub fn tls_config(config: &mut Config, part: Part, keys: Keys) -> Result<(), ConfigError> {
    let tls = &config.tls;
    if tls.ca_file.is_some()
        || tls.cert_file.is_some()
        || tls.key_file.is_some()
        || part != Part::All
    {
        return Ok(());
    }
    let dir = dev_tls_dir(config);
    let pki_error = |e: String| ConfigError::new("data_dir", e);
    if keys == Keys::CreateInDataDir {
        DevPki::open(&dir)
            .map_err(pki_error)?
            .issue_all()
            .map_err(pki_error)?;
    } else if !dir.join(tenancy_runtime::tls::dev::CA_FILE).is_file() {
        return Err(ConfigError::new(
            "tls.ca_file",
            format_args!(
                "not set, and {} has no development CA (start `tenancy serve` once, or set tls.ca_file, tls.cert_file and tls.key_file)",
                dir.display()
            ),
        ));
    }
    config.tls.ca_file = Some(dir.join(tenancy_runtime::tls::dev::CA_FILE));
    config.tls.cert_file = Some(dir.join("{part}.pem").display().to_string());
    config.tls.key_file = Some(dir.join("{part}.key").display().to_string());
    Ok(())
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
    let key = principal_key(&config, part, Keys::CreateInDataDir)?;
    tls_config(&mut config, part, Keys::CreateInDataDir)?;
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
            config.service_mut(name).url = Some(format!("https://{address}"));
        }
        listeners.push((name, listener, address));
    }
    let gateway_listener = if part.has_gateway() {
        Some(bind(config.gateway.listen, "gateway.listen").await?)
    } else {
        None
    };
    let metrics_listener = match config.metrics_listen {
        Some(address) => Some(bind(address, "metrics_listen").await?),
        None => None,
    };

    let tls = Arc::new(TlsParts::new(&config.tls));
    // One registry for every part of the process; calls are timed only
    // when something serves them.
    let metrics = match config.metrics_listen {
        Some(_) => Metrics::new(&rules),
        None => Metrics::without_calls(),
    };
    let context = Context {
        config: Arc::new(config),
        key,
        clock,
        rules: Arc::new(rules),
        tls,
        part: Caller::Unspecified,
        metrics,
    };
    // Every part's certificate is loaded (and checked to name it) before
    // anything serves, so a bad file fails the start with its setting.
    for name in part.services() {
        context.tls.part(name.caller())?;
    }
    if part.has_gateway() {
        context.tls.part(Caller::Gateway)?;
    }
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
        let context = context.for_part(name.caller());
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
        let gateway_context = context.for_part(Caller::Gateway);
        let built = tenancy_gateway::build(&gateway_context)?;
        let stop = trigger.subscribe();
        tracing::info!(%address, "gateway listening");
        let services_trigger = services_trigger.clone();
        tasks.spawn(async move {
            let served = tenancy_gateway::serve(&gateway_context, built, listener, stop).await;
            services_trigger.trigger();
            ("gateway", served)
        });
        gateway = Some(address);
    }
    let metrics = match metrics_listener {
        Some(listener) => {
            let address = listener
                .local_addr()
                .map_err(|e| ConfigError::new("metrics_listen", e))?;
            tenancy_runtime::metrics::serve(
                listener,
                context.metrics.clone(),
                trigger.subscribe().wait(),
            );
            tracing::info!(%address, "metrics at /metrics");
            Some(address)
        }
        None => None,
    };
    Ok(Running {
        gateway,
        gateway_tls: context.config.gateway.tls_cert_file.is_some(),
        services,
        metrics,
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

/// Runs the migrations of `part` and returns. Uses the same keys as
/// `serve` (the first signing key is sealed with them), from the same place.
pub async fn migrate(config: &Config, part: Part) -> Result<(), ConfigError> {
    if part == Part::All {
        create_data_dir(config)?;
    }
    let context = Context {
        config: Arc::new(config.clone()),
        key: principal_key(config, part, Keys::CreateInDataDir)?,
        clock: Arc::new(SystemClock),
        rules: Arc::new(MethodRules::default()),
        tls: Arc::new(TlsParts::new(&config.tls)),
        part: Caller::Unspecified,
        metrics: tenancy_runtime::Metrics::without_calls(),
    };
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn fresh() -> Config {
        let dir = std::env::temp_dir().join(format!("tenancy-keys-{}", uuid::Uuid::new_v4()));
        Config {
            data_dir: dir,
            ..Config::default()
        }
    }

    /// A command that only reads keys (`tenancy admin`) refuses with the
    /// setting's name when the suite never made them, instead of inventing
    /// one; `serve`/`migrate` of the whole suite make them once, and later
    /// commands read the same ones.
    #[test]
    fn keys_come_from_one_place_and_are_never_made_up() {
        let mut config = fresh();
        let error = principal_key(&config, Part::All, Keys::Existing)
            .err()
            .unwrap();
        assert_eq!(error.setting, "principal_key", "{error}");
        let error = tls_config(&mut config.clone(), Part::All, Keys::Existing)
            .err()
            .unwrap();
        assert_eq!(error.setting, "tls.ca_file", "{error}");
        let error = principal_key(&config, Part::Identity, Keys::CreateInDataDir)
            .err()
            .unwrap();
        assert_eq!(error.setting, "principal_key", "a part alone needs it set");

        create_data_dir(&config).unwrap();
        let made = principal_key(&config, Part::All, Keys::CreateInDataDir).unwrap();
        let read = principal_key(&config, Part::All, Keys::Existing).unwrap();
        assert_eq!(made.to_hex(), read.to_hex());
        tls_config(&mut config, Part::All, Keys::CreateInDataDir).unwrap();
        let mut later = fresh();
        later.data_dir = config.data_dir.clone();
        tls_config(&mut later, Part::All, Keys::Existing).unwrap();
        assert_eq!(later.tls.ca_file, config.tls.ca_file);
        std::fs::remove_dir_all(&config.data_dir).unwrap();
    }
}
