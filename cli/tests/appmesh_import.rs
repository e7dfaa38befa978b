//! `certgate import appmesh` end to end: every fixture (App Mesh's own walkthrough shapes, one per
//! input form) imports, each policy passes `certgate check` through the real `certgate.wasm`, each
//! Envoy template renders and passes `envoy --mode validate`, and an imported mutual-TLS virtual
//! node in real Envoy admits and refuses the clients App Mesh did.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use testkit::template;
use testkit::{
    envoy, CertSpec, Client, ClientTls, EchoServer, EnvoyBuilder, IssuedCert, Pki, Request, TestCa,
};

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

/// The task's or pod's mounted volume: every `file` path the fixtures name, under one root, each
/// directory laid out as Kubernetes mounts a Secret (and cert-manager renews it): the files are
/// symlinks into `..data`, itself a symlink to the current generation's directory, and a renewal
/// writes a new generation and moves a new `..data` over the old one in one rename.
struct FilesRoot {
    dir: tempfile::TempDir,
    ca: TestCa,
    server: IssuedCert,
    generation: usize,
}

impl FilesRoot {
    fn new() -> FilesRoot {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("App Mesh walkthrough CA").unwrap();
        let server = server_cert(&ca);
        let mut root = FilesRoot {
            dir,
            ca,
            server,
            generation: 0,
        };
        let (server, bundle) = (root.server.clone(), root.ca.cert_pem().to_string());
        root.publish_keys(&server, &bundle);
        root.publish(
            "certs",
            &[
                ("gateway.pem", &server.cert_pem),
                ("gateway-key.pem", &server.key_pem),
                ("ca.pem", &bundle),
                ("backend-ca.pem", &bundle),
            ],
        );
        root
    }

    fn path(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// The walkthrough node's `/keys`: its certificate and key, and the bundle its clients must
    /// chain to.
    fn publish_keys(&mut self, server: &IssuedCert, client_bundle: &str) {
        self.publish(
            "keys",
            &[
                ("colorteller_white_cert_chain.pem", &server.cert_pem),
                ("colorteller_white_key.pem", &server.key_pem),
                ("ca_1_cert.pem", client_bundle),
            ],
        );
    }

    /// Writes `files` as the next generation of the mounted directory `name`, the way the kubelet
    /// updates a Secret volume: a new `..<generation>` directory, a `..data_tmp` symlink to it
    /// renamed over `..data`, then the old generation removed.
    fn publish(&mut self, name: &str, files: &[(&str, &str)]) {
        self.generation += 1;
        let mount = self.dir.path().join(name);
        let generation = format!("..{}", self.generation);
        std::fs::create_dir_all(mount.join(&generation)).unwrap();
        for (file, contents) in files {
            std::fs::write(mount.join(&generation).join(file), contents).unwrap();
        }
        let previous = std::fs::read_link(mount.join("..data")).ok();
        std::os::unix::fs::symlink(&generation, mount.join("..data_tmp")).unwrap();
        std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
        for (file, _) in files {
            let link = mount.join(file);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(file), link).unwrap();
            }
        }
        if let Some(previous) = previous {
            std::fs::remove_dir_all(mount.join(previous)).unwrap();
        }
    }
}

/// A server certificate for the walkthrough node and the gateways.
fn server_cert(ca: &TestCa) -> IssuedCert {
    ca.issue(&CertSpec::server().dns(NODE_NAME).dns("shop.example.com"))
        .unwrap()
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

/// The Envoy of the import in `out` named `stem`: its template and policy, `${SDS_DIR}` at `out`,
/// whose SDS files are rendered in place with `vars` as an operator's `envsubst` would.
fn imported_envoy(out: &Path, stem: &str, vars: &[(&str, &str)]) -> EnvoyBuilder {
    let values: BTreeMap<String, String> = vars
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    for file in outputs(out, ".sds.yaml") {
        let rendered = template::render(&std::fs::read_to_string(&file).unwrap(), &values)
            .unwrap_or_else(|e| panic!("{}: {e:#}", file.display()));
        std::fs::write(&file, rendered).unwrap();
    }
    let policy: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join(format!("{stem}.policy.json"))).unwrap(),
    )
    .unwrap();
    vars.iter().fold(
        envoy(&format!("{stem}.envoy.yaml"))
            .template_dir(out)
            .var("SDS_DIR", out.display())
            .plugin_config(&policy),
        |builder, (name, value)| builder.var(name, value),
    )
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
            let cert_dir = pki.dir.path().display().to_string();
            imported_envoy(out.path(), &stem, &[("CERT_DIR", &cert_dir)])
                .upstream_port(8080)
                .var("EGRESS_PORT", 0)
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
    let app = EchoServer::plain().unwrap();
    let envoy = imported_envoy(out.path(), "colorteller-white", &[])
        .upstream_port(app.port())
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
