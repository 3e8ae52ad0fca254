//! The gateway's public connections (issue 21 §5): a stranger cannot hold
//! them by the thousand. Connections that never call, or only send the
//! HTTP/2 preface, are closed after the handshake timeout; connections with
//! no call in flight after the idle timeout (one with an open stream is
//! kept); connections beyond the per-address limit are closed at once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::gateway::Suite;

/// A TCP connection to `gateway` from loopback address `from`.
async fn connect_from(from: &str, gateway: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(gateway).await.unwrap()
}

/// Reads until the gateway closes the connection; how long that took, or
/// `None` if it is still open after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return started.elapsed(),
                // SETTINGS, GOAWAY: keep reading until the end.
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

fn gateway_address(suite: &Suite) -> SocketAddr {
    suite.running.gateway.unwrap()
}

#[tokio::test]
async fn a_connection_that_never_calls_is_closed_after_the_handshake_timeout() {
    let suite = Suite::start(|config| {
        config.gateway.handshake_timeout = Duration::from_millis(500);
    })
    .await;
    let gateway = gateway_address(&suite);
    let opened = Instant::now();
    let mut silent = connect_from("127.0.0.1", gateway).await;
    let mut preface_only = connect_from("127.0.0.1", gateway).await;
    preface_only.write_all(PREFACE).await.unwrap();
    preface_only.write_all(SETTINGS).await.unwrap();
    for (what, stream) in [("silent", &mut silent), ("preface only", &mut preface_only)] {
        let closed = closed_within(stream, Duration::from_secs(15)).await;
        assert!(closed.is_some(), "{what}: still open after 15 s");
        let open = opened.elapsed();
        assert!(open >= Duration::from_millis(300), "{what}: {open:?}");
    }
}

/// One unary call (gRPC health) on an h2 connection; panics unless it
/// answers 200.
async fn health_check(client: &mut h2::client::SendRequest<Bytes>) {
    let request = http::Request::post("http://gateway/grpc.health.v1.Health/Check")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let _ = chunk.unwrap();
    }
    let _ = body.trailers().await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_and_one_with_an_open_stream_is_kept() {
    let suite = Suite::start(|config| {
        config.gateway.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let gateway = gateway_address(&suite);

    // Used once, then idle.
    let tcp = connect_from("127.0.0.1", gateway).await;
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let idle = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    health_check(&mut client).await;

    // A Watch stream open: never idle.
    let tcp = connect_from("127.0.0.1", gateway).await;
    let (watching, connection) = h2::client::handshake(tcp).await.unwrap();
    let kept = tokio::spawn(connection);
    let mut watching = watching.ready().await.unwrap();
    let request = http::Request::post("http://gateway/grpc.health.v1.Health/Watch")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut body) = watching.send_request(request, false).unwrap();
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    let mut stream = response.await.unwrap().into_body();
    // The first status arrives at once.
    assert!(stream.data().await.is_some());

    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(15), idle).await;
    assert!(
        ended.is_ok(),
        "the idle connection is still open after 15 s"
    );
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(
        !kept.is_finished(),
        "the connection with a stream was closed"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !kept.is_finished(),
        "the connection with a stream was closed"
    );
    drop(stream);
}

#[tokio::test]
async fn connections_beyond_the_per_address_limit_are_closed_at_once() {
    let suite = Suite::start(|config| {
        config.gateway.max_connections_per_address = 2;
    })
    .await;
    let gateway = gateway_address(&suite);
    // 127.0.0.2: none of the suite's own connections come from there.
    let mut first = connect_from("127.0.0.2", gateway).await;
    let mut second = connect_from("127.0.0.2", gateway).await;
    let mut third = connect_from("127.0.0.2", gateway).await;
    assert!(
        closed_within(&mut third, Duration::from_secs(5))
            .await
            .is_some(),
        "a third connection from one address was kept"
    );
    let mut elsewhere = connect_from("127.0.0.3", gateway).await;
    for (what, stream) in [
        ("first", &mut first),
        ("second", &mut second),
        ("another address", &mut elsewhere),
    ] {
        assert_eq!(
            closed_within(stream, Duration::from_millis(500)).await,
            None,
            "{what} was closed"
        );
    }
    // A closed one frees its place.
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect_from("127.0.0.2", gateway).await;
    assert_eq!(
        closed_within(&mut again, Duration::from_millis(500)).await,
        None,
        "the freed place was not given again"
    );
}

/// Issue 21 §4: one customer's open streams cannot fill the slots every
/// customer shares. A user past `max_calls_per_user` calls in flight, and
/// an account past `max_calls_per_account`, are refused
/// RESOURCE_EXHAUSTED `CONCURRENCY_LIMITED` naming the limit; another
/// customer is served meanwhile, and a closed stream gives its place back.
#[tokio::test]
async fn one_customers_open_streams_leave_other_customers_served() {
    use tenancy_proto::auth::Role;
    use tenancy_proto::support::support_service_client::SupportServiceClient;
    use tenancy_proto::support::{ListTicketsRequest, WatchTicketRequest};
    use tenancy_runtime::Reason;

    use crate::gateway::{bearer, reason};

    let suite = Suite::start(|config| {
        config.gateway.max_calls_per_user = 2;
        config.gateway.max_calls_per_account = 3;
    })
    .await;
    let owner = suite.user("owner@example.com").await;
    let (account_id, owner) = suite.account_of(&owner).await;
    let manager = suite
        .member(&owner, &account_id, "manager@example.com", Role::Manager)
        .await;
    let stranger = suite.user("stranger@example.com").await;
    let (_, stranger) = suite.account_of(&stranger).await;
    let support =
        |token: &str| SupportServiceClient::with_interceptor(suite.gateway.clone(), bearer(token));
    let ticket = suite.ticket(&owner).await;
    let watch = |token: String| {
        let mut client = support(&token);
        let ticket_id = ticket.id.clone();
        async move {
            client
                .watch_ticket(WatchTicketRequest {
                    ticket_id,
                    after_message_sequence: 0,
                })
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let limited = |status: tonic::Status, limit: &str| {
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        assert_eq!(reason(&status), Reason::ConcurrencyLimited);
        let info = tonic_types::StatusExt::get_error_details(&status);
        assert_eq!(
            info.error_info()
                .unwrap()
                .metadata
                .get("limit")
                .map(String::as_str),
            Some(limit),
            "{status:?}"
        );
    };

    let first = watch(owner.clone()).await.unwrap();
    let _second = watch(owner.clone()).await.unwrap();
    limited(watch(owner.clone()).await.unwrap_err(), "user");
    // The manager has a place of their own, and takes the account's last.
    let _third = watch(manager.clone()).await.unwrap();
    limited(watch(manager.clone()).await.unwrap_err(), "account");
    // Another customer is served meanwhile.
    support(&stranger)
        .list_tickets(ListTicketsRequest::default())
        .await
        .unwrap();
    // A closed stream gives its place back (within a moment).
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match support(&owner)
            .list_tickets(ListTicketsRequest::default())
            .await
        {
            Ok(_) => break,
            Err(status) if Instant::now() < deadline => {
                assert_eq!(reason(&status), Reason::ConcurrencyLimited);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("the place never came back: {status:?}"),
        }
    }
}
