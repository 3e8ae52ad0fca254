//! A real SMTP server on loopback for tests and benchmarks.
//!
//! [`SmtpServer`] speaks SMTP over TCP (the protocol — commands, their
//! order, replies, dot-unstuffing — is `mailin`'s state machine; this module
//! only adds a tokio listener) and keeps every message it accepted. Tests
//! point `smtp_url` at [`SmtpServer::url`], then read what arrived with
//! [`SmtpServer::received`]. It can refuse on demand ([`SmtpServer::on_rcpt`],
//! [`SmtpServer::on_data`]: a 4xx is transient, a 5xx permanent) and be
//! stopped and started again on the same port to simulate an outage.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use parking_lot::Mutex;

use mail_parser::{MessageParser, PartType};
use mailin::{Action, Handler, Response, SessionBuilder};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// An SMTP reply given instead of accepting: a 4xx code is a transient
/// failure (the sender retries), a 5xx one permanent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code, e.g. 451 or 550.
    pub code: u16,
    /// The text after the code.
    pub text: String,
}

impl Reply {
    /// A reply with `code` and `text`.
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }
}

/// Decides the reply to a recipient (by address) or a message (by its
/// recipients): `None` accepts.
type Rule = Arc<dyn Fn(&[String]) -> Option<Reply> + Send + Sync>;

/// One message the server accepted.
#[derive(Clone, Debug)]
pub struct Received {
    /// The envelope sender (`MAIL FROM`).
    pub mail_from: String,
    /// The envelope recipients (`RCPT TO`), in order.
    pub rcpt: Vec<String>,
    /// The message as sent (headers and body, dot-unstuffed).
    pub raw: Vec<u8>,
    /// The `Message-ID` header as sent, e.g. `<id@example.com>`.
    pub message_id: String,
    /// The `From` header's addresses, as `Name <address>`.
    pub from: String,
    /// The `To` header's addresses, as `Name <address>`.
    pub to: String,
    /// The decoded `Subject`.
    pub subject: String,
    /// The decoded `text/plain` body, empty when there is none.
    pub text: String,
    /// The decoded `text/html` body, empty when there is none.
    pub html: String,
}

impl Received {
    fn parse(mail_from: String, rcpt: Vec<String>, raw: Vec<u8>) -> Self {
        let parsed = MessageParser::default().parse(raw.as_slice());
        let (message_id, from, to, subject, text, html) = match &parsed {
            Some(m) => {
                let addresses = |a: Option<&mail_parser::Address<'_>>| {
                    a.map(|a| {
                        a.iter()
                            .map(|a| match (a.name(), a.address()) {
                                (Some(name), Some(address)) => format!("{name} <{address}>"),
                                (_, address) => address.unwrap_or_default().to_owned(),
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default()
                };
                // Only real parts: mail-parser offers an HTML rendering of a
                // text-only message (and the reverse) as the other body.
                let text = m
                    .text_bodies()
                    .find_map(|p| match &p.body {
                        PartType::Text(t) => Some(t.to_string()),
                        _ => None,
                    })
                    .unwrap_or_default();
                let html = m
                    .html_bodies()
                    .find_map(|p| match &p.body {
                        PartType::Html(t) => Some(t.to_string()),
                        _ => None,
                    })
                    .unwrap_or_default();
                (
                    m.header_raw("Message-ID")
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                    addresses(m.from()),
                    addresses(m.to()),
                    m.subject().unwrap_or_default().to_owned(),
                    text,
                    html,
                )
            }
            None => Default::default(),
        };
        Self {
            mail_from,
            rcpt,
            raw,
            message_id,
            from,
            to,
            subject,
            text,
            html,
        }
    }
}

/// A message as it arrived, parsed only when a test reads it.
struct Arrived {
    mail_from: String,
    rcpt: Vec<String>,
    raw: Vec<u8>,
}

#[derive(Default)]
struct Shared {
    arrived: Mutex<Vec<Arrived>>,
    on_rcpt: Mutex<Option<Rule>>,
    on_data: Mutex<Option<Rule>>,
}

/// A real SMTP server on a loopback port, keeping what it receives; stopped
/// when dropped.
pub struct SmtpServer {
    address: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl SmtpServer {
    /// Starts a server on an ephemeral loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut server = Self {
            address,
            shared: Arc::default(),
            accept: None,
        };
        server.accept = Some(tokio::spawn(accept(listener, server.shared.clone())));
        server
    }

    /// The `smtp_url` that reaches this server (plain SMTP).
    pub fn url(&self) -> String {
        format!("smtp://{}", self.address)
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Replies to each `RCPT TO` with what `rule` returns for the address;
    /// `None` accepts it. Replaces any earlier rule.
    pub fn on_rcpt(&self, rule: impl Fn(&str) -> Option<Reply> + Send + Sync + 'static) {
        *self.shared.on_rcpt.lock() = Some(Arc::new(move |to: &[String]| {
            to.first().and_then(|address| rule(address))
        }));
    }

    /// Replies to the end of each message's data with what `rule` returns
    /// for its recipients; `None` accepts (and keeps) the message. Replaces
    /// any earlier rule.
    pub fn on_data(&self, rule: impl Fn(&[String]) -> Option<Reply> + Send + Sync + 'static) {
        *self.shared.on_data.lock() = Some(Arc::new(rule));
    }

    /// How many messages were accepted so far (cheap: nothing is parsed).
    pub fn count(&self) -> usize {
        self.shared.arrived.lock().len()
    }

    /// Every message accepted so far, parsed.
    pub fn received(&self) -> Vec<Received> {
        let arrived = self.shared.arrived.lock();
        arrived
            .iter()
            .map(|a| Received::parse(a.mail_from.clone(), a.rcpt.clone(), a.raw.clone()))
            .collect()
    }

    /// Stops listening and closes every open connection (an outage: clients
    /// get connection refused). What was received is kept.
    pub async fn stop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            // Returns once the task, its listener and its connections are
            // dropped.
            let _ = accept.await;
        }
    }

    /// Listens again on the same port after [`SmtpServer::stop`].
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = TcpListener::bind(self.address).await.unwrap();
        self.accept = Some(tokio::spawn(accept(listener, self.shared.clone())));
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
    }
}

/// Accepts connections until aborted; aborting drops the connections too.
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, peer)) = accepted {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(session(stream, peer.ip(), shared.clone()));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One SMTP session: each line to mailin's state machine, each reply back.
async fn session(stream: TcpStream, peer: IpAddr, shared: Arc<Shared>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut session = SessionBuilder::new("tenancy-testkit").build(peer, Sink::new(shared));
    write.write_all(&session.greeting().buffer()?).await?;
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let response = session.process(&line);
        match response.action {
            Action::NoReply => {}
            Action::Reply => write.write_all(&response.buffer()?).await?,
            // No TLS here: the tests reach the server with plain `smtp://`.
            Action::Close | Action::UpgradeTls => {
                write.write_all(&response.buffer()?).await?;
                return Ok(());
            }
        }
    }
}

/// The handler of one session: applies the rules, collects the message.
struct Sink {
    shared: Arc<Shared>,
    mail_from: String,
    rcpt: Vec<String>,
    data: Vec<u8>,
}

impl Sink {
    fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            mail_from: String::new(),
            rcpt: Vec::new(),
            data: Vec::new(),
        }
    }

    fn rule(rule: &Mutex<Option<Rule>>, subject: &[String]) -> Option<Response> {
        let rule = rule.lock().clone()?;
        rule(subject).map(|reply| Response::custom(reply.code, reply.text))
    }
}

impl Handler for Sink {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
        self.mail_from = from.to_owned();
        self.rcpt.clear();
        mailin::response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        match Self::rule(&self.shared.on_rcpt, &[to.to_owned()]) {
            Some(refused) => refused,
            None => {
                self.rcpt.push(to.to_owned());
                mailin::response::OK
            }
        }
    }

    fn data_start(
        &mut self,
        _domain: &str,
        _from: &str,
        _is8bit: bool,
        _to: &[String],
    ) -> Response {
        self.data.clear();
        mailin::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let rcpt = std::mem::take(&mut self.rcpt);
        let raw = std::mem::take(&mut self.data);
        if let Some(refused) = Self::rule(&self.shared.on_data, &rcpt) {
            return refused;
        }
        self.shared.arrived.lock().push(Arrived {
            mail_from: std::mem::take(&mut self.mail_from),
            rcpt,
            raw,
        });
        mailin::response::OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw SMTP exchange: sends each line, returns every reply line.
    async fn converse(server: &SmtpServer, lines: &[&str]) -> Vec<String> {
        let stream = TcpStream::connect(server.address()).await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let mut replies = Vec::new();
        let mut reply = String::new();
        read.read_line(&mut reply).await.unwrap();
        replies.push(reply.trim_end().to_owned());
        for line in lines {
            write.write_all(line.as_bytes()).await.unwrap();
            write.write_all(b"\r\n").await.unwrap();
            // Data lines get no reply until the closing dot.
            let in_data = replies.last().is_some_and(|r| r.starts_with("354"));
            if in_data && *line != "." {
                continue;
            }
            loop {
                reply.clear();
                if read.read_line(&mut reply).await.unwrap() == 0 {
                    return replies;
                }
                replies.push(reply.trim_end().to_owned());
                // Multi-line replies continue with "250-".
                if reply.as_bytes().get(3) != Some(&b'-') {
                    break;
                }
            }
        }
        replies
    }

    #[tokio::test]
    async fn accepts_a_message_and_parses_it_and_refuses_on_demand() {
        let server = SmtpServer::start().await;
        server.on_rcpt(|to| {
            to.starts_with("nobody")
                .then(|| Reply::new(550, "no such user"))
        });
        let replies = converse(
            &server,
            &[
                "EHLO client",
                "MAIL FROM:<a@example.com>",
                "RCPT TO:<nobody@example.com>",
                "RCPT TO:<b@example.com>",
                "DATA",
                "Message-ID: <m1@example.com>",
                "From: A <a@example.com>",
                "To: B <b@example.com>",
                "Subject: Hi",
                "",
                "..a line starting with a dot",
                ".",
                "QUIT",
            ],
        )
        .await;
        assert!(replies[0].starts_with("220"), "{replies:?}");
        assert!(
            replies.iter().any(|r| r.starts_with("550 no such user")),
            "{replies:?}"
        );
        assert!(replies.last().unwrap().starts_with("221"), "{replies:?}");
        let received = server.received();
        assert_eq!(received.len(), 1);
        let m = &received[0];
        assert_eq!(m.mail_from, "a@example.com");
        assert_eq!(m.rcpt, ["b@example.com"]);
        assert_eq!(m.message_id, "<m1@example.com>");
        assert_eq!(m.from, "A <a@example.com>");
        assert_eq!(m.to, "B <b@example.com>");
        assert_eq!(m.subject, "Hi");
        assert_eq!(m.text.trim_end(), ".a line starting with a dot");
        assert_eq!(m.html, "");
    }

    #[tokio::test]
    async fn a_refused_message_is_not_kept_and_a_stopped_server_refuses_connections() {
        let mut server = SmtpServer::start().await;
        server.on_data(|_| Some(Reply::new(451, "try again later")));
        let replies = converse(
            &server,
            &[
                "HELO client",
                "MAIL FROM:<a@example.com>",
                "RCPT TO:<b@example.com>",
                "DATA",
                "Subject: x",
                "",
                "body",
                ".",
            ],
        )
        .await;
        assert!(replies.last().unwrap().starts_with("451"), "{replies:?}");
        assert_eq!(server.count(), 0);

        server.stop().await;
        assert!(TcpStream::connect(server.address()).await.is_err());
        server.restart().await;
        assert!(converse(&server, &[]).await[0].starts_with("220"));
    }
}
