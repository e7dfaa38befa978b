//! Guests and certificates shared by the harness's integration tests.
#![allow(dead_code)]

use host_harness::{Certificate, GuestModule};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The raw-ABI WAT guest (no build needed).
pub fn header_gate() -> GuestModule {
    GuestModule::load(crate_dir().join("tests/guests/header_gate.wat"))
        .expect("header_gate.wat compiles")
}

/// The Rust SDK guest in `guests/sdk-probe`, built once per test process with the wasm target.
pub fn sdk_probe() -> GuestModule {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate_dir().join("../target"))
            .join("guests");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let output = Command::new(cargo)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip1",
                "--manifest-path",
            ])
            .arg(crate_dir().join("guests/sdk-probe/Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target_dir)
            .output()
            .map_err(|error| format!("cannot run cargo: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "building guests/sdk-probe failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(target_dir.join("wasm32-wasip1/release/sdk_probe.wasm"))
    });
    match built {
        Ok(path) => GuestModule::load(path).expect("sdk_probe.wasm compiles"),
        Err(reason) => panic!("{reason}"),
    }
}

/// certgate.wasm from `CERTGATE_WASM` (set by `cargo xtask test`), else its default build path.
pub fn certgate() -> GuestModule {
    let path = std::env::var_os("CERTGATE_WASM")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/wasm32-wasip1/release/certgate.wasm")
        });
    GuestModule::load(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build it with `cargo xtask build-wasm`",
            path.display()
        )
    })
}

/// A client certificate like the ones measured on Envoy 1.40: DN written CN, OU, O, C; two URI
/// SANs and two DNS SANs.
pub fn client_certificate() -> (String, Certificate) {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "client-one");
    name.push(DnType::OrganizationalUnitName, "Team A");
    name.push(DnType::OrganizationName, "Spike Org");
    name.push(DnType::CountryName, "US");
    params.distinguished_name = name;
    params.subject_alt_names = vec![
        SanType::URI("spiffe://example.org/ns/a/sa/one".try_into().expect("uri")),
        SanType::URI("spiffe://example.org/ns/a/sa/two".try_into().expect("uri")),
        SanType::DnsName("one.example.org".try_into().expect("dns")),
        SanType::DnsName("two.example.org".try_into().expect("dns")),
    ];
    let key = KeyPair::generate().expect("key");
    let certificate = params.self_signed(&key).expect("certificate");
    let pem = certificate.pem();
    let parsed = Certificate::from_pem(&pem).expect("rcgen PEM parses");
    (pem, parsed)
}

/// A server certificate whose URI SAN becomes XFCC `By=`.
pub fn server_certificate() -> Certificate {
    use rcgen::{CertificateParams, KeyPair, SanType};
    let mut params = CertificateParams::new(vec!["envoy.example.org".to_string()]).expect("params");
    params.subject_alt_names.push(SanType::URI(
        "spiffe://example.org/envoy".try_into().expect("uri"),
    ));
    let key = KeyPair::generate().expect("key");
    let certificate = params.self_signed(&key).expect("certificate");
    Certificate::from_pem(&certificate.pem()).expect("rcgen PEM parses")
}

/// Strings the probe guest's snippets address by offset.
pub const PROBE_DATA: &[(u32, &str)] = &[
    (300, "x-missing"),
    (310, "x-present"),
    (320, "source\\00address"),
    (340, "connection"),
    (360, "nonexistent"),
    (380, "x-up"),
    (390, "v"),
    (420, "source\\00address\\00"),
    (440, "hits"),
    (450, "echo"),
    (460, "missing_fn"),
    (480, "q"),
    (490, "c"),
    (500, ":method\\00GET"),
];

/// A raw-ABI guest whose callbacks run WAT snippets; `(call $record (i32.const KEY) STATUS)`
/// stores a status byte as filter state `wasm.sN` for KEY = 400 + 2 * (N - 1) ("s1", "s2", ...).
pub fn probe(request_headers: &str, response_headers: &str, on_log: &str) -> GuestModule {
    let data: String = PROBE_DATA
        .iter()
        .map(|(at, text)| format!("(data (i32.const {at}) \"{text}\")\n"))
        .collect();
    let keys: String = (1..=9)
        .map(|n| format!("(data (i32.const {}) \"s{n}\")\n", 400 + 2 * (n - 1)))
        .collect();
    let wat = format!(
        r#"(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_property" (func $set_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_pairs" (func $get_pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_size" (func $get_size (param i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $define_metric (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $increment_metric (param i32 i64) (result i32)))
  (import "env" "proxy_get_metric" (func $get_metric (param i32 i32) (result i32)))
  (import "env" "proxy_get_shared_data" (func $get_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_register_shared_queue" (func $register_queue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_dequeue_shared_queue" (func $dequeue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $set_effective (param i32) (result i32)))
  (import "env" "proxy_http_call" (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_call_foreign_function" (func $foreign (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue_stream (param i32) (result i32)))
  (memory (export "memory") 2)
  {data}{keys}
  (global $heap (mut i32) (i32.const 8192))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $size i32) (result i32)
    (local $at i32)
    (local.set $at (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.add (local.get $size) (i32.const 8))))
    (local.get $at))
  (func $record (param $key i32) (param $status i32)
    (i32.store8 (i32.const 60) (local.get $status))
    (drop (call $set_property (local.get $key) (i32.const 2) (i32.const 60) (i32.const 1))))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    {request_headers}
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param $ctx i32) (param i32 i32) (result i32)
    {response_headers}
    (i32.const 0))
  (func (export "proxy_on_log") (param $ctx i32)
    {on_log})
)"#
    );
    GuestModule::from_wat("probe", &wat).expect("probe guest compiles")
}

/// The status byte a probe snippet recorded under `sN`.
pub fn recorded(exchange: &host_harness::Exchange, key: &str) -> u8 {
    exchange
        .filter_state
        .get(&format!("wasm.{key}"))
        .and_then(|bytes| bytes.first().copied())
        .unwrap_or_else(|| {
            panic!(
                "the probe recorded nothing under {key}: {:?}",
                exchange.filter_state
            )
        })
}
