//! What became of a scenario, as the runner prints it (JSON): what the client received, what the
//! upstream received, the HTTP and gRPC calls the guest sent, what it logged, and the error if it
//! failed.

use crate::grpc::SentGrpcCall;
use serde::Serialize;

/// One scenario's outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// What the client received; `None` while the request is still paused (a call unanswered).
    pub response: Option<ReceivedResponse>,
    /// What the upstream received; `None` when the request never reached it.
    pub upstream: Option<ReceivedRequest>,
    /// The HTTP calls the guest dispatched, in order.
    pub http_calls: Vec<SentHttpCall>,
    /// The unary gRPC calls the guest sent, in order.
    pub grpc_calls: Vec<SentGrpcCall>,
    /// The lines the guest logged during the scenario, as `level: message`.
    pub logs: Vec<String>,
    /// Why the scenario could not be played to its end (a guest trap, a failed VM).
    pub error: Option<String>,
}

/// A response as the client receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceivedResponse {
    pub status: u16,
    /// Header lines in order, names lowercase.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The stream was reset after the headers went out: `body` is what arrived before.
    pub reset: bool,
}

/// A request as the upstream receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceivedRequest {
    /// Header lines in order, pseudo-headers (`:method`, `:path`, `:authority`, …) included.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// An HTTP call the guest dispatched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentHttpCall {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl ReceivedResponse {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        first(&self.headers, name)
    }
}

impl ReceivedRequest {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        first(&self.headers, name)
    }
}

fn first<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}
