//! `proxy_get_property` / `proxy_set_property` as Envoy 1.40 answers them: the attribute tree
//! (`request.*`, `response.*`, `connection.*`, `source.*`, `destination.*`, `xds.*`,
//! `plugin_*`) with Envoy's value encodings, and filter state written by the guest.

use crate::abi::{encode_pairs, Status};
use crate::headers::HeaderMap;
use crate::state::{HostState, StreamState};

/// An attribute value before serialisation.
enum Value {
    Bytes(Vec<u8>),
    Int(i64),
    Uint(u64),
    Bool(bool),
    Headers(HeaderMap),
}

impl Value {
    fn text(text: impl Into<String>) -> Value {
        Value::Bytes(text.into().into_bytes())
    }

    /// Envoy's `serializeValue`: strings raw, numbers 8 bytes little-endian, bool 1 byte,
    /// maps in the pairs encoding.
    fn serialize(self) -> Vec<u8> {
        match self {
            Value::Bytes(bytes) => bytes,
            Value::Int(n) => n.to_le_bytes().to_vec(),
            Value::Uint(n) => n.to_le_bytes().to_vec(),
            Value::Bool(b) => vec![u8::from(b)],
            Value::Headers(map) => encode_pairs(&map.to_pairs()),
        }
    }
}

/// Filter state keys carry Envoy's `wasm.` prefix, as `%FILTER_STATE(wasm.x)%` shows them.
pub(crate) const FILTER_STATE_PREFIX: &str = "wasm.";

/// Resolves a property path (segments joined by NUL, trailing NUL allowed).
pub(crate) fn get_property(state: &HostState, path: &[u8]) -> Result<Vec<u8>, Status> {
    let text = String::from_utf8_lossy(path);
    let mut segments: Vec<&str> = text.split('\0').collect();
    if segments.last() == Some(&"") {
        segments.pop();
    }
    let Some((&top, rest)) = segments.split_first() else {
        return Err(Status::NotFound);
    };
    let settings = &state.settings;
    let plugin_value = match top {
        "plugin_name" => Some(Value::text(settings.name.clone())),
        "plugin_root_id" => Some(Value::text(settings.root_id.clone())),
        "plugin_vm_id" => Some(Value::text(settings.vm_id.clone())),
        _ => None,
    };
    if let Some(value) = plugin_value {
        return if rest.is_empty() {
            Ok(value.serialize())
        } else {
            Err(Status::NotFound)
        };
    }
    let Some(stream) = state.stream() else {
        // Root contexts have no stream info: every stream attribute is missing.
        return Err(Status::NotFound);
    };
    let value = match top {
        "request" => lookup(rest, |key| request_attribute(state, stream, key))?,
        "response" => lookup(rest, |key| response_attribute(stream, key))?,
        "connection" => lookup(rest, |key| connection_attribute(stream, key))?,
        "source" => lookup(rest, |key| match key {
            "address" => Some(Value::text(stream.source_address.to_string())),
            "port" => Some(Value::Int(i64::from(stream.source_address.port()))),
            _ => None,
        })?,
        "destination" => {
            let destination = stream.connection.destination;
            lookup(rest, |key| match key {
                "address" => Some(Value::text(destination.to_string())),
                "port" => Some(Value::Int(i64::from(destination.port()))),
                _ => None,
            })?
        }
        "xds" => lookup(rest, |key| xds_attribute(stream, key))?,
        "filter_state" => match rest {
            [key] => Value::Bytes(
                stream
                    .filter_state
                    .get(*key)
                    .cloned()
                    .ok_or(Status::NotFound)?,
            ),
            _ => return Err(Status::NotFound),
        },
        name => {
            let key = format!("{FILTER_STATE_PREFIX}{name}");
            Value::Bytes(
                stream
                    .filter_state
                    .get(&key)
                    .cloned()
                    .ok_or(Status::NotFound)?,
            )
        }
    };
    Ok(value.serialize())
}

/// Stores a value as filter state, as Envoy's `setProperty` does with its default (bytes) state
/// prototype. Root contexts have no stream to hold it.
pub(crate) fn set_property(state: &mut HostState, path: &[u8], value: &[u8]) -> Status {
    let Some(stream) = state.stream_mut() else {
        return Status::NotFound;
    };
    let key = format!("{FILTER_STATE_PREFIX}{}", String::from_utf8_lossy(path));
    stream.filter_state.insert(key, value.to_vec());
    Status::Ok
}

/// Walks one level of an attribute map, then, for header maps, one header name. A whole map
/// cannot be serialised (Envoy's wrappers do not list their keys).
fn lookup(rest: &[&str], find: impl Fn(&str) -> Option<Value>) -> Result<Value, Status> {
    let Some((&key, rest)) = rest.split_first() else {
        return Err(Status::SerializationFailure);
    };
    let value = find(key).ok_or(Status::NotFound)?;
    match (value, rest) {
        (value, []) => Ok(value),
        (Value::Headers(map), [name]) => map
            .get_joined(&name.to_ascii_lowercase())
            .map(Value::text)
            .ok_or(Status::NotFound),
        _ => Err(Status::NotFound),
    }
}

fn header(map: &HeaderMap, key: &str) -> Option<Value> {
    map.get(key).map(Value::text)
}

fn request_attribute(state: &HostState, stream: &StreamState, key: &str) -> Option<Value> {
    let headers = &stream.request_headers;
    let path = headers.get(":path").unwrap_or_default();
    match key {
        "path" => header(headers, ":path"),
        "url_path" => Some(Value::text(path.split('?').next().unwrap_or_default())),
        "host" => header(headers, ":authority"),
        "scheme" => header(headers, ":scheme"),
        "method" => header(headers, ":method"),
        "referer" => header(headers, "referer"),
        "useragent" => header(headers, "user-agent"),
        "id" => header(headers, "x-request-id"),
        "query" => {
            let query = path.split_once('?').map(|(_, query)| query).unwrap_or("");
            Some(Value::text(query.split('#').next().unwrap_or_default()))
        }
        "headers" => Some(Value::Headers(headers.clone())),
        "time" => Some(Value::Int(stream.start_ns as i64)),
        "protocol" => Some(Value::text(stream.protocol.clone())),
        "size" => match headers.get("content-length") {
            Some(length) => length.parse::<i64>().ok().map(Value::Int),
            None => Some(Value::Int(stream.request_body_bytes as i64)),
        },
        "total_size" => Some(Value::Int(
            (stream.request_body_bytes as usize + headers.byte_size()) as i64,
        )),
        "duration" if stream.access_log_phase => Some(Value::Int(
            state.now_ns.saturating_sub(stream.start_ns) as i64,
        )),
        _ => None,
    }
}

fn response_attribute(stream: &StreamState, key: &str) -> Option<Value> {
    match key {
        "code" => stream.response_code.map(|code| Value::Int(i64::from(code))),
        "code_details" => stream.response_code_details.clone().map(Value::text),
        "headers" => Some(Value::Headers(
            stream.response_headers.clone().unwrap_or_default(),
        )),
        "trailers" => Some(Value::Headers(
            stream.response_trailers.clone().unwrap_or_default(),
        )),
        "size" => Some(Value::Int(stream.response_body.len() as i64)),
        "flags" => Some(Value::Int(0)),
        _ => None,
    }
}

fn connection_attribute(stream: &StreamState, key: &str) -> Option<Value> {
    let connection = &stream.connection;
    match key {
        "mtls" => return Some(Value::Bool(connection.mtls_presented())),
        "requested_server_name" => {
            let sni = connection.tls.as_ref().and_then(|tls| tls.sni.clone());
            return Some(Value::text(sni.unwrap_or_default()));
        }
        "id" => return Some(Value::Uint(connection.id)),
        _ => {}
    }
    // Everything else comes from the TLS session: plain connections have none.
    let tls = connection.tls.as_ref()?;
    let peer = tls.peer.as_ref();
    let local = tls.local.as_ref();
    let first = |names: Option<&[String]>| names.and_then(|n| n.first()).cloned().map(Value::text);
    match key {
        "tls_version" => Some(Value::text(tls.version.as_str())),
        "subject_peer_certificate" => Some(Value::text(
            peer.map(|p| p.subject().to_string()).unwrap_or_default(),
        )),
        "subject_local_certificate" => Some(Value::text(
            local.map(|l| l.subject().to_string()).unwrap_or_default(),
        )),
        "uri_san_peer_certificate" => first(peer.map(|p| p.uri_sans())),
        "dns_san_peer_certificate" => first(peer.map(|p| p.dns_sans())),
        "uri_san_local_certificate" => first(local.map(|l| l.uri_sans())),
        "dns_san_local_certificate" => first(local.map(|l| l.dns_sans())),
        "sha256_peer_certificate_digest" => peer.map(|p| Value::text(p.sha256_digest())),
        "peer_certificate" => peer.map(|p| Value::text(p.pem())),
        "peer_certificate_valid" => Some(Value::Bool(peer.is_some() && tls.peer_validated)),
        _ => None,
    }
}

fn xds_attribute(stream: &StreamState, key: &str) -> Option<Value> {
    let route = &stream.route;
    match key {
        "route_name" => route.name.clone().map(Value::text),
        "cluster_name" => route.cluster.clone().map(Value::text),
        "virtual_host_name" => route.virtual_host.clone().map(Value::text),
        // No metadata is configured in the harness: Envoy serialises an empty message.
        "route_metadata" if route.name.is_some() => Some(Value::Bytes(Vec::new())),
        "filter_chain_name" => Some(Value::text("")),
        _ => None,
    }
}
