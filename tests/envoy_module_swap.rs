//! A new `certgate.wasm` swapped under load: the shipped sidecar with certgate's filter served by ECDS
//! from a file, and the module itself (`vm_config.code.local.filename`) replaced by a second,
//! behaviourally different build (the test-only fault-injection build, whose refusals carry
//! `x-certgate-build: fault-injection`) while a keep-alive mTLS load runs. No request fails, every
//! refusal is made by one of the two modules, and once the new module has answered, the old one
//! answers no request sent after that.

use serde_json::json;
use std::time::{Duration, Instant};
use testkit::ecds::{self, Swap};
use testkit::{
    certgate_wasm, fault_injection_wasm, CertSpec, Client, ClientTls, Drive, EchoServer, Pki,
    Request, BUILD_HEADER,
};

const SHOP_ORDERS: &str = "spiffe://mesh.local/ns/shop/sa/orders";
const CONNECTIONS: usize = 4;
const TIMEOUT: Duration = Duration::from_secs(20);

fn policy() -> serde_json::Value {
    json!({
        "routes": [
            {"name": "admin", "match": {"route_name": "admin"},
             "allow": [{"uri": "spiffe://mesh.local/ns/ops/sa/admin"}]},
            {"name": "app", "match": {"route_name": "app"}, "allow": [{"uri": SHOP_ORDERS}]},
        ],
        "deny_response": {"status": 403, "expose_reason": true},
    })
}

/// Even requests are admitted, odd ones refused (and say which module refused them).
fn request(seq: u64) -> Request {
    if seq.is_multiple_of(2) {
        Request::get("/orders/7", "app.mesh.local")
    } else {
        Request::get("/admin/users", "app.mesh.local")
    }
}

/// Which module refused: `Some(true)` the new one, `Some(false)` the old one, `None` for a 200.
fn refused_by_new(response: &testkit::Response) -> Option<bool> {
    (response.status == 403).then(|| response.header(BUILD_HEADER.0) == Some(BUILD_HEADER.1))
}

#[tokio::test]
async fn a_new_module_swapped_under_load_fails_no_request() {
    let old = certgate_wasm().unwrap();
    let new = fault_injection_wasm().unwrap();
    let pki = Pki::new().unwrap();
    let app = EchoServer::plain().unwrap();
    let (builder, mut filter_config) =
        ecds::certgate_from_file("sidecar.yaml", &old, &policy()).unwrap();
    let envoy = builder
        .cert_dir(&pki.dir)
        .upstream_port(app.port())
        .start()
        .await
        .unwrap();
    let cert = pki
        .client_cert(&CertSpec::client().uri(SHOP_ORDERS))
        .unwrap();
    let tls = ClientTls::builder(pki.mesh_ca.cert_pem())
        .sni(testkit::pki::ENVOY_SERVER_NAME)
        .client_cert(&cert)
        .build()
        .unwrap();
    let client = Client::tls(envoy.listener("ingress").unwrap(), tls);

    let drive = Drive::start(&client, CONNECTIONS, 200_000, request);
    drive.wait_for(500, TIMEOUT).await.unwrap();

    filter_config.set_wasm(&new);
    let renamed = Instant::now();
    let outcome = filter_config.swap(&envoy, &policy()).await.unwrap();
    let counted_after = renamed.elapsed();
    assert_eq!(outcome, Swap::Accepted, "{}", envoy.log_tail(20));
    // A probe on its own connection: the first refusal by the new module.
    let mut probe = client.connect().await.unwrap();
    let mut probes = 0;
    let visible = loop {
        probes += 1;
        let response = probe.send(&request(1)).await.unwrap();
        assert_eq!(response.status, 403, "{}", response.body_text());
        if refused_by_new(&response) == Some(true) {
            break Instant::now();
        }
        assert!(renamed.elapsed() < TIMEOUT, "the new module never answered");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let seen = drive.completed();
    drive.wait_for(seen + 500, TIMEOUT).await.unwrap();
    drive.stop();
    let exchanges = drive.finish().await.unwrap();

    let mut problems = Vec::new();
    let (mut ok, mut by_old, mut by_new, mut old_after_visible) = (0, 0, 0, 0);
    for exchange in &exchanges {
        let response = match &exchange.outcome {
            Ok(response) => response,
            Err(error) => {
                problems.push(format!("request {}: no response: {error}", exchange.seq));
                continue;
            }
        };
        let expected = if exchange.seq.is_multiple_of(2) {
            200
        } else {
            403
        };
        if response.status != expected {
            problems.push(format!(
                "request {}: status {}, expected {expected}: {}",
                exchange.seq,
                response.status,
                response.body_text()
            ));
        }
        match refused_by_new(response) {
            None => ok += 1,
            Some(false) => {
                by_old += 1;
                if exchange.sent > visible {
                    old_after_visible += 1;
                }
            }
            Some(true) => by_new += 1,
        }
    }
    let visible_after = visible.duration_since(renamed);
    println!(
        "{} requests on {CONNECTIONS} keep-alive connections: {ok} x 200, 403 by the old module \
         {by_old}, by the new one {by_new}; swap counted by Envoy {:.0} ms after the rename, the \
         new module answered {:.0} ms after it ({probes} probes); failed {}",
        exchanges.len(),
        counted_after.as_secs_f64() * 1e3,
        visible_after.as_secs_f64() * 1e3,
        problems.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        by_old > 0 && by_new > 0,
        "both modules must answer: old {by_old}, new {by_new}"
    );
    assert_eq!(
        old_after_visible, 0,
        "the old module refused requests sent after the new one answered"
    );
    assert_eq!(app.requests_served(), ok);
    let updates = ecds::ConfigUpdates::of(&envoy).await.unwrap();
    assert_eq!((updates.accepted, updates.rejected), (2, 0), "{updates:?}");
}
