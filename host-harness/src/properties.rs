//! `proxy_get_property` / `proxy_set_property` as Envoy 1.40 answers them: the attribute tree
//! (`request.*`, `response.*`, `connection.*`, `source.*`, `destination.*`, `xds.*`,
//! `plugin_*`) with Envoy's value encodings, and filter state written by the guest.

use crate::abi::{encode_pairs, Status};
use crate::headers::HeaderMap;
use crate::memory::utf8_lossy;
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
            Value::Headers(map) => encode_pairs(map.entries()),
        }
    }
}

/// Filter state keys carry Envoy's `wasm.` prefix, as `%FILTER_STATE(wasm.x)%` shows them.
pub(crate) const FILTER_STATE_PREFIX: &str = "wasm.";

/// Resolves a property path (segments joined by NUL, trailing NUL allowed).
pub(crate) fn get_property(state: &HostState, path: &[u8]) -> Result<Vec<u8>, Status> {
    let text = utf8_lossy(path);
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
    match (top, rest) {
        ("metadata", _) => return stream.dynamic_metadata.property(rest),
        ("xds", ["route_metadata", below @ ..]) if stream.route.name.is_some() => {
            return stream.route.metadata.property(below);
        }
        _ => {}
    }
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

/// Stores a value as filter state, as Envoy's `setProperty` does: under `wasm.<name>`, refused
/// for a second write of a property declared read-only. Root contexts have no stream to hold it.
pub(crate) fn set_property(state: &mut HostState, path: &[u8], value: &[u8]) -> Status {
    let name = utf8_lossy(path);
    let readonly = state
        .roots
        .values()
        .find_map(|root| root.declared.get(name.as_ref()))
        .is_some_and(|declared| declared.readonly);
    let Some(stream) = state.stream_mut() else {
        return Status::NotFound;
    };
    let mut key = String::with_capacity(FILTER_STATE_PREFIX.len() + name.len());
    key.push_str(FILTER_STATE_PREFIX);
    key.push_str(&name);
    if readonly && stream.filter_state.contains_key(&key) {
        return Status::BadArgument;
    }
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
        "protocol" => Some(Value::text(stream.protocol)),
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
        "code_details" => stream.response_code_details.as_deref().map(Value::text),
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
        "filter_chain_name" => Some(Value::text("")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::Connection;
    use crate::exchange::Route;
    use crate::settings::PluginSettings;
    use crate::state::StreamState;
    use crate::tls::{Certificate, Tls, TlsVersion};
    use std::sync::Arc;

    const STREAM: u32 = 2;

    fn client_certificate() -> Certificate {
        use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "client-one");
        name.push(DnType::OrganizationalUnitName, "Team A");
        name.push(DnType::OrganizationName, "Spike Org");
        name.push(DnType::CountryName, "US");
        params.distinguished_name = name;
        params.subject_alt_names = vec![
            SanType::URI("spiffe://example.org/one".try_into().unwrap()),
            SanType::URI("spiffe://example.org/two".try_into().unwrap()),
            SanType::DnsName("one.example.org".try_into().unwrap()),
        ];
        let key = KeyPair::generate().unwrap();
        Certificate::from_pem(&params.self_signed(&key).unwrap().pem()).unwrap()
    }

    fn state_for(connection: Connection, route: Route) -> HostState {
        let mut state = HostState::new(Arc::new(PluginSettings::new("gate").root_id("root")));
        let headers = HeaderMap::from([
            (":authority", "api.example.com"),
            (":path", "/a/b?x=1#frag"),
            (":method", "GET"),
            ("x-request-id", "rid"),
            ("x-multi", "1"),
            ("x-multi", "2"),
        ]);
        let source = connection.source;
        let stream = StreamState::new(connection, source, route, 42, headers);
        state.streams.insert(STREAM, stream);
        state.current_context = STREAM;
        state
    }

    fn get(state: &HostState, path: &str) -> Result<Vec<u8>, Status> {
        get_property(state, path.replace('.', "\0").as_bytes())
    }

    #[test]
    fn mtls_connection_properties_match_envoy() {
        let certificate = client_certificate();
        let connection = Connection::tls(
            Tls::new()
                .version(TlsVersion::Tls12)
                .sni("api.example.com")
                .peer_certificate(certificate.clone()),
        )
        .id(7);
        let state = state_for(connection, Route::default());
        let text = |path: &str| String::from_utf8(get(&state, path).unwrap()).unwrap();
        assert_eq!(
            text("connection.subject_peer_certificate"),
            "C=US,O=Spike Org,OU=Team A,CN=client-one"
        );
        assert_eq!(
            text("connection.uri_san_peer_certificate"),
            "spiffe://example.org/one"
        );
        assert_eq!(
            text("connection.dns_san_peer_certificate"),
            "one.example.org"
        );
        assert_eq!(text("connection.tls_version"), "TLSv1.2");
        assert_eq!(text("connection.requested_server_name"), "api.example.com");
        assert_eq!(text("connection.peer_certificate"), certificate.pem());
        let digest = text("connection.sha256_peer_certificate_digest");
        assert_eq!(digest.len(), 64);
        assert!(digest
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(get(&state, "connection.mtls"), Ok(vec![1]));
        assert_eq!(
            get(&state, "connection.peer_certificate_valid"),
            Ok(vec![1])
        );
        assert_eq!(
            get(&state, "connection.id"),
            Ok(7u64.to_le_bytes().to_vec())
        );
        assert_eq!(
            get(&state, "connection.uri_san_local_certificate"),
            Err(Status::NotFound)
        );
        assert_eq!(get(&state, "connection"), Err(Status::SerializationFailure));
    }

    #[test]
    fn plain_connections_have_no_tls_properties() {
        let state = state_for(Connection::plain(), Route::default());
        assert_eq!(get(&state, "connection.mtls"), Ok(vec![0]));
        assert_eq!(
            get(&state, "connection.requested_server_name"),
            Ok(Vec::new())
        );
        for missing in [
            "connection.tls_version",
            "connection.peer_certificate",
            "connection.peer_certificate_valid",
            "connection.subject_peer_certificate",
            "connection.sha256_peer_certificate_digest",
        ] {
            assert_eq!(get(&state, missing), Err(Status::NotFound), "{missing}");
        }
    }

    #[test]
    fn tls_without_a_client_certificate_or_with_an_untrusted_one() {
        let no_cert = state_for(Connection::tls(Tls::new()), Route::default());
        assert_eq!(get(&no_cert, "connection.mtls"), Ok(vec![0]));
        assert_eq!(
            get(&no_cert, "connection.peer_certificate_valid"),
            Ok(vec![0])
        );
        assert_eq!(
            get(&no_cert, "connection.subject_peer_certificate"),
            Ok(Vec::new())
        );
        assert_eq!(
            get(&no_cert, "connection.uri_san_peer_certificate"),
            Err(Status::NotFound)
        );
        assert_eq!(
            get(&no_cert, "connection.peer_certificate"),
            Err(Status::NotFound)
        );

        let untrusted = Tls::new()
            .peer_certificate(client_certificate())
            .validated(false);
        let untrusted = state_for(Connection::tls(untrusted), Route::default());
        assert_eq!(get(&untrusted, "connection.mtls"), Ok(vec![1]));
        assert_eq!(
            get(&untrusted, "connection.peer_certificate_valid"),
            Ok(vec![0])
        );
    }

    #[test]
    fn request_addresses_route_and_plugin_attributes() {
        let route = Route {
            name: Some("admin".into()),
            cluster: Some("backend".into()),
            virtual_host: None,
            metadata: Default::default(),
        };
        let connection = Connection::plain().source("203.0.113.9:4444".parse().unwrap());
        let state = state_for(connection, route);
        let text = |path: &str| String::from_utf8(get(&state, path).unwrap()).unwrap();
        assert_eq!(text("request.path"), "/a/b?x=1#frag");
        assert_eq!(text("request.url_path"), "/a/b");
        assert_eq!(text("request.query"), "x=1");
        assert_eq!(text("request.host"), "api.example.com");
        assert_eq!(text("request.id"), "rid");
        assert_eq!(text("request.headers.x-multi"), "1,2");
        assert_eq!(
            get(&state, "request.time"),
            Ok(42i64.to_le_bytes().to_vec())
        );
        assert_eq!(text("source.address"), "203.0.113.9:4444");
        assert_eq!(
            get(&state, "source.port"),
            Ok(4444i64.to_le_bytes().to_vec())
        );
        assert_eq!(text("destination.address"), "127.0.0.1:10000");
        assert_eq!(text("xds.route_name"), "admin");
        assert_eq!(text("xds.cluster_name"), "backend");
        assert_eq!(get(&state, "xds.virtual_host_name"), Err(Status::NotFound));
        assert_eq!(text("plugin_name"), "gate");
        assert_eq!(text("plugin_root_id"), "root");
        assert_eq!(get(&state, "request.nonexistent"), Err(Status::NotFound));
    }

    #[test]
    fn filter_state_round_trips_under_the_wasm_prefix() {
        let mut state = state_for(Connection::plain(), Route::default());
        assert_eq!(set_property(&mut state, b"decision", b"deny"), Status::Ok);
        assert_eq!(get(&state, "decision"), Ok(b"deny".to_vec()));
        assert_eq!(
            get_property(&state, b"filter_state\0wasm.decision"),
            Ok(b"deny".to_vec())
        );
        state.current_context = 1;
        assert_eq!(
            set_property(&mut state, b"decision", b"x"),
            Status::NotFound,
            "root context"
        );
        assert_eq!(
            get(&state, "request.path"),
            Err(Status::NotFound),
            "root context"
        );
    }
}
