//! The HTTP/2 side of [`Client`]: TLS connections that negotiate `h2` by ALPN, as gRPC callers and
//! mesh sidecars speak to Envoy, one request each ([`Client::send_h2`]) or many in turn
//! ([`H2Connection`], keep-alive). Header lines of the [`Request`] become HTTP/2
//! fields (`host` becomes `:authority`); the response's trailers follow its headers in
//! [`Response::headers`], so a gRPC status reads the same whether it came trailers-only or not.

use crate::client::{Client, Request, Response};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

impl Client {
    /// Sends one request over HTTP/2 on a new TLS connection (ALPN `h2`, which the server must
    /// choose), within the client's timeout.
    pub async fn send_h2(&self, request: &Request) -> Result<Response> {
        self.connect_h2().await?.send(request).await
    }

    /// Opens a TLS connection that negotiates `h2` (which the server must choose), within the
    /// client's timeout: requests sent on it are streams of one HTTP/2 connection (keep-alive).
    pub async fn connect_h2(&self) -> Result<H2Connection> {
        let timeout = self.timeout();
        let addr = self.addr();
        tokio::time::timeout(timeout, self.handshake_h2())
            .await
            .with_context(|| format!("HTTP/2 connection to {addr}: not ready within {timeout:?}"))?
    }

    async fn handshake_h2(&self) -> Result<H2Connection> {
        let addr = self.addr();
        let Some(tls) = self.tls_settings() else {
            bail!("HTTP/2 is negotiated by ALPN: this client has no TLS");
        };
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        let mut config = (*tls.config).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let stream = TlsConnector::from(std::sync::Arc::new(config))
            .connect(tls.server_name.clone(), tcp)
            .await
            .with_context(|| format!("TLS handshake with {addr}"))?;
        if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            bail!("{addr} did not choose h2 by ALPN");
        }
        let (sender, connection) = h2::client::handshake(stream)
            .await
            .context("HTTP/2 handshake")?;
        Ok(H2Connection {
            sender,
            driver: tokio::spawn(connection),
            timeout: self.timeout(),
        })
    }
}

/// One open HTTP/2 connection; each request is a stream of it. Closed when dropped.
pub struct H2Connection {
    sender: h2::client::SendRequest<Bytes>,
    driver: tokio::task::JoinHandle<Result<(), h2::Error>>,
    timeout: Duration,
}

impl Drop for H2Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl H2Connection {
    /// Sends a request as a new stream and reads its whole response and trailers, within the
    /// client's timeout.
    pub async fn send(&mut self, request: &Request) -> Result<Response> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.exchange(request))
            .await
            .with_context(|| {
                format!(
                    "{} over h2: no complete response within {timeout:?}",
                    request.target()
                )
            })?
    }

    async fn exchange(&mut self, request: &Request) -> Result<Response> {
        let mut authority = String::new();
        let mut builder = http::Request::builder().method(request.method());
        for line in request.header_lines() {
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "host" {
                authority = value.to_owned();
            } else {
                builder = builder.header(name, value);
            }
        }
        let outgoing = builder
            .uri(format!("https://{authority}{}", request.target()))
            .body(())
            .context("an HTTP/2 request")?;
        let body = request.body_bytes();
        let mut sender = self
            .sender
            .clone()
            .ready()
            .await
            .context("the connection takes no new stream")?;
        let (reply, mut send) = sender
            .send_request(outgoing, body.is_empty())
            .context("sending the request")?;
        if !body.is_empty() {
            send.send_data(Bytes::copy_from_slice(body), true)?;
        }
        let reply = reply.await.context("the response")?;
        let status = reply.status().as_u16();
        let mut headers = fields(reply.headers());
        let mut incoming = reply.into_body();
        let mut received = Vec::new();
        while let Some(chunk) = incoming.data().await {
            let chunk = chunk.context("the response body")?;
            let _ = incoming.flow_control().release_capacity(chunk.len());
            received.extend_from_slice(&chunk);
        }
        if let Some(trailers) = incoming.trailers().await.context("the trailers")? {
            headers.extend(fields(&trailers));
        }
        Ok(Response {
            status,
            headers,
            body: received,
        })
    }
}

fn fields(map: &http::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}
