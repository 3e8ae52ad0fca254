//! [`Peers`]: the real identity, account and contacts services beside the
//! service under test (feature `peers`).

use std::net::SocketAddr;
use std::sync::Arc;

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
            let context = test_context(config.clone(), Arc::new(clock.clone()));
            let started = match name {
                ServiceName::Contacts => {
                    start_on::<tenancy_contacts::ContactsService>(listener, context, clock.clone())
                        .await
                }
                ServiceName::Identity => {
                    start_on::<tenancy_identity::IdentityService>(listener, context, clock.clone())
                        .await
                }
                ServiceName::Account => {
                    start_on::<tenancy_account::AccountService>(listener, context, clock.clone())
                        .await
                }
                ServiceName::Support => panic!("support is no peer"),
            };
            running.push((name, started));
        }
        let peers = Self {
            config,
            running,
            databases,
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

    /// The database of peer `name`.
    pub fn database(&self, name: ServiceName) -> &TestDatabase {
        self.databases
            .iter()
            .find_map(|(n, db)| (*n == name).then_some(db))
            .unwrap_or_else(|| panic!("{} is the service under test", name.as_str()))
    }
}

/// `https://` and where `listener` listens.
fn url_of(listener: &TcpListener) -> String {
    format!("https://{}", listener.local_addr().unwrap())
}
