//! Resumed TLS sessions through the host harness on the real `certgate.wasm`: Envoy reports a
//! resumed session's certificate not validated; certgate admits it only when Envoy validated the
//! same certificate in the same scope (local address, filter chain) recently, shared by all of a
//! VM's workers, and refuses it otherwise.

mod support;

use host_harness::{Certificate, Connection, PluginSettings, Request, SharedData, Tls};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use support::{certificate, decision, issue, plugin, plugin_with, status};
use testkit::{CertSpec, Validity};

const LISTENER: &str = "10.0.0.1:8443";
const OTHER_LISTENER: &str = "10.0.0.1:9443";

fn policy() -> Value {
    json!({"routes": [{"name": "api", "allow": [{"trust_domain": "mesh.local"}]}]})
}

fn client(name: &str) -> Certificate {
    certificate(&issue(
        &CertSpec::client().uri(&format!("spiffe://mesh.local/ns/app/sa/{name}")),
    ))
}

fn address(text: &str) -> SocketAddr {
    text.parse().expect("a socket address")
}

/// A full handshake in which Envoy validated the chain.
fn validated(certificate: &Certificate, listener: &str) -> Connection {
    Connection::mtls(certificate.clone()).destination(address(listener))
}

/// A resumed session: the certificate of the original session, reported not validated.
fn resumed(certificate: &Certificate, listener: &str) -> Connection {
    Connection::tls(
        Tls::new()
            .peer_certificate(certificate.clone())
            .validated(false),
    )
    .destination(address(listener))
}

fn outcome(plugin: &mut host_harness::Plugin, connection: &Connection) -> (String, String, u32) {
    let exchange = plugin
        .send(connection, Request::get("/orders"))
        .expect("the exchange runs");
    let (verdict, reason) = decision(&exchange);
    (verdict, reason, status(&exchange))
}

fn allowed() -> (String, String, u32) {
    ("allow".into(), "allowlist_match".into(), 200)
}

fn refused() -> (String, String, u32) {
    ("deny".into(), "cert_not_validated".into(), 403)
}

#[test]
fn a_resumed_session_is_admitted_where_its_certificate_was_validated() {
    let mut plugin = plugin(&policy());
    let orders = client("orders");
    assert_eq!(
        outcome(&mut plugin, &validated(&orders, LISTENER)),
        allowed()
    );
    // (case, connection, expected)
    let table = [
        (
            "same certificate, same listener",
            resumed(&orders, LISTENER),
            allowed(),
        ),
        (
            "same certificate, another listener",
            resumed(&orders, OTHER_LISTENER),
            refused(),
        ),
        (
            "a certificate never validated",
            resumed(&client("billing"), LISTENER),
            refused(),
        ),
    ];
    for (case, connection, expected) in table {
        assert_eq!(outcome(&mut plugin, &connection), expected, "{case}");
    }
}

#[test]
fn an_untrusted_full_handshake_is_never_recorded() {
    let mut plugin = plugin(&policy());
    let stranger = client("stranger");
    for _ in 0..3 {
        assert_eq!(
            outcome(&mut plugin, &resumed(&stranger, LISTENER)),
            refused()
        );
    }
}

#[test]
fn the_record_expires_after_validity_secs() {
    let mut plugin = plugin(&json!({
        "session_resumption": {"validity_secs": 3600},
        "routes": [{"name": "api", "allow": [{"trust_domain": "mesh.local"}]}]
    }));
    let orders = client("orders");
    outcome(&mut plugin, &validated(&orders, LISTENER));
    plugin.advance_time(Duration::from_secs(3599)).unwrap();
    assert_eq!(outcome(&mut plugin, &resumed(&orders, LISTENER)), allowed());
    plugin.advance_time(Duration::from_secs(1)).unwrap();
    assert_eq!(outcome(&mut plugin, &resumed(&orders, LISTENER)), refused());
    // A new full handshake records it again.
    assert_eq!(
        outcome(&mut plugin, &validated(&orders, LISTENER)),
        allowed()
    );
    assert_eq!(outcome(&mut plugin, &resumed(&orders, LISTENER)), allowed());
}

#[test]
fn the_record_ends_with_the_certificate() {
    let mut plugin = plugin(&policy());
    let short_lived = certificate(&issue(
        &CertSpec::client()
            .uri("spiffe://mesh.local/ns/app/sa/batch")
            .validity(Validity::ExpiresInDays(1)),
    ));
    outcome(&mut plugin, &validated(&short_lived, LISTENER));
    assert_eq!(
        outcome(&mut plugin, &resumed(&short_lived, LISTENER)),
        allowed()
    );
    // Past the certificate's notAfter (a day and a few minutes away), within the default validity.
    plugin
        .advance_time(Duration::from_secs(2 * 24 * 3600))
        .unwrap();
    assert_eq!(
        outcome(&mut plugin, &resumed(&short_lived, LISTENER)),
        refused()
    );
}

#[test]
fn workers_share_what_envoy_validated() {
    let store = SharedData::new();
    let mut first_worker = plugin_with(
        PluginSettings::new("certgate").shared_data(store.clone()),
        &policy(),
    );
    let mut second_worker = plugin_with(
        PluginSettings::new("certgate").shared_data(store),
        &policy(),
    );
    let orders = client("orders");
    outcome(&mut first_worker, &validated(&orders, LISTENER));
    assert_eq!(
        outcome(&mut second_worker, &resumed(&orders, LISTENER)),
        allowed()
    );
    assert_eq!(
        outcome(&mut second_worker, &resumed(&orders, OTHER_LISTENER)),
        refused()
    );
}

#[test]
fn refuse_mode_refuses_every_resumed_session() {
    let mut plugin = plugin(&json!({
        "session_resumption": {"mode": "refuse"},
        "routes": [{"name": "api", "allow": [{"trust_domain": "mesh.local"}]}]
    }));
    let orders = client("orders");
    let full = plugin
        .send(&validated(&orders, LISTENER), Request::get("/orders"))
        .unwrap();
    assert_eq!(status(&full), 200);
    assert_eq!(
        full.hostcalls.get("proxy_set_shared_data"),
        0,
        "nothing recorded"
    );
    let resumed = plugin
        .send(&resumed(&orders, LISTENER), Request::get("/orders"))
        .unwrap();
    assert_eq!(
        decision(&resumed),
        ("deny".into(), "cert_not_validated".into())
    );
    assert_eq!(
        resumed.hostcalls.get("proxy_get_shared_data"),
        0,
        "nothing looked up"
    );
}

/// The record costs hostcalls only on a connection's first request, and a worker that knows the
/// certificate does not ask the shared data again.
#[test]
fn a_kept_alive_resumed_connection_costs_no_shared_data_call() {
    let mut plugin = plugin(&policy());
    let orders = client("orders");
    let first = plugin
        .send(&validated(&orders, LISTENER), Request::get("/orders"))
        .unwrap();
    assert_eq!(first.hostcalls.get("proxy_set_shared_data"), 1);
    let connection = resumed(&orders, LISTENER);
    for _ in 0..3 {
        let exchange = plugin.send(&connection, Request::get("/orders")).unwrap();
        assert_eq!(status(&exchange), 200);
        assert_eq!(exchange.hostcalls.get("proxy_get_shared_data"), 0);
        assert_eq!(exchange.hostcalls.get("proxy_set_shared_data"), 0);
    }
}
