//! The upstream of the suites: an HTTP/1.1 server (plain or TLS) on an ephemeral loopback port that
//! answers every request with JSON listing exactly what it received — method, path, every header
//! line in order with duplicates and names as sent, and the body — and counts the requests, so a test
//! can prove a denied request never reached it (and, per header name, how many requests carried it:
//! a test proves a marked request never got through). The plain server also answers gRPC calls
//! over h2c on the same port, as an app behind a sidecar does. For the load bench it can instead
//! answer an empty 200 without building anything ([`EchoServer::plain_ok`]), so the upstream costs
//! next to nothing. For a differential test it can answer what the test scripts and keep every
//! request it received ([`EchoServer::scripted`]), so the same answer can be given to the harness.

use crate::certs::IssuedCert;
use crate::http1::{self, BodyFraming, Stream};
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

/// A TLS handshake from Envoy that takes longer than this is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server answers.
#[derive(Clone, Debug)]
enum Reply {
    /// JSON describing the request.
    Echo,
    /// An empty 200.
    EmptyOk,
    /// The answer the test set last; every request is kept.
    Scripted(Arc<Scripted>),
}

/// The scripted answer and the requests received, shared by the server and the test.
#[derive(Debug, Default)]
struct Scripted {
    answer: Mutex<Vec<u8>>,
    received: Mutex<Vec<EchoedRequest>>,
}

/// An HTTP/1.1 answer of a scripted server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptedAnswer {
    pub status: u16,
    /// Header lines as written (`content-length` is added from the body).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Default for ScriptedAnswer {
    /// An empty 200.
    fn default() -> Self {
        ScriptedAnswer {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

impl ScriptedAnswer {
    /// The whole HTTP/1.1 response.
    fn wire(&self) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} Scripted\r\n", self.status);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", self.body.len()));
        let mut wire = head.into_bytes();
        wire.extend_from_slice(&self.body);
        wire
    }
}

/// The whole [`Reply::EmptyOk`] response.
const EMPTY_OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";

/// A running echo server; stops (and closes every connection) on drop.
pub struct EchoServer {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    seen: Arc<SeenHeaders>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    scripted: Option<Arc<Scripted>>,
}

impl EchoServer {
    /// Plain HTTP/1.1, and gRPC on the same port, as an app behind a sidecar serves both: a
    /// connection that opens with the HTTP/2 preface (cleartext, prior knowledge: how Envoy sends
    /// gRPC calls to the app) is answered as [`crate::GrpcBackend`] answers, each call counted among
    /// the requests served.
    pub fn plain() -> Result<Self> {
        Self::start(None, Reply::Echo)
    }

    /// Plain HTTP, answering every request with an empty 200 instead of an echo: the cheapest
    /// upstream, for the load bench, where the upstream must never be the bottleneck.
    pub fn plain_ok() -> Result<Self> {
        Self::start(None, Reply::EmptyOk)
    }

    /// Plain HTTP, answering every request with the last [`EchoServer::set_answer`] (an empty 200
    /// until then) and keeping each request it receives for [`EchoServer::take_received`].
    pub fn scripted() -> Result<Self> {
        let scripted = Arc::new(Scripted::default());
        *lock(&scripted.answer) = ScriptedAnswer::default().wire();
        let mut server = Self::start(None, Reply::Scripted(scripted.clone()))?;
        server.scripted = Some(scripted);
        Ok(server)
    }

    /// What a scripted server answers from now on; an error on a server that is not scripted.
    pub fn set_answer(&self, answer: &ScriptedAnswer) -> Result<()> {
        let scripted = self
            .scripted
            .as_ref()
            .context("set_answer needs EchoServer::scripted")?;
        *lock(&scripted.answer) = answer.wire();
        Ok(())
    }

    /// The requests a scripted server received since the last call, in order (none for the
    /// other kinds).
    pub fn take_received(&self) -> Vec<EchoedRequest> {
        self.scripted
            .as_ref()
            .map(|scripted| std::mem::take(&mut *lock(&scripted.received)))
            .unwrap_or_default()
    }

    /// HTTPS with this server certificate (the gateway's backends).
    pub fn tls(cert: &IssuedCert) -> Result<Self> {
        Self::tls_with(cert, None)
    }

    /// HTTPS that also requires a client certificate chaining to `client_ca_pem`: a backend
    /// that only a proxy presenting its mesh certificate reaches.
    pub fn mutual_tls(cert: &IssuedCert, client_ca_pem: &str) -> Result<Self> {
        Self::tls_with(cert, Some(client_ca_pem))
    }

    fn tls_with(cert: &IssuedCert, client_ca_pem: Option<&str>) -> Result<Self> {
        let config = cert.server_tls_config_verifying(client_ca_pem)?;
        Self::start(Some(TlsAcceptor::from(Arc::new(config))), Reply::Echo)
    }

    /// Binds first, so the port is known before the server thread runs; the server has its own
    /// thread and runtime so it serves whatever the test's runtime is doing.
    fn start(tls: Option<TlsAcceptor>, reply: Reply) -> Result<Self> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("binding the echo server")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(SeenHeaders::default());
        let (shutdown, stop) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("echo server runtime")?;
        let counter = Counters {
            requests: requests.clone(),
            seen: seen.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("echo-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = accept_loop(listener, tls, reply, counter) => {}
                        _ = stop => {}
                    }
                });
            })
            .context("spawning the echo server thread")?;
        Ok(EchoServer {
            addr,
            requests,
            seen,
            shutdown: Some(shutdown),
            thread: Some(thread),
            scripted: None,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// How many requests it has answered so far.
    pub fn requests_served(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// How many of the requests answered so far carried a header named `name` (any case), counted
    /// by an echoing server only ([`EchoServer::plain_ok`] counts none).
    pub fn requests_with_header(&self, name: &str) -> usize {
        self.seen.count(name)
    }
}

/// Per lowercased header name, the requests that carried it at least once.
#[derive(Default)]
struct SeenHeaders(Mutex<HashMap<String, usize>>);

impl SeenHeaders {
    fn record(&self, headers: &[(String, String)]) {
        let mut names: Vec<String> = headers
            .iter()
            .map(|(n, _)| n.to_ascii_lowercase())
            .collect();
        names.sort_unstable();
        names.dedup();
        let mut seen = lock(&self.0);
        for name in names {
            *seen.entry(name).or_default() += 1;
        }
    }

    fn count(&self, name: &str) -> usize {
        let seen = lock(&self.0);
        seen.get(&name.to_ascii_lowercase()).copied().unwrap_or(0)
    }
}

/// The lock's data, also after a panic elsewhere (every writer leaves it consistent).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the server counts, shared with its connections.
#[derive(Clone)]
struct Counters {
    requests: Arc<AtomicUsize>,
    seen: Arc<SeenHeaders>,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    reply: Reply,
    counters: Counters,
) {
    // Connection tasks live in the server's runtime and end with it.
    while let Ok((tcp, _)) = listener.accept().await {
        let tls = tls.clone();
        let counters = counters.clone();
        let reply = reply.clone();
        tokio::spawn(async move {
            // A connection that fails (reset, bad TLS) only ends itself.
            let _ = serve_connection(tcp, tls, reply, counters).await;
        });
    }
}

async fn serve_connection(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    reply: Reply,
    counters: Counters,
) -> Result<()> {
    tcp.set_nodelay(true)?;
    let stream = match tls {
        None if matches!(reply, Reply::Echo) && opens_with_h2_preface(&tcp).await? => {
            crate::grpc::serve_connection(tcp, counters.requests).await;
            return Ok(());
        }
        None => Stream::Plain(tcp),
        Some(acceptor) => {
            let tls_stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                .await
                .context("TLS handshake timed out")??;
            Stream::Tls(Box::new(tls_stream.into()))
        }
    };
    let mut io = BufReader::new(stream);
    let mut out = Vec::with_capacity(4096);
    while let Some(head) = http1::read_head(&mut io).await? {
        let mut body = Vec::new();
        http1::read_body(&mut io, BodyFraming::of_request(&head.headers)?, &mut body).await?;
        let close = head
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let response = match &reply {
            Reply::Echo => {
                counters.seen.record(&head.headers);
                out.clear();
                write_echo(&head, &body, close, &mut out)?;
                out.as_slice()
            }
            Reply::EmptyOk => EMPTY_OK,
            Reply::Scripted(scripted) => {
                let mut parts = head.start_line.splitn(3, ' ');
                lock(&scripted.received).push(EchoedRequest {
                    method: parts.next().unwrap_or_default().to_owned(),
                    path: parts.next().unwrap_or_default().to_owned(),
                    headers: head.headers.clone(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
                out.clear();
                out.extend_from_slice(&lock(&scripted.answer));
                out.as_slice()
            }
        };
        counters.requests.fetch_add(1, Ordering::SeqCst);
        io.get_mut().write_all(response).await?;
        io.get_mut().flush().await?;
        if close {
            break;
        }
    }
    Ok(())
}

/// Whether the client's first bytes are the HTTP/2 connection preface (`PRI * HTTP/2.0…`), read
/// without consuming them; false when it closes first.
async fn opens_with_h2_preface(tcp: &TcpStream) -> Result<bool> {
    const PREFACE_START: &[u8] = b"PRI * HTTP/2.0";
    let mut start = [0u8; PREFACE_START.len()];
    loop {
        let read = tcp.peek(&mut start).await?;
        if read == 0 || !PREFACE_START.starts_with(&start[..read]) {
            return Ok(false);
        }
        if read == start.len() {
            return Ok(true);
        }
        // Only part of the preface has arrived: wait for the rest without spinning.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn write_echo(head: &http1::Head, body: &[u8], close: bool, out: &mut Vec<u8>) -> Result<()> {
    let mut parts = head.start_line.splitn(3, ' ');
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        bail!("bad request line {:?}", head.start_line);
    };
    let echoed = json!({
        "method": method,
        "path": path,
        "headers": head.headers,
        "body": String::from_utf8_lossy(body),
    })
    .to_string();
    let connection = if close { "close" } else { "keep-alive" };
    out.extend_from_slice(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: {connection}\r\ncontent-length: {}\r\n\r\n",
            echoed.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(echoed.as_bytes());
    Ok(())
}

/// What the echo server received, read back from its response body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EchoedRequest {
    pub method: String,
    pub path: String,
    /// Header lines in the order received, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl EchoedRequest {
    /// Reads an echo response body.
    pub fn parse(body: &[u8]) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_slice(body).with_context(|| {
            format!(
                "not an echo server response: {}",
                String::from_utf8_lossy(body)
            )
        })?;
        let text = |key: &str| {
            value[key]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("echo response without {key:?}: {value}"))
        };
        let headers = serde_json::from_value(value["headers"].clone())
            .with_context(|| format!("echo response headers: {value}"))?;
        Ok(EchoedRequest {
            method: text("method")?,
            path: text("path")?,
            headers,
            body: text("body")?,
        })
    }

    /// The first value of a header, name compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        http1::header(&self.headers, name)
    }

    /// Every value of a header (duplicates in order).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        http1::header_values(&self.headers, name)
    }
}

impl crate::client::Response {
    /// The request the echo server saw, when this response came from it.
    pub fn echoed(&self) -> Result<EchoedRequest> {
        if self.status != 200 {
            bail!(
                "status {} is not an echo response: {}",
                self.status,
                self.body_text()
            );
        }
        EchoedRequest::parse(&self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{CertSpec, TestCa};
    use crate::client::{Client, ClientTls, Request};

    #[tokio::test]
    async fn echoes_headers_exactly_and_keeps_the_connection() {
        let echo = EchoServer::plain().unwrap();
        let mut connection = Client::plain(echo.addr()).connect().await.unwrap();
        for round in 0..3 {
            let response = connection
                .send(
                    &Request::new("POST", "/p?q=1")
                        .header("Host", "h")
                        .header("X-Dup", "a")
                        .header("x-dup", "b")
                        .body(format!("round {round}")),
                )
                .await
                .unwrap();
            let echoed = response.echoed().unwrap();
            assert_eq!(echoed.method, "POST");
            assert_eq!(echoed.path, "/p?q=1");
            assert_eq!(echoed.header_values("x-dup"), ["a", "b"]);
            assert_eq!(echoed.headers[1], ("X-Dup".to_string(), "a".to_string()));
            assert_eq!(echoed.body, format!("round {round}"));
        }
        assert_eq!(echo.requests_served(), 3);
        assert_eq!(echo.requests_with_header("x-dup"), 3);
        assert_eq!(echo.requests_with_header("X-DUP"), 3);
        assert_eq!(echo.requests_with_header("x-absent"), 0);
    }

    #[tokio::test]
    async fn a_scripted_server_answers_what_is_set_and_keeps_each_request() {
        let server = EchoServer::scripted().unwrap();
        let client = Client::plain(server.addr());
        let first = client.send(&Request::get("/a", "h")).await.unwrap();
        assert_eq!((first.status, first.body.len()), (200, 0));
        server
            .set_answer(&ScriptedAnswer {
                status: 418,
                headers: vec![("x-s".into(), "1".into())],
                body: b"tea".to_vec(),
            })
            .unwrap();
        let second = client
            .send(&Request::new("POST", "/b").header("host", "h").body("hi"))
            .await
            .unwrap();
        assert_eq!(
            (second.status, second.header("x-s"), second.body_text()),
            (418, Some("1"), "tea".to_string())
        );
        let received = server.take_received();
        assert_eq!(received.len(), 2);
        assert_eq!(
            (received[1].method.as_str(), received[1].path.as_str()),
            ("POST", "/b")
        );
        assert_eq!(received[1].body, "hi");
        assert!(server.take_received().is_empty());
        assert!(EchoServer::plain()
            .unwrap()
            .set_answer(&ScriptedAnswer::default())
            .is_err());
    }

    #[tokio::test]
    async fn serves_tls() {
        let ca = TestCa::new("echo test CA").unwrap();
        let cert = ca.issue(&CertSpec::server().dns("backend.test")).unwrap();
        let echo = EchoServer::tls(&cert).unwrap();
        let tls = ClientTls::builder(ca.cert_pem())
            .sni("backend.test")
            .build()
            .unwrap();
        let response = Client::tls(echo.addr(), tls)
            .send(&Request::get("/", "backend.test"))
            .await
            .unwrap();
        assert_eq!(
            response.echoed().unwrap().header("host"),
            Some("backend.test")
        );
    }
}
