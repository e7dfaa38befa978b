//! A proxy-wasm host on wasmtime that runs a real `.wasm` filter the way Envoy 1.40 does, for
//! tests and benchmarks without Envoy.
//!
//! - Every hostcall of ABI 0.2.1 (and 0.1.0/0.2.0's extras) answers with Envoy's statuses,
//!   including the phase rules (response headers are BAD_ARGUMENT while the request is
//!   processed) and the WASI calls cpp-host offers (stdout/stderr become logs).
//! - Connections carry real certificates: `connection.*` properties return Envoy's subject
//!   format, first URI/DNS SAN, SHA-256 digest and PEM.
//! - Envoy's HttpConnectionManager mutation (XFF, XFP, XFCC, x-request-id, underscore headers,
//!   `:path` normalisation) runs before the filter.
//! - No global state besides compiled code: each [`Plugin`] owns its store, so tests run in
//!   parallel. Modules compile once per process.
//!
//! ```
//! use host_harness::{Connection, GuestModule, Plugin, PluginSettings, Request};
//!
//! // A raw-ABI guest that answers 403 to every request.
//! let module = GuestModule::from_wat("deny-all", r#"(module
//!   (import "env" "proxy_send_local_response"
//!     (func $respond (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
//!   (memory (export "memory") 1)
//!   (func (export "proxy_abi_version_0_2_1"))
//!   (func (export "malloc") (param i32) (result i32) (i32.const 1024))
//!   (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
//!     (drop (call $respond (i32.const 403) (i32.const 0) (i32.const 0) (i32.const 0)
//!                          (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)))
//!     (i32.const 1)))"#).unwrap();
//! let mut plugin = Plugin::new(&module, PluginSettings::new("deny-all")).unwrap();
//! let exchange = plugin.send(&Connection::plain(), Request::get("/admin")).unwrap();
//! assert_eq!(exchange.request.local_response().map(|r| r.status), Some(403));
//! assert_eq!(exchange.response.unwrap().status, 403);
//! ```

mod abi;
mod callbacks;
mod connection;
mod declared;
mod error;
mod exchange;
mod grpc;
mod hcm;
mod headers;
mod hostcalls;
mod memory;
mod metadata;
mod module;
mod observe;
mod plugin;
mod properties;
mod settings;
mod shared;
mod state;
mod stream;
mod tls;
mod wasi;

pub use abi::{decode_pairs, encode_pairs, BufferType, LogLevel, MapType, MetricType, Status};
pub use connection::Connection;
pub use declared::struct_fields;
pub use error::HarnessError;
pub use exchange::{
    ClientResponse, Configured, DispatchedHttpCall, Exchange, HttpCallResponse, LocalResponse,
    Request, RequestOutcome, Route, UpstreamRequest, UpstreamResponse,
};
pub use grpc::{DispatchedGrpcCall, GrpcAnswer, DEADLINE_MESSAGE, DEADLINE_STATUS};
pub use hcm::{ClientCertDetails, ForwardClientCert, HttpConnectionManager};
pub use headers::HeaderMap;
pub use metadata::Metadata;
pub use module::{GuestModule, PERF_MAP_ENV};
pub use observe::{HostcallCounts, LogRecord, Metric, MetricChange, MetricsSnapshot};
pub use plugin::Plugin;
pub use settings::{FailurePolicy, PluginSettings, DEFAULT_BUFFER_LIMIT_BYTES};
pub use shared::SharedData;
pub use stream::Stream;
pub use tls::{Certificate, Tls, TlsVersion};
