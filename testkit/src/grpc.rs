//! A gRPC backend, as a gRPC service behind a sidecar or gateway is: over cleartext HTTP/2 (h2c,
//! [`GrpcBackend::start`]) or over TLS with ALPN `h2` ([`GrpcBackend::tls`], a gateway's backend).
//! Every call is answered `OK` with messages that carry the identity header the backend received
//! (`x-client-spiffe-id`, as protobuf field 1, a string), one message for a unary call and
//! [`STREAMED_MESSAGES`] for a path ending in `/Watch` (server streaming). Runs on its own thread
//! and stops when dropped. [`crate::EchoServer::plain`] answers gRPC calls on its port the same way.

use crate::background::Background;
use crate::certs::IssuedCert;
use crate::protobuf;
use anyhow::{Context, Result};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How many messages a streaming call (`…/Watch`) gets.
pub const STREAMED_MESSAGES: usize = 3;

/// The header whose value the backend sends back.
const ECHOED_HEADER: &str = "x-client-spiffe-id";

pub struct GrpcBackend {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    _server: Background,
}

impl GrpcBackend {
    /// Starts the backend over h2c on an ephemeral loopback port.
    pub fn start() -> Result<GrpcBackend> {
        Self::serve(None)
    }

    /// Starts the backend over TLS with this server certificate, offering only `h2` by ALPN.
    pub fn tls(cert: &IssuedCert) -> Result<GrpcBackend> {
        let mut config = cert.server_tls_config()?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Self::serve(Some(TlsAcceptor::from(Arc::new(config))))
    }

    fn serve(tls: Option<TlsAcceptor>) -> Result<GrpcBackend> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let server = Background::spawn("grpc-backend", move || async move {
            if let Ok(listener) = TcpListener::from_std(std_listener) {
                accept(listener, tls, counted).await;
            }
        })?;
        Ok(GrpcBackend {
            addr,
            calls,
            _server: server,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Calls answered so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

async fn accept(listener: TcpListener, tls: Option<TlsAcceptor>, calls: Arc<AtomicUsize>) {
    while let Ok((socket, _)) = listener.accept().await {
        let calls = Arc::clone(&calls);
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(socket, calls).await,
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(socket).await {
                        serve_connection(stream, calls).await;
                    }
                }
            }
        });
    }
}

/// Answers the gRPC calls of one HTTP/2 connection until it closes, counting each in `calls`.
pub(crate) async fn serve_connection<T>(io: T, calls: Arc<AtomicUsize>)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let Ok(mut connection) = h2::server::handshake(io).await else {
        return;
    };
    while let Some(Ok((request, respond))) = connection.accept().await {
        let calls = Arc::clone(&calls);
        tokio::spawn(async move {
            let _ = answer(request, respond, &calls).await;
        });
    }
}

async fn answer(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    calls: &AtomicUsize,
) -> Result<()> {
    let identity = request
        .headers()
        .get(ECHOED_HEADER)
        .map(|value| value.as_bytes().to_vec())
        .unwrap_or_default();
    let streaming = request.uri().path().ends_with("/Watch");
    let mut body = request.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    calls.fetch_add(1, Ordering::SeqCst);
    let response = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(())?;
    let mut send = respond.send_response(response, false)?;
    let messages = if streaming { STREAMED_MESSAGES } else { 1 };
    for _ in 0..messages {
        send.send_data(grpc_message(&identity), false)?;
    }
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    send.send_trailers(trailers)?;
    Ok(())
}

/// One length-prefixed gRPC message holding `identity` as protobuf field 1 (a string).
fn grpc_message(identity: &[u8]) -> Bytes {
    let mut field = Vec::new();
    protobuf::put_bytes(1, identity, &mut field);
    protobuf::grpc_frame(&field)
}

/// The identity a reply of the backend carries: the string field 1 of its first length-prefixed
/// message; `None` when `body` is not such a reply.
pub fn reply_identity(body: &[u8]) -> Option<String> {
    let (prefix, message) = body.split_at_checked(5)?;
    let length = u32::from_be_bytes(prefix.get(1..5)?.try_into().ok()?) as usize;
    let mut field = message.get(..length)?.iter().copied();
    if field.next()? != 0x0a {
        return None;
    }
    let (mut value_length, mut shift) = (0usize, 0);
    loop {
        let byte = field.next()?;
        value_length |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let value: Vec<u8> = field.collect();
    (value.len() == value_length)
        .then(|| String::from_utf8(value).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_gives_back_the_identity_it_carries() {
        let identity = "spiffe://mesh.local/ns/shop/sa/orders".repeat(5);
        let reply = grpc_message(identity.as_bytes());
        assert_eq!(reply_identity(&reply), Some(identity));
        assert_eq!(reply_identity(&grpc_message(b"")), Some(String::new()));
        assert_eq!(reply_identity(b"{\"json\": true}"), None);
    }
}
