//! [`SmsServer`]: an HTTP SMS provider on loopback (HTTP/1.1, hyper) that
//! keeps every request it receives, answering 200 unless told otherwise,
//! for the contacts service's HTTP SMS sender.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request the server received.
#[derive(Clone, Debug)]
pub struct SmsRequest {
    /// Method (`POST`).
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body, as text.
    pub body: String,
    /// The status the server answered.
    pub status: u16,
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<SmsRequest>>,
    /// Statuses for the next requests, in order; 200 once empty.
    statuses: Mutex<VecDeque<u16>>,
}

/// An HTTP SMS provider on an ephemeral loopback port; stopped when
/// dropped.
pub struct SmsServer {
    address: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Drop for SmsServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl SmsServer {
    /// Starts a server.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let accept = tokio::spawn(accept(listener, shared.clone()));
        Self {
            address,
            shared,
            accept,
        }
    }

    /// The `sms.url` that reaches it.
    pub fn url(&self) -> String {
        format!("http://{}/v1/messages", self.address)
    }

    /// Answers the next requests with `statuses`, in order (then 200).
    pub fn answer_next(&self, statuses: &[u16]) {
        self.shared.statuses.lock().extend(statuses.iter().copied());
    }

    /// Every request received so far, oldest first.
    pub fn received(&self) -> Vec<SmsRequest> {
        self.shared.received.lock().clone()
    }

    /// Waits (up to 30 s) until `n` requests were received; returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<SmsRequest> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {n} SMS requests, got {}: {received:?}",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((stream, _)) = listener.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let shared = shared.clone();
                async move {
                    let header = |name: http::header::HeaderName| {
                        request
                            .headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let authorization = header(http::header::AUTHORIZATION);
                    let content_type = header(http::header::CONTENT_TYPE);
                    let method = request.method().to_string();
                    let path = request
                        .uri()
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_owned();
                    let body = request.into_body().collect().await?.to_bytes();
                    let status = shared.statuses.lock().pop_front().unwrap_or(200);
                    shared.received.lock().push(SmsRequest {
                        method,
                        path,
                        authorization,
                        content_type,
                        body: String::from_utf8_lossy(&body).into_owned(),
                        status,
                    });
                    let response = http::Response::builder()
                        .status(status)
                        .body(http_body_util::Full::new(bytes::Bytes::from_static(
                            b"{\"id\":\"msg-1\"}",
                        )))
                        .unwrap();
                    Ok::<_, hyper::Error>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
