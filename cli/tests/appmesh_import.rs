//! `certgate import appmesh` end to end: every fixture (App Mesh's own walkthrough shapes, one per
//! input form) imports, each policy passes `certgate check` through the real `certgate.wasm`, each
//! Envoy template renders and passes `envoy --mode validate`, and an imported mutual-TLS virtual
//! node in real Envoy admits and refuses the clients App Mesh did.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use testkit::{envoy, CertSpec, Client, ClientTls, EchoServer, Pki, Request, TestCa};

const FIXTURES: [&str; 5] = [
    "colorteller-white.json",
    "describe-virtual-node-spire.json",
    "ingress-gw.json",
    "cloudformation.yaml",
    "k8s.yaml",
];

/// The server name in the virtual node's certificate (its App Mesh DNS service discovery name).
const NODE_NAME: &str = "colorteller-white.color-mesh.local";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/appmesh")
        .join(name)
}

fn certgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_certgate"))
        .args(args)
        .output()
        .expect("the certgate binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The task's mounted volume: every `file` path the fixtures name, written under one root.
struct FilesRoot {
    dir: tempfile::TempDir,
    ca: TestCa,
}

impl FilesRoot {
    fn new() -> FilesRoot {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("App Mesh walkthrough CA").unwrap();
        let server = ca
            .issue(&CertSpec::server().dns(NODE_NAME).dns("shop.example.com"))
            .unwrap();
        for (path, contents) in [
            (
                "keys/colorteller_white_cert_chain.pem",
                server.cert_pem.as_str(),
            ),
            ("keys/colorteller_white_key.pem", server.key_pem.as_str()),
            ("keys/ca_1_cert.pem", ca.cert_pem()),
            ("certs/gateway.pem", server.cert_pem.as_str()),
            ("certs/gateway-key.pem", server.key_pem.as_str()),
            ("certs/ca.pem", ca.cert_pem()),
            ("certs/backend-ca.pem", ca.cert_pem()),
        ] {
            let file = dir.path().join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, contents).unwrap();
        }
        FilesRoot { dir, ca }
    }

    fn path(&self) -> String {
        self.dir.path().display().to_string()
    }
}

/// Imports `fixture` into a fresh directory; the report is stdout.
fn import(files: &FilesRoot, fixture_name: &str) -> (tempfile::TempDir, String) {
    let out = tempfile::tempdir().unwrap();
    let output = certgate(&[
        "import",
        "appmesh",
        "--out",
        &out.path().display().to_string(),
        "--files-root",
        &files.path(),
        &fixture(fixture_name).display().to_string(),
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{fixture_name}: {}",
        text(&output.stderr)
    );
    (out, text(&output.stdout))
}

fn outputs(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.display().to_string().ends_with(suffix))
        .collect();
    found.sort();
    found
}

#[test]
fn every_imported_policy_passes_certgate_check_and_every_config_passes_envoy_validate() {
    let files = FilesRoot::new();
    let pki = Pki::new().unwrap();
    let mut validated = Vec::new();
    for fixture_name in FIXTURES {
        let (out, report) = import(&files, fixture_name);
        let policies = outputs(out.path(), ".policy.json");
        assert!(!policies.is_empty(), "{fixture_name}: no output\n{report}");
        for policy in policies {
            let checked = certgate(&["check", &policy.display().to_string()]);
            assert_eq!(
                checked.status.code(),
                Some(0),
                "{}: {}{}",
                policy.display(),
                text(&checked.stdout),
                text(&checked.stderr)
            );
            let stem = policy
                .file_name()
                .unwrap()
                .to_string_lossy()
                .replace(".policy.json", "");
            let template = format!("{stem}.envoy.yaml");
            let value: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&policy).unwrap()).unwrap();
            envoy(&template)
                .template_dir(out.path())
                .cert_dir(&pki.dir)
                .upstream_port(8080)
                .var("EGRESS_PORT", 0)
                .plugin_config(&value)
                .validate()
                .unwrap_or_else(|e| panic!("{fixture_name}: {template}: {e:#}"));
            validated.push(template);
        }
    }
    assert_eq!(validated.len(), 7, "{validated:?}");
}

#[test]
fn the_report_names_every_setting_that_needs_the_operator() {
    let files = FilesRoot::new();
    let (_, report) = import(&files, "k8s.yaml");
    for expected in [
        "listener certificate from ACM arn:aws:acm:us-west-2:111122223333:certificate/aaaabbbb",
        "over unix:/run/spire/sockets/agent.sock",
        "apps/v1 Deployment front: not an App Mesh resource",
        "names no virtual gateway: attached to `ingress-gw`",
    ] {
        assert!(report.contains(expected), "{expected:?} not in\n{report}");
    }
    let (_, report) = import(&files, "describe-virtual-node-spire.json");
    assert!(
        report.contains("Cloud Map service `front` in namespace `am-demo.local`"),
        "{report}"
    );
    let (_, report) = import(&files, "cloudformation.yaml");
    assert!(
        report.contains(
            "CloudFormation intrinsic `!Sub catalog.${MeshName}.local` cannot be resolved"
        ),
        "{report}"
    );
}

#[test]
fn unreadable_input_exits_non_zero_naming_file_line_and_path_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad-node.json");
    std::fs::write(
        &bad,
        "{\n  \"virtualNodeName\": \"n\",\n  \"spec\": {\"listeners\": [{\"portMapping\": {\"port\": 70000}}]}\n}\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let output = certgate(&[
        "import",
        "appmesh",
        "--out",
        &out.display().to_string(),
        &fixture("colorteller-white.json").display().to_string(),
        &bad.display().to_string(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("bad-node.json:3: spec.listeners[0].portMapping.port: 70000 is not a port"),
        "{stderr}"
    );
    // The valid file before it was not written either.
    assert!(!out.exists(), "outputs written despite an unreadable input");
}

fn client_tls(files: &FilesRoot, cert: Option<&testkit::IssuedCert>) -> ClientTls {
    let builder = ClientTls::builder(files.ca.cert_pem()).sni(NODE_NAME);
    match cert {
        Some(cert) => builder.client_cert(cert),
        None => builder,
    }
    .build()
    .unwrap()
}

#[tokio::test]
async fn an_imported_mutual_tls_virtual_node_admits_and_refuses_whom_app_mesh_did() {
    let files = FilesRoot::new();
    let (out, _) = import(&files, "colorteller-white.json");
    let policy: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("colorteller-white.policy.json")).unwrap(),
    )
    .unwrap();
    let app = EchoServer::plain().unwrap();
    let envoy = envoy("colorteller-white.envoy.yaml")
        .template_dir(out.path())
        .upstream_port(app.port())
        .plugin_config(&policy)
        .start()
        .await
        .unwrap();
    let address = envoy.listener("ingress").unwrap();
    // (client certificate, status): App Mesh's exact list is colorgateway.mesh.local and
    // spiffe://color.mesh/gateway.
    let table = [
        (CertSpec::client().dns("colorgateway.mesh.local"), 200),
        (CertSpec::client().uri("spiffe://color.mesh/gateway"), 200),
        (CertSpec::client().dns("colorteller-black.mesh.local"), 403),
        (
            CertSpec::client().uri("spiffe://color.mesh/gateway/extra"),
            403,
        ),
        (CertSpec::client().cn("colorgateway.mesh.local"), 403),
    ];
    for (spec, expected) in table {
        let cert = files.ca.issue(&spec).unwrap();
        let response = Client::tls(address, client_tls(&files, Some(&cert)))
            .send(&Request::get("/color", NODE_NAME))
            .await
            .unwrap();
        assert_eq!(response.status, expected, "{spec:?}");
        if expected == 403 {
            assert_eq!(
                response.header("x-certgate-reason"),
                Some("not_in_allowlist")
            );
        }
    }
    assert_eq!(
        app.requests_served(),
        2,
        "a refused request reached the app"
    );
    // Like App Mesh, the handshake refuses a client without a certificate or from another CA.
    let no_cert = Client::tls(address, client_tls(&files, None))
        .send(&Request::get("/color", NODE_NAME))
        .await;
    assert!(
        no_cert.is_err(),
        "a client without a certificate got {no_cert:?}"
    );
    let stranger = TestCa::new("another CA")
        .unwrap()
        .issue(&CertSpec::client().dns("colorgateway.mesh.local"))
        .unwrap();
    let untrusted = Client::tls(address, client_tls(&files, Some(&stranger)))
        .send(&Request::get("/color", NODE_NAME))
        .await;
    assert!(
        untrusted.is_err(),
        "a certificate from another CA got {untrusted:?}"
    );
}
