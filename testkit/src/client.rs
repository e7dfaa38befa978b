//! An HTTP/1.1 client over TCP or TLS (tokio + rustls) that presents an optional client certificate,
//! chooses its SNI, writes header lines exactly as given (duplicates, case, odd values), reuses one
//! connection for many requests, and bounds every wait. The load generator reuses it, so a
//! connection keeps its buffers between requests and the TLS configuration is built once.

use crate::certs::IssuedCert;
use crate::http1::{self, BodyFraming, Stream};
use anyhow::{bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Connect, TLS handshake, and each response: none may take longer than this unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A request: method, target, header lines written exactly as given, and a body.
#[derive(Clone, Debug)]
pub struct Request {
    method: String,
    target: String,
    header_lines: Vec<String>,
    body: Vec<u8>,
}

impl Request {
    pub fn new(method: &str, target: &str) -> Self {
        Request {
            method: method.to_owned(),
            target: target.to_owned(),
            header_lines: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `GET <target>` with a `host` header (HTTP/1.1 requires one).
    pub fn get(target: &str, host: &str) -> Self {
        Self::new("GET", target).header("host", host)
    }

    /// Adds the line `name: value`; repeat the call for duplicates.
    pub fn header(self, name: &str, value: &str) -> Self {
        self.raw_header(&format!("{name}: {value}"))
    }

    /// Adds a header line as is (no space after the colon, odd spacing, anything).
    pub fn raw_header(mut self, line: &str) -> Self {
        self.header_lines.push(line.to_owned());
        self
    }

    /// Sets the body; `content-length` is added unless a header line already frames the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn method(&self) -> &str {
        &self.method
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// The header lines, as given.
    pub fn header_lines(&self) -> &[String] {
        &self.header_lines
    }

    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for line in &self.header_lines {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let framed = self.header_lines.iter().any(|line| {
            let name = line.split(':').next().unwrap_or_default().trim();
            name.eq_ignore_ascii_case("content-length")
                || name.eq_ignore_ascii_case("transfer-encoding")
        });
        if !self.body.is_empty() && !framed {
            out.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }
}

/// A response: status, headers as received, and the whole body.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header, name compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        http1::header(&self.headers, name)
    }

    /// Every value of a header, in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        http1::header_values(&self.headers, name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "response body (status {}) is not JSON: {}",
                self.status,
                self.body_text()
            )
        })
    }
}

/// TLS settings of a client, built once and shared by all its connections.
#[derive(Clone)]
pub struct ClientTls {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) server_name: ServerName<'static>,
}

impl ClientTls {
    /// Starts a TLS setting that trusts servers whose chain leads to `server_ca_pem`.
    pub fn builder(server_ca_pem: &str) -> ClientTlsBuilder {
        ClientTlsBuilder {
            server_ca_pem: server_ca_pem.to_owned(),
            client_cert: None,
            sni: None,
            tls12_only: false,
        }
    }
}

/// Options of [`ClientTls`]: client certificate, SNI, protocol version.
pub struct ClientTlsBuilder {
    server_ca_pem: String,
    client_cert: Option<IssuedCert>,
    sni: Option<String>,
    tls12_only: bool,
}

impl ClientTlsBuilder {
    /// Presents this certificate (leaf only, as a mesh client would) when the server asks.
    pub fn client_cert(mut self, cert: &IssuedCert) -> Self {
        self.client_cert = Some(cert.clone());
        self
    }

    /// Sends this SNI. Without it the client sends none.
    pub fn sni(mut self, name: &str) -> Self {
        self.sni = Some(name.to_owned());
        self
    }

    /// Offers TLS 1.2 only (the default offers 1.3 and 1.2).
    pub fn tls12_only(mut self) -> Self {
        self.tls12_only = true;
        self
    }

    pub fn build(self) -> Result<ClientTls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.server_ca_pem.as_bytes()) {
            roots
                .add(cert.context("server CA PEM")?)
                .context("server CA certificate")?;
        }
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .context("server certificate verifier")?;
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .context("TLS protocol versions")?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyNameVerifier(verifier)));
        let mut config = match &self.client_cert {
            Some(cert) => {
                let chain = vec![CertificateDer::from(cert.der.clone())];
                let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes())
                    .context("client private key PEM")?;
                builder
                    .with_client_auth_cert(chain, key)
                    .context("client certificate")?
            }
            None => builder.with_no_client_auth(),
        };
        let server_name = match &self.sni {
            Some(name) => ServerName::try_from(name.clone())
                .with_context(|| format!("{name:?} is not a valid SNI"))?,
            None => {
                config.enable_sni = false;
                ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into())
            }
        };
        Ok(ClientTls {
            config: Arc::new(config),
            server_name,
        })
    }
}

/// Verifies the server's chain against the test CA but not its name: tests choose the SNI freely
/// (the subject of the tests is the client's identity, not the server's).
#[derive(Debug)]
struct AnyNameVerifier(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyNameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Where and how to connect: an address, plain or TLS, and the time limit of every step.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    tls: Option<ClientTls>,
    timeout: Duration,
}

impl Client {
    /// Plain HTTP to `addr`.
    pub fn plain(addr: SocketAddr) -> Self {
        Client {
            addr,
            tls: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// HTTPS to `addr` with these TLS settings.
    pub fn tls(addr: SocketAddr, tls: ClientTls) -> Self {
        Client {
            addr,
            tls: Some(tls),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(crate) fn tls_settings(&self) -> Option<&ClientTls> {
        self.tls.as_ref()
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Opens a connection (and completes the TLS handshake).
    pub async fn connect(&self) -> Result<Connection> {
        let addr = self.addr;
        let tcp = tokio::time::timeout(self.timeout, TcpStream::connect(addr))
            .await
            .with_context(|| format!("connecting to {addr} timed out"))?
            .with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        let stream = match &self.tls {
            None => Stream::Plain(tcp),
            Some(tls) => {
                let connector = TlsConnector::from(tls.config.clone());
                let handshake = connector.connect(tls.server_name.clone(), tcp);
                let tls_stream = tokio::time::timeout(self.timeout, handshake)
                    .await
                    .with_context(|| format!("TLS handshake with {addr} timed out"))?
                    .with_context(|| format!("TLS handshake with {addr}"))?;
                Stream::Tls(Box::new(tls_stream.into()))
            }
        };
        Ok(Connection {
            io: BufReader::with_capacity(16 * 1024, stream),
            out: Vec::with_capacity(1024),
            timeout: self.timeout,
            addr,
        })
    }

    /// Sends one request on a new connection.
    pub async fn send(&self, request: &Request) -> Result<Response> {
        self.connect().await?.send(request).await
    }

    /// Sends one request on a new connection and reads what comes back even when the server cuts
    /// it short: the response as far as it arrived, and whether the connection closed or reset
    /// inside its body (Envoy resets a stream whose buffered response body overflowed). Envoy
    /// may also answer before it has read the whole request (a `413`) and close: a request that
    /// cannot be written in full still gets its response read.
    pub async fn send_until_cut(&self, request: &Request) -> Result<(Response, bool)> {
        let mut connection = self.connect().await?;
        let timeout = self.timeout;
        let addr = self.addr;
        tokio::time::timeout(timeout, connection.exchange_until_cut(request))
            .await
            .with_context(|| {
                format!(
                    "{} {} to {addr}: no response within {timeout:?}",
                    request.method, request.target
                )
            })?
            .with_context(|| format!("{} {} to {addr}", request.method, request.target))
    }
}

/// One open connection; send requests on it one after another (keep-alive).
pub struct Connection {
    io: BufReader<Stream>,
    out: Vec<u8>,
    timeout: Duration,
    addr: SocketAddr,
}

impl Connection {
    /// Whether the TLS handshake was full or resumed a session (`None` on plain HTTP). A client
    /// resumes when the same [`ClientTls`] made an earlier connection to the same server: its
    /// configuration keeps rustls's in-memory session store (TLS 1.3 tickets, TLS 1.2 sessions).
    pub fn handshake_kind(&self) -> Option<rustls::HandshakeKind> {
        match self.io.get_ref() {
            Stream::Plain(_) => None,
            Stream::Tls(tls) => tls.get_ref().1.handshake_kind(),
        }
    }

    /// The leaf certificate the server presented (DER), `None` on plain HTTP: which certificate a
    /// rotating server served to this handshake.
    pub fn server_certificate(&self) -> Option<Vec<u8>> {
        match self.io.get_ref() {
            Stream::Plain(_) => None,
            Stream::Tls(tls) => tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| leaf.to_vec()),
        }
    }

    /// Sends a request and reads its whole response, within the client's timeout.
    pub async fn send(&mut self, request: &Request) -> Result<Response> {
        let timeout = self.timeout;
        let addr = self.addr;
        tokio::time::timeout(timeout, self.exchange(request))
            .await
            .with_context(|| {
                format!(
                    "{} {} to {addr}: no complete response within {timeout:?}",
                    request.method, request.target
                )
            })?
            .with_context(|| format!("{} {} to {addr}", request.method, request.target))
    }

    async fn exchange(&mut self, request: &Request) -> Result<Response> {
        self.write_request(request).await?;
        let (response, body) = self.read_response(request).await?;
        body?;
        Ok(response)
    }

    /// [`Client::send_until_cut`] on this connection.
    async fn exchange_until_cut(&mut self, request: &Request) -> Result<(Response, bool)> {
        // A write the server cut short is not the outcome: its answer, read next, is.
        let _ = self.write_request(request).await;
        let (response, body) = self.read_response(request).await?;
        Ok((response, body.is_err()))
    }

    async fn write_request(&mut self, request: &Request) -> Result<()> {
        self.out.clear();
        request.encode_into(&mut self.out);
        let stream = self.io.get_mut();
        stream.write_all(&self.out).await?;
        stream.flush().await?;
        Ok(())
    }

    /// The response's head and its body as far as it arrived, with the error that ended the
    /// body early, if one did.
    async fn read_response(&mut self, request: &Request) -> Result<(Response, Result<()>)> {
        let Some(head) = http1::read_head(&mut self.io).await? else {
            bail!("connection closed before a response");
        };
        let status = parse_status(&head.start_line)?;
        let framing = BodyFraming::of_response(&request.method, status, &head.headers)?;
        let mut body = Vec::new();
        let read = http1::read_body(&mut self.io, framing, &mut body).await;
        Ok((
            Response {
                status,
                headers: head.headers,
                body,
            },
            read,
        ))
    }
}

fn parse_status(status_line: &str) -> Result<u16> {
    let mut parts = status_line.splitn(3, ' ');
    match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") => code
            .parse()
            .with_context(|| format!("bad status code in {status_line:?}")),
        _ => bail!("not an HTTP/1.x status line: {status_line:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_lines_as_given_and_frames_the_body() {
        let request = Request::get("/a?b", "app")
            .header("X-Dup", "1")
            .header("x-dup", "2")
            .raw_header("odd:value ")
            .body("hi");
        let mut out = Vec::new();
        request.encode_into(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /a?b HTTP/1.1\r\nhost: app\r\nX-Dup: 1\r\nx-dup: 2\r\nodd:value \r\ncontent-length: 2\r\n\r\nhi"
        );
    }

    #[test]
    fn a_given_framing_header_is_not_doubled() {
        let request = Request::new("POST", "/")
            .header("Content-Length", "2")
            .body("hi");
        let mut out = Vec::new();
        request.encode_into(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"
        );
    }

    /// A server that reads a request head, writes `answer` and closes the connection.
    async fn answering(answer: &'static [u8]) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut socket = tokio::io::BufReader::new(socket);
            let _ = http1::read_head(&mut socket).await;
            let _ = socket.get_mut().write_all(answer).await;
        });
        addr
    }

    #[tokio::test]
    async fn a_response_cut_inside_its_body_is_read_as_far_as_it_came() {
        let cut = answering(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc").await;
        let request = Request::get("/", "app");
        let (response, was_cut) = Client::plain(cut).send_until_cut(&request).await.unwrap();
        assert_eq!(
            (response.status, &response.body[..], was_cut),
            (200, &b"abc"[..], true)
        );
        let cut = answering(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc").await;
        let error = Client::plain(cut).send(&request).await.unwrap_err();
        assert!(format!("{error:#}").contains("after 3"), "{error:#}");

        let whole = answering(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc").await;
        let (response, was_cut) = Client::plain(whole).send_until_cut(&request).await.unwrap();
        assert_eq!((&response.body[..], was_cut), (&b"abc"[..], false));
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status("HTTP/1.1 403 Forbidden").unwrap(), 403);
        assert_eq!(parse_status("HTTP/1.0 200").unwrap(), 200);
        assert!(parse_status("SSH-2.0").is_err());
    }
}
