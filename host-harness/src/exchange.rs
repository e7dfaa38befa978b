//! The traffic a test sends and gets back: requests and upstream responses as the test writes
//! them, and the outcomes (what the upstream and the client receive, local responses, http calls,
//! configuration results).

use crate::declared::struct_fields;
use crate::headers::HeaderMap;
use crate::metadata::Metadata;
use crate::observe::{HostcallCounts, LogRecord};
use std::collections::{BTreeMap, BTreeSet};

/// The route Envoy matched for a request: what `xds.route_name`, `xds.cluster_name` and
/// `xds.virtual_host_name` return (each missing when unset), and its metadata
/// (`xds.route_metadata`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    pub name: Option<String>,
    pub cluster: Option<String>,
    pub virtual_host: Option<String>,
    pub metadata: Metadata,
}

/// A request as the client sends it.
///
/// ```
/// use host_harness::Request;
/// let request = Request::get("/admin")
///     .header("Host", "api.example.com") // the same as .authority("api.example.com")
///     .header("x-forwarded-for", "1.1.1.1")
///     .header("x-forwarded-for", "2.2.2.2")
///     .route_name("admin");
/// # let _ = request;
/// ```
#[derive(Debug, Clone)]
pub struct Request {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<Vec<u8>>,
    pub(crate) trailers: Option<HeaderMap>,
    pub(crate) route: Route,
    pub(crate) dynamic_metadata: Metadata,
}

impl Request {
    pub fn new(method: &str, path: &str) -> Request {
        // Room for the test's own headers and those the HCM and the router add (`:scheme`,
        // `x-forwarded-proto`, `x-request-id`, `x-envoy-expected-rq-timeout-ms`...): regrowing
        // the map on the way was about 6 % of the harness's own work per request.
        let mut headers = HeaderMap::with_capacity(16);
        headers.add(":authority", "example.com");
        headers.add(":path", path);
        headers.add(":method", method);
        Request {
            headers,
            body: Vec::new(),
            trailers: None,
            route: Route::default(),
            dynamic_metadata: Metadata::default(),
        }
    }

    pub fn get(path: &str) -> Request {
        Request::new("GET", path)
    }

    pub fn post(path: &str) -> Request {
        Request::new("POST", path)
    }

    /// The `:authority` (HTTP/1 `Host`); `example.com` unless set.
    pub fn authority(mut self, authority: &str) -> Request {
        self.headers.set(":authority", authority);
        self
    }

    /// Adds a header; call again with the same name to send it repeated. `host` sets the
    /// `:authority`, as Envoy's HTTP/1 codec stores it.
    pub fn header(mut self, key: &str, value: &str) -> Request {
        if key.eq_ignore_ascii_case("host") {
            return self.authority(value);
        }
        self.headers.add(key, value);
        self
    }

    /// The body, delivered in one `proxy_on_request_body` call.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = vec![body.into()];
        self
    }

    /// Adds a body chunk: each chunk is one `proxy_on_request_body` call.
    pub fn body_chunk(mut self, chunk: impl Into<Vec<u8>>) -> Request {
        self.body.push(chunk.into());
        self
    }

    pub fn trailer(mut self, key: &str, value: &str) -> Request {
        self.trailers
            .get_or_insert_with(HeaderMap::new)
            .add(key, value);
        self
    }

    pub fn route_name(mut self, name: &str) -> Request {
        self.route.name = Some(name.to_string());
        self
    }

    pub fn cluster_name(mut self, name: &str) -> Request {
        self.route.cluster = Some(name.to_string());
        self
    }

    pub fn virtual_host_name(mut self, name: &str) -> Request {
        self.route.virtual_host = Some(name.to_string());
        self
    }

    /// The matched route's `metadata.filter_metadata[namespace]` (a JSON object), read by the
    /// guest as `xds.route_metadata`.
    pub fn route_metadata(mut self, namespace: &str, fields: serde_json::Value) -> Request {
        self.route.metadata.insert(namespace, fields);
        self
    }

    /// Dynamic metadata an earlier filter left under `namespace` (a JSON object), read by the
    /// guest as `metadata.filter_metadata.<namespace>...`.
    pub fn dynamic_metadata(mut self, namespace: &str, fields: serde_json::Value) -> Request {
        self.dynamic_metadata.insert(namespace, fields);
        self
    }
}

/// A response as the test upstream sends it.
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<Vec<u8>>,
    pub(crate) trailers: Option<HeaderMap>,
}

impl UpstreamResponse {
    pub fn status(status: u32) -> UpstreamResponse {
        let mut headers = HeaderMap::new();
        headers.add_owned(":status", status.to_string());
        UpstreamResponse {
            headers,
            body: Vec::new(),
            trailers: None,
        }
    }

    /// `200` with no body.
    pub fn ok() -> UpstreamResponse {
        UpstreamResponse::status(200)
    }

    pub fn header(mut self, key: &str, value: &str) -> UpstreamResponse {
        self.headers.add(key, value);
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> UpstreamResponse {
        self.body = vec![body.into()];
        self
    }

    /// Adds one body chunk; each chunk is one `proxy_on_response_body` call.
    pub fn body_chunk(mut self, chunk: impl Into<Vec<u8>>) -> UpstreamResponse {
        self.body.push(chunk.into());
        self
    }

    pub fn trailer(mut self, key: &str, value: &str) -> UpstreamResponse {
        self.trailers
            .get_or_insert_with(HeaderMap::new)
            .add(key, value);
        self
    }
}

/// A response the filter generated with `proxy_send_local_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u32,
    /// The extra headers the guest passed (keys lowercased).
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The gRPC status, when the guest gave a well-known one (0..=16).
    pub grpc_status: Option<u32>,
    /// Response code details, whitespace replaced by `_` as Envoy does.
    pub details: String,
}

/// The request as the upstream receives it (after the HCM and the filter; the router's own
/// additions such as `x-envoy-expected-rq-timeout-ms` are not included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRequest {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: Option<HeaderMap>,
}

/// What became of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOutcome {
    /// The filter let it through.
    Continued(UpstreamRequest),
    /// The filter answered it itself.
    LocalResponse(LocalResponse),
    /// The filter stopped iteration and has not resumed (e.g. it awaits an http call).
    Paused,
    /// The filter reset the stream (`proxy_close_stream`).
    Reset,
}

impl RequestOutcome {
    pub fn upstream(&self) -> Option<&UpstreamRequest> {
        match self {
            RequestOutcome::Continued(upstream) => Some(upstream),
            _ => None,
        }
    }

    pub fn local_response(&self) -> Option<&LocalResponse> {
        match self {
            RequestOutcome::LocalResponse(response) => Some(response),
            _ => None,
        }
    }

    pub fn is_continued(&self) -> bool {
        self.upstream().is_some()
    }
}

/// The response as the client receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientResponse {
    pub status: u32,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: Option<HeaderMap>,
    /// Whether the response is the filter's local response.
    pub local: bool,
    /// Whether the filter still holds the response (stopped iteration without resuming).
    pub paused: bool,
    /// Whether Envoy reset the stream after the headers went out, so the client got the
    /// headers and a truncated body (a filter buffered a response body past the buffer limit).
    pub reset: bool,
}

/// An http call the guest dispatched (`proxy_http_call`), waiting for the test's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchedHttpCall {
    pub token: u32,
    pub cluster: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: HeaderMap,
    pub timeout_ms: u32,
    /// When Envoy's async client gives up on the call (`None`: timeout 0, no deadline).
    pub deadline_ns: Option<u64>,
    /// The context that made the call.
    pub context_id: u32,
}

/// The test's answer to a dispatched http call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpCallResponse {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: HeaderMap,
}

impl HttpCallResponse {
    pub fn status(status: u32) -> HttpCallResponse {
        HttpCallResponse {
            headers: HeaderMap::from([(":status", status.to_string())]),
            ..HttpCallResponse::default()
        }
    }

    pub fn header(mut self, key: &str, value: &str) -> HttpCallResponse {
        self.headers.add(key, value);
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> HttpCallResponse {
        self.body = body.into();
        self
    }
}

/// The result of `proxy_on_configure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configured {
    /// Whether the guest accepted the configuration (Envoy refuses to start otherwise).
    pub accepted: bool,
    /// The lines the guest logged while configuring.
    pub logs: Vec<LogRecord>,
}

/// Everything one request left behind, from [`Plugin::send`](crate::Plugin::send) or
/// [`Stream::finish`](crate::Stream::finish).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub request: RequestOutcome,
    /// The response the client got, when the request was answered.
    pub response: Option<ClientResponse>,
    /// Filter state the guest set with `proxy_set_property`, under Envoy's keys (`wasm.<name>`).
    pub filter_state: BTreeMap<String, Vec<u8>>,
    /// The keys of `filter_state` whose property the guest declared as a
    /// `google.protobuf.Struct` (`declare_property`); [`Exchange::filter_state_fields`] reads them.
    pub filter_state_structs: BTreeSet<String>,
    pub hostcalls: HostcallCounts,
    /// The lines logged from this stream's context.
    pub logs: Vec<LogRecord>,
}

impl Exchange {
    /// The filter state under `key` (`wasm.<name>`), declared as a `google.protobuf.Struct`,
    /// field by field as Envoy's access log prints it with
    /// `%CEL(filter_state['wasm.<name>'].<field>)%`. `None` when the key is unset, not declared
    /// as a struct, or not a struct's bytes. Decoded on each call, not for every exchange: most
    /// exchanges are never asked, and decoding was a sixth of a whole request's cost.
    pub fn filter_state_fields(&self, key: &str) -> Option<BTreeMap<String, String>> {
        if !self.filter_state_structs.contains(key) {
            return None;
        }
        struct_fields(self.filter_state.get(key)?)
    }
}
