//! Real parts for certgate's end-to-end suites, the demo and the load bench: rcgen certificates
//! ([`certs`], [`pki`]), Envoy processes and their admin API ([`envoy`], [`stats`]), an upstream
//! that echoes the headers it received or answers what a test scripts ([`echo`]), a gRPC backend
//! over h2c or TLS ([`grpc`]) and one answering what a test scripts ([`grpc_scripted`]), an mTLS
//! client speaking HTTP/1.1 or HTTP/2 ([`client`]), an SDS server as the SPIRE agent is one
//! ([`sds`]), a Secret volume renewed as Kubernetes does and the load that proves a rotation costs
//! no request ([`rotation`]), the load bench's load generator ([`load`]), and the extra Wasm
//! builds: the test-only fault-injection filter ([`fault`]), the bench's Wasm floor, certgate at
//! opt-level z and the third-party guests ([`wasm_build`]).
//!
//! Everything binds ephemeral loopback ports, bounds every wait, and cleans up on drop.

mod background;
pub mod certs;
pub mod client;
pub mod ecds;
pub mod echo;
pub mod envoy;
pub mod fault;
pub mod grpc;
pub mod grpc_scripted;
pub mod http1;
mod http2;
pub mod load;
pub mod pki;
mod protobuf;
pub mod rotation;
pub mod sds;
pub mod stats;
pub mod template;
pub mod wasm_build;

pub use certs::{CertDir, CertSpec, IssuedCert, San, TestCa, Validity};
pub use client::{Client, ClientTls, Connection, Request, Response};
pub use echo::{EchoServer, EchoedRequest, ScriptedAnswer};
pub use envoy::{certgate_wasm, envoy, envoy_binary, Envoy, EnvoyBuilder};
pub use fault::{fault_injection_wasm, BUILD_HEADER, FAULT_HEADER};
pub use grpc::GrpcBackend;
pub use grpc_scripted::{ReceivedGrpcCall, ScriptedGrpcAnswer, ScriptedGrpcBackend};
pub use http2::H2Connection;
pub use load::{Drive, Exchange, LoadMode, LoadReport, LoadSpec};
pub use pki::Pki;
pub use sds::{SdsSecret, SdsServer};
pub use stats::{Prometheus, Stats};
pub use wasm_build::{assemblyscript_probe, certgate_wasm_opt_z, sdk_example, wasm_floor};
