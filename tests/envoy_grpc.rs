//! HTTP/2 and gRPC through `envoy/gateway.yaml` in real Envoy: the shipped listener negotiates `h2`
//! by ALPN, certgate decides HTTP/2 requests as it decides HTTP/1.1 ones, and a refused gRPC call
//! comes back as a gRPC status (`PERMISSION_DENIED` for a refused identity, `UNAUTHENTICATED`
//! without a certificate) with certgate's `grpc-message`, in the caller's own protocol.

use testkit::{envoy, CertSpec, Client, EchoServer, Pki, Request};

const SHOP_ORDERS: &str = "spiffe://mesh.local/ns/shop/sa/orders";

/// A gRPC call as a gRPC client sends it (the body is an empty length-prefixed message).
fn grpc_call(path: &str) -> Request {
    Request::new("POST", path)
        .header("host", "shop.example.com")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(vec![0, 0, 0, 0, 0])
}

#[tokio::test]
async fn http2_requests_are_decided_and_refused_grpc_calls_get_grpc_statuses() {
    let pki = Pki::new().unwrap();
    let backend = EchoServer::tls(&pki.backend).unwrap();
    let envoy = envoy("gateway.yaml")
        .cert_dir(&pki.dir)
        .upstream_port(backend.port())
        .plugin_config(&testkit::envoy::shipped_policy("gateway-policy.json").unwrap())
        .start()
        .await
        .unwrap();
    let listener = envoy.listener("ingress").unwrap();
    let orders = pki
        .client_cert(&CertSpec::client().uri(SHOP_ORDERS))
        .unwrap();
    let as_orders = Client::tls(listener, pki.client_tls(Some(&orders)).unwrap());
    let anonymous = Client::tls(listener, pki.client_tls(None).unwrap());

    let allowed = as_orders
        .send_h2(&Request::get("/orders/7", "shop.example.com"))
        .await
        .unwrap();
    assert_eq!(allowed.status, 200, "{}", allowed.body_text());
    let echoed = allowed.echoed().unwrap();
    assert_eq!(echoed.header("x-client-spiffe-id"), Some(SHOP_ORDERS));
    assert_eq!(backend.requests_served(), 1);

    let refused = as_orders.send_h2(&grpc_call("/admin/users")).await.unwrap();
    assert_eq!(refused.status, 200, "a gRPC answer: {refused:?}");
    assert_eq!(refused.header("grpc-status"), Some("7"), "{refused:?}");
    let message = refused.header("grpc-message").unwrap_or_default();
    assert!(
        message.starts_with("certgate: permission denied: not_in_allowlist (request "),
        "{message}"
    );

    let unauthenticated = anonymous.send_h2(&grpc_call("/orders/7")).await.unwrap();
    assert_eq!(
        unauthenticated.header("grpc-status"),
        Some("16"),
        "{unauthenticated:?}"
    );
    assert!(unauthenticated
        .header("grpc-message")
        .is_some_and(|message| message.starts_with("certgate: unauthenticated: no_client_cert")));

    let http_refusal = anonymous
        .send_h2(&Request::get("/orders/7", "shop.example.com"))
        .await
        .unwrap();
    assert_eq!(http_refusal.status, 403, "not gRPC: the HTTP reply");
    assert_eq!(http_refusal.json().unwrap()["reason"], "no_client_cert");
    assert_eq!(
        backend.requests_served(),
        1,
        "no refusal reached the backend"
    );
}
