//! The shipped `envoy/sidecar.yaml` in real Envoy, its `${CERT_DIR}` a Secret volume renewed the
//! way cert-manager and the kubelet do it (`..data` symlink flip) while requests run: Envoy reads
//! its certificate and trust bundle through the shipped SDS files, so the renewed server
//! certificate, an added CA and a removed CA all take effect without a restart or a failed request.

use testkit::certs::{CA_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE, UPSTREAM_CA_FILE};
use testkit::envoy::shipped_policy;
use testkit::pki::ENVOY_SERVER_NAME;
use testkit::rotation::{rotate_under_load, Rotation, SecretMount, Target};
use testkit::{envoy, CertSpec, EchoServer, IssuedCert, TestCa};

/// A client the shipped sidecar policy admits on its `app` route.
const SHOP_ORDERS: &str = "spiffe://mesh.local/ns/shop/sa/orders";

/// The mounted Secret's files: Envoy's certificate and key, and the bundles.
fn secret_files<'a>(server: &'a IssuedCert, bundle: &'a str) -> [(&'static str, &'a str); 4] {
    [
        (SERVER_CERT_FILE, &server.cert_pem),
        (SERVER_KEY_FILE, &server.key_pem),
        (CA_FILE, bundle),
        (UPSTREAM_CA_FILE, bundle),
    ]
}

#[tokio::test]
async fn the_shipped_sidecar_rotates_its_certificate_and_trust_bundle_under_load_without_a_failed_request(
) {
    let root = tempfile::tempdir().unwrap();
    let mut mount = SecretMount::new(&root.path().join("tls")).unwrap();
    let mesh_ca = TestCa::new("certgate mesh CA").unwrap();
    let server_spec = CertSpec::server().dns(ENVOY_SERVER_NAME);
    let server = mesh_ca.issue(&server_spec).unwrap();
    mount
        .publish(&secret_files(&server, mesh_ca.cert_pem()))
        .unwrap();
    let app = EchoServer::plain().unwrap();
    let envoy = envoy("sidecar.yaml")
        .var("CERT_DIR", mount.path().display())
        .upstream_port(app.port())
        .plugin_config(&shipped_policy("sidecar-policy.json").unwrap())
        .start()
        .await
        .unwrap();
    let target = Target {
        address: envoy.listener("ingress").unwrap(),
        server_ca: mesh_ca.cert_pem().to_string(),
        sni: ENVOY_SERVER_NAME.to_owned(),
        path_prefix: "/orders".to_owned(),
    };
    let rotation = Rotation {
        first_ca: &mesh_ca,
        original_server: &server.der,
        server: server_spec,
        client: CertSpec::client().uri(SHOP_ORDERS),
        newcomer: CertSpec::client().dns("web.yelb.svc.cluster.local"),
    };
    let sent = rotate_under_load(&target, rotation, |server, bundle| {
        mount.publish(&secret_files(server, bundle))
    })
    .await
    .unwrap();
    // Every request of the load, the probes aside, reached the app.
    assert!(app.requests_served() >= sent.len());
    // One Envoy all along, its SDS files read once each: every renewal reached the listener by
    // the watched directory, a TLS context update per secret at start and one per renewal that
    // changed a secret (the server certificate, then the bundle twice).
    let stats = envoy.stats().await.unwrap();
    for secret in ["server-cert", "ca-trust"] {
        assert_eq!(
            stats.counter(&format!("sds.{secret}.update_success")),
            Some(1)
        );
        assert_eq!(
            stats.counter(&format!("sds.{secret}.update_rejected")),
            Some(0)
        );
    }
    assert_eq!(
        stats.counter("listener.127.0.0.1_0.server_ssl_socket_factory.ssl_context_update_by_sds"),
        Some(2 + 3)
    );
}
