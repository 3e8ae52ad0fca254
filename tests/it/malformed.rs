//! Requests that are not valid messages (issue 21 §6): bad protobuf, broken
//! gRPC framing and oversize messages get the catalogue's answer —
//! INVALID_ARGUMENT `MESSAGE_MALFORMED` or RESOURCE_EXHAUSTED
//! `MESSAGE_TOO_LARGE`, without the decoder's words — from every service
//! directly and through the gateway, not INTERNAL with prost's description.

use bytes::Bytes;
use http_body_util::BodyExt as _;
use tenancy_runtime::config::ServiceName;
use tenancy_runtime::principal::Call;
use tenancy_runtime::tls::Caller as Peer;
use tenancy_runtime::{Clock as _, Reason, SystemClock};
use tenancy_testkit::{Role, TestChannel, member, test_key};

use crate::gateway::{Suite, reason};

/// One gRPC frame: flag, big-endian length, the bytes.
fn frame(compressed: u8, length: u32, message: &[u8]) -> Vec<u8> {
    let mut out = vec![compressed];
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// A message whose field 1, a string in LoginRequest, is not UTF-8.
fn not_utf8() -> Vec<u8> {
    frame(0, 4, &[0x0a, 0x02, 0xff, 0xfe])
}

/// Request bodies a client might send, what each breaks, and the answer.
fn bad_bodies() -> Vec<(&'static str, Vec<u8>, tonic::Code, Reason)> {
    let malformed = (tonic::Code::InvalidArgument, Reason::MessageMalformed);
    let too_large = (tonic::Code::ResourceExhausted, Reason::MessageTooLarge);
    vec![
        // Field 1, length-delimited, 127 bytes announced, 1 there.
        (
            "truncated field",
            frame(0, 3, &[0x0a, 0x7f, 0x01]),
            malformed.0,
            malformed.1,
        ),
        // Wire type 7 does not exist.
        (
            "bad wire type",
            frame(0, 2, &[0x0f, 0x00]),
            malformed.0,
            malformed.1,
        ),
        // Compressed flag without `grpc-encoding`.
        (
            "compressed flag",
            frame(1, 1, &[0x00]),
            malformed.0,
            malformed.1,
        ),
        // A frame shorter than its header says.
        (
            "truncated frame",
            frame(0, 10, &[0x0a]),
            malformed.0,
            malformed.1,
        ),
        // No message at all.
        ("no message", Vec::new(), malformed.0, malformed.1),
        // More than `max_message_bytes` (4 MiB) announced.
        (
            "oversize",
            frame(0, 5 * 1024 * 1024, &[0x0a, 0x00]),
            too_large.0,
            too_large.1,
        ),
    ]
}

/// Sends `body` as the request of `path` over `channel` (with `headers`),
/// and returns the status of the answer (from its headers, or trailers).
async fn send<S>(
    mut channel: S,
    path: &str,
    body: Vec<u8>,
    headers: http::HeaderMap,
) -> tonic::Status
where
    S: tonic::codegen::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        >,
    S::Error: std::fmt::Debug,
{
    let mut request = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(
            http_body_util::Full::new(Bytes::from(body)).map_err(|e| match e {}),
        ))
        .unwrap();
    request.headers_mut().extend(headers);
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .unwrap();
    let response = channel.call(request).await.unwrap();
    if let Some(status) = tonic::Status::from_header_map(response.headers()) {
        return status;
    }
    let trailers = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .trailers()
        .cloned()
        .unwrap_or_default();
    tonic::Status::from_header_map(&trailers).expect("a grpc-status")
}

/// A principal signed for one call of `path`, as the gateway signs it.
fn signed(path: &str) -> http::HeaderMap {
    let principal = member(
        &uuid::Uuid::now_v7().to_string(),
        &uuid::Uuid::now_v7().to_string(),
        Role::Owner,
    );
    let mut headers = http::HeaderMap::new();
    test_key()
        .sign(
            &principal,
            Call {
                method: path,
                id: uuid::Uuid::new_v4().into_bytes(),
            },
            SystemClock.now(),
        )
        .insert_into(&mut headers);
    headers
}

/// The answer says what kind of mistake it was, and nothing of the decoder.
fn assert_refused(status: &tonic::Status, what: &str, code: tonic::Code, expected: Reason) {
    assert_eq!(status.code(), code, "{what}: {status:?}");
    assert_eq!(
        (status.code(), reason(status)),
        (code, expected),
        "{what}: {status:?}"
    );
    let message = status.message().to_lowercase();
    for internal in [
        "decode",
        "protobuf",
        "buffer",
        "utf-8",
        "wire type",
        "eof",
        "compress",
        "bytes",
    ] {
        assert!(!message.contains(internal), "{what}: {message}");
    }
}

#[tokio::test]
async fn malformed_requests_are_invalid_argument_from_every_service_directly() {
    let suite = Suite::start(|_| {}).await;
    for (service, path) in [
        (
            ServiceName::Identity,
            "/tenancy.identity.v1.IdentityService/Login",
        ),
        (
            ServiceName::Account,
            "/tenancy.account.v1.AccountService/GetAccount",
        ),
        (
            ServiceName::Contacts,
            "/tenancy.contacts.v1.ContactsService/ListContacts",
        ),
        (
            ServiceName::Support,
            "/tenancy.support.v1.SupportService/ListTickets",
        ),
    ] {
        let channel = TestChannel::new(service.caller(), suite.running.service(service).unwrap())
            .as_caller(Peer::Gateway);
        for (what, body, code, expected) in bad_bodies() {
            let status = send(channel.clone(), path, body, signed(path)).await;
            assert_refused(&status, &format!("{path}: {what}"), code, expected);
        }
    }
    // LoginRequest.email (field 1) that is not UTF-8.
    let login = "/tenancy.identity.v1.IdentityService/Login";
    let channel = TestChannel::new(
        Peer::Identity,
        suite.running.service(ServiceName::Identity).unwrap(),
    )
    .as_caller(Peer::Gateway);
    let status = send(channel, login, not_utf8(), signed(login)).await;
    assert_refused(
        &status,
        "not UTF-8",
        tonic::Code::InvalidArgument,
        Reason::MessageMalformed,
    );
    // Health and reflection on a service port, decoded by tonic too.
    let channel = TestChannel::new(
        Peer::Identity,
        suite.running.service(ServiceName::Identity).unwrap(),
    )
    .as_caller(Peer::Gateway);
    let status = send(
        channel,
        "/grpc.health.v1.Health/Check",
        frame(0, 3, &[0x0a, 0x7f, 0x01]),
        http::HeaderMap::new(),
    )
    .await;
    assert_refused(
        &status,
        "health",
        tonic::Code::InvalidArgument,
        Reason::MessageMalformed,
    );
}

#[tokio::test]
async fn malformed_requests_are_invalid_argument_through_the_gateway() {
    let suite = Suite::start(|_| {}).await;
    let token = suite.user("malformed@example.com").await;
    let (_, token) = suite.account_of(&token).await;
    let mut authorized = http::HeaderMap::new();
    authorized.insert("authorization", format!("Bearer {token}").parse().unwrap());
    for (path, headers) in [
        // PUBLIC, forwarded to identity.
        (
            "/tenancy.identity.v1.IdentityService/Login",
            http::HeaderMap::new(),
        ),
        // Authenticated, forwarded to account.
        (
            "/tenancy.account.v1.AccountService/GetAccount",
            authorized.clone(),
        ),
        // Answered by the gateway itself.
        ("/grpc.health.v1.Health/Check", http::HeaderMap::new()),
    ] {
        for (what, body, code, expected) in bad_bodies() {
            let status = send(suite.gateway.clone(), path, body, headers.clone()).await;
            assert_refused(&status, &format!("{path}: {what}"), code, expected);
        }
    }
    let login = "/tenancy.identity.v1.IdentityService/Login";
    let status = send(
        suite.gateway.clone(),
        login,
        not_utf8(),
        http::HeaderMap::new(),
    )
    .await;
    assert_refused(
        &status,
        "not UTF-8",
        tonic::Code::InvalidArgument,
        Reason::MessageMalformed,
    );
    // The gateway and the services still serve well-formed calls.
    suite.login("malformed@example.com").await;
}
