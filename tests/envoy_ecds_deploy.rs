//! The shipped ECDS deployment (`deploy/ecds/`): the sidecar with certgate's filter delivered by
//! extension config discovery from a file. Its two files are the shipped `envoy/sidecar.yaml` split
//! as the suite's own ECDS support splits it (so every setting the sidecar suites prove holds here
//! too), and in real Envoy the listener runs as shipped, certgate decides (allowed and denied), and a
//! new policy swapped in through the file takes effect on a connection that stays open, with no
//! listener drained; a policy certgate refuses is rejected and the old one keeps serving.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use testkit::ecds::{self, ConfigUpdates, Swap};
use testkit::{certgate_wasm, CertSpec, Client, EchoServer, Pki, Request};

const SHOP_ORDERS: &str = "spiffe://mesh.local/ns/shop/sa/orders";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/ecds")
}

fn sidecar_policy() -> Value {
    testkit::envoy::shipped_policy("sidecar-policy.json").unwrap()
}

/// The shipped sidecar policy with `/admin` opened to the orders service too.
fn admin_opened_to_orders() -> Value {
    let mut policy = sidecar_policy();
    policy["routes"][0]["allow"]
        .as_array_mut()
        .unwrap()
        .push(json!({"uri": SHOP_ORDERS}));
    policy
}

/// `text` without comment and blank lines: what Envoy reads of it.
fn configuration_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// `deploy/ecds/certgate-filter.yaml` rendered.
fn shipped_filter(version: u64, wasm: &Path, policy: &Value) -> String {
    let vars = BTreeMap::from([
        ("FILTER_VERSION".to_owned(), version.to_string()),
        ("CERTGATE_WASM".to_owned(), wasm.display().to_string()),
        ("PLUGIN_CONFIG".to_owned(), policy.to_string()),
    ]);
    testkit::template::render(&read(&deploy_dir().join("certgate-filter.yaml")), &vars)
        .expect("deploy/ecds/certgate-filter.yaml renders")
}

#[test]
fn the_shipped_files_are_the_shipped_sidecar_with_certgate_served_by_ecds() {
    let wasm = certgate_wasm().unwrap();
    let (_, filter) = ecds::certgate_from_file("sidecar.yaml", &wasm, &sidecar_policy()).unwrap();
    let generated_listener = read(&filter.path().with_file_name("sidecar.yaml"));
    let shipped_listener = read(&deploy_dir().join("sidecar.yaml"));
    assert_eq!(
        configuration_lines(&shipped_listener),
        configuration_lines(&generated_listener),
        "deploy/ecds/sidecar.yaml differs from envoy/sidecar.yaml with certgate moved to ECDS"
    );
    assert_eq!(
        configuration_lines(&shipped_filter(filter.version(), &wasm, &sidecar_policy())),
        configuration_lines(&read(filter.path())),
        "deploy/ecds/certgate-filter.yaml differs from certgate's filter of envoy/sidecar.yaml"
    );
}

#[tokio::test]
async fn the_shipped_ecds_sidecar_decides_and_swaps_policies_without_a_drain() {
    let wasm = certgate_wasm().unwrap();
    let pki = Pki::new().unwrap();
    let app = EchoServer::plain().unwrap();
    // The filter file, written and swapped the way the shipped one is (rename over it).
    let (_, mut filter) =
        ecds::certgate_from_file("sidecar.yaml", &wasm, &sidecar_policy()).unwrap();
    let envoy = testkit::envoy("sidecar.yaml")
        .template_dir(&deploy_dir())
        .var("CERTGATE_FILTER_CONFIG", filter.path().display())
        .cert_dir(&pki.dir)
        .upstream_port(app.port())
        .start()
        .await
        .unwrap();
    let orders = pki
        .client_cert(&CertSpec::client().uri(SHOP_ORDERS))
        .unwrap();
    let client = Client::tls(
        envoy.listener("ingress").unwrap(),
        pki.client_tls(Some(&orders)).unwrap(),
    );
    let mut connection = client.connect().await.unwrap();
    let app_request = Request::get("/orders/7", "app.mesh.local");
    let admin_request = Request::get("/admin/users", "app.mesh.local");

    let allowed = connection.send(&app_request).await.unwrap();
    assert_eq!(allowed.status, 200, "{}", allowed.body_text());
    let denied = connection.send(&admin_request).await.unwrap();
    assert_eq!(denied.status, 403, "{}", denied.body_text());
    assert!(
        denied.body_text().contains("not_in_allowlist"),
        "{}",
        denied.body_text()
    );

    let swapped = filter
        .swap(&envoy, &admin_opened_to_orders())
        .await
        .unwrap();
    assert_eq!(swapped, Swap::Accepted, "{}", envoy.log_tail(20));
    // The same connection: the listener kept it, and the new policy decides its next request.
    let now_allowed = connection.send(&admin_request).await.unwrap();
    assert_eq!(now_allowed.status, 200, "{}", now_allowed.body_text());

    // A policy certgate refuses is rejected by Envoy, and the one before keeps deciding.
    let refused = filter
        .swap(
            &envoy,
            &json!({"routes": [{"name": "admin", "allow": [{"dns": ""}]}]}),
        )
        .await
        .unwrap();
    assert_eq!(refused, Swap::Rejected, "{}", envoy.log_tail(20));
    let still_allowed = connection.send(&admin_request).await.unwrap();
    assert_eq!(still_allowed.status, 200, "{}", still_allowed.body_text());
    assert!(
        envoy.log().contains("routes[0].allow[0].dns"),
        "certgate names the refused field: {}",
        envoy.log_tail(20)
    );

    let updates = ConfigUpdates::of(&envoy).await.unwrap();
    assert_eq!((updates.accepted, updates.rejected), (2, 1), "{updates:?}");
    let stats = envoy.stats().await.unwrap();
    for (name, expected) in [
        ("listener_manager.listener_modified", 0),
        ("listener_manager.listener_removed", 0),
        ("listener_manager.total_listeners_draining", 0),
        ("listener_manager.total_filter_chains_draining", 0),
    ] {
        assert_eq!(stats.counter(name), Some(expected), "{name}");
    }
    assert_eq!(app.requests_served(), 3);
}
