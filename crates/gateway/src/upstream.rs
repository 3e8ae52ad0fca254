//! HTTP/2 connections to the services, over mutual TLS, driven with the h2
//! crate directly.
//!
//! Why not hyper's pooled client: per call it hands the request to the
//! connection's task through one channel and the response back through
//! another, and checks a pool out and in. Here the calling task talks to
//! h2's shared stream state itself, which took a measurable share off the
//! gateway's CPU per call (README: Performance). One connection per
//! replica, as the pooled client kept: HTTP/2 multiplexes the calls.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use h2::client::SendRequest;
use http::uri::Authority;
use http_body::{Body as HttpBody, Frame};
use parking_lot::Mutex;
use tenancy_runtime::tls::Connector;

/// Flow-control windows as hyper's client sets them: a 64 KiB window (the
/// protocol default) would stall large ticket attachments or list pages.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;

/// Why a call could not be handed to the service.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("connect: {0}")]
    Connect(#[from] std::io::Error),
    #[error("http/2: {0}")]
    H2(#[from] h2::Error),
}

/// One replica's connection: opened on first use, opened again after it
/// ends (service restarted, GOAWAY, network), one dial at a time.
pub(crate) struct Connection {
    authority: Authority,
    /// Dials the replica over mutual TLS, presenting the gateway's
    /// certificate and checking the service's.
    connector: Connector,
    /// The live sender and the generation it belongs to.
    sender: Mutex<Option<(u64, SendRequest<Bytes>)>>,
    dialing: tokio::sync::Mutex<u64>,
}

impl Connection {
    pub(crate) fn new(authority: Authority, connector: Connector) -> Arc<Self> {
        Arc::new(Self {
            authority,
            connector,
            sender: Mutex::new(None),
            dialing: tokio::sync::Mutex::new(0),
        })
    }

    pub(crate) fn authority(&self) -> &Authority {
        &self.authority
    }

    pub(crate) fn connector(&self) -> &Connector {
        &self.connector
    }

    /// Sends `request` (whose URI names this replica) and returns the
    /// response; the request body is forwarded as it arrives.
    pub(crate) async fn send<B>(
        self: &Arc<Self>,
        request: http::Request<B>,
    ) -> Result<http::Response<UpstreamBody>, UpstreamError>
    where
        B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    {
        // A sender of a connection that just ended (service restarted)
        // fails here, before anything was sent: forget it and try once more
        // on a new connection, so the restart costs no call.
        let (generation, sender) = self.sender().await?;
        let (generation, mut sender) = match sender.ready().await {
            Ok(sender) => (generation, sender),
            Err(_) => {
                self.forget(generation);
                let (generation, sender) = self.sender().await?;
                let sender = sender
                    .ready()
                    .await
                    .inspect_err(|_| self.forget(generation))?;
                (generation, sender)
            }
        };
        let (parts, body) = request.into_parts();
        let end_of_stream = body.is_end_stream();
        let (response, send) = sender
            .send_request(http::Request::from_parts(parts, ()), end_of_stream)
            .inspect_err(|_| self.forget(generation))?;
        if !end_of_stream {
            // A unary request's one message is usually here already: send
            // it in this task; only a body still arriving (client streams)
            // gets a task of its own.
            let mut pipe = Box::pin(pipe(body, send));
            if futures::FutureExt::now_or_never(&mut pipe).is_none() {
                tokio::spawn(pipe);
            }
        }
        let response = response.await?;
        Ok(response.map(|recv| UpstreamBody {
            recv,
            data_done: false,
        }))
    }

    async fn sender(self: &Arc<Self>) -> Result<(u64, SendRequest<Bytes>), UpstreamError> {
        if let Some(live) = self.sender.lock().clone() {
            return Ok(live);
        }
        let mut generation = self.dialing.lock().await;
        if let Some(live) = self.sender.lock().clone() {
            return Ok(live);
        }
        // TCP_NODELAY, a connect timeout, then the TLS handshake. One
        // connection per replica carries every call, so the handshake is
        // paid once, not per call.
        let tls = self.connector.dial(self.authority.as_str()).await?;
        let (sender, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake::<_, Bytes>(tls)
            .await?;
        *generation += 1;
        let live = (*generation, sender);
        *self.sender.lock() = Some(live.clone());
        let this = self.clone();
        let ended = *generation;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, upstream = %this.authority, "upstream connection ended");
            }
            this.forget(ended);
        });
        Ok(live)
    }

    /// Drops the sender of `generation` unless a newer one replaced it.
    fn forget(&self, generation: u64) {
        let mut sender = self.sender.lock();
        if sender.as_ref().is_some_and(|(g, _)| *g == generation) {
            *sender = None;
        }
    }
}

/// Forwards a request body (data frames, then trailers if any), waiting
/// for flow-control capacity so at most one frame is buffered.
async fn pipe<B>(mut body: B, mut send: h2::SendStream<Bytes>)
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    loop {
        send.reserve_capacity(1);
        while send.capacity() == 0 {
            match poll_fn(|cx| send.poll_capacity(cx)).await {
                Some(Ok(_)) => {}
                // The stream was reset or the connection ended: the
                // response side reports it.
                Some(Err(_)) | None => return,
            }
        }
        let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await else {
            let _ = send.send_data(Bytes::new(), true);
            return;
        };
        let Ok(frame) = frame else {
            send.send_reset(h2::Reason::CANCEL);
            return;
        };
        match frame.into_data() {
            Ok(data) => {
                let end = body.is_end_stream();
                if send.send_data(data, end).is_err() || end {
                    return;
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    let _ = send.send_trailers(trailers);
                }
                return;
            }
        }
    }
}

/// A response body from a service: data frames (their flow-control
/// capacity released as they pass), then trailers.
pub(crate) struct UpstreamBody {
    recv: h2::RecvStream,
    data_done: bool,
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match std::task::ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => self.data_done = true,
            }
        }
        match std::task::ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(error) => Poll::Ready(Some(Err(error))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::net::TcpStream;

    use super::*;

    const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

    /// A replica whose accept queue is full drops further SYNs, like one
    /// behind a black hole: the call fails after the connect timeout
    /// instead of waiting for the kernel to give up (minutes).
    #[tokio::test]
    async fn a_replica_that_never_answers_fails_the_call_after_the_connect_timeout() {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let address = listener.local_addr().unwrap();
        // Fill the accept queue; nobody accepts.
        let mut parked = Vec::new();
        for _ in 0..8 {
            match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(address))
                .await
            {
                Ok(Ok(stream)) => parked.push(stream),
                _ => break,
            }
        }
        let connection = Connection::new(
            address.to_string().parse().unwrap(),
            Connector::new(
                tenancy_testkit::tls_for(tenancy_runtime::tls::Caller::Gateway),
                tenancy_runtime::tls::Caller::Identity,
                CONNECT_TIMEOUT,
            ),
        );
        let request = http::Request::builder()
            .uri(format!(
                "http://{address}/tenancy.identity.v1.IdentityService/GetMe"
            ))
            .body(String::new())
            .unwrap();
        let started = Instant::now();
        let result = tokio::time::timeout(CONNECT_TIMEOUT * 3, connection.send(request)).await;
        assert!(
            matches!(result, Ok(Err(UpstreamError::Connect(_)))),
            "the call fails with a connect error"
        );
        assert!(started.elapsed() >= CONNECT_TIMEOUT - Duration::from_millis(100));
        drop((listener, parked));
    }
}
