//! Parts of the suite as processes of their own, for the tests that kill,
//! hang and restart them (`replicas`, and every multi-process test): this
//! test binary run again as a child ([`part_process`]) serving one part
//! with `tenancy::start`, as `tenancy serve <part>` does, on an address
//! chosen by the test so that a restart comes back on the same port.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tenancy::{Part, start};
use tenancy_runtime::SystemClock;
use tenancy_runtime::config::{Config, ServiceName};
use tokio::io::AsyncBufReadExt as _;

/// Set in a part's process: what to serve (JSON of [`Spec`]).
const PART_ENV: &str = "TENANCY_E2E_PART";
/// A part's process prints this, then its address, once it serves.
const READY: &str = "part serving on";

/// A part's process: the part and the configuration to serve it with.
#[derive(serde::Serialize, serde::Deserialize)]
struct Spec {
    part: String,
    config: Config,
}

/// The name of a part, as [`Spec`] carries it.
fn part_name(part: Part) -> &'static str {
    match part {
        Part::All => "all",
        Part::Identity => "identity",
        Part::Account => "account",
        Part::Contacts => "contacts",
        Part::Support => "support",
        Part::Gateway => "gateway",
    }
}

fn part_named(name: &str) -> Part {
    [
        Part::All,
        Part::Identity,
        Part::Account,
        Part::Contacts,
        Part::Support,
        Part::Gateway,
    ]
    .into_iter()
    .find(|part| part_name(*part) == name)
    .unwrap_or_else(|| panic!("no part {name}"))
}

/// The entry point of a part's process (run by the multi-process tests,
/// never on its own): serves one part until its stdin closes — the test
/// ended, or died, or killed it.
#[test]
#[ignore = "a part's process of the multi-process tests, started by them"]
fn part_process() {
    let Ok(spec) = std::env::var(PART_ENV) else {
        return;
    };
    let spec: Spec = serde_json::from_str(&spec).unwrap();
    let part = part_named(&spec.part);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let _logs = tenancy_runtime::telemetry::init(
            spec.config.log_format,
            &spec.config.log_filter,
            &spec.config.otel,
            part.service_name(),
        )
        .unwrap();
        let running = start(spec.config, part, Arc::new(SystemClock))
            .await
            .unwrap();
        let address = running
            .gateway
            .or_else(|| running.services.first().map(|(_, address)| *address))
            .unwrap();
        println!("{READY} {address}");
        let stdin_closed = async {
            let _ = tokio::task::spawn_blocking(|| {
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())
            })
            .await;
        };
        running.run_until(stdin_closed).await.unwrap();
    });
    std::process::exit(0);
}

/// One part running as a process of its own.
pub(crate) struct Process {
    /// `<part>#<index>`, for messages.
    pub(crate) name: String,
    spec: String,
    child: Option<tokio::process::Child>,
}

impl Process {
    /// Starts `part` listening on `address` (the gateway's public port, or
    /// the service's), and waits until it serves.
    pub(crate) async fn start(
        part: Part,
        index: usize,
        config: &Config,
        address: SocketAddr,
    ) -> Self {
        let mut config = config.clone();
        match part {
            Part::Gateway => config.gateway.listen = address,
            Part::All => panic!("one part per process"),
            _ => {
                let name = ServiceName::ALL
                    .into_iter()
                    .find(|n| n.as_str() == part_name(part))
                    .unwrap();
                config.service_mut(name).listen = address;
            }
        }
        let spec = serde_json::to_string(&Spec {
            part: part_name(part).to_owned(),
            config,
        })
        .unwrap();
        let mut process = Self {
            name: format!("{}#{index}", part_name(part)),
            spec,
            child: None,
        };
        process.spawn().await;
        process
    }

    /// Starts the process again (after [`Process::kill`]), with the same
    /// configuration and address, and waits until it serves.
    pub(crate) async fn spawn(&mut self) {
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "processes::part_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PART_ENV, &self.spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                // libtest's "test … ... " precedes it on the line.
                if line.contains(READY) {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(ready, Ok(true), "{} did not start", self.name);
        // Keep reading so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
    }

    fn pid(&self) -> nix::unistd::Pid {
        let id = self.child.as_ref().and_then(|c| c.id()).unwrap();
        nix::unistd::Pid::from_raw(i32::try_from(id).unwrap())
    }

    /// kill -9, and wait until the process is gone.
    pub(crate) async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// SIGSTOP: the port still accepts connections, nothing answers.
    pub(crate) fn freeze(&self) {
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGSTOP).unwrap();
    }

    /// SIGCONT after [`Process::freeze`].
    pub(crate) fn thaw(&self) {
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGCONT).unwrap();
    }
}

/// A free loopback port for a replica to bind, now and again after a
/// restart. Taken below the kernel's ephemeral range (which starts at
/// 32768 unless configured lower), where the ports other tests bind (port
/// 0) and outgoing connections come from: none of them takes it between
/// this check and the replica's bind, or while the replica is down, and
/// it takes none that another test means to bind again.
pub(crate) fn free_address() -> SocketAddr {
    let ephemeral_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (20_000, ephemeral_from.min(32_768));
    if high > low {
        let start = u16::try_from(rand_below(u32::from(high - low))).unwrap();
        for k in 0..(high - low) {
            let port = low + (start + k) % (high - low);
            if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                return listener.local_addr().unwrap();
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A number below `n` that differs between test runs.
pub(crate) fn rand_below(n: u32) -> u32 {
    let seed = uuid::Uuid::new_v4().as_u128();
    u32::try_from(seed % u128::from(n.max(1))).unwrap()
}
