//! Every matcher kind of certgate's allowlists, audit mode, the default action and wildcard
//! certificates, decided in real Envoy (`envoy/sidecar.yaml`) on real client certificates: one route
//! per case, selected by path prefix (`/<route>/`).

use serde_json::json;
use std::net::IpAddr;
use testkit::{envoy, CertSpec, Client, EchoServer, Envoy, IssuedCert, Pki, Request};

struct World {
    pki: Pki,
    app: EchoServer,
    envoy: Envoy,
}

impl World {
    async fn start(pki: Pki, policy: serde_json::Value) -> Self {
        let app = EchoServer::plain().unwrap();
        let envoy = envoy("sidecar.yaml")
            .cert_dir(&pki.dir)
            .upstream_port(app.port())
            .plugin_config(&policy)
            .start()
            .await
            .unwrap();
        World { pki, app, envoy }
    }

    /// Sends `GET path` presenting `cert`; returns the status and, for a 403, certgate's reason.
    async fn decide(&self, cert: &IssuedCert, path: &str) -> (u16, String) {
        let response = Client::tls(
            self.envoy.listener("ingress").unwrap(),
            self.pki.client_tls(Some(cert)).unwrap(),
        )
        .send(&Request::get(path, "app.mesh.local"))
        .await
        .unwrap();
        let reason = match response.status {
            403 => response.json().unwrap()["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            _ => String::new(),
        };
        (response.status, reason)
    }
}

fn route(name: &str, allow: serde_json::Value) -> serde_json::Value {
    json!({"name": name, "match": {"path_prefix": format!("/{name}/")}, "allow": allow})
}

#[tokio::test]
async fn every_matcher_kind_admits_its_identity_and_nothing_else() {
    let pki = Pki::new().unwrap();
    let fingerprinted = pki.client_cert(&CertSpec::client().cn("pinned")).unwrap();
    let policy = json!({
        "routes": [
            route("dns", json!([{"dns": "api.example.com"}])),
            route("dnswild", json!([{"dns": "*.example.com"}])),
            route("uri", json!([{"uri": "spiffe://td/ns/prod/sa/web"}])),
            route("uriprefix", json!([{"uri": "spiffe://td/ns/prod/*"}])),
            route("urisegment", json!([{"uri": "spiffe://td/ns/*/sa/web"}])),
            route("trustdomain", json!([{"trust_domain": "partner.example"}])),
            route("ip", json!([{"ip": "10.1.0.0/16"}, {"ip": "2001:db8::1"}])),
            route("email", json!([{"email": "ops@example.com"}])),
            route("cn", json!([{"subject_cn": "orders"}])),
            route("sha256", json!([{"sha256": fingerprinted.sha256_hex().to_uppercase()}])),
            {"name": "audit", "match": {"path_prefix": "/audit/"}, "mode": "audit",
             "allow": [{"dns": "nobody.example.com"}]},
        ],
        "default_action": "deny",
        "deny_response": {"status": 403, "expose_reason": true},
    });
    let ip = |text: &str| text.parse::<IpAddr>().unwrap();
    // (certificate, path, expected status, expected reason of a denial)
    let table = [
        (CertSpec::client().dns("api.example.com"), "/dns/", 200, ""),
        (CertSpec::client().dns("API.Example.COM"), "/dns/", 200, ""),
        (
            CertSpec::client().dns("web.example.com"),
            "/dns/",
            403,
            "not_in_allowlist",
        ),
        (
            CertSpec::client().dns("other.test").dns("api.example.com"),
            "/dns/",
            200,
            "",
        ),
        (
            CertSpec::client().dns("a.example.com"),
            "/dnswild/",
            200,
            "",
        ),
        (
            CertSpec::client().dns("a.b.example.com"),
            "/dnswild/",
            403,
            "not_in_allowlist",
        ),
        (
            CertSpec::client().dns("example.com"),
            "/dnswild/",
            403,
            "not_in_allowlist",
        ),
        (
            CertSpec::client().uri("spiffe://td/ns/prod/sa/web"),
            "/uri/",
            200,
            "",
        ),
        (
            CertSpec::client().uri("spiffe://td/ns/prod/sa/api"),
            "/uri/",
            403,
            "not_in_allowlist",
        ),
        (
            CertSpec::client().uri("spiffe://td/ns/prod/sa/api"),
            "/uriprefix/",
            200,
            "",
        ),
        (
            CertSpec::client().uri("spiffe://td/ns/dev/sa/api"),
            "/uriprefix/",
            403,
            "not_in_allowlist",
        ),
        (
            CertSpec::client().uri("spiffe://td/ns/dev/sa/web"),
            "/urisegment/",
            200,
            "",
        ),
        (
            CertSpec::client().uri("spiffe://td/ns/a/b/sa/web"),
            "/urisegment/",
            403,
            "not_in_allowlist",
        ),
        (
            CertSpec::client().uri("spiffe://partner.example/x"),
            "/trustdomain/",
            200,
            "",
        ),
        (
            CertSpec::client().uri("spiffe://partner.example.evil/x"),
            "/trustdomain/",
            403,
            "not_in_allowlist",
        ),
        (CertSpec::client().ip(ip("10.1.200.3")), "/ip/", 200, ""),
        (
            CertSpec::client().ip(ip("10.2.0.1")),
            "/ip/",
            403,
            "not_in_allowlist",
        ),
        (
            CertSpec::client().ip(ip("2001:db8:0:0::1")),
            "/ip/",
            200,
            "",
        ),
        (
            CertSpec::client().email("ops@EXAMPLE.com"),
            "/email/",
            200,
            "",
        ),
        (
            CertSpec::client().email("dev@example.com"),
            "/email/",
            403,
            "not_in_allowlist",
        ),
        (
            CertSpec::client()
                .cn("orders")
                .org("Shop")
                .ou("Team A")
                .country("US"),
            "/cn/",
            200,
            "",
        ),
        (
            CertSpec::client().cn("orders-canary"),
            "/cn/",
            403,
            "not_in_allowlist",
        ),
        (
            CertSpec::client().cn("pinned"),
            "/sha256/",
            403,
            "not_in_allowlist",
        ),
        (CertSpec::client(), "/dns/", 403, "not_in_allowlist"),
        (CertSpec::client().dns("anyone.test"), "/audit/", 200, ""),
        (
            CertSpec::client().dns("api.example.com"),
            "/elsewhere/",
            403,
            "no_route",
        ),
    ];
    let world = World::start(pki, policy).await;
    let mut failures = Vec::new();
    let mut allowed = 0;
    for (spec, path, status, reason) in &table {
        let cert = world.pki.client_cert(spec).unwrap();
        let outcome = world.decide(&cert, path).await;
        if outcome != (*status, reason.to_string()) {
            failures.push(format!(
                "{spec:?} on {path}: got {outcome:?}, want ({status}, {reason:?})"
            ));
        }
        allowed += usize::from(*status == 200);
    }
    let pinned = world.decide(&fingerprinted, "/sha256/").await;
    if pinned != (200, String::new()) {
        failures.push(format!("the pinned certificate got {pinned:?}"));
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert_eq!(world.app.requests_served(), allowed + 1);
}

#[tokio::test]
async fn a_wildcard_certificate_matches_only_its_own_pattern_unless_wildcard_certs_is_on() {
    for (wildcard_certs, expected_for_a_covered_name) in [(false, 403), (true, 200)] {
        let policy = json!({
            "routes": [
                route("same", json!([{"dns": "*.svc.local"}])),
                route("covered", json!([{"dns": "orders.svc.local"}])),
                route("deeper", json!([{"dns": "a.orders.svc.local"}])),
            ],
            "wildcard_certs": wildcard_certs,
            "deny_response": {"status": 403, "expose_reason": true},
        });
        let world = World::start(Pki::new().unwrap(), policy).await;
        let shared = world
            .pki
            .client_cert(&CertSpec::client().dns("*.svc.local"))
            .unwrap();
        let context = format!("wildcard_certs {wildcard_certs}");
        assert_eq!(world.decide(&shared, "/same/").await.0, 200, "{context}");
        assert_eq!(
            world.decide(&shared, "/covered/").await.0,
            expected_for_a_covered_name,
            "{context}"
        );
        assert_eq!(world.decide(&shared, "/deeper/").await.0, 403, "{context}");
    }
}

#[tokio::test]
async fn default_action_allow_admits_requests_no_route_matches() {
    let policy = json!({
        "routes": [route("admin", json!([{"dns": "ops.example.com"}]))],
        "default_action": "allow",
    });
    let world = World::start(Pki::new().unwrap(), policy).await;
    let anyone = world
        .pki
        .client_cert(&CertSpec::client().dns("anyone.test"))
        .unwrap();
    assert_eq!(world.decide(&anyone, "/elsewhere/").await.0, 200);
    assert_eq!(world.decide(&anyone, "/admin/").await.0, 403);
}
