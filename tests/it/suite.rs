//! The suite starts, every server is healthy and reflective, the gateway
//! routes what it should and nothing else, and bad settings fail cleanly.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt as _;
use tenancy::{Part, Running, start};
use tenancy_proto::identity::identity_internal_service_client::IdentityInternalServiceClient;
use tenancy_proto::identity::identity_service_client::IdentityServiceClient;
use tenancy_runtime::Reason;
use tenancy_runtime::SystemClock;
use tenancy_runtime::config::{Config, ServiceName};
use tenancy_runtime::tls::Caller as Peer;
use tenancy_testkit::{Caller, Role, TestChannel, TestDatabase, member, test_config};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn suite() -> Running {
    let db = TestDatabase::new("suite").await;
    start(test_config(&db), Part::All, Arc::new(SystemClock))
        .await
        .unwrap()
}

/// A channel to `name` of `running`, over mutual TLS.
fn service(running: &Running, name: ServiceName) -> TestChannel {
    TestChannel::new(name.caller(), running.service(name).unwrap())
}

/// A plaintext channel to the gateway's loopback port.
async fn channel(address: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn health<T>(channel: T, service: &str) -> ServingStatus
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .unwrap();
    response.into_inner().status()
}

async fn listed_services<T>(channel: T) -> Vec<String>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            names.sort();
            names
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

/// Polls health until it reports SERVING (the gateway does once its
/// identity and account streams have caught up) or `limit` passes.
async fn eventually_serving(address: SocketAddr, limit: std::time::Duration) -> ServingStatus {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let status = health(channel(address).await, "").await;
        if status == ServingStatus::Serving || tokio::time::Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_server_of_the_suite_reports_serving() {
    let running = suite().await;
    let gateway = running.gateway.unwrap();
    assert_eq!(
        eventually_serving(gateway, std::time::Duration::from_secs(10)).await,
        ServingStatus::Serving,
        "the gateway never caught up with identity and account"
    );
    for (name, address) in &running.services {
        assert_eq!(
            health(TestChannel::new(name.caller(), *address), "").await,
            ServingStatus::Serving,
            "{}",
            name.as_str()
        );
    }
    assert_eq!(
        health(
            service(&running, ServiceName::Identity),
            "tenancy.identity.v1.IdentityService"
        )
        .await,
        ServingStatus::Serving
    );
    running.stop().await.unwrap();
}

#[tokio::test]
async fn the_gateway_reflects_the_public_services_only() {
    let running = suite().await;
    let services = listed_services(channel(running.gateway.unwrap()).await).await;
    for expected in [
        "grpc.health.v1.Health",
        "tenancy.account.v1.AccountService",
        "tenancy.contacts.v1.ContactsService",
        "tenancy.identity.v1.IdentityService",
        "tenancy.support.v1.SupportService",
        "tenancy.support.v1.SupportStaffService",
    ] {
        assert!(
            services.iter().any(|s| s == expected),
            "{expected} missing from {services:?}"
        );
    }
    assert!(
        !services.iter().any(|s| s.contains("Internal")),
        "internal services must not be reflected by the gateway: {services:?}"
    );
    let identity = listed_services(service(&running, ServiceName::Identity)).await;
    assert!(
        identity
            .iter()
            .any(|s| s == "tenancy.identity.v1.IdentityInternalService")
    );
    running.stop().await.unwrap();
}

#[tokio::test]
async fn the_gateway_never_routes_internal_services() {
    let running = suite().await;
    let mut client = IdentityInternalServiceClient::new(channel(running.gateway.unwrap()).await);
    let status = client
        .batch_get_users(tenancy_proto::identity::BatchGetUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_principal_forged_by_the_client_is_stripped_by_the_gateway() {
    let running = suite().await;
    // Signed with the real key: only the gateway's stripping stops it.
    let forged = Caller::new(member("u-1", "a-1", Role::Owner), Arc::new(SystemClock));
    let mut client = IdentityServiceClient::with_interceptor(
        channel(running.gateway.unwrap()).await,
        forged.clone(),
    );
    let status = client
        .get_me(tenancy_proto::identity::GetMeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");

    // The same principal sent straight to the service (as the gateway) is
    // accepted: the refusal above came from the gateway's stripping.
    let mut direct =
        IdentityServiceClient::with_interceptor(service(&running, ServiceName::Identity), forged);
    let status = direct
        .get_me(tenancy_proto::identity::GetMeRequest::default())
        .await
        .unwrap_err();
    assert_ne!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn services_refuse_calls_without_a_signed_principal() {
    let running = suite().await;
    let identity = service(&running, ServiceName::Identity);
    let status = IdentityServiceClient::new(identity.clone())
        .get_me(tenancy_proto::identity::GetMeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(tenancy_testkit::refusal(&status), Reason::PrincipalMissing);

    // The gateway may not call an INTERNAL method it is not listed for,
    // whatever principal it signs.
    let user = Caller::new(member("u-1", "a-1", Role::Owner), Arc::new(SystemClock));
    let status =
        IdentityInternalServiceClient::with_interceptor(identity.as_caller(Peer::Gateway), user)
            .batch_get_users(tenancy_proto::identity::BatchGetUsersRequest::default())
            .await
            .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_eq!(tenancy_testkit::refusal(&status), Reason::CallerNotAllowed);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_port_in_use_names_the_setting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let db = TestDatabase::new("port").await;
    let mut config = test_config(&db);
    config.gateway.listen = taken.local_addr().unwrap();
    let error = start(config, Part::All, Arc::new(SystemClock))
        .await
        .err()
        .unwrap();
    assert_eq!(error.setting, "gateway.listen", "{error}");
}

#[tokio::test]
async fn an_unreachable_database_names_the_setting() {
    let db = TestDatabase::new("unreachable").await;
    let mut config: Config = test_config(&db);
    config.account.database_url = Some("postgres://tenancy:pw@127.0.0.1:1/nowhere".into());
    let error = start(config, Part::All, Arc::new(SystemClock))
        .await
        .err()
        .unwrap();
    assert_eq!(error.setting, "account.database_url", "{error}");
    assert!(!error.to_string().contains(":pw@"), "{error}");
}
