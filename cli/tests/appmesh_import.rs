//! `certgate import appmesh` end to end: every fixture (App Mesh's own walkthrough shapes, one per
//! input form) imports, each policy passes `certgate check` through the real `certgate.wasm`, each
//! Envoy template renders and passes `envoy --mode validate`, an imported mutual-TLS virtual node in
//! real Envoy admits and refuses the clients App Mesh did, and its certificate and trust bundle
//! rotate under load the way cert-manager renews a Kubernetes Secret, without a failed request.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use testkit::rotation::{rotate_under_load, Rotation, SecretMount, Target};
use testkit::template;
use testkit::{
    envoy, CertSpec, Client, ClientTls, EchoServer, EnvoyBuilder, IssuedCert, Pki, Request,
    SdsSecret, SdsServer, TestCa,
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
/// directory laid out as Kubernetes mounts a Secret (and cert-manager renews it).
struct FilesRoot {
    dir: tempfile::TempDir,
    ca: TestCa,
    server: IssuedCert,
    mounts: BTreeMap<String, SecretMount>,
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
            mounts: BTreeMap::new(),
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

    /// The walkthrough node's `/keys` (see [`key_files`]).
    fn publish_keys(&mut self, server: &IssuedCert, client_bundle: &str) {
        self.publish("keys", &key_files(server, client_bundle));
    }

    /// Writes `files` as the next generation of the mounted directory `name`.
    fn publish(&mut self, name: &str, files: &[(&str, &str)]) {
        let root = self.dir.path().join(name);
        self.mounts
            .entry(name.to_owned())
            .or_insert_with(|| SecretMount::new(&root).unwrap())
            .publish(files)
            .unwrap();
    }
}

/// The walkthrough node's `/keys`: its certificate and key, and the bundle its clients must
/// chain to.
fn key_files<'a>(server: &'a IssuedCert, client_bundle: &'a str) -> [(&'static str, &'a str); 3] {
    [
        ("colorteller_white_cert_chain.pem", &server.cert_pem),
        ("colorteller_white_key.pem", &server.key_pem),
        ("ca_1_cert.pem", client_bundle),
    ]
}

/// The certificate of the walkthrough node and the gateways.
fn server_spec() -> CertSpec {
    CertSpec::server().dns(NODE_NAME).dns("shop.example.com")
}

/// A server certificate for the walkthrough node and the gateways.
fn server_cert(ca: &TestCa) -> IssuedCert {
    ca.issue(&server_spec()).unwrap()
}

/// Imports `fixture` into a fresh directory; the report is stdout.
fn import(files: &FilesRoot, fixture_name: &str) -> (tempfile::TempDir, String) {
    import_paths(files, &[fixture(fixture_name)])
}

/// Imports App Mesh resources written by the test, `(file name, contents)` each, with the
/// fixtures beside them.
fn import_texts(
    files: &FilesRoot,
    texts: &[(&str, &str)],
    fixtures: &[&str],
) -> (tempfile::TempDir, String) {
    let input = tempfile::tempdir().unwrap();
    let mut paths: Vec<PathBuf> = fixtures.iter().map(|name| fixture(name)).collect();
    for (name, contents) in texts {
        let path = input.path().join(name);
        std::fs::write(&path, contents).unwrap();
        paths.push(path);
    }
    import_paths(files, &paths)
}

fn import_paths(files: &FilesRoot, paths: &[PathBuf]) -> (tempfile::TempDir, String) {
    let out = tempfile::tempdir().unwrap();
    let mut args = vec![
        "import".to_string(),
        "appmesh".into(),
        "--out".into(),
        out.path().display().to_string(),
        "--files-root".into(),
        files.path(),
    ];
    args.extend(paths.iter().map(|path| path.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = certgate(&args);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{paths:?}: {}",
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
                .var("SPIRE_AGENT_SOCKET", "/run/spire/sockets/agent.sock")
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
        "over the unix socket ${SPIRE_AGENT_SOCKET} (cluster sds-grpc): mount the agent's socket and set it (/run/spire/sockets/agent.sock under App Mesh)",
        "apps/v1 Deployment front: not an App Mesh resource",
        "names no virtual gateway: attached to `ingress-gw`",
        // The front node's backend, followed through its virtual service and router.
        "backend `color` -> cluster `backend-color`: virtual service `color` -> virtual router `color-router` -> `red` (weight 1) at red.howto-k8s-mtls-sds.svc.cluster.local:8080",
        "VirtualRouter `color-router` (Kubernetes",
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

#[tokio::test]
async fn certificates_and_trust_bundles_rotate_under_load_without_a_restart_or_a_failed_request() {
    let mut files = FilesRoot::new();
    let (out, _) = import(&files, "colorteller-white.json");
    let app = EchoServer::plain().unwrap();
    let envoy = imported_envoy(out.path(), "colorteller-white", &[])
        .upstream_port(app.port())
        .start()
        .await
        .unwrap();
    let address = envoy.listener("ingress").unwrap();
    let target = Target {
        address,
        server_ca: files.ca.cert_pem().to_string(),
        sni: NODE_NAME.to_owned(),
        path_prefix: "/color".to_owned(),
    };
    let mut keys = files.mounts.remove("keys").unwrap();
    let rotation = Rotation {
        first_ca: &files.ca,
        original_server: &files.server.der,
        server: server_spec(),
        client: CertSpec::client().dns("colorgateway.mesh.local"),
        newcomer: CertSpec::client().uri("spiffe://color.mesh/gateway"),
    };
    let sent = rotate_under_load(&target, rotation, |server, bundle| {
        keys.publish(&key_files(server, bundle))
    })
    .await
    .unwrap();
    // certgate saw the renewed client certificate from its first connection on: its identity is the
    // same, its expiry (in certgate's record of each request) is the new one.
    let load_paths = sent.len();
    let entries = envoy
        .access_log_entries(load_paths, Duration::from_secs(10))
        .await
        .unwrap();
    let days = |label: &str| -> BTreeSet<String> {
        entries
            .iter()
            .filter(|entry| {
                entry["path"]
                    .as_str()
                    .is_some_and(|path| path.starts_with(&format!("/color/{label}/")))
            })
            .map(|entry| {
                entry["certgate_days_to_expiry"]
                    .to_string()
                    .replace('"', "")
            })
            .collect()
    };
    assert_eq!(days("first"), BTreeSet::from(["10".to_string()]));
    assert_eq!(days("renewed"), BTreeSet::from(["90".to_string()]));
}

/// A CloudFormation virtual gateway with hostname, method, header and query routes in priority
/// order, its backends (`localhost` on the ports given) behind App Mesh's client policy: TLS on the
/// listed ports only, the backend's certificate checked against the bundle and an exact SAN.
fn shop_gateway_template(orders: u16, impostor: u16, catalog: u16) -> String {
    format!(
        r#"AWSTemplateFormatVersion: "2010-09-09"
Resources:
  Gateway:
    Type: AWS::AppMesh::VirtualGateway
    Properties:
      MeshName: shop
      VirtualGatewayName: shop-gateway
      Spec:
        Listeners:
          - PortMapping: {{Port: 8443, Protocol: http}}
            TLS:
              Mode: STRICT
              Certificate:
                File: {{CertificateChain: /certs/gateway.pem, PrivateKey: /certs/gateway-key.pem}}
              Validation:
                Trust:
                  File: {{CertificateChain: /certs/ca.pem}}
                SubjectAlternativeNames:
                  Match: {{Exact: [partner.example.com]}}
        BackendDefaults:
          ClientPolicy:
            TLS:
              Ports: [{orders}, {impostor}]
              Certificate:
                File: {{CertificateChain: /certs/gateway.pem, PrivateKey: /certs/gateway-key.pem}}
              Validation:
                Trust:
                  File: {{CertificateChain: /certs/backend-ca.pem}}
                SubjectAlternativeNames:
                  Match: {{Exact: [orders.shop.local]}}
  OrdersRoute:
    Type: AWS::AppMesh::GatewayRoute
    Properties:
      MeshName: shop
      VirtualGatewayName: !GetAtt Gateway.VirtualGatewayName
      GatewayRouteName: orders-by-host
      Spec:
        Priority: 10
        HttpRoute:
          Match:
            Prefix: /orders/
            Hostname: {{Exact: orders.shop.example.com}}
            Method: POST
            Headers:
              - Name: x-api-version
                Match: {{Exact: "2"}}
            QueryParameters:
              - Name: dryrun
                Match: {{Exact: "false"}}
          Action:
            Target:
              VirtualService: {{VirtualServiceName: localhost}}
              Port: {orders}
  ImpostorRoute:
    Type: AWS::AppMesh::GatewayRoute
    Properties:
      MeshName: shop
      VirtualGatewayName: !GetAtt Gateway.VirtualGatewayName
      GatewayRouteName: impostor
      Spec:
        Priority: 15
        HttpRoute:
          Match: {{Prefix: /impostor/}}
          Action:
            Target:
              VirtualService: {{VirtualServiceName: localhost}}
              Port: {impostor}
  CatalogRoute:
    Type: AWS::AppMesh::GatewayRoute
    Properties:
      MeshName: shop
      VirtualGatewayName: !GetAtt Gateway.VirtualGatewayName
      GatewayRouteName: catalog
      Spec:
        Priority: 20
        HttpRoute:
          Match:
            Prefix: /
            Hostname: {{Suffix: .shop.example.com}}
            Headers:
              - Name: x-canary
                Invert: true
                Match: {{Prefix: "yes"}}
          Action:
            Target:
              VirtualService: {{VirtualServiceName: localhost}}
              Port: {catalog}
            Rewrite:
              Hostname: {{DefaultTargetHostname: DISABLED}}
"#
    )
}

#[tokio::test]
async fn an_imported_gateway_routes_by_host_method_header_and_query_in_priority_order_to_tls_backends(
) {
    let files = FilesRoot::new();
    let orders = EchoServer::tls(
        &files
            .ca
            .issue(&CertSpec::server().dns("orders.shop.local"))
            .unwrap(),
    )
    .unwrap();
    let impostor = EchoServer::tls(
        &files
            .ca
            .issue(&CertSpec::server().dns("impostor.shop.local"))
            .unwrap(),
    )
    .unwrap();
    let catalog = EchoServer::plain().unwrap();
    let template = shop_gateway_template(orders.port(), impostor.port(), catalog.port());
    let (out, report) = import_texts(&files, &[("shop.yaml", &template)], &[]);
    assert!(
        report.contains(&format!(
            "do not include {} -> plaintext to `localhost`",
            catalog.port()
        )),
        "{report}"
    );
    let envoy = imported_envoy(out.path(), "shop-gateway", &[])
        .start()
        .await
        .unwrap();
    let address = envoy.listener("ingress").unwrap();
    let client = |spec: CertSpec| {
        let cert = files.ca.issue(&spec).unwrap();
        Client::tls(
            address,
            ClientTls::builder(files.ca.cert_pem())
                .sni("shop.example.com")
                .client_cert(&cert)
                .build()
                .unwrap(),
        )
    };
    let partner = client(CertSpec::client().dns("partner.example.com"));
    let order = |method: &str, query: &str| {
        Request::new(method, &format!("/orders/7?dryrun={query}"))
            .header("host", "orders.shop.example.com")
            .header("x-api-version", "2")
            // The catalog route's inverted header match needs the header (Envoy's rule, which
            // App Mesh's Envoy applied too): a request without it matches no route.
            .header("x-canary", "no")
    };
    // (request, status, the backend that answered or the refusal's reason)
    let table = [
        (order("POST", "false"), 200, "orders"),
        // The orders route wants POST and dryrun=false: these fall through to the catalog route.
        (order("GET", "false"), 200, "catalog"),
        (order("POST", "true"), 200, "catalog"),
        (
            Request::get("/", "www.shop.example.com").header("x-canary", "yes-please"),
            403,
            "no_route",
        ),
        (Request::get("/", "www.example.org"), 403, "no_route"),
        // Envoy refuses the backend's certificate: it does not carry orders.shop.local.
        (Request::get("/impostor/1", "www.shop.example.com"), 503, ""),
    ];
    for (request, status, expected) in table {
        let described = format!("{} {}", request.method(), request.target());
        let response = partner.send(&request).await.unwrap();
        assert_eq!(
            response.status,
            status,
            "{described}: {}",
            response.body_text()
        );
        match status {
            200 => {
                let echoed = response.echoed().unwrap();
                let (backend, host) = if expected == "orders" {
                    (&orders, "localhost")
                } else {
                    (&catalog, request_host(&request))
                };
                assert!(backend.requests_served() > 0, "{described}");
                assert_eq!(echoed.header("host"), Some(host), "{described}");
                if expected == "orders" {
                    // App Mesh's default rewrite: the matched prefix becomes `/`.
                    assert_eq!(echoed.path, "/7?dryrun=false");
                }
            }
            403 => assert_eq!(
                response.header("x-certgate-reason"),
                Some(expected),
                "{described}"
            ),
            _ => {}
        }
    }
    assert_eq!(orders.requests_served(), 1);
    assert_eq!(catalog.requests_served(), 2);
    assert_eq!(impostor.requests_served(), 0);
    let intruder = client(CertSpec::client().dns("intruder.example.com"));
    let refused = intruder
        .send(&Request::get("/", "www.shop.example.com").header("x-canary", "no"))
        .await
        .unwrap();
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.header("x-certgate-reason"),
        Some("not_in_allowlist")
    );
}

fn request_host(request: &Request) -> &str {
    request
        .header_lines()
        .iter()
        .find_map(|line| line.strip_prefix("host: "))
        .unwrap_or_default()
}

#[tokio::test]
async fn an_imported_permissive_acm_gateway_takes_tls_and_plaintext_on_one_port() {
    let files = FilesRoot::new();
    let pki = Pki::new().unwrap();
    let backend = EchoServer::tls(&pki.backend).unwrap();
    // The ingress-gw fixture (PERMISSIVE, an ACM certificate, backends trusted through ACM Private
    // CA) with one gateway route to the backend.
    let route = format!(
        r#"{{"meshName": "am-demo", "virtualGatewayName": "ingress-gw", "gatewayRouteName": "everything",
  "spec": {{"httpRoute": {{"match": {{"prefix": "/"}},
    "action": {{"target": {{"virtualService": {{"virtualServiceName": "localhost"}}, "port": {}}}}}}}}}}}"#,
        backend.port()
    );
    let (out, report) = import_texts(&files, &[("everything.json", &route)], &["ingress-gw.json"]);
    assert!(report.contains("Envoy cannot read ACM"), "{report}");
    // The operator exported the ACM certificate and the private CA into ${CERT_DIR}.
    let cert_dir = pki.dir.path().display().to_string();
    let envoy = imported_envoy(out.path(), "ingress-gw", &[("CERT_DIR", &cert_dir)])
        .start()
        .await
        .unwrap();
    let address = envoy.listener("ingress").unwrap();
    let over_tls = Client::tls(address, pki.client_tls(None).unwrap())
        .send(&Request::get("/tls", "ingress"))
        .await
        .unwrap();
    let plaintext = Client::plain(address)
        .send(&Request::get("/plain", "ingress"))
        .await
        .unwrap();
    for (response, path) in [(over_tls, "/tls"), (plaintext, "/plain")] {
        assert_eq!(response.status, 200, "{path}: {}", response.body_text());
        assert_eq!(response.echoed().unwrap().path, path);
    }
    assert_eq!(backend.requests_served(), 2);
}

/// A CLI-input virtual node in the walkthrough's shape: one listener in `mode`, with the
/// walkthrough's certificates and exact SANs unless DISABLED.
fn node_in_mode(name: &str, mode: &str) -> String {
    let tls = if mode == "DISABLED" {
        r#"{"mode": "DISABLED"}"#.to_string()
    } else {
        format!(
            r#"{{"mode": "{mode}",
      "certificate": {{"file": {{"certificateChain": "/keys/colorteller_white_cert_chain.pem", "privateKey": "/keys/colorteller_white_key.pem"}}}},
      "validation": {{"trust": {{"file": {{"certificateChain": "/keys/ca_1_cert.pem"}}}},
        "subjectAlternativeNames": {{"match": {{"exact": ["colorgateway.mesh.local"]}}}}}}}}"#
        )
    };
    format!(
        r#"{{"meshName": "color-mesh", "virtualNodeName": "{name}",
  "spec": {{"listeners": [{{"portMapping": {{"port": 9080, "protocol": "http"}}, "tls": {tls}}}]}}}}"#
    )
}

#[tokio::test]
async fn imported_permissive_and_disabled_listeners_take_what_app_mesh_took() {
    let files = FilesRoot::new();
    let permissive = node_in_mode("colorteller-blue", "PERMISSIVE");
    let disabled = node_in_mode("colorteller-legacy", "DISABLED");
    let (out, _) = import_texts(
        &files,
        &[("blue.json", &permissive), ("legacy.json", &disabled)],
        &[],
    );
    let app = EchoServer::plain().unwrap();
    let blue = imported_envoy(out.path(), "colorteller-blue", &[])
        .upstream_port(app.port())
        .start()
        .await
        .unwrap();
    let legacy = imported_envoy(out.path(), "colorteller-legacy", &[])
        .upstream_port(app.port())
        .start()
        .await
        .unwrap();
    let request = Request::get("/color", NODE_NAME);
    let send_as = |address: SocketAddr, san: Option<&str>| {
        let cert = san.map(|name| files.ca.issue(&CertSpec::client().dns(name)).unwrap());
        let tls = client_tls(&files, cert.as_ref());
        let request = request.clone();
        async move { Client::tls(address, tls).send(&request).await }
    };
    // PERMISSIVE: plaintext passes without a certificate; over TLS the trust bundle and the exact
    // SANs decide, as in App Mesh.
    let address = blue.listener("ingress").unwrap();
    let plaintext = Client::plain(address).send(&request).await.unwrap();
    assert_eq!(plaintext.status, 200);
    let allowed = send_as(address, Some("colorgateway.mesh.local"))
        .await
        .unwrap();
    assert_eq!(allowed.status, 200);
    let other = send_as(address, Some("colorteller-black.mesh.local"))
        .await
        .unwrap();
    assert_eq!(other.status, 403);
    assert_eq!(other.header("x-certgate-reason"), Some("not_in_allowlist"));
    assert!(send_as(address, None).await.is_err());
    // DISABLED: plaintext only.
    let address = legacy.listener("ingress").unwrap();
    assert_eq!(
        Client::plain(address).send(&request).await.unwrap().status,
        200
    );
    assert!(send_as(address, Some("colorgateway.mesh.local"))
        .await
        .is_err());
    assert_eq!(app.requests_served(), 3);
}

/// A Kubernetes manifest in the shape of App Mesh's mTLS walkthrough: the `front` node calls the
/// virtual services `color` (through a router to the node `red`) and `blue` (provided by the node
/// `blue`) with its own certificate, and requires the backend's certificate to carry red's SPIFFE
/// ID. Both nodes are found at `localhost` on the given ports.
fn front_and_backends_manifest(red_port: u16, blue_port: u16) -> String {
    format!(
        r#"apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {{name: front, namespace: color}}
spec:
  listeners:
    - portMapping: {{port: 8080, protocol: http}}
  backends:
    - virtualService:
        virtualServiceRef: {{name: color}}
    - virtualService:
        virtualServiceRef: {{name: blue}}
  backendDefaults:
    clientPolicy:
      tls:
        certificate:
          file: {{certificateChain: /front/front.pem, privateKey: /front/front-key.pem}}
        validation:
          trust:
            file: {{certificateChain: /front/ca.pem}}
          subjectAlternativeNames:
            match:
              exact: [spiffe://color.mesh/red]
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualService
metadata: {{name: color, namespace: color}}
spec:
  awsName: color.color.svc.cluster.local
  provider:
    virtualRouter:
      virtualRouterRef: {{name: color-router}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualRouter
metadata: {{name: color-router, namespace: color}}
spec:
  listeners:
    - portMapping: {{port: 8080, protocol: http}}
  routes:
    - name: color-route
      httpRoute:
        match: {{prefix: /}}
        action:
          weightedTargets:
            - virtualNodeRef: {{name: red}}
              weight: 1
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {{name: red, namespace: color}}
spec:
  listeners:
    - portMapping: {{port: {red_port}, protocol: http}}
  serviceDiscovery:
    dns: {{hostname: localhost}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualService
metadata: {{name: blue, namespace: color}}
spec:
  awsName: blue.color.svc.cluster.local
  provider:
    virtualNode:
      virtualNodeRef: {{name: blue}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {{name: blue, namespace: color}}
spec:
  listeners:
    - portMapping: {{port: {blue_port}, protocol: http}}
  serviceDiscovery:
    dns: {{hostname: localhost}}
"#
    )
}

#[tokio::test]
async fn an_imported_node_calls_its_backends_through_virtual_service_and_router_with_its_client_certificate(
) {
    let mut files = FilesRoot::new();
    let front = files
        .ca
        .issue(&CertSpec::client().uri("spiffe://color.mesh/front"))
        .unwrap();
    let bundle = files.ca.cert_pem().to_string();
    files.publish(
        "front",
        &[
            ("front.pem", &front.cert_pem),
            ("front-key.pem", &front.key_pem),
            ("ca.pem", &bundle),
        ],
    );
    let backend = |spiffe_id: &str| {
        let cert = files.ca.issue(&CertSpec::server().uri(spiffe_id)).unwrap();
        // Only a client presenting a certificate of the mesh CA gets through.
        EchoServer::mutual_tls(&cert, &bundle).unwrap()
    };
    let red = backend("spiffe://color.mesh/red");
    let blue = backend("spiffe://color.mesh/blue");
    let manifest = front_and_backends_manifest(red.port(), blue.port());
    let (out, report) = import_texts(&files, &[("color.yaml", &manifest)], &[]);
    assert!(
        report.contains(&format!(
            "virtual service `color` -> virtual router `color-router` -> `red` (weight 1) at localhost:{}",
            red.port()
        )),
        "{report}"
    );
    let app = EchoServer::plain().unwrap();
    let envoy = imported_envoy(out.path(), "front", &[])
        .upstream_port(app.port())
        .var("EGRESS_PORT", 0)
        .start()
        .await
        .unwrap();
    let egress = Client::plain(envoy.listener("egress").unwrap());
    // The app calls the service by its DNS name (awsName) or its resource name.
    for host in ["color.color.svc.cluster.local", "color:8080"] {
        let response = egress.send(&Request::get("/red", host)).await.unwrap();
        assert_eq!(response.status, 200, "{host}: {}", response.body_text());
        assert_eq!(response.echoed().unwrap().path, "/red");
    }
    assert_eq!(red.requests_served(), 2);
    // Blue answers with a certificate without red's SPIFFE ID: Envoy refuses it, as App Mesh's
    // exact SAN list did.
    let refused = egress
        .send(&Request::get("/blue", "blue.color.svc.cluster.local"))
        .await
        .unwrap();
    assert_eq!(refused.status, 503);
    assert_eq!(blue.requests_served(), 0);
}

#[tokio::test]
async fn an_imported_spire_node_takes_its_svid_and_bundle_from_the_agent_and_admits_whom_app_mesh_did(
) {
    // The describe-output fixture: its listener's certificate and trust bundle are SDS secrets of
    // the SPIRE agent, and only the gateway's SPIFFE ID is in its exact list.
    let files = FilesRoot::new();
    let (out, _) = import(&files, "describe-virtual-node-spire.json");
    let trust_domain = TestCa::new("am-demo.aws SPIRE CA").unwrap();
    let svid = trust_domain
        .issue(&CertSpec::server().uri("spiffe://am-demo.aws/front"))
        .unwrap();
    let agent = SdsServer::start(vec![
        (
            "spiffe://am-demo.aws/front".into(),
            SdsSecret::Certificate(svid.clone()),
        ),
        (
            "spiffe://am-demo.aws".into(),
            SdsSecret::Bundle(trust_domain.cert_pem().into()),
        ),
    ])
    .unwrap();
    let app = EchoServer::plain().unwrap();
    let socket = agent.socket().display().to_string();
    let envoy = imported_envoy(out.path(), "front-node", &[("SPIRE_AGENT_SOCKET", &socket)])
        .upstream_port(app.port())
        .var("EGRESS_PORT", 0)
        .start()
        .await
        .unwrap();
    let address = envoy.listener("ingress").unwrap();
    let send_as = |ca: &TestCa, spiffe_id: &str| {
        let cert = ca.issue(&CertSpec::client().uri(spiffe_id)).unwrap();
        let tls = ClientTls::builder(trust_domain.cert_pem())
            .sni("front.am-demo.local")
            .client_cert(&cert)
            .build()
            .unwrap();
        async move {
            let mut connection = Client::tls(address, tls).connect().await?;
            let server = connection.server_certificate();
            let response = connection
                .send(&Request::get("/", "front.am-demo.local"))
                .await?;
            anyhow::Ok((server, response))
        }
    };
    let (server, admitted) = send_as(&trust_domain, "spiffe://am-demo.aws/gateway")
        .await
        .unwrap();
    assert_eq!(admitted.status, 200);
    assert_eq!(
        server,
        Some(svid.der.clone()),
        "Envoy served another certificate than the agent's SVID"
    );
    let (_, other) = send_as(&trust_domain, "spiffe://am-demo.aws/back")
        .await
        .unwrap();
    assert_eq!(other.status, 403);
    assert_eq!(other.header("x-certgate-reason"), Some("not_in_allowlist"));
    let stranger = TestCa::new("another trust domain").unwrap();
    assert!(send_as(&stranger, "spiffe://am-demo.aws/gateway")
        .await
        .is_err());
    assert_eq!(app.requests_served(), 1);
    assert!(
        agent.responses() >= 2,
        "the agent answered {}",
        agent.responses()
    );
}
