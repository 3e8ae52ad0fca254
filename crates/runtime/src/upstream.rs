//! HTTP/2 connections to one replica of a service, over mutual TLS, driven
//! with the h2 crate directly: what the gateway forwards calls on and what
//! [`Channel`](crate::Channel) sends service-to-service calls on.
//!
//! Why not hyper's pooled client (or tonic's channel): per call it hands the
//! request to the connection's task through one channel and the response
//! back through another, and checks a pool out and in. Here the calling task
//! talks to h2's shared stream state itself, which took a measurable share
//! off the gateway's CPU per call (README: Performance). One connection per
//! replica: HTTP/2 multiplexes the calls.
//!
//! A call has two steps, so callers know how far a failed one got:
//! [`Connection::ready`] dials if needed and waits for room for a stream
//! (nothing is sent: a failure there is always safe to take elsewhere), then
//! [`Ready::send`] sends the request; its [`Failure`] says whether the
//! replica may have seen it.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use http::uri::{Authority, Scheme};
use http_body::{Body as HttpBody, Frame};
use parking_lot::Mutex;

use crate::service::TlsParts;
use crate::tls::{Caller, Connector};

/// Flow-control windows as hyper's client sets them: a 64 KiB window (the
/// protocol default) would stall large ticket attachments or list pages.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;

/// Why a call could not be handed to a replica.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection: refused, timed out, TLS failed.
    #[error("connect: {0}")]
    Connect(#[from] io::Error),
    /// The HTTP/2 connection or stream failed.
    #[error("http/2: {0}")]
    H2(#[from] h2::Error),
}

/// How far a failed call got, which decides whether it may be sent again.
#[derive(Debug)]
pub enum Failure {
    /// The request never left: no connection, or the connection took no
    /// new stream. Safe to send anywhere, writes included.
    NotSent(UpstreamError),
    /// The replica refused the stream without processing it (RST_STREAM
    /// REFUSED_STREAM, or a stream above the last one a GOAWAY let
    /// through). Safe to send again, but its body has been consumed.
    Refused(h2::Error),
    /// The request went out and the connection or stream failed before an
    /// answer: the replica may have acted on it.
    Lost(h2::Error),
}

impl Failure {
    /// Whether the connection itself failed (the replica is likely gone),
    /// as opposed to one stream being refused.
    pub fn is_transport(&self) -> bool {
        match self {
            Self::NotSent(UpstreamError::Connect(_)) => true,
            Self::NotSent(UpstreamError::H2(e)) | Self::Lost(e) => !e.is_reset(),
            Self::Refused(_) => false,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotSent(e) => write!(f, "not sent: {e}"),
            Self::Refused(e) => write!(f, "refused unprocessed: {e}"),
            Self::Lost(e) => write!(f, "failed after sending: {e}"),
        }
    }
}

/// Dials a replica over mutual TLS as `part`, expecting the service's
/// certificate. The part's certificate is loaded on the first dial, so
/// commands that never call (like `migrate`) need none.
#[derive(Clone)]
pub struct Dialer {
    tls: Arc<TlsParts>,
    part: Caller,
    server: Caller,
    timeout: Duration,
}

impl Dialer {
    /// A dialer presenting `part`'s certificate from `tls` to `server`,
    /// giving up on a connection (TCP and TLS) not up after `timeout`.
    pub fn new(tls: Arc<TlsParts>, part: Caller, server: Caller, timeout: Duration) -> Self {
        Self {
            tls,
            part,
            server,
            timeout,
        }
    }

    async fn dial(
        &self,
        authority: &str,
    ) -> io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let tls = self
            .tls
            .part(self.part)
            .map_err(|e| io::Error::other(e.to_string()))?;
        Connector::new(tls, self.server, self.timeout)
            .dial(authority)
            .await
    }
}

/// One replica's connection: opened on first use, opened again after it
/// ends (service restarted, GOAWAY, network), one dial at a time.
pub struct Connection {
    authority: Authority,
    dialer: Dialer,
    /// The live sender and the generation it belongs to.
    sender: Mutex<Option<(u64, SendRequest<Bytes>)>>,
    /// The task driving each connection made, by generation.
    tasks: Mutex<Vec<(u64, tokio::task::AbortHandle)>>,
    /// Connections set aside by [`reset`](Self::reset), still carrying the
    /// calls that were in flight on them.
    set_aside: Mutex<Vec<u64>>,
    /// Held while dialing; the generation of the last connection made.
    dialing: tokio::sync::Mutex<u64>,
    /// Dials that failed so far: callers that waited for a dial that then
    /// failed share its outcome instead of dialing again in turn.
    failed_dials: AtomicU64,
}

impl Connection {
    /// A connection to `authority`, dialed with `dialer` on first use.
    pub fn new(authority: Authority, dialer: Dialer) -> Arc<Self> {
        Arc::new(Self {
            authority,
            dialer,
            sender: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
            set_aside: Mutex::new(Vec::new()),
            dialing: tokio::sync::Mutex::new(0),
            failed_dials: AtomicU64::new(0),
        })
    }

    /// The replica's `host:port`.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// A sender with room for one more stream, dialing first if there is no
    /// live connection. Nothing is sent: an error here means the request
    /// never left.
    pub async fn ready(self: &Arc<Self>) -> Result<Ready, UpstreamError> {
        // A sender of a connection that just ended (service restarted)
        // fails here, before anything was sent: forget it and try once more
        // on a new connection, so the restart costs no call.
        let (generation, sender) = self.sender().await?;
        let (generation, sender) = match sender.ready().await {
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
        Ok(Ready {
            connection: self.clone(),
            generation,
            sender,
        })
    }

    /// Sets the live connection aside, if any, so the next call dials
    /// afresh: for a connection that stopped answering, whose TCP session
    /// may stay open for minutes. Calls in flight on it go on until
    /// [`abandon`](Self::abandon) or [`keep`](Self::keep).
    pub fn reset(&self) {
        if let Some((generation, _)) = self.sender.lock().take() {
            self.set_aside.lock().push(generation);
        }
    }

    /// Closes the connections set aside: the calls still in flight on them
    /// fail at once (as a lost connection) instead of waiting for their
    /// deadlines, so reads can be asked of another replica, and streams
    /// (the gateway's Watch streams) reconnect elsewhere.
    pub fn abandon(&self) {
        let set_aside = std::mem::take(&mut *self.set_aside.lock());
        if set_aside.is_empty() {
            return;
        }
        let mut tasks = self.tasks.lock();
        tasks.retain(|(generation, task)| {
            let abandon = set_aside.contains(generation);
            if abandon {
                task.abort();
            }
            !abandon
        });
        tracing::warn!(upstream = %self.authority, "silent connection closed; calls in flight on it fail");
    }

    /// Lets the connections set aside finish their calls (the replica
    /// answers again).
    pub fn keep(&self) {
        self.set_aside.lock().clear();
    }

    async fn sender(self: &Arc<Self>) -> Result<(u64, SendRequest<Bytes>), UpstreamError> {
        if let Some(live) = self.sender.lock().clone() {
            return Ok(live);
        }
        let failures = self.failed_dials.load(Ordering::Acquire);
        let mut generation = self.dialing.lock().await;
        if let Some(live) = self.sender.lock().clone() {
            return Ok(live);
        }
        // A replica that accepts connections but never answers would hold
        // every waiter for a whole connect timeout in turn.
        if self.failed_dials.load(Ordering::Acquire) != failures {
            return Err(UpstreamError::Connect(io::Error::new(
                io::ErrorKind::NotConnected,
                "the replica could not be reached just now",
            )));
        }
        let connected = self.connect().await;
        let (sender, connection) = match connected {
            Ok(connected) => connected,
            Err(error) => {
                self.failed_dials.fetch_add(1, Ordering::AcqRel);
                return Err(error);
            }
        };
        *generation += 1;
        let live = (*generation, sender);
        *self.sender.lock() = Some(live.clone());
        let this = self.clone();
        let ended = *generation;
        // Held while spawning, so the task's own removal comes after this.
        let mut tasks = self.tasks.lock();
        let task = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, upstream = %this.authority, "upstream connection ended");
            }
            this.forget(ended);
            this.tasks.lock().retain(|(g, _)| *g != ended);
        });
        tasks.push((ended, task.abort_handle()));
        Ok(live)
    }

    /// TCP_NODELAY, a connect timeout, the TLS handshake, then HTTP/2's.
    /// One connection per replica carries every call, so the handshakes
    /// are paid once, not per call.
    async fn connect(
        &self,
    ) -> Result<
        (
            SendRequest<Bytes>,
            h2::client::Connection<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, Bytes>,
        ),
        UpstreamError,
    > {
        let tls = self.dialer.dial(self.authority.as_str()).await?;
        let handshake = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake::<_, Bytes>(tls);
        // The HTTP/2 preface exchange counts against the same bound: a peer
        // that completed TLS and then went quiet holds nobody longer.
        Ok(tokio::time::timeout(self.dialer.timeout, handshake)
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??)
    }

    /// Drops the sender of `generation` unless a newer one replaced it.
    fn forget(&self, generation: u64) {
        let mut sender = self.sender.lock();
        if sender.as_ref().is_some_and(|(g, _)| *g == generation) {
            *sender = None;
        }
    }
}

/// A connection with room for one more stream.
pub struct Ready {
    connection: Arc<Connection>,
    generation: u64,
    sender: SendRequest<Bytes>,
}

impl Ready {
    /// Sends `request` to the replica (its URI gets the replica's
    /// authority) and returns the response headers; the request body is
    /// forwarded as it arrives.
    pub async fn send<B>(
        mut self,
        request: http::Request<B>,
    ) -> Result<http::Response<UpstreamBody>, Failure>
    where
        B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    {
        let (mut parts, body) = request.into_parts();
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.scheme = Some(Scheme::HTTPS);
        uri.authority = Some(self.connection.authority.clone());
        parts.uri = http::Uri::from_parts(uri).map_err(|e| {
            Failure::NotSent(UpstreamError::Connect(io::Error::new(
                io::ErrorKind::InvalidInput,
                e,
            )))
        })?;
        let end_of_stream = body.is_end_stream();
        let (response, send) = self
            .sender
            .send_request(http::Request::from_parts(parts, ()), end_of_stream)
            .map_err(|e| {
                self.connection.forget(self.generation);
                Failure::NotSent(e.into())
            })?;
        if !end_of_stream {
            // A unary request's one message is usually here already: send
            // it in this task; only a body still arriving (client streams)
            // gets a task of its own.
            let mut pipe = Box::pin(pipe(body, send));
            if futures::FutureExt::now_or_never(&mut pipe).is_none() {
                tokio::spawn(pipe);
            }
        }
        let response = response.await.map_err(classify)?;
        Ok(response.map(|recv| UpstreamBody {
            recv,
            data_done: false,
        }))
    }
}

/// Whether an error on a sent stream means the replica never processed it
/// (RFC 9113 §8.7): a REFUSED_STREAM reset, or a GOAWAY whose last stream
/// is below this one (h2 reports exactly those streams with the GOAWAY).
fn classify(error: h2::Error) -> Failure {
    let refused = error.is_remote()
        && (error.is_go_away() || error.reason() == Some(h2::Reason::REFUSED_STREAM));
    if refused {
        Failure::Refused(error)
    } else {
        Failure::Lost(error)
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

/// A response body from a replica: data frames (their flow-control
/// capacity released as they pass), then trailers.
pub struct UpstreamBody {
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
