//! The importer's reading and conversion, table by table: each input form gives the same model,
//! and every unreadable input is an error naming the file, the line and the field path.

use super::model::*;
use super::read::{read_file, FileContents, ReadError};
use std::path::Path;

fn fixture(name: &str) -> FileContents {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/appmesh")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    read_file(Path::new(name), &text).unwrap_or_else(|e| panic!("{e}"))
}

fn read(name: &str, text: &str) -> Result<FileContents, ReadError> {
    read_file(Path::new(name), text)
}

fn error(name: &str, text: &str) -> String {
    read(name, text).unwrap_err().to_string()
}

fn node(resource: &Resource) -> &VirtualNode {
    match &resource.spec {
        Spec::VirtualNode(node) => node,
        other => panic!("not a virtual node: {other:?}"),
    }
}

#[test]
fn cli_input_with_file_certificates_and_exact_sans() {
    let contents = fixture("colorteller-white.json");
    let [resource] = contents.resources.as_slice() else {
        panic!("{:?}", contents.resources)
    };
    assert_eq!(
        (resource.name.as_str(), resource.form),
        ("colorteller-white", "CLI input")
    );
    let listener = &node(resource).listeners[0];
    assert_eq!(listener.port, Some(9080));
    let tls = listener.tls.as_ref().unwrap();
    assert_eq!(tls.mode, TlsMode::Strict);
    assert_eq!(
        tls.certificate,
        Some(Certificate::File {
            chain: "/keys/colorteller_white_cert_chain.pem".into(),
            key: "/keys/colorteller_white_key.pem".into()
        })
    );
    assert_eq!(
        tls.trust,
        Some(Trust::File {
            chain: "/keys/ca_1_cert.pem".into()
        })
    );
    assert_eq!(
        tls.sans,
        ["colorgateway.mesh.local", "spiffe://color.mesh/gateway"]
    );
    // The health check is read and reported, not dropped.
    assert!(contents
        .notes
        .iter()
        .any(|n| n.kind == NoteKind::NotImported
            && n.origin.path == "spec.listeners[0].healthCheck"
            && n.origin.line == 8));
}

#[test]
fn describe_output_with_sds_spiffe_ids() {
    let contents = fixture("describe-virtual-node-spire.json");
    let [resource] = contents.resources.as_slice() else {
        panic!()
    };
    assert_eq!(
        (resource.name.as_str(), resource.form),
        ("front-node", "describe output")
    );
    let node = node(resource);
    let tls = node.listeners[0].tls.as_ref().unwrap();
    assert_eq!(
        tls.certificate,
        Some(Certificate::Sds {
            secret: "spiffe://am-demo.aws/front".into()
        })
    );
    assert_eq!(
        tls.trust,
        Some(Trust::Sds {
            secret: "spiffe://am-demo.aws".into()
        })
    );
    assert_eq!(node.backends[0].service, "back.am-demo.local");
    let defaults = node.backend_defaults.as_ref().unwrap();
    assert_eq!(defaults.sans, ["spiffe://am-demo.aws/back"]);
    assert!(contents
        .notes
        .iter()
        .any(|n| n.kind == NoteKind::NeedsOperator && n.text.contains("Cloud Map")));
}

#[test]
fn spec_only_input_takes_its_name_from_the_file_and_reads_an_acm_gateway() {
    let contents = fixture("ingress-gw.json");
    let [resource] = contents.resources.as_slice() else {
        panic!()
    };
    assert_eq!(resource.name, "ingress-gw");
    let Spec::VirtualGateway(gateway) = &resource.spec else {
        panic!("{:?}", resource.spec)
    };
    let tls = gateway.listeners[0].tls.as_ref().unwrap();
    assert_eq!(tls.mode, TlsMode::Permissive);
    assert!(
        matches!(&tls.certificate, Some(Certificate::Acm { arn }) if arn.starts_with("arn:aws:acm:"))
    );
    let defaults = gateway.backend_defaults.as_ref().unwrap();
    assert!(
        matches!(&defaults.trust, Some(Trust::Acm { authority_arns }) if authority_arns.len() == 1)
    );
}

#[test]
fn cloudformation_pascal_case_with_intrinsics_resolved_or_reported() {
    let contents = fixture("cloudformation.yaml");
    let names: Vec<(&str, Kind)> = contents
        .resources
        .iter()
        .map(|r| (r.name.as_str(), r.kind()))
        .collect();
    assert_eq!(
        names,
        [
            ("shop-gateway", Kind::VirtualGateway),
            ("orders-by-host", Kind::GatewayRoute),
            ("catalog", Kind::GatewayRoute)
        ]
    );
    let Spec::GatewayRoute(orders) = &contents.resources[1].spec else {
        panic!()
    };
    // `!GetAtt Gateway.VirtualGatewayName` names the template's own gateway.
    assert_eq!(orders.gateway.as_deref(), Some("shop-gateway"));
    assert_eq!(orders.priority, Some(10));
    assert_eq!(orders.matcher.prefix.as_deref(), Some("/orders"));
    assert_eq!(
        orders.matcher.hostname_exact.as_deref(),
        Some("orders.shop.example.com")
    );
    assert_eq!(orders.matcher.method.as_deref(), Some("POST"));
    assert_eq!(
        orders.matcher.query,
        [("dryrun".to_string(), Some("false".to_string()))]
    );
    let Spec::GatewayRoute(catalog) = &contents.resources[2].spec else {
        panic!()
    };
    assert!(!catalog.rewrite_host);
    assert!(catalog.matcher.headers[0].invert);
    // `!Sub` and `!Ref` cannot be resolved: placeholders, each reported with its line.
    assert_eq!(
        catalog.service,
        "unresolved-sub-catalog-meshname-local.invalid"
    );
    let unresolved: Vec<(usize, &str)> = contents
        .notes
        .iter()
        .filter(|n| n.kind == NoteKind::NeedsOperator && n.text.contains("intrinsic"))
        .map(|n| (n.origin.line, n.origin.path.as_str()))
        .collect();
    assert!(unresolved.contains(&(91, "Resources.CatalogRoute.Properties.Spec.HttpRoute.Action.Target.VirtualService.VirtualServiceName")), "{unresolved:?}");
    assert!(
        unresolved.contains(&(10, "Resources.Gateway.Properties.MeshName")),
        "{unresolved:?}"
    );
    assert!(contents.notes.iter().any(|n| n
        .text
        .contains("AWS::Logs::LogGroup is not an App Mesh resource")));
}

#[test]
fn kubernetes_multi_document_manifest() {
    let contents = fixture("k8s.yaml");
    let names: Vec<(&str, Kind)> = contents
        .resources
        .iter()
        .map(|r| (r.name.as_str(), r.kind()))
        .collect();
    assert_eq!(
        names,
        [
            ("red", Kind::VirtualNode),
            ("front", Kind::VirtualNode),
            ("color", Kind::VirtualService),
            ("color-router", Kind::VirtualRouter),
            ("ingress-gw", Kind::VirtualGateway),
            ("gateway-route-headers", Kind::GatewayRoute)
        ]
    );
    // The virtual service the front node's backend names, and the router's weighted target.
    assert_eq!(
        contents.resources[2].spec,
        Spec::VirtualService(VirtualService {
            aws_name: Some("color.howto-k8s-mtls-sds.svc.cluster.local".into()),
            provider: Some(Provider::Router("color-router".into())),
        })
    );
    assert_eq!(
        contents.resources[3].spec,
        Spec::VirtualRouter(VirtualRouter {
            routes: vec![vec![WeightedTarget {
                node: "red".into(),
                weight: 1,
                port: None
            }]]
        })
    );
    assert_eq!(
        node(&contents.resources[0]).dns_hostname.as_deref(),
        Some("red.howto-k8s-mtls-sds.svc.cluster.local")
    );
    let front = node(&contents.resources[1]);
    assert_eq!(front.backends[0].service, "color");
    let Spec::VirtualGateway(gateway) = &contents.resources[4].spec else {
        panic!()
    };
    // `certificateARN`, the CRD's spelling.
    assert!(matches!(
        &gateway.listeners[0].tls.as_ref().unwrap().certificate,
        Some(Certificate::Acm { .. })
    ));
    assert!(contents.notes.iter().any(|n| n
        .text
        .contains("apps/v1 Deployment front: not an App Mesh resource")));
}

#[test]
fn unreadable_inputs_name_file_line_and_field() {
    let table: [(&str, &str, &str); 8] = [
        ("bad.json", "{\"spec\": {\"listeners\": [}", "bad.json:1: not JSON: expected value"),
        ("bad.yaml", "a: [1, 2\nb: 3\n", "bad.yaml:"),
        (
            "node.json",
            "{\n  \"virtualNodeName\": \"n\",\n  \"spec\": {\n    \"listeners\": [{\"portMapping\": {\"port\": \"http\"}}]\n  }\n}",
            "node.json:4: spec.listeners[0].portMapping.port: expected an integer, found \"http\"",
        ),
        (
            "node.json",
            "{\"virtualNodeName\": \"n\", \"spec\": {\"listeners\": [{\"portMapping\": {\"port\": 80}, \"tls\": {\"mode\": \"LOOSE\", \"certificate\": {\"file\": {\"certificateChain\": \"a\", \"privateKey\": \"b\"}}}}]}}",
            "node.json:1: spec.listeners[0].tls.mode: \"LOOSE\" is not STRICT, PERMISSIVE or DISABLED",
        ),
        (
            "k8s.yaml",
            "apiVersion: appmesh.k8s.aws/v1beta2\nkind: VirtualNode\nmetadata:\n  name: a\nspec:\n  listeners:\n    - portMapping: {port: 80, protocol: http}\n      tls:\n        mode: STRICT\n        certificate: {file: {certificateChain: /c}}\n",
            "k8s.yaml:10: spec.listeners[0].tls.certificate.file.privateKey: required field is missing",
        ),
        (
            "k8s.yaml",
            "apiVersion: appmesh.k8s.aws/v1beta2\nkind: VirtualTeapot\nmetadata: {name: a}\n",
            "k8s.yaml:1: kind: unknown App Mesh kind \"VirtualTeapot\"",
        ),
        (
            "cfn.yaml",
            "Resources:\n  Node:\n    Type: AWS::AppMesh::VirtualNode\n    Properties:\n      VirtualNodeName: n\n      Spec:\n        Listeners:\n          - PortMapping: {Port: !Ref Port, Protocol: http}\n",
            "cfn.yaml:8: Resources.Node.Properties.Spec.Listeners[0].PortMapping.Port: CloudFormation intrinsic `!Ref Port` where a number is needed",
        ),
        ("other.json", "{\"hello\": 1}", "other.json:1: not an App Mesh resource"),
    ];
    for (name, text, expected) in table {
        let message = error(name, text);
        assert!(
            message.starts_with(expected),
            "{name}: {message:?} does not start with {expected:?}"
        );
    }
}

#[test]
fn file_certificates_become_sds_files_that_watch_their_directory() {
    let contents = fixture("colorteller-white.json");
    let mesh = super::resolve::Mesh::new(&contents.resources);
    let outputs = super::convert::virtual_node(
        "colorteller-white",
        node(&contents.resources[0]),
        Some(Path::new("/mnt/task")),
        &mesh,
    );
    let names: Vec<&str> = outputs
        .secret_files
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "colorteller-white.ingress-cert.sds.yaml",
            "colorteller-white.ingress-trust.sds.yaml"
        ]
    );
    for (name, contents) in &outputs.secret_files {
        assert!(
            contents.contains("watched_directory:\n        path: \"/mnt/task/keys\""),
            "{name}:\n{contents}"
        );
        assert!(
            outputs
                .envoy_yaml
                .contains(&format!("path: \"${{SDS_DIR}}/{name}\"")),
            "{name} is not named by the template"
        );
    }
    // No certificate is read once at start: every one goes through SDS.
    assert!(!outputs.envoy_yaml.contains("tls_certificates"));
    assert!(!outputs.envoy_yaml.contains("trusted_ca"));
}

#[test]
fn shipped_sds_files_are_what_the_importer_writes() {
    use super::yaml::{map, s};
    let file = |name: &str| map([("filename", s(format!("${{CERT_DIR}}/{name}")))]);
    let shipped = [
        (
            "server-cert",
            "tls_certificate",
            map([
                ("certificate_chain", file("server.pem")),
                ("private_key", file("server-key.pem")),
            ]),
        ),
        (
            "ca-trust",
            "validation_context",
            map([("trusted_ca", file("ca.pem"))]),
        ),
        (
            "upstream-ca-trust",
            "validation_context",
            map([("trusted_ca", file("upstream-ca.pem"))]),
        ),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../envoy/sds");
    for (secret, kind, body) in shipped {
        let path = dir.join(format!("{secret}.sds.yaml"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let resources: String = text
            .lines()
            .skip_while(|line| line.starts_with('#') || line.is_empty())
            .map(|line| format!("{line}\n"))
            .collect();
        let written = super::convert::sds_file_resources(secret, kind, body, "${CERT_DIR}");
        assert_eq!(
            resources,
            written,
            "{} differs from what the importer writes:\n{written}",
            path.display()
        );
    }
}
