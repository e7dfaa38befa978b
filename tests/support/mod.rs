//! What the harness suites share: the real `certgate.wasm` compiled once per process, one test CA,
//! client certificates issued by it as harness certificates, plugins started with a policy, and
//! the facts certgate leaves on an exchange (decision, reason, filter state, access record),
//! hostile certificates ([`hostile`]), and the repository's YAML files as JSON ([`yaml`]).
#![allow(dead_code)]

pub mod hostile;
pub mod yaml;

use host_harness::{
    Certificate, Connection, Exchange, GuestModule, LogLevel, Plugin, PluginSettings, Tls,
};
use serde_json::Value;
use std::sync::OnceLock;
use testkit::{CertSpec, IssuedCert, TestCa};

/// `certgate.wasm` (`CERTGATE_WASM`, else the default build path), loaded once per test process.
pub fn certgate() -> &'static GuestModule {
    static MODULE: OnceLock<GuestModule> = OnceLock::new();
    MODULE.get_or_init(|| {
        let path = testkit::certgate_wasm().unwrap_or_else(|error| panic!("{error:#}"));
        GuestModule::load(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    })
}

/// The CA that signs every client certificate of the suite (key generation is the slow part).
pub fn ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| TestCa::new("certgate harness suite CA").expect("the test CA"))
}

/// A client certificate issued by [`ca`].
pub fn issue(spec: &CertSpec) -> IssuedCert {
    ca().issue(spec).expect("a client certificate")
}

/// The issued certificate as the harness presents it.
pub fn certificate(issued: &IssuedCert) -> Certificate {
    Certificate::from_pem(&issued.cert_pem).expect("rcgen writes parseable PEM")
}

/// Mutual TLS 1.3 with a validated certificate described by `spec`.
pub fn mtls(spec: &CertSpec) -> Connection {
    Connection::mtls(certificate(&issue(spec)))
}

/// A certificate presented but not validated (`ACCEPT_UNTRUSTED`).
pub fn untrusted(spec: &CertSpec) -> Connection {
    Connection::tls(
        Tls::new()
            .peer_certificate(certificate(&issue(spec)))
            .validated(false),
    )
}

/// TLS without a client certificate.
pub fn no_cert() -> Connection {
    Connection::tls(Tls::new())
}

/// certgate started with `policy`, which it must accept.
pub fn plugin(policy: &Value) -> Plugin {
    plugin_with(PluginSettings::new("certgate"), policy)
}

/// certgate started with `settings` and `policy`, which it must accept.
pub fn plugin_with(settings: PluginSettings, policy: &Value) -> Plugin {
    let plugin = Plugin::new(certgate(), today(settings).configuration_json(policy))
        .expect("certgate starts");
    assert!(
        plugin.configured().accepted,
        "certgate rejected {policy}: {:?}",
        plugin.logs_at(LogLevel::Error)
    );
    plugin
}

/// The host clock set to now: certificates from testkit are valid relative to the real time, and
/// certgate checks validity and days to expiry against the host clock.
pub fn today(settings: PluginSettings) -> PluginSettings {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    settings.start_time_ns(u64::try_from(since_epoch.as_nanos()).expect("before 2554"))
}

/// Field `name` of the record certgate set as filter state (`wasm.certgate`), as Envoy's access
/// log prints it.
pub fn state(exchange: &Exchange, name: &str) -> Option<String> {
    exchange.filter_state_fields("wasm.certgate")?.remove(name)
}

/// (decision, reason) as certgate recorded them.
pub fn decision(exchange: &Exchange) -> (String, String) {
    (
        state(exchange, "decision").unwrap_or_default(),
        state(exchange, "reason").unwrap_or_default(),
    )
}

/// The access record certgate logged for the exchange (the one JSON line).
pub fn access_record(exchange: &Exchange) -> Value {
    let records: Vec<Value> = exchange
        .logs
        .iter()
        .filter_map(|record| serde_json::from_str::<Value>(&record.message).ok())
        .collect();
    assert_eq!(records.len(), 1, "one access record: {:?}", exchange.logs);
    records.into_iter().next().unwrap_or_default()
}

/// The status the client got.
pub fn status(exchange: &Exchange) -> u32 {
    exchange
        .response
        .as_ref()
        .map_or(0, |response| response.status)
}
