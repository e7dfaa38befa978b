//! A gRPC backend over cleartext HTTP/2 (h2c), as a gRPC service behind a sidecar or gateway is:
//! every call is answered `OK` with messages that carry the identity header the backend received
//! (`x-client-spiffe-id`, as protobuf field 1, a string), one message for a unary call and
//! [`STREAMED_MESSAGES`] for a path ending in `/Watch` (server streaming). Runs on its own thread
//! and stops when dropped.

use crate::background::Background;
use crate::protobuf;
use anyhow::{Context, Result};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

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
    /// Starts the backend on an ephemeral loopback port.
    pub fn start() -> Result<GrpcBackend> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let server = Background::spawn("grpc-backend", move || async move {
            if let Ok(listener) = TcpListener::from_std(std_listener) {
                accept(listener, counted).await;
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

async fn accept(listener: TcpListener, calls: Arc<AtomicUsize>) {
    while let Ok((socket, _)) = listener.accept().await {
        let calls = Arc::clone(&calls);
        tokio::spawn(async move {
            let Ok(mut connection) = h2::server::handshake(socket).await else {
                return;
            };
            while let Some(Ok((request, respond))) = connection.accept().await {
                let calls = Arc::clone(&calls);
                tokio::spawn(async move {
                    let _ = answer(request, respond, &calls).await;
                });
            }
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
