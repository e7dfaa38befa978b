//! certgate's forwarding headers and anti-spoofing as the app behind a real Envoy
//! (`envoy/sidecar.yaml`) receives them: identity headers, XFCC, RFC 9440 `Client-Cert`,
//! X-Forwarded-For and RFC 7239 `Forwarded`, each set from the verified connection only, with every
//! client-sent copy removed.

use serde_json::json;
use std::time::Duration;
use testkit::{
    envoy, CertSpec, Client, EchoServer, EchoedRequest, Envoy, IssuedCert, Pki, Request,
};

const SHOP_ORDERS: &str = "spiffe://mesh.local/ns/shop/sa/orders";

fn policy() -> serde_json::Value {
    json!({
        "routes": [{"name": "app", "match": {"route_name": "app"}, "allow": [{"uri": SHOP_ORDERS}]}],
        "default_action": "allow",
        "forwarding": {
            "xff": {"append": true},
            "x_forwarded_proto": true,
            "forwarded": "append",
            "xfcc": {"mode": "sanitize_set", "details": ["hash", "subject", "uri", "dns"]},
            "client_cert": true,
            "identity_headers": {"x-client-spiffe-id": "uri", "x-client-route": "route"},
        },
    })
}

struct World {
    pki: Pki,
    _app: EchoServer,
    envoy: Envoy,
    orders: IssuedCert,
}

impl World {
    async fn start() -> Self {
        let pki = Pki::new().unwrap();
        let app = EchoServer::plain().unwrap();
        let envoy = envoy("sidecar.yaml")
            .cert_dir(&pki.dir)
            .upstream_port(app.port())
            .plugin_config(&policy())
            .start()
            .await
            .unwrap();
        let orders = pki
            .client_cert(
                &CertSpec::client()
                    .uri(SHOP_ORDERS)
                    .dns("orders.shop.svc")
                    .cn("orders"),
            )
            .unwrap();
        World {
            pki,
            _app: app,
            envoy,
            orders,
        }
    }

    /// What the app received for `request`, sent by the orders service.
    async fn upstream_view(&self, request: Request) -> EchoedRequest {
        let response = Client::tls(
            self.envoy.listener("ingress").unwrap(),
            self.pki.client_tls(Some(&self.orders)).unwrap(),
        )
        .send(&request)
        .await
        .unwrap();
        response.echoed().unwrap()
    }
}

fn request() -> Request {
    Request::get("/orders", "app.mesh.local")
}

#[tokio::test]
async fn identity_headers_come_from_the_certificate_and_spoofed_copies_are_removed() {
    let world = World::start().await;
    let seen = world
        .upstream_view(
            request()
                .header("x-client-spiffe-id", "spiffe://mesh.local/ns/ops/sa/admin")
                .header("X-Client-Spiffe-Id", "spiffe://evil")
                .header("x-client-route", "admin"),
        )
        .await;
    assert_eq!(seen.header_values("x-client-spiffe-id"), [SHOP_ORDERS]);
    assert_eq!(seen.header_values("x-client-route"), ["app"]);
    let scrape = world
        .envoy
        .wait_for_prometheus(Duration::from_secs(5), |scrape| {
            scrape
                .value(
                    "certgate_spoofed_headers_total",
                    &[("header", "x-client-spiffe-id")],
                )
                .is_some()
        })
        .await
        .unwrap();
    assert!(scrape
        .value(
            "certgate_spoofed_headers_total",
            &[("header", "x-client-route")]
        )
        .is_some_and(|count| count >= 1.0));
}

#[tokio::test]
async fn xfcc_sanitize_set_replaces_a_client_sent_xfcc_with_the_verified_certificate() {
    let world = World::start().await;
    let seen = world
        .upstream_view(
            request()
                .header(
                    "x-forwarded-client-cert",
                    "By=spiffe://evil;URI=spiffe://evil",
                )
                .header("X-Forwarded-Client-Cert", "URI=spiffe://evil2"),
        )
        .await;
    let xfcc = seen.header_values("x-forwarded-client-cert");
    assert_eq!(xfcc.len(), 1, "{xfcc:?}");
    assert!(!xfcc[0].contains("evil"), "{}", xfcc[0]);
    assert!(
        xfcc[0].contains(&format!("Hash={}", world.orders.sha256_hex())),
        "{}",
        xfcc[0]
    );
    assert!(
        xfcc[0].contains(&format!("URI={SHOP_ORDERS}")),
        "{}",
        xfcc[0]
    );
    assert!(xfcc[0].contains("DNS=orders.shop.svc"), "{}", xfcc[0]);
}

#[tokio::test]
async fn client_cert_is_the_rfc_9440_encoding_of_the_presented_certificate() {
    let world = World::start().await;
    let seen = world
        .upstream_view(request().header("client-cert", ":ZXZpbA==:"))
        .await;
    let values = seen.header_values("client-cert");
    assert_eq!(values.len(), 1, "{values:?}");
    let inner = values[0]
        .strip_prefix(':')
        .and_then(|v| v.strip_suffix(':'))
        .unwrap_or_else(|| panic!("not an RFC 8941 byte sequence: {}", values[0]));
    assert!(inner.len() > 100 && inner != "ZXZpbA==", "{inner}");
}

#[tokio::test]
async fn xff_forwarded_and_proto_state_the_real_peer_and_scheme() {
    let world = World::start().await;
    let seen = world
        .upstream_view(
            request()
                .header("x-forwarded-for", "203.0.113.9")
                .header("x-forwarded-proto", "http"),
        )
        .await;
    assert_eq!(
        seen.header_values("x-forwarded-for"),
        ["203.0.113.9, 127.0.0.1"]
    );
    assert_eq!(seen.header_values("x-forwarded-proto"), ["https"]);
    let forwarded = seen.header_values("forwarded").join(",");
    assert!(forwarded.contains("proto=https"), "{forwarded}");
    assert!(forwarded.contains("for="), "{forwarded}");
}
