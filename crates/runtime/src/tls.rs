//! Transport security: TLS on the public port, mutual TLS between parts.
//!
//! - Every part (gateway, services, the operator command) presents a
//!   certificate from the internal CA that names it with the DNS subject
//!   alternative name `<name>.tenancy` ([`dns_name`]), and verifies its peer
//!   against that CA. A service learns who calls it from the certificate
//!   ([`PeerInfo::caller`]), never from metadata; a client checks that the
//!   server it dialled is the part it meant to reach.
//! - Certificates, keys and the CA are PEM files, read again every
//!   `tls.reload_interval` ([`Reloading`]): a rotated certificate (as
//!   cert-manager writes it) is used for every new connection, while open
//!   connections go on.
//! - [`dev`] makes the throw-away CA and certificates of `tenancy serve` and
//!   of the tests.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

pub use tenancy_proto::auth::Caller;

/// The suffix of every part's certificate name: `identity.tenancy`.
pub const NAME_SUFFIX: &str = "tenancy";

/// The ALPN protocol of every connection: gRPC is HTTP/2 only.
const ALPN_H2: &[u8] = b"h2";

/// How long a peer may take to finish its TLS handshake before the
/// connection is closed: a stalled client must not hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Every caller a certificate can name.
pub const CALLERS: [Caller; 8] = [
    Caller::Gateway,
    Caller::Identity,
    Caller::Account,
    Caller::Contacts,
    Caller::Support,
    Caller::Operator,
    Caller::Billing,
    Caller::Provisioning,
];

/// The short name of a caller: `gateway`, `identity`, … (`unspecified` for
/// none).
pub fn caller_name(caller: Caller) -> &'static str {
    match caller {
        Caller::Unspecified => "unspecified",
        Caller::Gateway => "gateway",
        Caller::Identity => "identity",
        Caller::Account => "account",
        Caller::Contacts => "contacts",
        Caller::Support => "support",
        Caller::Operator => "operator",
        Caller::Billing => "billing",
        Caller::Provisioning => "provisioning",
    }
}

/// The caller with this short name.
pub fn caller_named(name: &str) -> Option<Caller> {
    CALLERS.into_iter().find(|c| caller_name(*c) == name)
}

/// The DNS name a caller's certificate carries: `identity.tenancy`.
pub fn dns_name(caller: Caller) -> String {
    format!("{}.{NAME_SUFFIX}", caller_name(caller))
}

fn server_name(caller: Caller) -> Result<ServerName<'static>, String> {
    ServerName::try_from(dns_name(caller)).map_err(|e| e.to_string())
}

/// The crypto provider of every TLS config: ring, which the tree already
/// builds for sqlx and lettre.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Which caller a certificate names: exactly one `<name>.tenancy` of a
/// known caller, or `None` (no such name, or several, as a wildcard would).
pub fn caller_of(certificate: &CertificateDer<'_>) -> Option<Caller> {
    let end_entity = webpki::EndEntityCert::try_from(certificate).ok()?;
    let mut named = CALLERS.into_iter().filter(|caller| {
        server_name(*caller)
            .is_ok_and(|name| end_entity.verify_is_valid_for_subject_name(&name).is_ok())
    });
    match (named.next(), named.next()) {
        (Some(caller), None) => Some(caller),
        _ => None,
    }
}

/// PEM certificates of a file's bytes.
fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: {e}"))?;
    if certificates.is_empty() {
        return Err(format!("{what}: no PEM certificate"));
    }
    Ok(certificates)
}

fn private_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("{what}: {e}"))
}

fn roots(pem: &[u8]) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(pem, "CA")? {
        roots.add(certificate).map_err(|e| format!("CA: {e}"))?;
    }
    Ok(Arc::new(roots))
}

/// TLS 1.3 and 1.2 only, h2 only.
fn server_config(
    client_auth: Option<Arc<RootCertStore>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, String> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let builder = match client_auth {
        Some(roots) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| e.to_string())?,
        ),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("certificate and key: {e}"))?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// What builds a value from the contents of watched files.
type Build<T> = Box<dyn Fn(&[Vec<u8>]) -> Result<T, String> + Send + Sync>;

/// Files watched for changes, and what was last built from them.
pub struct Reloading<T> {
    label: String,
    files: Vec<PathBuf>,
    seen: Mutex<Vec<Vec<u8>>>,
    current: RwLock<Arc<T>>,
    build: Build<T>,
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// Reads `files`, builds from their contents, and (inside a tokio
    /// runtime) reads them again every `interval`, rebuilding when any
    /// changed. A change that does not build is logged and the previous
    /// value kept. The watch ends when the value is dropped.
    pub fn load(
        label: impl Into<String>,
        files: Vec<PathBuf>,
        interval: Duration,
        build: impl Fn(&[Vec<u8>]) -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<Arc<Self>, String> {
        let contents = files
            .iter()
            .map(|path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display())))
            .collect::<Result<Vec<_>, _>>()?;
        let built = build(&contents)?;
        let this = Arc::new(Self {
            label: label.into(),
            files,
            seen: Mutex::new(contents),
            current: RwLock::new(Arc::new(built)),
            build: Box::new(build),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(watch(Arc::downgrade(&this), interval));
        }
        Ok(this)
    }

    /// What was built from the files as they were last read.
    pub fn current(&self) -> Arc<T> {
        self.current.read().clone()
    }

    /// Reads the files now and rebuilds if any changed; `Ok(true)` when it
    /// did.
    pub async fn reload(&self) -> Result<bool, String> {
        let mut contents = Vec::with_capacity(self.files.len());
        for path in &self.files {
            contents.push(
                tokio::fs::read(path)
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))?,
            );
        }
        if *self.seen.lock() == contents {
            return Ok(false);
        }
        let built = (self.build)(&contents)?;
        *self.current.write() = Arc::new(built);
        *self.seen.lock() = contents;
        tracing::info!(what = %self.label, "TLS files changed; new connections use them");
        Ok(true)
    }
}

async fn watch<T: Send + Sync + 'static>(this: Weak<Reloading<T>>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(this) = this.upgrade() else { return };
        if let Err(error) = this.reload().await {
            tracing::warn!(what = %this.label, %error, "TLS files changed but cannot be used; keeping the previous ones");
        }
    }
}

/// Where one party's PEM files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The internal CA's certificate(s), to verify peers against.
    pub ca: PathBuf,
    /// This party's certificate chain (its own certificate first).
    pub cert: PathBuf,
    /// This party's private key.
    pub key: PathBuf,
}

/// One part's mutual-TLS material: what it serves with (client certificates
/// required) and what it dials with (its own certificate presented, the
/// server's checked against the CA and the expected name).
pub struct PartTls {
    caller: Caller,
    configs: Arc<Reloading<(Arc<ServerConfig>, Arc<ClientConfig>)>>,
}

impl PartTls {
    /// Loads `files` for `caller`, refusing a certificate that does not
    /// name it.
    pub fn load(caller: Caller, files: &TlsFiles, interval: Duration) -> Result<Self, String> {
        let configs = Reloading::load(
            format!("{} certificate", caller_name(caller)),
            vec![files.ca.clone(), files.cert.clone(), files.key.clone()],
            interval,
            move |contents| {
                let [ca, cert, key] = contents else {
                    return Err("three files expected".to_owned());
                };
                let roots = roots(ca)?;
                let chain = certificates(cert, "certificate")?;
                if caller_of(&chain[0]) != Some(caller) {
                    return Err(format!(
                        "the certificate does not name {} (DNS name {})",
                        caller_name(caller),
                        dns_name(caller)
                    ));
                }
                let key = private_key(key, "key")?;
                let server = server_config(Some(roots.clone()), chain.clone(), key.clone_key())?;
                let mut client = ClientConfig::builder_with_provider(provider())
                    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(roots)
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("certificate and key: {e}"))?;
                client.alpn_protocols = vec![ALPN_H2.to_vec()];
                Ok((Arc::new(server), Arc::new(client)))
            },
        )?;
        Ok(Self { caller, configs })
    }

    /// Who this is.
    pub fn caller(&self) -> Caller {
        self.caller
    }

    /// Reads the files again now (tests; the watch does this periodically).
    pub async fn reload(&self) -> Result<bool, String> {
        self.configs.reload().await
    }

    /// Opens a TLS connection over `tcp` to the part `server`, presenting
    /// this part's certificate; refused unless the server's certificate
    /// chains to the CA and names `server`.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        server: Caller,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = server_name(server).map_err(io::Error::other)?;
        let config = self.configs.current().1.clone();
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
    }

    /// The handshake of an accepted connection, requiring a client
    /// certificate from the CA that names a known caller.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<PeerStream> {
        let remote = tcp.peer_addr().ok();
        let config = self.configs.current().0.clone();
        let stream = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            tokio_rustls::TlsAcceptor::from(config).accept(tcp),
        )
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        let caller = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(caller_of)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "the client certificate names no known caller",
                )
            })?;
        Ok(PeerStream {
            inner: stream,
            info: PeerInfo { remote, caller },
        })
    }

    /// The connections accepted on `listener`, each after its handshake
    /// (done concurrently, so a slow peer delays nobody). Peers that fail
    /// the handshake are logged and dropped. Ends when the stream is
    /// dropped.
    pub fn incoming(
        self: &Arc<Self>,
        listener: TcpListener,
    ) -> impl futures::Stream<Item = io::Result<PeerStream>> + Send + 'static {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            tracing::warn!(%error, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    () = tx.closed() => return,
                };
                // Headers, data and trailers must not wait on Nagle's
                // algorithm and the peer's delayed ACK (~40 ms a call).
                let _ = tcp.set_nodelay(true);
                let this = this.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match this.accept(tcp).await {
                        Ok(stream) => {
                            let _ = tx.send(Ok(stream)).await;
                        }
                        Err(error) => {
                            tracing::info!(%peer, %error, "TLS handshake refused");
                        }
                    }
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}

/// The server side of a public port: a certificate and key from files,
/// no client certificate asked for.
pub struct PublicTls {
    config: Arc<Reloading<Arc<ServerConfig>>>,
}

impl PublicTls {
    /// Loads the certificate chain and key.
    pub fn load(cert: &Path, key: &Path, interval: Duration) -> Result<Self, String> {
        let config = Reloading::load(
            "public certificate",
            vec![cert.to_owned(), key.to_owned()],
            interval,
            |contents| {
                let [cert, key] = contents else {
                    return Err("two files expected".to_owned());
                };
                let chain = certificates(cert, "certificate")?;
                let key = private_key(key, "key")?;
                Ok(Arc::new(server_config(None, chain, key)?))
            },
        )?;
        Ok(Self { config })
    }

    /// Reads the files again now.
    pub async fn reload(&self) -> Result<bool, String> {
        self.config.reload().await
    }

    /// The handshake of an accepted connection.
    pub async fn accept(
        &self,
        tcp: TcpStream,
    ) -> io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
        let config = self.config.current().as_ref().clone();
        tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            tokio_rustls::TlsAcceptor::from(config).accept(tcp),
        )
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
    }
}

/// Who is at the other end of an accepted mutual-TLS connection. Tonic puts
/// it into every request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct PeerInfo {
    /// The peer's address.
    pub remote: Option<SocketAddr>,
    /// The caller its certificate names.
    pub caller: Caller,
}

/// An accepted mutual-TLS connection and who is at its other end.
pub struct PeerStream {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: PeerInfo,
}

impl tonic::transport::server::Connected for PeerStream {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Dials one part over mutual TLS: what tonic's channels connect with.
#[derive(Clone)]
pub struct Connector {
    tls: Arc<PartTls>,
    server: Caller,
    timeout: Duration,
}

impl Connector {
    /// A connector presenting `tls` and expecting `server`, giving up on a
    /// connection not established (TCP and TLS) after `timeout`.
    pub fn new(tls: Arc<PartTls>, server: Caller, timeout: Duration) -> Self {
        Self {
            tls,
            server,
            timeout,
        }
    }

    /// Connects to `authority` (`host:port`).
    pub async fn dial(
        &self,
        authority: &str,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        // The TCP connect and the handshake together: a peer that accepts
        // connections but never answers (hung, or packets dropped) holds
        // nobody longer than this.
        tokio::time::timeout(self.timeout, async {
            let tcp = TcpStream::connect(authority).await?;
            tcp.set_nodelay(true)?;
            self.tls.connect(tcp, self.server).await
        })
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
    }
}

impl tower::Service<http::Uri> for Connector {
    type Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = BoxFuture<io::Result<Self::Response>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let authority = uri
                .authority()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "URL without host"))?
                .to_string();
            this.dial(&authority)
                .await
                .map(hyper_util::rt::TokioIo::new)
        })
    }
}

pub mod dev {
    //! A throw-away CA and certificates for every caller: what `tenancy
    //! serve` writes to its data directory and the tests use.

    use std::path::{Path, PathBuf};

    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    use time::{Duration, OffsetDateTime};

    use super::{CALLERS, Caller, TlsFiles, caller_name, dns_name};

    /// The CA's certificate file in a dev PKI directory.
    pub const CA_FILE: &str = "ca.pem";
    /// The CA's key file.
    pub const CA_KEY_FILE: &str = "ca.key";
    /// The certificate for the public port (`localhost`, `127.0.0.1`,
    /// `::1`).
    pub const PUBLIC: &str = "public";

    /// The CA's parameters. Always the same, so a CA kept on disk can issue
    /// again from its key alone.
    fn ca_params() -> CertificateParams {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "Tenancy");
        name.push(DnType::CommonName, "Tenancy development CA");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
    }

    fn validity(params: &mut CertificateParams, days: i64) {
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(days);
    }

    /// A directory holding a CA (`ca.pem`, `ca.key`) and certificates
    /// (`<name>.pem`, `<name>.key`).
    pub struct DevPki {
        dir: PathBuf,
        issuer: Issuer<'static, KeyPair>,
    }

    impl DevPki {
        /// The CA in `dir`, created there when missing.
        pub fn open(dir: &Path) -> Result<Self, String> {
            let io = |e: std::io::Error| format!("{}: {e}", dir.display());
            std::fs::create_dir_all(dir).map_err(io)?;
            let ca_cert = dir.join(CA_FILE);
            let ca_key = dir.join(CA_KEY_FILE);
            let key = if ca_cert.is_file() && ca_key.is_file() {
                let pem = std::fs::read_to_string(&ca_key).map_err(io)?;
                KeyPair::from_pem(&pem).map_err(|e| format!("{}: {e}", ca_key.display()))?
            } else {
                let key = KeyPair::generate().map_err(|e| e.to_string())?;
                let mut params = ca_params();
                validity(&mut params, 3650);
                let certificate = params.self_signed(&key).map_err(|e| e.to_string())?;
                write(&ca_key, &key.serialize_pem(), true)?;
                write(&ca_cert, &certificate.pem(), false)?;
                key
            };
            Ok(Self {
                dir: dir.to_owned(),
                issuer: Issuer::new(ca_params(), key),
            })
        }

        /// A fresh CA in `dir`, replacing any there (tests: "another CA").
        pub fn create(dir: &Path) -> Result<Self, String> {
            for file in [CA_FILE, CA_KEY_FILE] {
                let _ = std::fs::remove_file(dir.join(file));
            }
            Self::open(dir)
        }

        /// The CA certificate file.
        pub fn ca_file(&self) -> PathBuf {
            self.dir.join(CA_FILE)
        }

        /// The files of the certificate `name`.
        pub fn files(&self, name: &str) -> TlsFiles {
            TlsFiles {
                ca: self.ca_file(),
                cert: self.dir.join(format!("{name}.pem")),
                key: self.dir.join(format!("{name}.key")),
            }
        }

        /// Issues (again) the certificate of `caller`, for one year, naming
        /// it `<name>.tenancy`, usable as server and client certificate.
        pub fn issue_for(&self, caller: Caller) -> Result<TlsFiles, String> {
            self.issue(caller_name(caller), &[dns_name(caller)])
        }

        /// Issues (again) every caller's certificate and the public one.
        pub fn issue_all(&self) -> Result<(), String> {
            for caller in CALLERS {
                self.issue_for(caller)?;
            }
            self.issue(
                PUBLIC,
                &["localhost".into(), "127.0.0.1".into(), "::1".into()],
            )?;
            Ok(())
        }

        /// Issues (again) a certificate `name` for `names` (DNS names or IP
        /// addresses), written as `<name>.pem` and `<name>.key`.
        pub fn issue(&self, name: &str, names: &[String]) -> Result<TlsFiles, String> {
            let key = KeyPair::generate().map_err(|e| e.to_string())?;
            let mut params = CertificateParams::new(names.to_vec()).map_err(|e| e.to_string())?;
            params.distinguished_name.push(
                DnType::CommonName,
                names.first().cloned().unwrap_or_default(),
            );
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            params.use_authority_key_identifier_extension = true;
            validity(&mut params, 365);
            let certificate = params
                .signed_by(&key, &self.issuer)
                .map_err(|e| e.to_string())?;
            let files = self.files(name);
            // Key first: a reader that sees the new certificate finds its key.
            write(&files.key, &key.serialize_pem(), true)?;
            write(&files.cert, &certificate.pem(), false)?;
            Ok(files)
        }
    }

    /// Writes `text` to `path` through a temporary file and a rename, so a
    /// reader never sees half a file; `private` files are readable by the
    /// owner only.
    fn write(path: &Path, text: &str, private: bool) -> Result<(), String> {
        use std::io::Write as _;
        let io = |e: std::io::Error| format!("{}: {e}", path.display());
        let temporary = path.with_extension(format!("tmp{}", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut file = options.open(&temporary).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&temporary, path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_names_exactly_one_caller() {
        let dir = std::env::temp_dir().join(format!("tenancy-tls-{}", uuid::Uuid::new_v4()));
        let pki = dev::DevPki::open(&dir).unwrap();
        let files = pki.issue_for(Caller::Identity).unwrap();
        let pem = std::fs::read(&files.cert).unwrap();
        let cert = certificates(&pem, "c").unwrap().remove(0);
        assert_eq!(caller_of(&cert), Some(Caller::Identity));
        // Two names, a wildcard, or none: no caller.
        for names in [
            vec![dns_name(Caller::Identity), dns_name(Caller::Gateway)],
            vec!["*.tenancy".to_owned()],
            vec!["identity".to_owned()],
        ] {
            let files = pki.issue("odd", &names).unwrap();
            let pem = std::fs::read(&files.cert).unwrap();
            let cert = certificates(&pem, "c").unwrap().remove(0);
            assert_eq!(caller_of(&cert), None, "{names:?}");
        }
        assert!(PartTls::load(Caller::Account, &files, Duration::from_secs(60)).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn caller_names_round_trip() {
        for caller in CALLERS {
            assert_eq!(caller_named(caller_name(caller)), Some(caller));
        }
        assert_eq!(dns_name(Caller::Gateway), "gateway.tenancy");
    }
}
