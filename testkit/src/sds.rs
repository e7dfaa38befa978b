//! An SDS server on a unix socket, serving Envoy its certificate and trust bundle the way the SPIRE
//! agent does for App Mesh's SPIRE integration: `SecretDiscoveryService.StreamSecrets` (gRPC over
//! HTTP/2), each requested secret name answered with its certificate chain and key, or its CA
//! bundle, inline. A stream gets a response whenever it asks for a set of names it was not last
//! sent (an ACK repeats the names and gets none). Runs on its own thread; the socket's directory is
//! removed when dropped.

use crate::background::Background;
use crate::certs::IssuedCert;
use crate::protobuf::{grpc_frame, length_delimited_fields, put_bytes, take_grpc_message};
use anyhow::{Context, Result};
use bytes::Bytes;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::UnixListener;

/// The type of every resource SDS serves.
const SECRET_TYPE: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// What a secret holds.
#[derive(Clone, Debug)]
pub enum SdsSecret {
    /// A workload's certificate (an X.509 SVID) and its key.
    Certificate(IssuedCert),
    /// The CA certificates a peer must chain to (a trust bundle), PEM.
    Bundle(String),
}

pub struct SdsServer {
    // Fields drop in order: the server stops before its socket's directory goes.
    _server: Background,
    dir: tempfile::TempDir,
    responses: Arc<AtomicUsize>,
}

impl SdsServer {
    /// Serves `secrets`, (name, secret) each, on a new socket.
    pub fn start(secrets: Vec<(String, SdsSecret)>) -> Result<SdsServer> {
        let dir = tempfile::Builder::new()
            .prefix("certgate-sds-")
            .tempdir()
            .context("creating the SDS socket's directory")?;
        let std_listener = std::os::unix::net::UnixListener::bind(dir.path().join("agent.sock"))
            .context("binding the SDS socket")?;
        std_listener.set_nonblocking(true)?;
        let responses = Arc::new(AtomicUsize::new(0));
        let (secrets, counted) = (Arc::new(secrets), Arc::clone(&responses));
        let server = Background::spawn("sds-server", move || async move {
            if let Ok(listener) = UnixListener::from_std(std_listener) {
                accept(listener, secrets, counted).await;
            }
        })?;
        Ok(SdsServer {
            _server: server,
            dir,
            responses,
        })
    }

    /// The socket Envoy's SDS cluster connects to.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }

    /// Responses sent so far, on every stream.
    pub fn responses(&self) -> usize {
        self.responses.load(Ordering::SeqCst)
    }
}

async fn accept(
    listener: UnixListener,
    secrets: Arc<Vec<(String, SdsSecret)>>,
    responses: Arc<AtomicUsize>,
) {
    while let Ok((socket, _)) = listener.accept().await {
        let (secrets, responses) = (Arc::clone(&secrets), Arc::clone(&responses));
        tokio::spawn(async move {
            let Ok(mut connection) = h2::server::handshake(socket).await else {
                return;
            };
            while let Some(Ok((request, respond))) = connection.accept().await {
                let (secrets, responses) = (Arc::clone(&secrets), Arc::clone(&responses));
                tokio::spawn(async move {
                    let _ = stream_secrets(request, respond, &secrets, &responses).await;
                });
            }
        });
    }
}

/// One `StreamSecrets` stream: a response for each new set of names the stream asks for.
async fn stream_secrets(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    secrets: &[(String, SdsSecret)],
    responses: &AtomicUsize,
) -> Result<()> {
    let mut body = request.into_body();
    let mut send = None;
    let mut buffer = Vec::new();
    let mut last_asked: Option<Vec<String>> = None;
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        buffer.extend_from_slice(&chunk);
        while let Some(message) = take_grpc_message(&mut buffer) {
            // DiscoveryRequest: resource_names is field 3.
            let names: Vec<String> = length_delimited_fields(&message)
                .context("a DiscoveryRequest that is not protobuf")?
                .into_iter()
                .filter(|(number, _)| *number == 3)
                .map(|(_, name)| String::from_utf8_lossy(name).into_owned())
                .collect();
            if last_asked.as_ref() == Some(&names) {
                continue;
            }
            let version = responses.fetch_add(1, Ordering::SeqCst) + 1;
            let response = discovery_response(&names, secrets, version);
            last_asked = Some(names);
            let stream = match &mut send {
                Some(stream) => stream,
                None => send.insert(
                    respond.send_response(
                        http::Response::builder()
                            .status(200)
                            .header("content-type", "application/grpc")
                            .body(())?,
                        false,
                    )?,
                ),
            };
            stream.send_data(grpc_frame(&response), false)?;
        }
    }
    Ok(())
}

/// A DiscoveryResponse (version_info 1, resources 2, type_url 4, nonce 5) with every asked-for
/// secret this server has.
fn discovery_response(
    names: &[String],
    secrets: &[(String, SdsSecret)],
    version: usize,
) -> Vec<u8> {
    let mut response = Vec::new();
    put_bytes(1, version.to_string().as_bytes(), &mut response);
    for (name, secret) in secrets.iter().filter(|(name, _)| names.contains(name)) {
        let mut any = Vec::new();
        put_bytes(1, SECRET_TYPE.as_bytes(), &mut any);
        put_bytes(2, &secret_message(name, secret), &mut any);
        put_bytes(2, &any, &mut response);
    }
    put_bytes(4, SECRET_TYPE.as_bytes(), &mut response);
    put_bytes(5, format!("nonce-{version}").as_bytes(), &mut response);
    response
}

/// A Secret: name 1, tls_certificate 2 (certificate_chain 1, private_key 2) or validation_context
/// 4 (trusted_ca 1), each a DataSource with the PEM as inline_string (3).
fn secret_message(name: &str, secret: &SdsSecret) -> Vec<u8> {
    let inline = |pem: &str| {
        let mut source = Vec::new();
        put_bytes(3, pem.as_bytes(), &mut source);
        source
    };
    let mut message = Vec::new();
    put_bytes(1, name.as_bytes(), &mut message);
    let mut body = Vec::new();
    match secret {
        SdsSecret::Certificate(cert) => {
            put_bytes(1, &inline(&cert.cert_pem), &mut body);
            put_bytes(2, &inline(&cert.key_pem), &mut body);
            put_bytes(2, &body, &mut message);
        }
        SdsSecret::Bundle(pem) => {
            put_bytes(1, &inline(pem), &mut body);
            put_bytes(4, &body, &mut message);
        }
    }
    message
}
