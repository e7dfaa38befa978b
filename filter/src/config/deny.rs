//! `deny_response`: the local reply of a denied request, read and compiled.

use super::json::Json;
use super::read::*;
use crate::decide::access::DenyResponse;

pub(super) struct RawDenyResponse {
    pub(super) status: u16,
    pub(super) body: Option<String>,
    pub(super) content_type: Option<String>,
    pub(super) expose_reason: bool,
    pub(super) grpc_status: Option<u32>,
    pub(super) grpc_message: Option<String>,
}

pub(super) const FORBIDDEN: u16 = 403;

impl Default for RawDenyResponse {
    fn default() -> Self {
        RawDenyResponse {
            status: FORBIDDEN,
            body: None,
            content_type: None,
            expose_reason: false,
            grpc_status: None,
            grpc_message: None,
        }
    }
}

impl RawDenyResponse {
    pub(super) fn read(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<Self> {
        const KEYS: &[&str] = &[
            "status",
            "body",
            "content_type",
            "expose_reason",
            "grpc_status",
            "grpc_message",
        ];
        let fields = Fields::read(value, path, KEYS, problems)?;
        Some(RawDenyResponse {
            status: fields
                .get("status", problems, integer("an integer from 0 to 65535"))
                .unwrap_or(FORBIDDEN),
            body: fields.optional("body", problems, string),
            content_type: fields.optional("content_type", problems, string),
            expose_reason: fields
                .get("expose_reason", problems, boolean)
                .unwrap_or_default(),
            grpc_status: fields.optional("grpc_status", problems, integer(U32)),
            grpc_message: fields.optional("grpc_message", problems, string),
        })
    }
}

impl RawDenyResponse {
    pub(super) fn compile(self, problems: &mut Problems<'_>) -> DenyResponse {
        if !(400..=599).contains(&self.status) {
            problems.add(
                "deny_response.status",
                format!(
                    "{} is not an error status: a denial answers with 400 to 599",
                    self.status
                ),
            );
        }
        if let Some(content_type) = &self.content_type {
            if content_type.is_empty() || content_type.bytes().any(|b| b.is_ascii_control()) {
                problems.add(
                    "deny_response.content_type",
                    format!("{content_type:?} is not a valid header value"),
                );
            }
        }
        if let Some(status) = self.grpc_status.filter(|status| !(1..=16).contains(status)) {
            problems.add(
                "deny_response.grpc_status",
                format!("{status} is not a gRPC error status: a denial answers with 1 to 16"),
            );
        }
        if let Some(message) = &self.grpc_message {
            if message.bytes().any(|b| b.is_ascii_control()) {
                problems.add(
                    "deny_response.grpc_message",
                    format!("{message:?} holds a control character"),
                );
            }
        }
        DenyResponse {
            status: self.status,
            grpc_status: self.grpc_status,
            grpc_message: self.grpc_message,
            content_type: self.content_type.unwrap_or_else(|| {
                if self.body.is_some() {
                    "text/plain"
                } else {
                    "application/json"
                }
                .to_owned()
            }),
            body: self.body,
            expose_reason: self.expose_reason,
        }
    }
}
