//! [`Peers`]: the real identity, account and contacts services beside the
//! service under test (feature `peers`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::{Running, TestChannel, TestDatabase, loopback, start_on, test_config, test_context};
use tenancy_runtime::ManualClock;
use tenancy_runtime::config::{Config, ServiceName};
use tokio::net::TcpListener;

/// The services that can be peers, in start-up order.
const PEERS: [ServiceName; 3] = [
    ServiceName::Contacts,
    ServiceName::Identity,
    ServiceName::Account,
];

/// The real identity, account and contacts services, but for the one under
/// test, started beside it as in production: each on its own fresh database
/// and loopback port, all on one clock and the [`test_key`](crate::test_key),
/// every service's address known to every other. They stop when dropped.
pub struct Peers {
    /// The configuration the peers run with, and the one to open the service
    /// under test with: every service's URL, each peer's database, cheap
    /// password hashing.
    pub config: Config,
    /// The started peers, in start-up order.
    running: Vec<(ServiceName, Running)>,
    /// Each peer's database, so tests can write behind a peer's back.
    databases: Vec<(ServiceName, TestDatabase)>,
    /// The clock every peer runs on.
    clock: ManualClock,
}

impl Peers {
    /// Starts the peers of `under_test`, which uses `db`, on `clock`.
    ///
    /// The peers' databases are named after `label` (`{label}_i`, `_a`,
    /// `_c`). `configure` changes the configuration last, before anything
    /// starts. Returns the peers and the listener the service under test is
    /// to serve on: its address is in the configuration already, so peers
    /// that call it find it once it serves.
    pub async fn start(
        label: &str,
        under_test: ServiceName,
        db: &TestDatabase,
        clock: ManualClock,
        configure: impl FnOnce(&mut Config),
    ) -> (Self, TcpListener) {
        let mut config = test_config(db);
        let mut databases = Vec::new();
        let mut listeners = Vec::new();
        for name in PEERS.into_iter().filter(|&name| name != under_test) {
            let initial = &name.as_str()[..1];
            let peer_db = TestDatabase::new(&format!("{label}_{initial}")).await;
            config.service_mut(name).database_url = Some(peer_db.url.clone());
            databases.push((name, peer_db));
            listeners.push((name, loopback().await));
        }
        // Every address is known before anything serves: the services call
        // each other.
        let own = loopback().await;
        config.service_mut(under_test).url = Some(url_of(&own));
        for (name, listener) in &listeners {
            config.service_mut(*name).url = Some(url_of(listener));
        }
        // Cheap hashing in tests; identity's benchmark measures the real
        // settings.
        config.auth.argon2_memory_kib = 1024;
        config.auth.argon2_iterations = 1;
        configure(&mut config);
        let mut running = Vec::new();
        for (name, listener) in listeners {
            running.push((name, start_peer(name, listener, &config, &clock).await));
        }
        let peers = Self {
            config,
            running,
            databases,
            clock,
        };
        (peers, own)
    }

    /// The running peer `name`.
    pub fn running(&self, name: ServiceName) -> &Running {
        self.running
            .iter()
            .find_map(|(n, running)| (*n == name).then_some(running))
            .unwrap_or_else(|| panic!("{} is the service under test", name.as_str()))
    }

    /// Where peer `name` listens.
    pub fn address(&self, name: ServiceName) -> SocketAddr {
        self.running(name).address
    }

    /// A channel to peer `name`.
    pub async fn channel(&self, name: ServiceName) -> TestChannel {
        self.running(name).channel().await
    }

    /// Stops peer `name`, as if its only replica died: its server ends and
    /// calls to its address are refused until [`Peers::restart`].
    pub async fn stop(&mut self, name: ServiceName) {
        self.running.retain(|(n, _)| *n != name);
        // Wait until the port refuses connections, so the next call fails.
        let address = self.config.service(name).url.clone().unwrap_or_default();
        let address = address.trim_start_matches("https://").to_owned();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(&address).await.is_ok() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not stop",
                name.as_str()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts peer `name` again after [`Peers::stop`]: a new server on the
    /// same address, database and clock, as a restarted replica.
    pub async fn restart(&mut self, name: ServiceName) {
        let url = self.config.service(name).url.clone().unwrap_or_default();
        let address = url.trim_start_matches("https://").to_owned();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(&address).await {
                Ok(listener) => break listener,
                Err(error) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "cannot listen on {address} again: {error}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let started = start_peer(name, listener, &self.config, &self.clock).await;
        self.running.push((name, started));
    }

    /// The database of peer `name`.
    pub fn database(&self, name: ServiceName) -> &TestDatabase {
        self.databases
            .iter()
            .find_map(|(n, db)| (*n == name).then_some(db))
            .unwrap_or_else(|| panic!("{} is the service under test", name.as_str()))
    }
}

/// Starts peer `name` on `listener`.
async fn start_peer(
    name: ServiceName,
    listener: TcpListener,
    config: &Config,
    clock: &ManualClock,
) -> Running {
    let context = test_context(config.clone(), Arc::new(clock.clone()));
    match name {
        ServiceName::Contacts => {
            start_on::<tenancy_contacts::ContactsService>(listener, context, clock.clone()).await
        }
        ServiceName::Identity => {
            start_on::<tenancy_identity::IdentityService>(listener, context, clock.clone()).await
        }
        ServiceName::Account => {
            start_on::<tenancy_account::AccountService>(listener, context, clock.clone()).await
        }
        ServiceName::Support => panic!("support is no peer"),
    }
}

/// `https://` and where `listener` listens.
fn url_of(listener: &TcpListener) -> String {
    format!("https://{}", listener.local_addr().unwrap())
}
