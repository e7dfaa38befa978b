//! A gRPC service over cleartext HTTP/2 (h2c) that answers every unary call with what the test
//! scripted (status, message, metadata) or never answers, and keeps what each call carried, so a
//! test can compare the gRPC calls a proxy-wasm guest sends through Envoy with those the host
//! harness records. Runs on its own thread and stops when dropped.

use crate::background::Background;
use crate::protobuf;
use anyhow::{Context, Result};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::TcpListener;

/// What the service answers a call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptedGrpcAnswer {
    /// `grpc-status`, 0 for OK.
    pub status: u32,
    /// `grpc-message`, sent when not empty.
    pub status_message: String,
    /// The response message, framed; `None` sends no message.
    pub message: Option<Vec<u8>>,
    /// Headers after `:status` and `content-type`.
    pub initial_metadata: Vec<(String, String)>,
    /// Trailers after `grpc-status` and `grpc-message`.
    pub trailing_metadata: Vec<(String, String)>,
}

/// A call as the service received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedGrpcCall {
    /// `:authority`, the name the caller gave the service (Envoy puts the cluster name there).
    pub authority: String,
    /// The service's full name and the method, from `:path` (`/service/method`).
    pub service: String,
    pub method: String,
    /// The regular headers (the metadata), names lowercase, in order.
    pub headers: Vec<(String, String)>,
    /// The first request message, unframed (empty when the call carried none).
    pub message: Vec<u8>,
}

#[derive(Default)]
struct Script {
    /// `None`: hold every call open until the caller gives up.
    answer: Mutex<Option<ScriptedGrpcAnswer>>,
    received: Mutex<Vec<ReceivedGrpcCall>>,
}

pub struct ScriptedGrpcBackend {
    addr: SocketAddr,
    script: Arc<Script>,
    _server: Background,
}

impl ScriptedGrpcBackend {
    /// Starts the service on an ephemeral loopback port, answering OK with an empty message.
    pub fn start() -> Result<ScriptedGrpcBackend> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let script = Arc::new(Script::default());
        *lock(&script.answer) = Some(ScriptedGrpcAnswer {
            message: Some(Vec::new()),
            ..ScriptedGrpcAnswer::default()
        });
        let serving = Arc::clone(&script);
        let server = Background::spawn("scripted-grpc", move || async move {
            if let Ok(listener) = TcpListener::from_std(std_listener) {
                while let Ok((socket, _)) = listener.accept().await {
                    tokio::spawn(serve_connection(socket, Arc::clone(&serving)));
                }
            }
        })?;
        Ok(ScriptedGrpcBackend {
            addr,
            script,
            _server: server,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// What every call gets from now on; `None`: no answer at all (the call stays open until
    /// the caller resets it, as a hung service does).
    pub fn set_answer(&self, answer: Option<ScriptedGrpcAnswer>) {
        *lock(&self.script.answer) = answer;
    }

    /// The calls received since the last call, in order of arrival.
    pub fn take_received(&self) -> Vec<ReceivedGrpcCall> {
        std::mem::take(&mut *lock(&self.script.received))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn serve_connection(socket: tokio::net::TcpStream, script: Arc<Script>) {
    let Ok(mut connection) = h2::server::handshake(socket).await else {
        return;
    };
    while let Some(Ok((request, respond))) = connection.accept().await {
        let script = Arc::clone(&script);
        tokio::spawn(async move {
            let _ = answer(request, respond, &script).await;
        });
    }
}

async fn answer(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    script: &Script,
) -> Result<()> {
    let (parts, mut body) = request.into_parts();
    let mut buffer = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        buffer.extend_from_slice(&chunk);
    }
    let path = parts.uri.path().trim_start_matches('/');
    let (service, method) = path.split_once('/').unwrap_or((path, ""));
    lock(&script.received).push(ReceivedGrpcCall {
        authority: parts
            .uri
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        service: service.to_owned(),
        method: method.to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        message: protobuf::take_grpc_message(&mut buffer).unwrap_or_default(),
    });
    let Some(scripted) = lock(&script.answer).clone() else {
        // Hold the call open until the caller resets it.
        std::future::poll_fn(|cx| respond.poll_reset(cx)).await?;
        return Ok(());
    };
    let mut response = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc");
    for (name, value) in &scripted.initial_metadata {
        response = response.header(name, value);
    }
    let mut send = respond.send_response(response.body(())?, false)?;
    if let Some(message) = &scripted.message {
        send.send_data(protobuf::grpc_frame(message), false)?;
    }
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", scripted.status.to_string().parse()?);
    if !scripted.status_message.is_empty() {
        trailers.insert("grpc-message", scripted.status_message.parse()?);
    }
    for (name, value) in &scripted.trailing_metadata {
        trailers.append(http::HeaderName::try_from(name.as_str())?, value.parse()?);
    }
    send.send_trailers(trailers)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Sends one unary call over h2c with `message` and metadata `x-user: bob`; the response's
    /// headers, its first message and its trailers.
    async fn call(
        port: u16,
        message: &[u8],
    ) -> Result<(http::HeaderMap, Option<Vec<u8>>, http::HeaderMap)> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let (sender, connection) = h2::client::handshake(tcp).await?;
        tokio::spawn(connection);
        let request = http::Request::builder()
            .method("POST")
            .uri("http://grpcbin/grpcbin.GRPCBin/RandomError")
            .header("content-type", "application/grpc")
            .header("x-user", "bob")
            .body(())?;
        let (response, mut send) = sender.ready().await?.send_request(request, false)?;
        send.send_data(protobuf::grpc_frame(message), true)?;
        let (parts, mut body) = response.await?.into_parts();
        let mut buffer = Vec::new();
        while let Some(chunk) = body.data().await {
            buffer.extend_from_slice(&chunk?);
        }
        let trailers = body.trailers().await?.unwrap_or_default();
        Ok((
            parts.headers,
            protobuf::take_grpc_message(&mut buffer),
            trailers,
        ))
    }

    #[tokio::test]
    async fn a_call_gets_the_scripted_answer_and_is_kept() {
        let backend = ScriptedGrpcBackend::start().unwrap();
        backend.set_answer(Some(ScriptedGrpcAnswer {
            status: 7,
            status_message: "denied".into(),
            message: Some(b"no".to_vec()),
            initial_metadata: vec![("x-a".into(), "1".into())],
            trailing_metadata: vec![("x-b".into(), "2".into())],
        }));
        let (headers, message, trailers) = call(backend.port(), b"ping").await.unwrap();
        assert_eq!(headers["content-type"], "application/grpc");
        assert_eq!(headers["x-a"], "1");
        assert_eq!(message.as_deref(), Some(&b"no"[..]));
        assert_eq!(trailers["grpc-status"], "7");
        assert_eq!(trailers["grpc-message"], "denied");
        assert_eq!(trailers["x-b"], "2");
        let received = backend.take_received();
        assert_eq!(received.len(), 1);
        let call = &received[0];
        assert_eq!(
            (
                call.authority.as_str(),
                call.service.as_str(),
                call.method.as_str()
            ),
            ("grpcbin", "grpcbin.GRPCBin", "RandomError")
        );
        assert_eq!(call.message, b"ping");
        assert!(call.headers.contains(&("x-user".into(), "bob".into())));
        assert!(backend.take_received().is_empty(), "taken once");
    }

    #[tokio::test]
    async fn without_an_answer_a_call_is_held_open() {
        let backend = ScriptedGrpcBackend::start().unwrap();
        backend.set_answer(None);
        let held =
            tokio::time::timeout(Duration::from_millis(300), call(backend.port(), b"")).await;
        assert!(held.is_err(), "answered: {held:?}");
        assert_eq!(backend.take_received().len(), 1);
    }
}
