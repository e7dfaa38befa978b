//! `envoy/gateway.yaml` in real Envoy: TLS termination for clients from outside the mesh, certgate
//! deciding per route (including clients the handshake lets through without a valid certificate),
//! and TLS to the backends with SAN validation.

use serde_json::json;
use std::time::Duration;
use testkit::{
    envoy, CertSpec, Client, ClientTls, EchoServer, Envoy, IssuedCert, Pki, Request, Validity,
};

const OPS_ADMIN: &str = "spiffe://mesh.local/ns/ops/sa/admin";
const SHOP_ORDERS: &str = "spiffe://mesh.local/ns/shop/sa/orders";

/// The policy shipped beside `envoy/gateway.yaml`: `admin` and `orders` each have their allowlist,
/// `public` admits clients without a certificate; reasons are exposed so the tests can read them.
fn policy() -> serde_json::Value {
    testkit::envoy::shipped_policy("gateway-policy.json").unwrap()
}

struct Gateway {
    pki: Pki,
    backend: EchoServer,
    envoy: Envoy,
}

impl Gateway {
    /// A gateway whose backends present `backend_cert` (the right one when `None`).
    async fn start(backend_cert: Option<&IssuedCert>) -> Self {
        let pki = Pki::new().unwrap();
        let backend = EchoServer::tls(backend_cert.unwrap_or(&pki.backend)).unwrap();
        let envoy = envoy("gateway.yaml")
            .cert_dir(&pki.dir)
            .upstream_port(backend.port())
            .plugin_config(&policy())
            .start()
            .await
            .unwrap();
        Gateway {
            pki,
            backend,
            envoy,
        }
    }

    fn client(&self, tls: ClientTls) -> Client {
        Client::tls(self.envoy.listener("ingress").unwrap(), tls)
    }

    fn client_with(&self, cert: Option<&IssuedCert>) -> Client {
        self.client(self.pki.client_tls(cert).unwrap())
    }
}

/// The reason certgate gave in a 403 body.
fn deny_reason(response: &testkit::Response) -> String {
    assert_eq!(response.status, 403, "{}", response.body_text());
    response.json().unwrap()["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn routes_reach_their_backends_over_tls_with_san_validation() {
    let gateway = Gateway::start(None).await;
    let ops = gateway
        .pki
        .client_cert(&CertSpec::client().uri(OPS_ADMIN))
        .unwrap();
    let orders = gateway
        .pki
        .client_cert(&CertSpec::client().uri(SHOP_ORDERS))
        .unwrap();
    for (cert, path) in [
        (Some(&ops), "/admin/users"),
        (Some(&orders), "/orders/7"),
        (None, "/docs"),
    ] {
        let response = gateway
            .client_with(cert)
            .send(&Request::get(path, "shop.example.com"))
            .await
            .unwrap();
        let echoed = response.echoed().unwrap();
        assert_eq!(echoed.path, path);
        assert_eq!(echoed.header("host"), Some("shop.example.com"));
    }
    assert_eq!(gateway.backend.requests_served(), 3);
}

#[tokio::test]
async fn a_backend_without_the_expected_san_gets_no_request() {
    let pki = Pki::new().unwrap();
    let impostor = pki
        .upstream_ca
        .issue(&CertSpec::server().dns("impostor.backend.mesh.local"))
        .unwrap();
    let gateway = Gateway::start(Some(&impostor)).await;
    let orders = gateway
        .pki
        .client_cert(&CertSpec::client().uri(SHOP_ORDERS))
        .unwrap();
    let response = gateway
        .client_with(Some(&orders))
        .send(&Request::get("/orders", "shop.example.com"))
        .await
        .unwrap();
    assert_eq!(response.status, 503, "{}", response.body_text());
    assert_eq!(gateway.backend.requests_served(), 0);
}

#[tokio::test]
async fn clients_the_handshake_lets_through_are_denied_with_their_reason() {
    let gateway = Gateway::start(None).await;
    let untrusted = gateway
        .pki
        .untrusted_ca
        .issue(&CertSpec::client().uri(OPS_ADMIN))
        .unwrap();
    let expired = gateway
        .pki
        .client_cert(
            &CertSpec::client()
                .uri(OPS_ADMIN)
                .validity(Validity::Expired),
        )
        .unwrap();
    let not_yet_valid = gateway
        .pki
        .client_cert(
            &CertSpec::client()
                .uri(OPS_ADMIN)
                .validity(Validity::NotYetValid),
        )
        .unwrap();
    // (client certificate, expected reason) on the admin route
    let table = [
        (None, "no_client_cert"),
        (Some(&untrusted), "cert_not_validated"),
        (Some(&expired), "cert_not_validated"),
        (Some(&not_yet_valid), "cert_not_validated"),
    ];
    for (cert, expected) in table {
        let response = gateway
            .client_with(cert)
            .send(&Request::get("/admin", "shop.example.com"))
            .await
            .unwrap();
        assert_eq!(deny_reason(&response), expected, "{cert:?}");
    }
    assert_eq!(gateway.backend.requests_served(), 0);
}

#[tokio::test]
async fn tls_1_2_and_1_3_clients_are_both_served() {
    let gateway = Gateway::start(None).await;
    let orders = gateway
        .pki
        .client_cert(&CertSpec::client().uri(SHOP_ORDERS))
        .unwrap();
    let tls12 = ClientTls::builder(gateway.pki.mesh_ca.cert_pem())
        .client_cert(&orders)
        .sni(testkit::pki::ENVOY_SERVER_NAME)
        .tls12_only()
        .build()
        .unwrap();
    for tls in [tls12, gateway.pki.client_tls(Some(&orders)).unwrap()] {
        let response = gateway
            .client(tls)
            .send(&Request::get("/orders", "shop.example.com"))
            .await
            .unwrap();
        assert_eq!(response.status, 200, "{}", response.body_text());
    }
    let scrape = gateway.envoy.prometheus().await.unwrap();
    let handshakes = |version| {
        scrape.value(
            "envoy_listener_ssl_versions",
            &[("envoy_ssl_version", version)],
        )
    };
    assert_eq!(handshakes("TLSv1.2"), Some(1.0));
    assert_eq!(handshakes("TLSv1.3"), Some(1.0));
}

#[tokio::test]
async fn a_host_the_sni_does_not_cover_is_denied_when_configured() {
    let pki = Pki::new().unwrap();
    let backend = EchoServer::tls(&pki.backend).unwrap();
    let mut strict = policy();
    strict["sni_host_mismatch"] = json!("deny");
    let envoy = envoy("gateway.yaml")
        .cert_dir(&pki.dir)
        .upstream_port(backend.port())
        .plugin_config(&strict)
        .start()
        .await
        .unwrap();
    let orders = pki
        .client_cert(&CertSpec::client().uri(SHOP_ORDERS))
        .unwrap();
    let client = Client::tls(
        envoy.listener("ingress").unwrap(),
        ClientTls::builder(pki.mesh_ca.cert_pem())
            .client_cert(&orders)
            .sni("shop.example.com")
            .build()
            .unwrap(),
    );
    let matching = client
        .send(&Request::get("/orders", "shop.example.com:443"))
        .await
        .unwrap();
    assert_eq!(matching.status, 200, "{}", matching.body_text());
    let mismatched = client
        .send(&Request::get("/orders", "admin.example.com"))
        .await
        .unwrap();
    assert_eq!(deny_reason(&mismatched), "sni_host_mismatch");
    // certgate hands its counts to Envoy on its tick (one second by default).
    let counted = |scrape: &testkit::Prometheus| {
        scrape.value("certgate_sni_host_mismatch_total", &[]) == Some(1.0)
    };
    envoy
        .wait_for_prometheus(Duration::from_secs(5), counted)
        .await
        .unwrap();
}
