//! Zero trust inside (issue 16), over real gRPC on loopback: mutual TLS
//! between parts, callers named by their certificates, a principal good for
//! one call of one method, PUBLIC methods only through the gateway, TLS on
//! the public port with certificates reloaded from disk, keys from one place.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tenancy::{Part, Running, start};
use tenancy_proto::account::InviteMemberRequest;
use tenancy_proto::account::account_service_client::AccountServiceClient;
use tenancy_proto::auth::Audience;
use tenancy_proto::contacts::ListOutboxMessagesRequest;
use tenancy_proto::contacts::contacts_internal_service_client::ContactsInternalServiceClient;
use tenancy_proto::contacts::contacts_service_client::ContactsServiceClient;
use tenancy_proto::contacts::{CreateContactRequest, ListContactsRequest};
use tenancy_proto::identity::identity_service_client::IdentityServiceClient;
use tenancy_proto::identity::login_response::Outcome;
use tenancy_proto::identity::{LoginRequest, SignUpRequest, VerifyEmailRequest};

const PASSWORD: &str = "correct horse battery staple";
use tenancy_runtime::config::{Config, ServiceName};
use tenancy_runtime::error::reason_of;
use tenancy_runtime::principal::{Call, PrincipalKey, SignedPrincipal};
use tenancy_runtime::rules::MethodRules;
use tenancy_runtime::tls::dev::DevPki;
use tenancy_runtime::tls::{CALLERS, Caller as Peer, caller_name};
use tenancy_runtime::{Clock as _, Reason, SystemClock};
use tenancy_testkit::{
    Caller, Role, TestChannel, TestDatabase, member, refusal, test_config, test_key,
};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

/// The whole suite on a database of its own, returned with it: keep the
/// database as long as the suite runs (dropping it drops a PostgreSQL one).
async fn suite(tweak: impl FnOnce(&mut Config)) -> (Running, TestDatabase) {
    let db = TestDatabase::new("transport").await;
    let mut config = test_config(&db);
    config.auth.argon2_memory_kib = 1024;
    config.auth.argon2_iterations = 1;
    tweak(&mut config);
    let running = start(config, Part::All, Arc::new(SystemClock))
        .await
        .unwrap();
    (running, db)
}

fn service(running: &Running, name: ServiceName) -> TestChannel {
    TestChannel::new(name.caller(), running.service(name).unwrap())
}

/// `principal` signed (with the test key) for one call of `method`.
fn signed_for(method: &str, id: u8) -> SignedPrincipal {
    test_key().sign(
        &member(
            &uuid::Uuid::now_v7().to_string(),
            &uuid::Uuid::now_v7().to_string(),
            Role::Owner,
        ),
        Call {
            method,
            id: [id; 16],
        },
        SystemClock.now(),
    )
}

fn with<T>(message: T, signed: &SignedPrincipal) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    signed.insert_into_metadata(request.metadata_mut());
    request
}

const LIST_CONTACTS: &str = "/tenancy.contacts.v1.ContactsService/ListContacts";

/// A principal the gateway signed for one ListContacts call, captured and
/// sent again — even over a connection with the gateway's own certificate —
/// is refused: again to ListContacts (a replay), to another method of the
/// same service, and to another service (InviteMember as an OWNER).
#[tokio::test]
async fn a_signed_principal_is_good_for_one_call_of_one_method() {
    let (running, _db) = suite(|_| {}).await;
    let contacts = service(&running, ServiceName::Contacts).as_caller(Peer::Gateway);
    let account = service(&running, ServiceName::Account).as_caller(Peer::Gateway);
    let captured = signed_for(LIST_CONTACTS, 1);

    let first = ContactsServiceClient::new(contacts.clone())
        .list_contacts(with(ListContactsRequest::default(), &captured))
        .await;
    // The principal's account does not exist: the handler may refuse, but
    // the principal itself was accepted.
    if let Err(status) = &first {
        let reason = refusal(status);
        assert!(!reason.as_str().starts_with("PRINCIPAL_"), "{status:?}");
    }

    let again = ContactsServiceClient::new(contacts.clone())
        .list_contacts(with(ListContactsRequest::default(), &captured))
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::Unauthenticated);
    assert_eq!(refusal(&again), Reason::PrincipalReplayed);

    let other_method = ContactsServiceClient::new(contacts)
        .create_contact(with(CreateContactRequest::default(), &captured))
        .await
        .unwrap_err();
    assert_eq!(refusal(&other_method), Reason::PrincipalWrongMethod);

    // Never used on account, so only the method binding stops it there.
    let fresh = signed_for(LIST_CONTACTS, 2);
    let other_service = AccountServiceClient::new(account)
        .invite_member(with(
            InviteMemberRequest {
                email: "attacker@example.com".into(),
                role: Role::Owner as i32,
                ..Default::default()
            },
            &fresh,
        ))
        .await
        .unwrap_err();
    assert_eq!(other_service.code(), tonic::Code::Unauthenticated);
    assert_eq!(refusal(&other_service), Reason::PrincipalWrongMethod);
    running.stop().await.unwrap();
}

/// A principal-key rotation: services with the next key in
/// `principal_keys_accepted` take principals signed with it as well as
/// with `principal_key` (so gateways can switch one by one), and still
/// refuse any other key.
#[tokio::test]
async fn during_a_key_rotation_services_accept_the_current_and_the_next_key_only() {
    let next = PrincipalKey::generate();
    let next_hex = next.to_hex();
    let (running, _db) = suite(|config| {
        config.principal_keys_accepted = Some(format!(" {next_hex} "));
    })
    .await;
    let contacts = service(&running, ServiceName::Contacts).as_caller(Peer::Gateway);
    let call = |key: &PrincipalKey, id: u8| {
        let signed = key.sign(
            &member(
                &uuid::Uuid::now_v7().to_string(),
                &uuid::Uuid::now_v7().to_string(),
                Role::Owner,
            ),
            Call {
                method: LIST_CONTACTS,
                id: [id; 16],
            },
            SystemClock.now(),
        );
        let mut client = ContactsServiceClient::new(contacts.clone());
        async move {
            client
                .list_contacts(with(ListContactsRequest::default(), &signed))
                .await
        }
    };
    for (key, id) in [(test_key(), 1), (next, 2)] {
        // The principal's account does not exist: the handler may refuse,
        // but the principal itself was accepted.
        if let Err(status) = call(&key, id).await {
            assert!(
                !refusal(&status).as_str().starts_with("PRINCIPAL_"),
                "{status:?}"
            );
        }
    }
    let stranger = call(&PrincipalKey::generate(), 3).await.unwrap_err();
    assert_eq!(stranger.code(), tonic::Code::Unauthenticated);
    assert_eq!(refusal(&stranger), Reason::PrincipalInvalid);
    running.stop().await.unwrap();
}

/// Calls `path` with an empty request over `channel`; the status, or `None`
/// when the call was let through (an answer, or a stream still open after
/// a second).
async fn raw_call(channel: TestChannel, path: &str) -> Option<tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let path = http::uri::PathAndQuery::try_from(path).unwrap();
    let call = async {
        grpc.ready().await.unwrap();
        match grpc
            .server_streaming(tonic::Request::new(()), path, codec)
            .await
        {
            Ok(response) => {
                let mut stream = response.into_inner();
                match stream.next().await {
                    Some(Err(status)) => Some(status),
                    _ => None,
                }
            }
            Err(status) => Some(status),
        }
    };
    tokio::time::timeout(Duration::from_secs(1), call)
        .await
        .unwrap_or(None)
}

/// Every INTERNAL method of every service refuses each caller its rule does
/// not name (PERMISSION_DENIED, CALLER_NOT_ALLOWED) and lets each named
/// caller through to the handler. The caller is the one its certificate
/// names: nothing in metadata is consulted.
#[tokio::test]
async fn every_internal_method_is_refused_to_the_callers_its_rule_does_not_name() {
    let (running, _db) = suite(|_| {}).await;
    let rules = MethodRules::tenancy().unwrap();
    let owner = |service: &str| match service.split('.').nth(1) {
        Some("identity") => ServiceName::Identity,
        Some("account") => ServiceName::Account,
        Some("contacts") => ServiceName::Contacts,
        _ => ServiceName::Support,
    };
    let mut checked = 0;
    for method in rules.methods() {
        let rule = method.rule.as_ref().unwrap();
        if rule.audience() != Audience::Internal {
            continue;
        }
        let channel = service(&running, owner(&method.service));
        let allowed: Vec<Peer> = rule.callers().collect();
        assert!(!allowed.is_empty(), "{} names no caller", method.path);
        for caller in CALLERS {
            let status = raw_call(channel.as_caller(caller), &method.path).await;
            let refused = status.as_ref().is_some_and(|s| {
                s.code() == tonic::Code::PermissionDenied
                    && reason_of(s) == Some(Reason::CallerNotAllowed)
            });
            assert_eq!(
                refused,
                !allowed.contains(&caller),
                "{} called by {}: {status:?}",
                method.path,
                caller_name(caller)
            );
            checked += 1;
        }
    }
    assert!(checked >= 27 * CALLERS.len(), "only {checked} checks");
    running.stop().await.unwrap();
}

/// A TLS client config trusting the test CA, presenting `identity` (a
/// certificate and key file pair) or nothing.
fn client_config(identity: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(tenancy_testkit::test_pki().join("ca.pem")).unwrap();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => {
            let chain = rustls_pki_types::CertificateDer::pem_file_iter(cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// Connects to `address` as `identity` and asks for health over HTTP/2;
/// whether an answer came back.
async fn answers(address: SocketAddr, config: Arc<rustls::ClientConfig>, server: Peer) -> bool {
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(address).await.ok()?;
        let name =
            rustls_pki_types::ServerName::try_from(tenancy_runtime::tls::dns_name(server)).unwrap();
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .ok()?;
        let (client, connection) = h2::client::handshake(tls).await.ok()?;
        tokio::spawn(connection);
        Some(h2_health(client).await? == http::StatusCode::OK)
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Asks for gRPC health on an HTTP/2 connection; the HTTP status.
async fn h2_health(client: h2::client::SendRequest<bytes::Bytes>) -> Option<http::StatusCode> {
    let mut client = client.ready().await.ok()?;
    let request = http::Request::post("https://localhost/grpc.health.v1.Health/Check")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(request, false).ok()?;
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .ok()?;
    Some(response.await.ok()?.status())
}

/// A service answers a client with a certificate from the internal CA, and
/// no client without one, or with a certificate of another CA naming a real
/// part: those are refused at the handshake, before any HTTP/2.
#[tokio::test]
async fn a_client_without_a_certificate_or_with_another_cas_cannot_connect_to_a_service() {
    let (running, _db) = suite(|_| {}).await;
    let identity = running.service(ServiceName::Identity).unwrap();
    let pki = tenancy_testkit::test_pki();
    let ours = client_config(Some((&pki.join("gateway.pem"), &pki.join("gateway.key"))));
    assert!(
        answers(identity, ours, Peer::Identity).await,
        "a part's own certificate works"
    );

    assert!(
        !answers(identity, client_config(None), Peer::Identity).await,
        "no client certificate"
    );

    let dir = std::env::temp_dir().join(format!("tenancy-other-ca-{}", uuid::Uuid::new_v4()));
    let other = DevPki::create(&dir).unwrap();
    let forged = other.issue_for(Peer::Gateway).unwrap();
    assert!(
        !answers(
            identity,
            client_config(Some((&forged.cert, &forged.key))),
            Peer::Identity
        )
        .await,
        "a gateway certificate from another CA"
    );
    std::fs::remove_dir_all(dir).unwrap();
    running.stop().await.unwrap();
}

/// PUBLIC methods (Login) on a service port: refused without the gateway's
/// certificate (another part, the operator), and with it but without a
/// principal signed for the call.
#[tokio::test]
async fn public_methods_on_a_service_port_are_served_to_the_gateway_only() {
    let (running, _db) = suite(|_| {}).await;
    let identity = service(&running, ServiceName::Identity);
    let login = || LoginRequest {
        email: "ada@example.com".into(),
        password: "correct horse battery staple".into(),
        account_id: String::new(),
        unlock_token: String::new(),
    };
    let anonymous = tenancy_runtime::Principal::anonymous(
        Some("203.0.113.9".parse().unwrap()),
        "transport-test",
    );
    for caller in [Peer::Contacts, Peer::Operator, Peer::Account] {
        let status = IdentityServiceClient::with_interceptor(
            identity.as_caller(caller),
            Caller::new(anonymous.clone(), Arc::new(SystemClock)),
        )
        .login(login())
        .await
        .unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        assert_eq!(refusal(&status), Reason::GatewayOnly);
    }
    let status = IdentityServiceClient::new(identity.as_caller(Peer::Gateway))
        .sign_up(SignUpRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(refusal(&status), Reason::PrincipalMissing);
    // With the gateway's certificate and principal, Login reaches identity
    // (and fails for the unknown user, not for the caller).
    let status = IdentityServiceClient::with_interceptor(
        identity.as_caller(Peer::Gateway),
        Caller::new(anonymous, Arc::new(SystemClock)),
    )
    .login(login())
    .await
    .unwrap_err();
    assert!(
        !matches!(
            refusal(&status),
            Reason::GatewayOnly | Reason::PrincipalMissing
        ),
        "{status:?}"
    );
    running.stop().await.unwrap();
}

/// The PEM certificate the server at `address` presents on a new
/// connection (trusting any, as a client pinning nothing would see it).
async fn served_certificate(address: SocketAddr) -> Vec<u8> {
    let output = tokio::process::Command::new("openssl")
        .args(["s_client", "-connect", &address.to_string(), "-alpn", "h2"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let start = text.find("-----BEGIN CERTIFICATE-----").unwrap();
    let end = text.find("-----END CERTIFICATE-----").unwrap();
    text[start..end].as_bytes().to_vec()
}

async fn grpcurl(args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new("grpcurl")
        .args(args)
        .output()
        .await
        .expect("grpcurl is installed");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// The suite with TLS on the public port, from certificate files in a
/// directory of the test's own, read again every 100 ms.
struct PublicTlsSuite {
    dir: std::path::PathBuf,
    pki: DevPki,
    name: String,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    running: Running,
    _database: TestDatabase,
}

impl PublicTlsSuite {
    async fn start(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tenancy-public-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = DevPki::open(tenancy_testkit::test_pki()).unwrap();
        let (cert, key) = (dir.join("public.pem"), dir.join("public.key"));
        let this_name = format!("{name}-{}", uuid::Uuid::new_v4().simple());
        Self::install(&pki, &this_name, &dir, &cert, &key);
        let (running, database) = suite(|config| {
            config.gateway.tls_cert_file = Some(cert.clone());
            config.gateway.tls_key_file = Some(key.clone());
            config.tls.reload_interval = Some(Duration::from_millis(100));
        })
        .await;
        assert!(running.gateway_tls);
        Self {
            dir,
            pki,
            name: this_name,
            cert,
            key,
            running,
            _database: database,
        }
    }

    /// Issues a new certificate and key for the public names and puts them
    /// in place (key first, each by rename, as cert-manager's volumes swap).
    fn install(pki: &DevPki, name: &str, dir: &Path, cert: &Path, key: &Path) {
        let names = ["localhost".to_owned(), "127.0.0.1".to_owned()];
        let issued = pki.issue(name, &names).unwrap();
        std::fs::copy(&issued.key, dir.join("next.key")).unwrap();
        std::fs::copy(&issued.cert, dir.join("next.pem")).unwrap();
        std::fs::rename(dir.join("next.key"), key).unwrap();
        std::fs::rename(dir.join("next.pem"), cert).unwrap();
    }

    /// Rotates the certificate on disk and waits until new connections get
    /// it.
    async fn rotate(&self) {
        let gateway = self.running.gateway.unwrap();
        let before = served_certificate(gateway).await;
        Self::install(&self.pki, &self.name, &self.dir, &self.cert, &self.key);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now_served = served_certificate(gateway).await;
            if now_served != before {
                let expected = std::fs::read_to_string(&self.cert).unwrap();
                assert!(
                    expected.contains(std::str::from_utf8(&now_served).unwrap().trim()),
                    "the new certificate is served"
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the rotated certificate was never served"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(self) {
        self.running.stop().await.unwrap();
        std::fs::remove_dir_all(self.dir).unwrap();
    }
}

/// The public port serves TLS from files: grpcurl with `-cacert` lists the
/// public services (and no internal one: reflection finds none), and a
/// certificate rotated on disk is served to new connections without a
/// restart while an open connection goes on.
#[tokio::test]
async fn the_public_port_serves_tls_from_files_reloaded_when_they_change() {
    let public = PublicTlsSuite::start("rotating").await;
    let address = public.running.gateway.unwrap().to_string();
    let ca_arg = tenancy_testkit::test_pki()
        .join("ca.pem")
        .display()
        .to_string();

    let (ok, out) = grpcurl(&["-cacert", &ca_arg, &address, "list"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("tenancy.identity.v1.IdentityService"), "{out}");
    assert!(!out.contains("Internal"), "{out}");
    let (ok, out) = grpcurl(&[
        "-cacert",
        &ca_arg,
        &address,
        "describe",
        "tenancy.identity.v1.IdentityInternalService",
    ])
    .await;
    assert!(
        !ok,
        "an internal service is described through the gateway: {out}"
    );
    let (ok, out) = grpcurl(&["-plaintext", &address, "list"]).await;
    assert!(!ok, "plaintext on a TLS port: {out}");

    public.rotate().await;
    let (ok, out) = grpcurl(&["-cacert", &ca_arg, &address, "list"]).await;
    assert!(ok, "after rotation: {out}");
    public.stop().await;
}

/// An open HTTP/2 connection over TLS survives a rotation: one connection
/// answers a call before and after.
#[tokio::test]
async fn an_open_public_connection_survives_a_certificate_rotation() {
    let public = PublicTlsSuite::start("rotating-open").await;
    let tcp = tokio::net::TcpStream::connect(public.running.gateway.unwrap())
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(client_config(None))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (client, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    assert_eq!(h2_health(client.clone()).await, Some(http::StatusCode::OK));
    public.rotate().await;
    assert_eq!(
        h2_health(client).await,
        Some(http::StatusCode::OK),
        "the connection opened before the rotation still works"
    );
    public.stop().await;
}

/// Reflection through the gateway: an internal service's symbol is
/// NOT_FOUND (the public ones are found).
#[tokio::test]
async fn reflection_through_the_gateway_does_not_find_internal_services() {
    let (running, _db) = suite(|_| {}).await;
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", running.gateway.unwrap()))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut client = ServerReflectionClient::new(channel);
    for (symbol, found) in [
        ("tenancy.identity.v1.IdentityService", true),
        ("tenancy.identity.v1.IdentityInternalService", false),
        ("tenancy.account.v1.AccountInternalService", false),
        ("tenancy.contacts.v1.ContactsInternalService", false),
        ("tenancy.identity.v1.EnsureUserRequest", false),
    ] {
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(symbol.into())),
        };
        let response = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner()
            .next()
            .await
            .unwrap();
        // tonic-reflection ends the stream with NOT_FOUND; the protocol's
        // ErrorResponse would say the same.
        let response = match response {
            Ok(response) => response,
            Err(status) => {
                assert!(!found, "{symbol}: {status:?}");
                assert_eq!(status.code(), tonic::Code::NotFound, "{symbol}");
                continue;
            }
        };
        match response.message_response {
            Some(MessageResponse::FileDescriptorResponse(_)) => assert!(found, "{symbol} found"),
            Some(MessageResponse::ErrorResponse(error)) => {
                assert!(!found, "{symbol}: {error:?}");
                assert_eq!(error.error_code, tonic::Code::NotFound as i32, "{symbol}");
            }
            other => panic!("{symbol}: {other:?}"),
        }
    }
    running.stop().await.unwrap();
}

/// Plaintext on the public port is refused on a non-loopback address
/// unless explicitly allowed.
#[tokio::test]
async fn plaintext_on_a_non_loopback_address_is_refused_unless_allowed() {
    let db = TestDatabase::new("plaintext").await;
    let mut config = test_config(&db);
    config.gateway.listen = "0.0.0.0:0".parse().unwrap();
    let error = start(config, Part::All, Arc::new(SystemClock))
        .await
        .err()
        .unwrap();
    assert_eq!(error.setting, "gateway.listen", "{error}");
    let (running, _db) = suite(|config| {
        config.gateway.listen = "0.0.0.0:0".parse().unwrap();
        config.gateway.allow_plaintext = true;
    })
    .await;
    assert!(!running.gateway_tls);
    running.stop().await.unwrap();
}

/// `tenancy migrate` on a fresh data directory, then `tenancy serve`: both
/// take the keys from the same place, so the first signing key (sealed by
/// migrate) opens and a login signs its token.
#[tokio::test]
async fn migrate_then_serve_use_the_same_keys_and_login_works() {
    let db = TestDatabase::new("migrate_keys").await;
    let mut config = test_config(&db);
    config.principal_key = None;
    config.auth.totp_encryption_key = None;
    config.auth.argon2_memory_kib = 1024;
    config.auth.argon2_iterations = 1;
    tenancy::migrate(&config, Part::All).await.unwrap();
    let running = start(config, Part::All, Arc::new(SystemClock))
        .await
        .unwrap();
    let gateway =
        tonic::transport::Channel::from_shared(format!("http://{}", running.gateway.unwrap()))
            .unwrap()
            .connect()
            .await
            .unwrap();
    // Login signs an access token with the key migrate sealed (before,
    // it failed with INTERNAL "cannot decrypt secret").
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut client = IdentityServiceClient::new(gateway);
    let email = "ada@example.com";
    loop {
        let answer = client
            .sign_up(SignUpRequest {
                email: email.into(),
                password: PASSWORD.into(),
                name: "Ada".into(),
                phone: String::new(),
            })
            .await;
        match answer {
            Err(status) if status.code() == tonic::Code::Unavailable => {
                assert!(Instant::now() < deadline, "{status:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => {
                other.unwrap();
                break;
            }
        }
    }
    let contacts = service(&running, ServiceName::Contacts);
    let token = loop {
        let messages = ContactsInternalServiceClient::new(contacts.clone())
            .list_outbox_messages(ListOutboxMessagesRequest {
                to_email: email.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .messages;
        if let Some(url) = messages
            .iter()
            .find_map(|m| m.template_data.get("verify_url"))
        {
            break url.split("token=").nth(1).unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no verification email");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    client
        .verify_email(VerifyEmailRequest { token })
        .await
        .unwrap();
    let login = client
        .login(LoginRequest {
            email: email.into(),
            password: PASSWORD.into(),
            account_id: String::new(),
            unlock_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        matches!(login.outcome, Some(Outcome::Session(_))),
        "{login:?}"
    );
    running.stop().await.unwrap();
}
