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
