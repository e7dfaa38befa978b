//! The `certgate` binary as an operator runs it: policies and certificates written to a temp
//! directory, the real `certgate.wasm` (`CERTGATE_WASM`, else the default build path), and
//! assertions on exit codes and output.

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Output};
use testkit::{CertSpec, TestCa};

const ADMIN_URI: &str = "spiffe://mesh.local/ns/ops/sa/admin";

/// A temp directory with a policy and two client certificates (one allowed on `admin`, one not).
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let files = Files {
            dir: tempfile::tempdir().expect("a temp dir"),
        };
        let ca = TestCa::new("certgate cli test CA").expect("a CA");
        let admin = ca
            .issue(&CertSpec::client().uri(ADMIN_URI).cn("admin"))
            .expect("admin cert");
        let web = ca
            .issue(&CertSpec::client().dns("web.mesh.local"))
            .expect("web cert");
        files.write("admin.pem", &admin.cert_pem);
        files.write("web.pem", &web.cert_pem);
        files.write(
            "policy.json",
            &json!({
                "forwarding": {"identity_headers": {"x-client-spiffe-id": "uri"}},
                "routes": [
                    {"name": "admin", "match": {"route_name": "admin"}, "allow": [{"uri": ADMIN_URI}]},
                    {"name": "public", "match": {"path_prefix": "/public"}, "require_client_cert": false}
                ]
            })
            .to_string(),
        );
        files
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("writing a test file");
        path
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

fn certgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_certgate"))
        .args(args)
        .output()
        .expect("the certgate binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn explain_json(files: &Files, extra: &[&str]) -> Value {
    let policy = files.path("policy.json");
    let mut args = vec!["explain", "--config", &policy, "--json"];
    args.extend_from_slice(extra);
    let output = certgate(&args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&output)))
}

#[test]
fn check_accepts_a_valid_policy() {
    let files = Files::new();
    let output = certgate(&["check", &files.path("policy.json")]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("policy.json: OK: configured with 2 routes"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn check_prints_each_problem_with_its_field_path_and_fails() {
    let files = Files::new();
    let policy = files.write(
        "bad.json",
        r#"{"routes": [{"name": "a", "allow": [{"dns": "a*.b"}]}, {"name": "a", "match": {"path_prefix": "x"}}]}"#,
    );
    let output = certgate(&["check", &policy.display().to_string()]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    for expected in [
        "bad.json: invalid configuration: routes[0].allow[0].dns: \"a*.b\" is not a valid pattern",
        "bad.json: invalid configuration: routes[1].name: \"a\" names another route too",
        "bad.json: invalid configuration: routes[1].match.path_prefix: \"x\" does not start with '/'",
        "bad.json: rejected: certgate found 3 problems",
    ] {
        assert!(text.contains(expected), "{expected:?} in\n{text}");
    }
}

#[test]
fn check_reports_unreadable_input_and_a_missing_module() {
    let files = Files::new();
    let missing = certgate(&["check", &files.path("nope.json")]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("cannot read"),
        "{}",
        stderr(&missing)
    );

    let no_wasm = certgate(&[
        "--wasm",
        &files.path("none.wasm"),
        "check",
        &files.path("policy.json"),
    ]);
    assert_eq!(no_wasm.status.code(), Some(2));
    assert!(
        stderr(&no_wasm).contains("build it with `cargo xtask build-wasm`"),
        "{}",
        stderr(&no_wasm)
    );
}

#[test]
fn explain_shows_an_allowed_request_as_the_upstream_receives_it() {
    let files = Files::new();
    let policy = files.path("policy.json");
    let cert = files.path("admin.pem");
    let output = certgate(&[
        "explain",
        "--config",
        &policy,
        "--cert",
        &cert,
        "--path",
        "/admin",
        "--route-name",
        "admin",
        "--header",
        "x-client-spiffe-id: spiffe://forged",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    for expected in [
        "decision        allow (allowed, forwarded upstream)",
        "reason          allowlist_match",
        "route           admin",
        "upstream receives",
        &format!("  x-client-spiffe-id: {ADMIN_URI}"),
        "certgate_requests_total.route.admin.decision.allow.reason.allowlist_match  +1 (0 -> 1)",
        "certgate_spoofed_headers_total.header.x-client-spiffe-id  +1 (0 -> 1)",
    ] {
        assert!(text.contains(expected), "{expected:?} in\n{text}");
    }
    assert!(
        !text.contains("spiffe://forged"),
        "the spoofed value is gone:\n{text}"
    );
}

#[test]
fn explain_json_describes_a_denial() {
    let files = Files::new();
    let cert = files.path("web.pem");
    let explained = explain_json(
        &files,
        &["--cert", &cert, "--route-name", "admin", "--path", "/admin"],
    );
    assert_eq!(explained["decision"], "deny");
    assert_eq!(explained["allowed"], false);
    assert_eq!(explained["status"], 403);
    assert_eq!(explained["reason"], "not_in_allowlist");
    assert_eq!(explained["route"], "admin");
    assert_eq!(explained["upstream_request"], Value::Null);
    let reply = &explained["local_reply"];
    assert_eq!(reply["status"], 403);
    assert!(reply["headers"]
        .as_array()
        .unwrap()
        .contains(&json!(["content-type", "application/json"])));
    let body: Value = serde_json::from_str(reply["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["error"], "forbidden");
    assert_eq!(body["request_id"], explained["record"]["request_id"]);
    let metrics = explained["metrics"].as_array().unwrap();
    assert!(
        metrics.contains(&json!({
            "name": "certgate_requests_total.route.admin.decision.deny.reason.not_in_allowlist",
            "kind": "counter", "before": 0, "after": 1
        })),
        "{metrics:?}"
    );
}

#[test]
fn explain_models_missing_and_unvalidated_certificates_and_routes() {
    let files = Files::new();
    let cert = files.path("admin.pem");
    // (flags, decision, reason, route)
    let table: [(&[&str], &str, &str, Value); 5] = [
        (
            &["--no-cert", "--route-name", "admin"],
            "deny",
            "no_client_cert",
            json!("admin"),
        ),
        (
            &["--cert", &cert, "--untrusted", "--route-name", "admin"],
            "deny",
            "cert_not_validated",
            json!("admin"),
        ),
        (
            &["--no-cert", "--path", "/public/x"],
            "allow",
            "client_cert_optional",
            json!("public"),
        ),
        (
            &["--cert", &cert, "--path", "/other"],
            "deny",
            "no_route",
            Value::Null,
        ),
        (
            &[
                "--cert",
                &cert,
                "--route-name",
                "admin",
                "--tls-version",
                "1.2",
                "--sni",
                "admin.example.com",
            ],
            "allow",
            "allowlist_match",
            json!("admin"),
        ),
    ];
    for (flags, decision, reason, route) in table {
        let explained = explain_json(&files, flags);
        assert_eq!(explained["decision"], decision, "{flags:?}");
        assert_eq!(explained["reason"], reason, "{flags:?}");
        assert_eq!(explained["route"], route, "{flags:?}");
    }
    let tls12 = explain_json(
        &files,
        &[
            "--cert",
            &cert,
            "--route-name",
            "admin",
            "--tls-version",
            "TLSv1.2",
            "--sni",
            "a.example",
        ],
    );
    assert_eq!(tls12["record"]["tls_version"], "TLSv1.2");
    let described = explain_json(
        &files,
        &[
            "--no-cert",
            "--path",
            "/public/x",
            "--host",
            "api.example.com",
            "--method",
            "POST",
            "--source",
            "203.0.113.9:41000",
            "--header",
            "x-trace: 1",
            "--header",
            "x-trace: 2",
        ],
    );
    let upstream: Vec<Value> = described["upstream_request"]["headers"]
        .as_array()
        .unwrap()
        .clone();
    for header in [
        json!([":authority", "api.example.com"]),
        json!([":method", "POST"]),
        json!([":path", "/public/x"]),
        json!(["x-trace", "1"]),
        json!(["x-trace", "2"]),
    ] {
        assert!(upstream.contains(&header), "{header} in {upstream:?}");
    }
    assert_eq!(described["record"]["client_address"], "203.0.113.9");
    assert_eq!(tls12["record"]["sni"], "a.example");
}

#[test]
fn explain_refuses_an_invalid_policy_and_bad_flags() {
    let files = Files::new();
    let bad = files.write("bad.json", r#"{"routes": [{"name": "r", "allow": []}]}"#);
    let output = certgate(&[
        "explain",
        "--config",
        &bad.display().to_string(),
        "--no-cert",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("routes[0].allow: is empty"),
        "{}",
        stderr(&output)
    );

    let policy = files.path("policy.json");
    let no_identity = certgate(&["explain", "--config", &policy]);
    assert_eq!(
        no_identity.status.code(),
        Some(2),
        "--cert or --no-cert is required"
    );
    let bad_header = certgate(&[
        "explain",
        "--config",
        &policy,
        "--no-cert",
        "--header",
        "novalue",
    ]);
    assert_eq!(bad_header.status.code(), Some(2));
    assert!(
        stderr(&bad_header).contains("NAME:VALUE"),
        "{}",
        stderr(&bad_header)
    );
}
