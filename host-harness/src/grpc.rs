//! gRPC calls and streams a guest opens (`proxy_grpc_call`, `proxy_grpc_stream`) as the test sees
//! them, and the answers the test scripts for them, delivered through the guest's
//! `proxy_on_grpc_*` callbacks as Envoy's async gRPC client delivers a real service's.

use crate::headers::HeaderMap;

/// A gRPC call (`stream: false`) or stream the guest opened and the test has not closed yet.
/// Envoy numbers calls with odd tokens and streams with even ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchedGrpcCall {
    pub token: u32,
    pub stream: bool,
    /// The `service` argument: a cluster name (a serialized `GrpcService` is kept as given).
    pub cluster: String,
    pub service: String,
    pub method: String,
    pub initial_metadata: HeaderMap,
    /// The messages the guest sent: a call's request, then each `proxy_grpc_send` of a stream.
    pub messages: Vec<Vec<u8>>,
    /// Whether the guest half-closed the stream (`end_stream` on a send, or `proxy_grpc_close`).
    pub local_closed: bool,
    pub timeout_ms: u32,
    /// When Envoy's async client gives up on a call ([`DEADLINE_STATUS`]); `None` for a stream
    /// or a call with timeout 0, which wait for their answer however long it takes.
    pub deadline_ns: Option<u64>,
}

/// The status a gRPC call gets when its timeout passes unanswered, with [`DEADLINE_MESSAGE`].
/// Envoy's async client runs the call through its router with the call's timeout as the route
/// timeout; when it fires the router answers a local reply `504 upstream request timeout`, which
/// for a gRPC request becomes a trailers-only answer with the status mapped from the HTTP code
/// (504 -> 14, UNAVAILABLE), and the gRPC client closes the call with that status and message.
pub const DEADLINE_STATUS: u32 = 14;

/// The status message of a call whose timeout passed, as Envoy 1.40 hands it to the guest: the
/// router's local reply body followed by its details in braces.
pub const DEADLINE_MESSAGE: &str = "upstream request timeout{response_timeout}";

/// The status a call answered OK without a response message gets: Envoy's async client closes
/// it INTERNAL (13) with an empty message, as a unary call must carry exactly one message.
pub const MISSING_MESSAGE_STATUS: u32 = 13;

/// What the scripted service answers: optional initial metadata, messages, trailing metadata and
/// a final status (0, OK, unless set). A call takes the first message on OK (status 13 without
/// one), or the status; a stream gets every part in order, then `proxy_on_grpc_close` unless
/// [`GrpcAnswer::keep_open`].
///
/// ```
/// use host_harness::GrpcAnswer;
/// let answer = GrpcAnswer::ok().message(b"\x08\x01".to_vec());
/// let failure = GrpcAnswer::status(14, "unavailable");
/// # let _ = (answer, failure);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcAnswer {
    pub(crate) initial_metadata: HeaderMap,
    pub(crate) messages: Vec<Vec<u8>>,
    pub(crate) trailing_metadata: HeaderMap,
    pub(crate) status: u32,
    pub(crate) status_message: String,
    pub(crate) keep_open: bool,
}

impl GrpcAnswer {
    /// Status 0 (OK), nothing else yet.
    pub fn ok() -> GrpcAnswer {
        GrpcAnswer::default()
    }

    /// A final status other than OK, with its message (what `proxy_get_status` returns).
    pub fn status(code: u32, message: &str) -> GrpcAnswer {
        GrpcAnswer {
            status: code,
            status_message: message.to_string(),
            ..GrpcAnswer::default()
        }
    }

    pub fn initial_metadata(mut self, key: &str, value: &str) -> GrpcAnswer {
        self.initial_metadata.add(key, value);
        self
    }

    /// One response message (serialized protobuf, as the guest receives it).
    pub fn message(mut self, message: impl Into<Vec<u8>>) -> GrpcAnswer {
        self.messages.push(message.into());
        self
    }

    pub fn trailing_metadata(mut self, key: &str, value: &str) -> GrpcAnswer {
        self.trailing_metadata.add(key, value);
        self
    }

    /// For a stream: deliver the parts but leave the stream open for more.
    pub fn keep_open(mut self) -> GrpcAnswer {
        self.keep_open = true;
        self
    }
}
