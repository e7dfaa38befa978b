//! `envoy/sidecar.yaml` in real Envoy: an mTLS ingress where every peer must present a mesh
//! certificate, certgate deciding per route which identities may pass, the local app behind.

use serde_json::json;
use std::time::Duration;
use testkit::{envoy, CertSpec, Client, EchoServer, Envoy, IssuedCert, Pki, Request, Validity};

const OPS_ADMIN: &str = "spiffe://mesh.local/ns/ops/sa/admin";
const SHOP_ORDERS: &str = "spiffe://mesh.local/ns/shop/sa/orders";

/// The schema's example policy: `admin` for ops service accounts, `app` for the orders service and
/// the yelb services except the legacy one.
fn policy() -> serde_json::Value {
    json!({
        "mode": "enforce",
        "default_action": "deny",
        "routes": [
            {
                "name": "admin",
                "match": {"route_name": "admin"},
                "require_client_cert": true,
                "allow": [{"uri": "spiffe://mesh.local/ns/ops/sa/*"}],
            },
            {
                "name": "app",
                "match": {"route_name": "app"},
                "allow": [{"uri": SHOP_ORDERS}, {"dns": "*.yelb.svc.cluster.local"}],
                "deny": [{"dns": "legacy.yelb.svc.cluster.local"}],
            }
        ],
        "deny_response": {"status": 403},
    })
}

/// A sidecar world: certificates, the local app, Envoy.
struct Sidecar {
    pki: Pki,
    app: EchoServer,
    envoy: Envoy,
}

impl Sidecar {
    async fn start(policy: &serde_json::Value) -> Self {
        let pki = Pki::new().unwrap();
        let app = EchoServer::plain().unwrap();
        let envoy = envoy("sidecar.yaml")
            .cert_dir(&pki.dir)
            .upstream_port(app.port())
            .plugin_config(policy)
            .start()
            .await
            .unwrap();
        Sidecar { pki, app, envoy }
    }

    fn cert(&self, spec: CertSpec) -> IssuedCert {
        self.pki.client_cert(&spec).unwrap()
    }

    fn client(&self, cert: Option<&IssuedCert>) -> Client {
        Client::tls(
            self.envoy.listener("ingress").unwrap(),
            self.pki.client_tls(cert).unwrap(),
        )
    }
}

#[tokio::test]
async fn each_route_admits_exactly_its_allowlist() {
    let sidecar = Sidecar::start(&policy()).await;
    // (client certificate, path, expected status)
    let table = [
        (CertSpec::client().uri(OPS_ADMIN), "/admin/users", 200),
        (CertSpec::client().uri(SHOP_ORDERS), "/admin/users", 403),
        (CertSpec::client().uri(SHOP_ORDERS), "/orders/7", 200),
        (
            CertSpec::client().dns("web.yelb.svc.cluster.local"),
            "/",
            200,
        ),
        (
            CertSpec::client()
                .dns("legacy.yelb.svc.cluster.local")
                .uri(SHOP_ORDERS),
            "/orders/7",
            403,
        ),
        (
            CertSpec::client().dns("a.b.yelb.svc.cluster.local"),
            "/",
            403,
        ),
        (CertSpec::client().cn("orders"), "/", 403),
        (
            CertSpec::client().uri("spiffe://mesh.local/ns/ops/sa/admin/extra"),
            "/admin",
            200,
        ),
    ];
    let mut allowed = 0;
    for (spec, path, expected) in table {
        let cert = sidecar.cert(spec.clone());
        let response = sidecar
            .client(Some(&cert))
            .send(&Request::get(path, "app.mesh.local"))
            .await
            .unwrap();
        assert_eq!(response.status, expected, "{spec:?} on {path}");
        if expected == 200 {
            allowed += 1;
            assert_eq!(response.echoed().unwrap().path, path);
        }
    }
    assert_eq!(
        sidecar.app.requests_served(),
        allowed,
        "a denied request reached the app"
    );
}

#[tokio::test]
async fn the_app_receives_the_request_headers_envoy_forwards() {
    let sidecar = Sidecar::start(&policy()).await;
    let cert = sidecar.cert(CertSpec::client().uri(SHOP_ORDERS));
    let response = sidecar
        .client(Some(&cert))
        .send(
            &Request::get("/orders?page=2", "app.mesh.local")
                .header("x-trace", "one")
                .header("x-trace", "two"),
        )
        .await
        .unwrap();
    let echoed = response.echoed().unwrap();
    assert_eq!(echoed.method, "GET");
    assert_eq!(echoed.path, "/orders?page=2");
    assert_eq!(echoed.header("host"), Some("app.mesh.local"));
    assert_eq!(echoed.header_values("x-trace"), ["one", "two"]);
    // `use_remote_address: true`: Envoy states the scheme it saw and the peer's address itself.
    assert_eq!(echoed.header("x-forwarded-proto"), Some("https"));
    assert_eq!(echoed.header("x-envoy-external-address"), Some("127.0.0.1"));
}

#[tokio::test]
async fn a_denied_request_gets_certgates_json_403_and_never_reaches_the_app() {
    let sidecar = Sidecar::start(&policy()).await;
    let cert = sidecar.cert(CertSpec::client().uri("spiffe://mesh.local/ns/shop/sa/cart"));
    let response = sidecar
        .client(Some(&cert))
        .send(&Request::get("/admin", "app.mesh.local"))
        .await
        .unwrap();
    assert_eq!(response.status, 403);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body = response.json().unwrap();
    assert_eq!(body["error"], "forbidden");
    assert!(body["request_id"].is_string(), "{body}");
    assert!(
        body.get("reason").is_none(),
        "the reason is exposed by default: {body}"
    );
    assert_eq!(sidecar.app.requests_served(), 0);
}

#[tokio::test]
async fn one_keep_alive_connection_carries_allowed_and_denied_requests() {
    let sidecar = Sidecar::start(&policy()).await;
    let cert = sidecar.cert(CertSpec::client().uri(SHOP_ORDERS));
    let mut connection = sidecar.client(Some(&cert)).connect().await.unwrap();
    let mut statuses = Vec::new();
    for round in 0..10 {
        let path = if round % 2 == 0 { "/orders" } else { "/admin" };
        let response = connection
            .send(&Request::get(path, "app.mesh.local"))
            .await
            .unwrap();
        statuses.push(response.status);
    }
    assert_eq!(statuses, [200, 403].repeat(5));
    assert_eq!(sidecar.app.requests_served(), 5);
}

#[tokio::test]
async fn a_peer_reconnecting_with_the_same_tls_settings_stays_admitted() {
    let sidecar = Sidecar::start(&policy()).await;
    let cert = sidecar.cert(CertSpec::client().uri(SHOP_ORDERS));
    // One client configuration: rustls offers to resume the first session on later connections,
    // which the shipped configs refuse so that Envoy validates the chain every time.
    let client = sidecar.client(Some(&cert));
    for connection in 0..3 {
        let response = client
            .send(&Request::get("/orders", "app.mesh.local"))
            .await
            .unwrap();
        assert_eq!(
            response.status,
            200,
            "connection {connection}: {}",
            response.body_text()
        );
    }
}

#[tokio::test]
async fn the_handshake_refuses_peers_without_a_mesh_certificate() {
    let sidecar = Sidecar::start(&policy()).await;
    let untrusted = sidecar
        .pki
        .untrusted_ca
        .issue(&CertSpec::client().uri(SHOP_ORDERS))
        .unwrap();
    let expired = sidecar.cert(
        CertSpec::client()
            .uri(SHOP_ORDERS)
            .validity(Validity::Expired),
    );
    for (what, cert) in [
        ("no certificate", None),
        ("an untrusted certificate", Some(&untrusted)),
        ("an expired certificate", Some(&expired)),
    ] {
        // With TLS 1.3 the client learns of the refusal on its first read, not in the handshake.
        let outcome = sidecar
            .client(cert)
            .send(&Request::get("/orders", "app.mesh.local"))
            .await;
        assert!(outcome.is_err(), "a peer with {what} got {outcome:?}");
    }
    assert_eq!(sidecar.app.requests_served(), 0);
}

#[tokio::test]
async fn prometheus_scrape_shows_envoy_and_certgate_vm_series() {
    let sidecar = Sidecar::start(&policy()).await;
    let cert = sidecar.cert(CertSpec::client().uri(SHOP_ORDERS));
    let client = sidecar.client(Some(&cert));
    for path in ["/orders", "/orders", "/admin"] {
        client
            .send(&Request::get(path, "app.mesh.local"))
            .await
            .unwrap();
    }
    let scrape = sidecar.envoy.prometheus().await.unwrap();
    let ingress = [("envoy_http_conn_manager_prefix", "ingress")];
    let class = |c| {
        scrape.value(
            "envoy_http_downstream_rq_xx",
            &[ingress[0], ("envoy_response_code_class", c)],
        )
    };
    assert_eq!(class("2"), Some(2.0));
    assert_eq!(class("4"), Some(1.0));
    // The VM series `deploy/prometheus/certgate.rules.yaml` alerts on exist under these names.
    for series in [
        "envoy_wasm_certgate_vm_reload_failure",
        "envoy_wasm_certgate_vm_reload_success",
    ] {
        assert_eq!(scrape.value(series, &[]), Some(0.0), "{series}");
    }
}

#[tokio::test]
async fn certgate_metrics_carry_route_decision_and_reason_labels() {
    let sidecar = Sidecar::start(&policy()).await;
    let orders = sidecar.cert(
        CertSpec::client()
            .uri(SHOP_ORDERS)
            .validity(Validity::ExpiresInDays(5)),
    );
    let client = sidecar.client(Some(&orders));
    for path in ["/orders", "/orders", "/admin"] {
        client
            .send(&Request::get(path, "app.mesh.local"))
            .await
            .unwrap();
    }
    sidecar
        .envoy
        .wait_for_prometheus(Duration::from_secs(5), |scrape| {
            // The expiry histogram (after Envoy's stats flush) and the requests (after certgate's
            // tick; the denied one is the last request sent).
            scrape
                .value("certgate_peer_cert_days_to_expiry_count", &[])
                .is_some_and(|count| count >= 1.0)
                && scrape
                    .value(
                        "certgate_requests_total",
                        &[
                            ("route", "admin"),
                            ("decision", "deny"),
                            ("reason", "not_in_allowlist"),
                        ],
                    )
                    .is_some()
        })
        .await
        .unwrap();
    // A scrape after the one that saw the tick's last series: none of it is gathered mid-tick.
    let scrape = sidecar.envoy.prometheus().await.unwrap();
    let requests = |labels: &[(&str, &str)]| scrape.value("certgate_requests_total", labels);
    assert_eq!(
        requests(&[
            ("route", "app"),
            ("decision", "allow"),
            ("reason", "allowlist_match")
        ]),
        Some(2.0)
    );
    assert_eq!(
        requests(&[
            ("route", "admin"),
            ("decision", "deny"),
            ("reason", "not_in_allowlist")
        ]),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("certgate_tls_version_total", &[("version", "TLSv1.3")]),
        Some(3.0)
    );
    assert_eq!(
        scrape.value(
            "certgate_identity_source_total",
            &[("source", "connection")]
        ),
        Some(3.0)
    );
    assert!(
        scrape
            .value("certgate_cert_expiring_total", &[("route", "app")])
            .is_some_and(|count| count >= 1.0),
        "no expiry warning for a certificate with 5 days left"
    );
    assert_eq!(
        scrape.value("certgate_peer_cert_days_to_expiry_bucket", &[("le", "7")]),
        Some(1.0),
        "one certificate, observed once however many requests it made"
    );
}

#[tokio::test]
async fn the_access_log_prints_certgates_decision_fields() {
    let sidecar = Sidecar::start(&policy()).await;
    let orders = sidecar.cert(CertSpec::client().uri(SHOP_ORDERS));
    let client = sidecar.client(Some(&orders));
    for path in ["/orders", "/admin"] {
        client
            .send(&Request::get(path, "app.mesh.local"))
            .await
            .unwrap();
    }
    let entries = sidecar
        .envoy
        .access_log_entries(2, Duration::from_secs(5))
        .await
        .unwrap();
    let by_route = |route: &str| {
        entries
            .iter()
            .find(|e| e["certgate_route"] == route)
            .unwrap_or_else(|| panic!("no access-log line for route {route}: {entries:?}"))
    };
    let allowed = by_route("app");
    assert_eq!(allowed["status"], 200);
    assert_eq!(allowed["certgate_decision"], "allow");
    assert_eq!(allowed["certgate_reason"], "allowlist_match");
    assert_eq!(allowed["certgate_identity"], SHOP_ORDERS);
    assert_eq!(allowed["certgate_identity_source"], "connection");
    assert_eq!(allowed["certgate_tls_version"], "TLSv1.3");
    assert_eq!(allowed["certgate_sni"], testkit::pki::ENVOY_SERVER_NAME);
    assert!(allowed["certgate_days_to_expiry"].is_string(), "{allowed}");
    let denied = by_route("admin");
    assert_eq!(denied["status"], 403);
    assert_eq!(denied["certgate_decision"], "deny");
    assert_eq!(denied["certgate_reason"], "not_in_allowlist");
}

/// The record is one filter-state object: besides its fields one by one (`%CEL(...)%`, as the
/// shipped configs print them), Envoy's access log can print all of it as JSON with `:TYPED`.
#[tokio::test]
async fn the_access_log_prints_the_whole_record_as_one_json_object() {
    let pki = Pki::new().unwrap();
    let app = EchoServer::plain().unwrap();
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("envoy/sidecar.yaml"),
    )
    .unwrap();
    let last_field =
        "certgate_days_to_expiry: \"%CEL(filter_state['wasm.certgate'].days_to_expiry)%\"";
    let indent = " ".repeat(18);
    let typed = shipped.replacen(
        last_field,
        &format!("{last_field}\n{indent}certgate: \"%FILTER_STATE(wasm.certgate:TYPED)%\""),
        1,
    );
    assert_ne!(
        typed, shipped,
        "the shipped access log prints days_to_expiry"
    );
    std::fs::write(pki.dir.path().join("sidecar-typed.yaml"), typed).unwrap();
    let envoy = envoy("sidecar-typed.yaml")
        .template_dir(pki.dir.path())
        .cert_dir(&pki.dir)
        .upstream_port(app.port())
        .plugin_config(&policy())
        .start()
        .await
        .unwrap();
    let orders = pki
        .client_cert(&CertSpec::client().uri(SHOP_ORDERS).dns("orders.shop.svc"))
        .unwrap();
    let client = Client::tls(
        envoy.listener("ingress").unwrap(),
        pki.client_tls(Some(&orders)).unwrap(),
    );
    let response = client
        .send(&Request::get("/orders", "app.mesh.local"))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    let entries = envoy
        .access_log_entries(1, Duration::from_secs(5))
        .await
        .unwrap();
    let entry = &entries[0];
    let record = &entry["certgate"];
    assert_eq!(
        record["@type"], "type.googleapis.com/google.protobuf.Struct",
        "{entry}"
    );
    let record = &record["value"];
    assert_eq!(record["decision"], "allow", "{entry}");
    assert_eq!(record["reason"], "allowlist_match");
    assert_eq!(record["route"], "app");
    assert_eq!(record["identity"], SHOP_ORDERS);
    assert_eq!(record["san_count"], 2, "numbers stay numbers: {record}");
    assert!(record["days_to_expiry"].is_number(), "{record}");
    assert_eq!(record["request_id"], entry["request_id"]);
    assert_eq!(
        entry["certgate_decision"], "allow",
        "the fields one by one, as before"
    );
}

#[tokio::test]
async fn the_deny_response_is_the_configured_status_body_and_content_type() {
    let mut custom = policy();
    custom["deny_response"] = json!({
        "status": 401,
        "body": "<p>not for you</p>",
        "content_type": "text/html",
    });
    let sidecar = Sidecar::start(&custom).await;
    let cert = sidecar.cert(CertSpec::client().uri(SHOP_ORDERS));
    let response = sidecar
        .client(Some(&cert))
        .send(&Request::get("/admin", "app.mesh.local"))
        .await
        .unwrap();
    assert_eq!(response.status, 401);
    assert_eq!(response.header("content-type"), Some("text/html"));
    assert_eq!(response.body_text(), "<p>not for you</p>");
    assert_eq!(sidecar.app.requests_served(), 0);
}

#[tokio::test]
async fn audit_mode_lets_every_request_through_and_records_what_it_would_have_denied() {
    let mut audit = policy();
    audit["mode"] = json!("audit");
    let sidecar = Sidecar::start(&audit).await;
    let cert = sidecar.cert(CertSpec::client().uri(SHOP_ORDERS));
    let client = sidecar.client(Some(&cert));
    for path in ["/orders", "/admin"] {
        let response = client
            .send(&Request::get(path, "app.mesh.local"))
            .await
            .unwrap();
        assert_eq!(response.status, 200, "{path}");
    }
    assert_eq!(sidecar.app.requests_served(), 2);
    // certgate hands its counts to Envoy on its tick (one second by default).
    let counted = |scrape: &testkit::Prometheus| {
        scrape.value(
            "certgate_requests_total",
            &[
                ("route", "admin"),
                ("decision", "audit_deny"),
                ("reason", "not_in_allowlist"),
            ],
        ) == Some(1.0)
    };
    sidecar
        .envoy
        .wait_for_prometheus(Duration::from_secs(5), counted)
        .await
        .unwrap();
}
