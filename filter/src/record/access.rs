//! The per-request access record: one JSON log line (at the configured level) and the same fields
//! as Envoy filter state (a `google.protobuf.Struct`), for Envoy's own access log to print.

use crate::decide::decision::Verdict;
use crate::encoding::json::push_json_string;
use crate::identity::sources::IdentitySource;
use crate::names::ip::ip_text;
use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;

/// The log level of the access record, or `off` (the default: Envoy's access log carries the
/// record through filter state, and a log line costs a hostcall).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecordLevel {
    #[default]
    Off,
    Debug,
    Info,
    Warn,
}

impl RecordLevel {
    /// The configuration names, the one source of truth for reading and writing them.
    pub(crate) const NAMES: &'static [(&'static str, Self)] = &[
        ("off", RecordLevel::Off),
        ("debug", RecordLevel::Debug),
        ("info", RecordLevel::Info),
        ("warn", RecordLevel::Warn),
    ];
}

/// A set of the access record's fields, by their position in `RecordFields::NAMES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordFields(u16);

impl RecordFields {
    /// The record's field names, in the order the record prints them.
    pub(crate) const NAMES: [&'static str; 12] = [
        "route",
        "decision",
        "reason",
        "identity",
        "san_count",
        "tls_version",
        "sni",
        "days_to_expiry",
        "identity_source",
        "client_address",
        "request_id",
        "grpc_status",
    ];
    pub(crate) const ALL: RecordFields = RecordFields((1 << Self::NAMES.len()) - 1);
    pub(crate) const NONE: RecordFields = RecordFields(0);

    /// The set of the named fields; `Err` carries the first unknown name.
    pub(crate) fn named<'n>(names: impl IntoIterator<Item = &'n str>) -> Result<Self, &'n str> {
        names.into_iter().try_fold(Self::NONE, |set, name| {
            let position = Self::NAMES.iter().position(|known| *known == name);
            position
                .map(|index| RecordFields(set.0 | 1 << index))
                .ok_or(name)
        })
    }

    /// Whether the field at `index` of [`RecordFields::NAMES`] is in the set.
    fn has(self, index: usize) -> bool {
        index < Self::NAMES.len() && self.0 & 1 << index != 0
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// What certgate records about one request: the access record and the filter state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record<'a> {
    pub(crate) route: Option<&'a str>,
    /// The verdict, recorded as two fields: `decision` and `reason`.
    pub(crate) verdict: Option<Verdict>,
    /// First URI SAN, else first DNS SAN, else subject CN.
    pub(crate) identity: Option<&'a str>,
    pub(crate) san_count: Option<usize>,
    pub(crate) tls_version: Option<&'a str>,
    pub(crate) sni: Option<&'a str>,
    pub(crate) days_to_expiry: Option<i64>,
    pub(crate) identity_source: Option<IdentitySource>,
    pub(crate) client_address: Option<IpAddr>,
    pub(crate) request_id: Option<&'a str>,
    /// The gRPC status a denied gRPC call was answered with.
    pub(crate) grpc_status: Option<u32>,
}

/// A field value of the record: text (JSON string) or a number.
enum Value<'a> {
    Text(Cow<'a, str>),
    Number(i64),
}

impl<'a> Record<'a> {
    /// The fields' values, named by [`RecordFields::NAMES`] in the same order.
    fn fields(&self) -> impl Iterator<Item = (&'static str, Option<Value<'a>>)> {
        let text = |value: Option<&'a str>| value.map(|v| Value::Text(Cow::Borrowed(v)));
        let values = [
            text(self.route),
            text(self.verdict.map(Verdict::as_str)),
            text(self.verdict.map(|verdict| verdict.reason().as_str())),
            text(self.identity),
            self.san_count
                .map(|n| Value::Number(i64::try_from(n).unwrap_or(i64::MAX))),
            text(self.tls_version),
            text(self.sni),
            self.days_to_expiry.map(Value::Number),
            text(self.identity_source.map(IdentitySource::as_str)),
            self.client_address
                .map(|ip| Value::Text(Cow::Owned(ip_text(ip)))),
            text(self.request_id),
            self.grpc_status
                .map(|status| Value::Number(i64::from(status))),
        ];
        RecordFields::NAMES.into_iter().zip(values)
    }

    /// One JSON object on one line; absent fields are `null`.
    pub fn json(&self) -> String {
        let mut out = String::with_capacity(384);
        out.push('{');
        for (index, (key, value)) in self.fields().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push('"');
            out.push_str(key);
            out.push_str("\":");
            match value {
                None => out.push_str("null"),
                Some(Value::Text(text)) => push_json_string(&mut out, &text),
                Some(Value::Number(number)) => {
                    let _ = write!(out, "{number}");
                }
            }
        }
        out.push('}');
        out
    }

    /// The present fields of `selected` as one `google.protobuf.Struct` in the protobuf wire
    /// format: the value of the `FILTER_STATE_KEY` property, written with one hostcall. Text
    /// fields are `string_value`s, numbers `number_value`s; absent fields are left out.
    pub fn filter_state(&self, selected: RecordFields) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        for (index, (key, value)) in self.fields().enumerate() {
            let Some(value) = value.filter(|_| selected.has(index)) else {
                continue;
            };
            // Struct.fields is a map<string, Value>: one entry message {1: key, 2: value} each.
            // Each length is known before its bytes, so the entry is written in place rather than
            // built in buffers and copied out (a fifth of this function's time in the guest).
            let value_length = match &value {
                // Value.string_value = 3
                Value::Text(text) => length_delimited_size(text.len()),
                // Value.number_value = 2, a little-endian double (wire type 1)
                Value::Number(_) => 1 + 8,
            };
            let entry_length =
                length_delimited_size(key.len()) + length_delimited_size(value_length);
            push_field_header(&mut out, 1, entry_length);
            push_length_delimited(&mut out, 1, key.as_bytes());
            push_field_header(&mut out, 2, value_length);
            match value {
                Value::Text(text) => push_length_delimited(&mut out, 3, text.as_bytes()),
                Value::Number(number) => {
                    out.push(2 << 3 | 1);
                    #[allow(clippy::cast_precision_loss)] // days and SAN counts are far below 2^53
                    out.extend_from_slice(&(number as f64).to_le_bytes());
                }
            }
        }
        out
    }
}

/// The filter-state key of the record (Envoy stores it as `wasm.certgate`). Envoy's access log
/// prints one field with `%CEL(filter_state['wasm.certgate'].decision)%`, all of them as one JSON
/// object with `%FILTER_STATE(wasm.certgate:TYPED)%`.
pub(crate) const FILTER_STATE_KEY: &str = "certgate";

/// The type the record's filter state is declared with (`declare_property`): a type Envoy knows,
/// so that its access log can read the fields.
pub(crate) const FILTER_STATE_TYPE: &str = "type.googleapis.com/google.protobuf.Struct";

/// The arguments of Envoy's `declare_property` foreign function that declare [`FILTER_STATE_KEY`]
/// as a [`FILTER_STATE_TYPE`] living as long as the request (Envoy's `DeclarePropertyArguments`:
/// name = 1, type = 3 with PROTOBUF = 3, schema = 4, span = 5 with DOWNSTREAM_REQUEST = 1; not
/// read-only, so a host that answers a second write refuses nothing).
pub(crate) fn filter_state_declaration() -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    push_length_delimited(&mut out, 1, FILTER_STATE_KEY.as_bytes());
    out.extend_from_slice(&[3 << 3, 3]);
    push_length_delimited(&mut out, 4, FILTER_STATE_TYPE.as_bytes());
    out.extend_from_slice(&[5 << 3, 1]);
    out
}

/// Appends protobuf field `number` (wire type 2, length-delimited) holding `bytes`.
pub(crate) fn push_length_delimited(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
    push_field_header(out, number, bytes.len());
    out.extend_from_slice(bytes);
}

/// Appends the tag and length of protobuf field `number` (wire type 2) holding `length` bytes,
/// which the caller appends next.
fn push_field_header(out: &mut Vec<u8>, number: u8, length: usize) {
    out.push(number << 3 | 2);
    push_varint(out, length as u64);
}

/// The encoded size of a length-delimited field of `length` bytes (one-byte tag, varint length).
fn length_delimited_size(length: usize) -> usize {
    let mut varint = 1;
    let mut rest = length >> 7;
    while rest > 0 {
        varint += 1;
        rest >>= 7;
    }
    1 + varint + length
}

/// Appends a protobuf varint.
pub(crate) fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}
