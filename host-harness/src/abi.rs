//! The proxy-wasm ABI's numbers and wire formats: statuses, map and buffer types, stream
//! actions, and the pairs encoding used for header maps.

use std::fmt;

/// A proxy-wasm status (`WasmResult` in Envoy), as returned by every hostcall.
///
/// The numbers are the ABI's. The Rust SDK panics on any status it does not expect, so the host
/// returns exactly the status Envoy returns in each situation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    SerializationFailure = 3,
    ParseFailure = 4,
    BadExpression = 5,
    InvalidMemoryAccess = 6,
    Empty = 7,
    CasMismatch = 8,
    ResultMismatch = 9,
    InternalFailure = 10,
    BrokenConnection = 11,
    Unimplemented = 12,
}

impl Status {
    /// The status as the `i32` a hostcall returns to the guest.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The status with this ABI number, if there is one.
    pub fn from_code(code: u32) -> Option<Status> {
        use Status::*;
        const ALL: [Status; 13] = [
            Ok,
            NotFound,
            BadArgument,
            SerializationFailure,
            ParseFailure,
            BadExpression,
            InvalidMemoryAccess,
            Empty,
            CasMismatch,
            ResultMismatch,
            InternalFailure,
            BrokenConnection,
            Unimplemented,
        ];
        ALL.get(code as usize).copied()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Log levels of `proxy_log`, trace (0) to critical (5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

impl LogLevel {
    pub(crate) fn from_code(code: u32) -> Option<LogLevel> {
        use LogLevel::*;
        [Trace, Debug, Info, Warn, Error, Critical]
            .get(code as usize)
            .copied()
    }
}

/// The header maps of the ABI (`proxy_*_header_map_*`'s first argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapType {
    RequestHeaders = 0,
    RequestTrailers = 1,
    ResponseHeaders = 2,
    ResponseTrailers = 3,
    GrpcReceiveInitialMetadata = 4,
    GrpcReceiveTrailingMetadata = 5,
    HttpCallResponseHeaders = 6,
    HttpCallResponseTrailers = 7,
}

impl MapType {
    pub(crate) fn from_code(code: u32) -> Option<MapType> {
        use MapType::*;
        [
            RequestHeaders,
            RequestTrailers,
            ResponseHeaders,
            ResponseTrailers,
            GrpcReceiveInitialMetadata,
            GrpcReceiveTrailingMetadata,
            HttpCallResponseHeaders,
            HttpCallResponseTrailers,
        ]
        .get(code as usize)
        .copied()
    }
}

/// The buffers of the ABI (`proxy_*_buffer_*`'s first argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BufferType {
    HttpRequestBody = 0,
    HttpResponseBody = 1,
    DownstreamData = 2,
    UpstreamData = 3,
    HttpCallResponseBody = 4,
    GrpcReceiveBuffer = 5,
    VmConfiguration = 6,
    PluginConfiguration = 7,
    CallData = 8,
}

impl BufferType {
    pub(crate) fn from_code(code: u32) -> Option<BufferType> {
        use BufferType::*;
        [
            HttpRequestBody,
            HttpResponseBody,
            DownstreamData,
            UpstreamData,
            HttpCallResponseBody,
            GrpcReceiveBuffer,
            VmConfiguration,
            PluginConfiguration,
            CallData,
        ]
        .get(code as usize)
        .copied()
    }
}

/// Metric kinds of `proxy_define_metric`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
}

impl MetricType {
    pub(crate) fn from_code(code: u32) -> Option<MetricType> {
        use MetricType::*;
        [Counter, Gauge, Histogram].get(code as usize).copied()
    }
}

/// Stream types of `proxy_continue_stream` / `proxy_close_stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamType {
    Request = 0,
    Response = 1,
    Downstream = 2,
    Upstream = 3,
}

impl StreamType {
    pub(crate) fn from_code(code: u32) -> Option<StreamType> {
        use StreamType::*;
        [Request, Response, Downstream, Upstream]
            .get(code as usize)
            .copied()
    }
}

/// What a header callback returned, after Envoy's conversion: `StopIteration` on headers is
/// turned into `StopAllIterationAndWatermark` (cpp-host), so the body waits too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadersAction {
    Continue,
    StopAll,
}

impl HeadersAction {
    pub(crate) fn from_code(code: u32) -> HeadersAction {
        if code == 0 {
            HeadersAction::Continue
        } else {
            HeadersAction::StopAll
        }
    }
}

/// What a body callback returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataAction {
    Continue,
    /// `StopIterationAndBuffer`, `StopIterationAndWatermark` or `StopIterationNoBuffer`: the data
    /// is held back until the stream continues.
    Stop,
}

impl DataAction {
    pub(crate) fn from_code(code: u32) -> DataAction {
        if code == 0 {
            DataAction::Continue
        } else {
            DataAction::Stop
        }
    }
}

/// Encodes header pairs: u32 count, then (u32 key length, u32 value length) per pair, then each
/// key and value followed by a NUL.
pub fn encode_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let mut size = 4;
    for (key, value) in pairs {
        size += 8 + key.as_ref().len() + value.as_ref().len() + 2;
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (key, value) in pairs {
        out.extend_from_slice(&(key.as_ref().len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.as_ref().len() as u32).to_le_bytes());
    }
    for (key, value) in pairs {
        out.extend_from_slice(key.as_ref());
        out.push(0);
        out.extend_from_slice(value.as_ref());
        out.push(0);
    }
    out
}

/// Decodes header pairs as cpp-host does: anything shorter than a count, or whose count does not
/// fit, is an empty list (an empty map arrives as 0 bytes, a single 0x00 or `[0,0,0,0]`).
pub fn decode_pairs(data: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let word = |at: usize| -> Option<usize> {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let Some(count) = word(0) else {
        return Vec::new();
    };
    if count.saturating_mul(8).saturating_add(4) > data.len() {
        return Vec::new();
    }
    let mut sizes = Vec::with_capacity(count);
    for index in 0..count {
        let (Some(key), Some(value)) = (word(4 + index * 8), word(8 + index * 8)) else {
            return Vec::new();
        };
        sizes.push((key, value));
    }
    let mut at = 4 + count * 8;
    let mut pairs = Vec::with_capacity(count);
    for (key_len, value_len) in sizes {
        let key = data.get(at..at + key_len);
        at += key_len + 1;
        let value = data.get(at..at + value_len);
        at += value_len + 1;
        match (key, value) {
            (Some(key), Some(value)) => pairs.push((key.to_vec(), value.to_vec())),
            _ => return Vec::new(),
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip() {
        let pairs = vec![(b"a".to_vec(), b"1".to_vec()), (b"bb".to_vec(), Vec::new())];
        assert_eq!(decode_pairs(&encode_pairs(&pairs)), pairs);
    }

    #[test]
    fn empty_maps_in_every_spelling_decode_to_nothing() {
        for empty in [&[][..], &[0][..], &[0, 0, 0, 0][..]] {
            assert!(decode_pairs(empty).is_empty());
        }
    }

    #[test]
    fn truncated_pairs_decode_to_nothing() {
        let mut encoded = encode_pairs(&[("key", "value")]);
        encoded.truncate(encoded.len() - 3);
        assert!(decode_pairs(&encoded).is_empty());
    }

    #[test]
    fn status_codes_match_the_abi() {
        assert_eq!(Status::from_code(8), Some(Status::CasMismatch));
        assert_eq!(Status::from_code(13), None);
        assert_eq!(Status::Unimplemented.code(), 12);
    }
}
