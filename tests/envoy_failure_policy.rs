//! A failing VM denies rather than admits: `envoy/sidecar.yaml` in real Envoy running the
//! fault-injection build of certgate, whose VM traps on `x-certgate-fault: trap`.
//!
//! The shipped config sets `failure_policy: FAIL_CLOSED` explicitly (also Envoy's default): once the
//! VM has trapped it is dead, and every later request is refused without reaching the app.

use serde_json::json;
use testkit::{
    envoy, fault_injection_wasm, CertSpec, Client, EchoServer, Pki, Request, FAULT_HEADER,
};

const SHOP_ORDERS: &str = "spiffe://mesh.local/ns/shop/sa/orders";

/// Admits the orders service on every path of the `app` route.
fn policy() -> serde_json::Value {
    json!({
        "mode": "enforce",
        "default_action": "deny",
        "routes": [{
            "name": "app",
            "match": {"route_name": "app"},
            "allow": [{"uri": SHOP_ORDERS}],
        }],
    })
}

/// What the client saw: a status, or the error of a connection Envoy reset or closed.
fn outcome(result: Result<testkit::Response, impl std::fmt::Display>) -> Result<u16, String> {
    result
        .map(|response| response.status)
        .map_err(|error| format!("{error:#}"))
}

#[test]
fn the_shipped_sidecar_fails_closed() {
    let template = testkit::envoy::config_template("sidecar.yaml").unwrap();
    assert!(
        template.contains("failure_policy: FAIL_CLOSED"),
        "envoy/sidecar.yaml no longer sets failure_policy: FAIL_CLOSED"
    );
}

#[tokio::test]
async fn a_trapped_vm_refuses_every_request_after_it() {
    let wasm = fault_injection_wasm().unwrap();
    let pki = Pki::new().unwrap();
    let app = EchoServer::plain().unwrap();
    let envoy = envoy("sidecar.yaml")
        .cert_dir(&pki.dir)
        .upstream_port(app.port())
        .plugin_config(&policy())
        .wasm(&wasm)
        .start()
        .await
        .unwrap();
    let cert = pki
        .client_cert(&CertSpec::client().uri(SHOP_ORDERS))
        .unwrap();
    let client = Client::tls(
        envoy.listener("ingress").unwrap(),
        pki.client_tls(Some(&cert)).unwrap(),
    );
    let normal = Request::get("/orders/7", "app.mesh.local");

    let before = client.send(&normal).await.unwrap();
    assert_eq!(before.status, 200, "{}", before.body_text());
    assert_eq!(before.echoed().unwrap().path, "/orders/7");
    assert_eq!(app.requests_served(), 1);

    let trapped = outcome(
        client
            .send(&normal.clone().header(FAULT_HEADER.0, FAULT_HEADER.1))
            .await,
    );
    assert_eq!(trapped, Ok(503), "the request that trapped the VM");
    assert_eq!(
        app.requests_served(),
        1,
        "the trapping request reached the app"
    );

    for attempt in 1..=3 {
        let after = outcome(client.send(&normal).await);
        assert_eq!(after, Ok(503), "normal request {attempt} after the trap");
    }
    assert_eq!(
        app.requests_served(),
        1,
        "a request reached the app after the VM died"
    );

    let log = envoy.log();
    assert!(
        log.contains("unreachable"),
        "Envoy's log does not show the wasm trap:\n{}",
        envoy.log_tail(40)
    );
}
