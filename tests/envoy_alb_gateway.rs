//! `envoy/alb-gateway.yaml` in real Envoy: HTTPS without a client certificate from an AWS ALB in mTLS verify mode, the
//! client's identity taken from the ALB's headers only when the socket peer is a trusted proxy.

use serde_json::json;
use testkit::{envoy, CertSpec, Client, EchoServer, Envoy, Pki, Request};

const SHOP_ORDERS: &str = "spiffe://mesh.local/ns/shop/sa/orders";
const LEAF_HEADER: &str = "x-amzn-mtls-clientcert-leaf";

/// `api` for the orders service, `public` open; `trusted_cidrs` lists the ALB's addresses.
fn policy(identity_sources: &[&str], trusted_cidrs: &[&str]) -> serde_json::Value {
    let mut policy = json!({
        "routes": [
            {"name": "api", "match": {"route_name": "api"}, "allow": [{"uri": SHOP_ORDERS}]},
            {"name": "public", "match": {"route_name": "public"}, "require_client_cert": false},
        ],
        "deny_response": {"status": 403, "expose_reason": true},
    });
    if identity_sources != ["connection"] {
        policy["identity_sources"] = json!(identity_sources);
        policy["trusted_proxies"] = json!({"cidrs": trusted_cidrs});
    }
    policy
}

async fn alb_gateway(pki: &Pki, app: &EchoServer, policy: &serde_json::Value) -> Envoy {
    envoy("alb-gateway.yaml")
        .cert_dir(&pki.dir)
        .upstream_port(app.port())
        .plugin_config(policy)
        .start()
        .await
        .unwrap()
}

/// The ALB's side of the hop: HTTPS, no client certificate.
fn alb_client(pki: &Pki, envoy: &Envoy) -> Client {
    Client::tls(
        envoy.listener("ingress").unwrap(),
        pki.client_tls(None).unwrap(),
    )
}

#[tokio::test]
async fn https_from_the_alb_reaches_the_app_through_certgate() {
    let pki = Pki::new().unwrap();
    let app = EchoServer::plain().unwrap();
    let envoy = alb_gateway(&pki, &app, &policy(&["connection"], &[])).await;
    let client = alb_client(&pki, &envoy);
    let public = client
        .send(&Request::get("/health", "shop.example.com"))
        .await
        .unwrap();
    assert_eq!(
        public.echoed().unwrap().header_values("x-forwarded-proto"),
        ["https"]
    );
    let api = client
        .send(&Request::get("/api/orders", "shop.example.com"))
        .await
        .unwrap();
    assert_eq!(api.status, 403);
    assert_eq!(api.json().unwrap()["reason"], "no_client_cert");
    assert_eq!(app.requests_served(), 1);
}

#[tokio::test]
async fn the_alb_leaf_header_is_the_identity_when_the_peer_is_a_trusted_proxy() {
    let pki = Pki::new().unwrap();
    let app = EchoServer::plain().unwrap();
    let envoy = alb_gateway(&pki, &app, &policy(&["alb"], &["127.0.0.0/8"])).await;
    let client = alb_client(&pki, &envoy);
    let orders = pki
        .client_cert(&CertSpec::client().uri(SHOP_ORDERS))
        .unwrap();
    let cart = pki
        .client_cert(&CertSpec::client().uri("spiffe://mesh.local/ns/shop/sa/cart"))
        .unwrap();
    let as_alb = |cert: &testkit::IssuedCert| {
        Request::get("/api/orders", "shop.example.com")
            .header(LEAF_HEADER, &cert.alb_leaf_header_value())
    };
    let allowed = client.send(&as_alb(&orders)).await.unwrap();
    assert_eq!(allowed.status, 200, "{}", allowed.body_text());
    let denied = client.send(&as_alb(&cart)).await.unwrap();
    assert_eq!(denied.status, 403);
    assert_eq!(denied.json().unwrap()["reason"], "not_in_allowlist");
}

#[tokio::test]
async fn alb_headers_from_an_untrusted_peer_are_no_identity() {
    let pki = Pki::new().unwrap();
    let app = EchoServer::plain().unwrap();
    // The peer (127.0.0.1) is outside the trusted range: its ALB header is a spoofing attempt.
    let envoy = alb_gateway(&pki, &app, &policy(&["alb"], &["10.0.0.0/8"])).await;
    let orders = pki
        .client_cert(&CertSpec::client().uri(SHOP_ORDERS))
        .unwrap();
    let response = alb_client(&pki, &envoy)
        .send(
            &Request::get("/api/orders", "shop.example.com")
                .header(LEAF_HEADER, &orders.alb_leaf_header_value()),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 403);
    assert_eq!(response.json().unwrap()["reason"], "no_client_cert");
    assert_eq!(app.requests_served(), 0);
}
