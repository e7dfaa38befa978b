//! Hostile churn stays bounded: the shipped sidecar in real Envoy under a client population that
//! defeats certgate's caches (a new certificate on every connection, every tenth one with 1,000 DNS
//! SANs: rustls, the test client, refuses to present a 10,000-SAN certificate, `BadEncoding`), beside a normal keep-alive load. Prints Envoy's worker CPU per request and resident memory
//! for both; asserts only what does not depend on timing: every request decided as the policy says,
//! and resident memory after 2N churned connections within a generous bound of that after N.
//!
//! `CERTGATE_CHURN_CONNECTIONS=N cargo test -p certgate-suite --test envoy_churn -- --nocapture`
//! runs it at N churned connections per half (default 300, the smoke size).

use serde_json::json;
use std::time::Duration;
use testkit::{envoy, CertSpec, Client, Drive, EchoServer, IssuedCert, Pki, Request};

const SHOP_ORDERS: &str = "spiffe://mesh.local/ns/shop/sa/orders";
/// Every this-many-th churned connection presents a certificate with [`BULK_SANS`] DNS SANs.
const BULK_EVERY: usize = 10;
const BULK_SANS: usize = 1_000;
/// Resident memory may grow by this much from N to 2N churned connections.
const GROWTH_LIMIT: u64 = 32 << 20;

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// The orders service is admitted on the app route; every other identity is refused.
fn policy() -> serde_json::Value {
    json!({
        "routes": [{"name": "app", "match": {"route_name": "app"}, "allow": [{"uri": SHOP_ORDERS}]}],
    })
}

/// Connection `index` of the churn: its own certificate, admitted when even.
fn churn_cert(pki: &Pki, index: usize, bulk: &[IssuedCert]) -> (IssuedCert, u16) {
    if index % BULK_EVERY == BULK_EVERY - 1 {
        return (bulk[(index / BULK_EVERY) % bulk.len()].clone(), 403);
    }
    let uri = if index.is_multiple_of(2) {
        SHOP_ORDERS.to_owned()
    } else {
        format!("spiffe://mesh.local/ns/churn/sa/client-{index}")
    };
    let cert = pki
        .client_cert(&CertSpec::client().uri(&uri).cn(&format!("churn-{index}")))
        .unwrap();
    (cert, if index.is_multiple_of(2) { 200 } else { 403 })
}

#[tokio::test]
async fn churned_certificates_keep_envoy_memory_bounded() {
    let connections: usize = std::env::var("CERTGATE_CHURN_CONNECTIONS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(300);
    let pki = Pki::new().unwrap();
    let app = EchoServer::plain().unwrap();
    let envoy = envoy("sidecar.yaml")
        .cert_dir(&pki.dir)
        .upstream_port(app.port())
        .plugin_config(&policy())
        .start()
        .await
        .unwrap();
    let listener = envoy.listener("ingress").unwrap();
    let bulk: Vec<IssuedCert> = (0..4)
        .map(|n| {
            let mut spec = CertSpec::client().cn(&format!("bulk-{n}"));
            for index in 0..BULK_SANS {
                spec = spec.dns(&format!("host-{index}.bulk-{n}.example"));
            }
            pki.client_cert(&spec).unwrap()
        })
        .collect();
    let request = Request::get("/orders", "app.mesh.local");

    // The normal load: one identity on 4 keep-alive connections.
    let orders = pki
        .client_cert(&CertSpec::client().uri(SHOP_ORDERS))
        .unwrap();
    let client = Client::tls(listener, pki.client_tls(Some(&orders)).unwrap());
    let normal_requests = (connections * 2) as u64;
    let cpu_before = envoy.worker_cpu_time().unwrap();
    let normal = Drive::start(&client, 4, normal_requests, {
        let request = request.clone();
        move |_| request.clone()
    })
    .finish()
    .await
    .unwrap();
    let normal_cpu = envoy.worker_cpu_time().unwrap() - cpu_before;
    assert!(normal.iter().all(|e| e.status() == Some(200)));
    let normal_rss = envoy.resident_memory_bytes().unwrap();

    // The churn: a new certificate on every connection, one request each.
    let mut rss = Vec::new();
    let mut churn_cpu = Duration::ZERO;
    let mut wrong = Vec::new();
    let closing = request.clone().header("connection", "close");
    for half in 0..2 {
        for index in half * connections..(half + 1) * connections {
            let (cert, expected) = churn_cert(&pki, index, &bulk);
            let client = Client::tls(listener, pki.client_tls(Some(&cert)).unwrap());
            let cpu = envoy.worker_cpu_time().unwrap();
            let status = client.send(&closing).await.map(|r| r.status);
            churn_cpu += envoy.worker_cpu_time().unwrap() - cpu;
            if status.as_ref().ok() != Some(&expected) {
                wrong.push(format!(
                    "connection {index}: {status:?}, expected {expected}"
                ));
            }
        }
        rss.push(envoy.resident_memory_bytes().unwrap());
    }
    let per_request = |cpu: Duration, requests: usize| cpu.as_secs_f64() * 1e6 / requests as f64;
    println!(
        "normal: {normal_requests} keep-alive requests, worker CPU {:.1} µs/request, resident {}",
        per_request(normal_cpu, normal.len()),
        mib(normal_rss)
    );
    println!(
        "churn: {} connections, each a new certificate (every {BULK_EVERY}th with {BULK_SANS} SANs), \
         worker CPU {:.1} µs/request (handshake included), resident after {connections}: {}, \
         after {}: {}",
        2 * connections,
        per_request(churn_cpu, 2 * connections),
        mib(rss[0]),
        2 * connections,
        mib(rss[1])
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let growth = rss[1].saturating_sub(rss[0]);
    assert!(
        growth <= GROWTH_LIMIT,
        "resident memory grew by {} from {connections} to {} churned connections (limit {})",
        mib(growth),
        2 * connections,
        mib(GROWTH_LIMIT)
    );
}
