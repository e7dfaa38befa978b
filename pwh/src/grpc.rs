//! gRPC calls in scenarios: the scripted answers to the unary calls the guest sends
//! (`proxy_grpc_call`), the calls as the outcome lists them, the expectations on them, and the
//! bytes of a message as a file writes them (`{hex: …}`, `{base64: …}` or `{text: …}`).
//!
//! A call left without an answer stays pending, as in Envoy while the service has not answered;
//! a time advance past its timeout closes it as Envoy's async client does (status 14,
//! `upstream request timeout{response_timeout}`). Streams (`proxy_grpc_stream`) are recorded by the harness but
//! not scripted here.

use crate::expect::check_headers;
use crate::outcome::Outcome;
use crate::scenario::{HeaderExpectation, Headers};
use base64::Engine as _;
use host_harness::{DispatchedGrpcCall, GrpcAnswer, HarnessError, Plugin, Stream};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The scripted service's answer to one unary gRPC call.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcCallAnswer {
    /// The gRPC status code, 0 (OK) to 16.
    #[serde(default, deserialize_with = "grpc_status")]
    pub status: u32,
    /// The status message (`grpc-message`), what the guest reads with `proxy_get_status`.
    #[serde(default)]
    pub status_message: String,
    /// The response message (serialized protobuf). An OK answer without one closes the call
    /// with status 13 (INTERNAL), as Envoy's async client does.
    #[serde(default)]
    pub message: Option<WireBytes>,
    /// Metadata the service sends; Envoy does not hand a unary call's metadata to the guest,
    /// so only the service's wire carries it.
    #[serde(default)]
    pub initial_metadata: Headers,
    #[serde(default)]
    pub trailing_metadata: Headers,
}

/// A gRPC status code, refused inside its own field so that the error names the field.
fn grpc_status<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    struct Code;
    impl Visitor<'_> for Code {
        type Value = u32;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a gRPC status code (0 to 16)")
        }
        fn visit_u64<E: de::Error>(self, code: u64) -> Result<u32, E> {
            u32::try_from(code)
                .ok()
                .filter(|code| *code <= 16)
                .ok_or_else(|| E::custom(format!("{code} is not a gRPC status code (0 to 16)")))
        }
        fn visit_i64<E: de::Error>(self, code: i64) -> Result<u32, E> {
            u64::try_from(code)
                .map_err(|_| E::custom(format!("{code} is not a gRPC status code (0 to 16)")))
                .and_then(|code| self.visit_u64(code))
        }
    }
    deserializer.deserialize_u32(Code)
}

impl GrpcCallAnswer {
    /// The answer as the harness delivers it.
    pub fn harness_answer(&self) -> GrpcAnswer {
        let mut answer = if self.status == 0 {
            GrpcAnswer::ok()
        } else {
            GrpcAnswer::status(self.status, &self.status_message)
        };
        if let Some(message) = &self.message {
            answer = answer.message(message.0.clone());
        }
        for (key, value) in &self.initial_metadata.0 {
            answer = answer.initial_metadata(key, value);
        }
        for (key, value) in &self.trailing_metadata.0 {
            answer = answer.trailing_metadata(key, value);
        }
        answer
    }
}

/// Bytes written as exactly one of `{hex: "0a01"}`, `{base64: "CgE="}` or `{text: "…"}`;
/// printed in outcomes as `{hex, base64}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WireBytes(pub Vec<u8>);

impl<'de> Deserialize<'de> for WireBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(Written)
    }
}

/// Reads `{hex | base64 | text: …}`, refusing it while inside the mapping so that the error
/// names the field the bytes are written in.
struct Written;

const ENCODINGS: &[&str] = &["hex", "base64", "text"];

impl<'de> Visitor<'de> for Written {
    type Value = WireBytes;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("bytes as { hex: ... }, { base64: ... } or { text: ... }")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WireBytes, A::Error> {
        let one = || de::Error::custom("bytes are written as exactly one of hex, base64 or text");
        let mut written: Option<(String, String)> = None;
        while let Some(key) = map.next_key::<String>()? {
            if !ENCODINGS.contains(&key.as_str()) {
                return Err(de::Error::unknown_field(&key, ENCODINGS));
            }
            let value: String = map.next_value()?;
            if written.replace((key, value)).is_some() {
                return Err(one());
            }
        }
        let (encoding, text) = written.ok_or_else(one)?;
        match encoding.as_str() {
            "hex" => decode_hex(&text).map(WireBytes).map_err(de::Error::custom),
            "base64" => base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map(WireBytes)
                .map_err(|error| de::Error::custom(format!("base64: {error}"))),
            _ => Ok(WireBytes(text.into_bytes())),
        }
    }
}

impl Serialize for WireBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Printed {
            hex: String,
            base64: String,
        }
        Printed {
            hex: self.0.iter().map(|byte| format!("{byte:02x}")).collect(),
            base64: base64::engine::general_purpose::STANDARD.encode(&self.0),
        }
        .serialize(serializer)
    }
}

/// Hex digits, two per byte, spaces allowed between bytes.
fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("hex: odd number of digits ({})", digits.len()));
    }
    digits
        .chunks(2)
        .map(|pair| {
            let pair: String = pair.iter().collect();
            u8::from_str_radix(&pair, 16).map_err(|_| format!("hex: {pair:?} is not a byte"))
        })
        .collect()
}

/// A unary gRPC call the guest sent, as the outcome lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentGrpcCall {
    /// The cluster (the call's `service` argument).
    pub cluster: String,
    /// The gRPC service's full name (`grpcbin.GRPCBin`).
    pub service: String,
    pub method: String,
    /// The request message as the guest serialized it.
    pub message: WireBytes,
    /// The metadata the guest gave the call, in order.
    pub initial_metadata: Vec<(String, String)>,
}

impl SentGrpcCall {
    /// The call as the harness recorded it; `None` for a stream.
    pub fn of(call: &DispatchedGrpcCall) -> Option<SentGrpcCall> {
        (!call.stream).then(|| SentGrpcCall {
            cluster: call.cluster.clone(),
            service: call.service.clone(),
            method: call.method.clone(),
            message: WireBytes(call.messages.first().cloned().unwrap_or_default()),
            initial_metadata: call
                .initial_metadata
                .iter()
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect(),
        })
    }
}

/// One call as a scenario expects it; only what is written is checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedGrpcCall {
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub message: Option<WireBytes>,
    /// Each key's expected first value, or (`null`) its absence.
    #[serde(default)]
    pub initial_metadata: BTreeMap<String, HeaderExpectation>,
}

/// The misses of `expected` (`expect.grpc_calls`) against the calls `outcome` lists: their
/// count, then each call's written fields.
pub(crate) fn check_calls(expected: &[ExpectedGrpcCall], outcome: &Outcome) -> Vec<String> {
    let sent = &outcome.grpc_calls;
    if sent.len() != expected.len() {
        let methods: Vec<String> = sent
            .iter()
            .map(|call| format!("{}/{}", call.service, call.method))
            .collect();
        return vec![format!(
            "expect.grpc_calls: wanted {} calls, got {} {methods:?}",
            expected.len(),
            sent.len()
        )];
    }
    let mut misses = Vec::new();
    for (index, (wanted, call)) in expected.iter().zip(sent).enumerate() {
        let path = format!("expect.grpc_calls[{index}]");
        let fields = [
            ("cluster", &wanted.cluster, &call.cluster),
            ("service", &wanted.service, &call.service),
            ("method", &wanted.method, &call.method),
        ];
        for (field, wanted, got) in fields {
            if let Some(wanted) = wanted.as_ref().filter(|wanted| wanted != &got) {
                misses.push(format!("{path}.{field}: wanted {wanted:?}, got {got:?}"));
            }
        }
        if let Some(wanted) = wanted.message.as_ref().filter(|m| **m != call.message) {
            misses.push(format!(
                "{path}.message: wanted {}, got {}",
                hex(&wanted.0),
                hex(&call.message.0)
            ));
        }
        check_headers(
            &format!("{path}.initial_metadata"),
            &wanted.initial_metadata,
            |key| {
                call.initial_metadata
                    .iter()
                    .find(|(name, _)| name == key)
                    .map(|(_, value)| value.as_str())
            },
            &mut misses,
        );
    }
    misses
}

fn hex(bytes: &[u8]) -> String {
    let digits: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("hex {digits:?}")
}

/// What can answer the guest's gRPC calls: the plugin itself, or a stream (which also resumes
/// the request when the guest continues it).
pub(crate) trait GrpcCalls {
    fn pending(&mut self) -> Vec<DispatchedGrpcCall>;
    fn answer(&mut self, token: u32, answer: GrpcAnswer) -> Result<(), HarnessError>;
}

impl GrpcCalls for Plugin {
    fn pending(&mut self) -> Vec<DispatchedGrpcCall> {
        self.grpc_calls()
    }
    fn answer(&mut self, token: u32, answer: GrpcAnswer) -> Result<(), HarnessError> {
        self.answer_grpc(token, answer)
    }
}

impl GrpcCalls for Stream<'_> {
    fn pending(&mut self) -> Vec<DispatchedGrpcCall> {
        self.plugin().grpc_calls()
    }
    fn answer(&mut self, token: u32, answer: GrpcAnswer) -> Result<(), HarnessError> {
        self.answer_grpc(token, answer)
    }
}

/// The tokens of the gRPC calls and streams open now: those an earlier scenario left open, which
/// this scenario neither answers nor lists.
pub(crate) fn open_tokens(plugin: &Plugin) -> BTreeSet<u32> {
    plugin.grpc_calls().iter().map(|call| call.token).collect()
}

/// Answers the unary calls pending since the scenario began (not in `earlier`) oldest first with
/// `answers`, in order, while there is one of each, recording each call in `outcome`; calls left
/// without an answer are recorded too (the guest sent them) and stay pending.
pub(crate) fn answer_calls<'a>(
    host: &mut impl GrpcCalls,
    earlier: &BTreeSet<u32>,
    answers: &mut impl Iterator<Item = &'a GrpcCallAnswer>,
    outcome: &mut Outcome,
) -> Result<(), HarnessError> {
    loop {
        let mut pending: Vec<DispatchedGrpcCall> = host
            .pending()
            .into_iter()
            .filter(|call| !call.stream && !earlier.contains(&call.token))
            .collect();
        pending.sort_by_key(|call| call.token);
        let Some(call) = pending.first() else {
            return Ok(());
        };
        let Some(answer) = answers.next() else {
            outcome
                .grpc_calls
                .extend(pending.iter().filter_map(SentGrpcCall::of));
            return Ok(());
        };
        outcome.grpc_calls.extend(SentGrpcCall::of(call));
        host.answer(call.token, answer.harness_answer())?;
    }
}
