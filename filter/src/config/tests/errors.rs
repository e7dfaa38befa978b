//! Every way a configuration is refused, with the message an operator sees (field path first).

use crate::config;

fn errors(json: &str) -> Vec<String> {
    match config::compile(json.as_bytes()) {
        Ok(_) => panic!("accepted: {json}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn assert_error(json: &str, expected: &str) {
    let errors = errors(json);
    assert!(
        errors.iter().any(|e| e.contains(expected)),
        "expected {expected:?} among {errors:#?}"
    );
}

#[test]
fn structural_errors_name_their_path() {
    assert_error("", "the plugin configuration is empty");
    assert_error("   ", "the plugin configuration is empty");
    assert_error(
        "{",
        "line 1 column 2: expected a string key, found the end of the input",
    );
    assert_error(
        "{\n  \"mode\": \"audit\"\n  \"routes\": []\n}",
        "line 3 column 3: expected ',' or '}', found '\"'",
    );
    assert_error(
        r#"{"mode": "audit", "mode": "enforce"}"#,
        r#"duplicate key "mode""#,
    );
    assert_error("[]", "invalid type: sequence, expected a JSON object");
    assert_error(
        r#"{"routes": [["admin"]]}"#,
        "routes[0]: invalid type: sequence, expected a JSON object",
    );
    assert_error(
        r#"{"routes": [{"name": "a", "match": ["x"]}]}"#,
        "routes[0].match: invalid type: sequence",
    );
    assert_error(
        r#"{"deny_response": [403]}"#,
        "deny_response: invalid type: sequence",
    );
    assert_error(
        r#"{"mode": "strict"}"#,
        "mode: unknown variant `strict`, expected `enforce` or `audit`",
    );
    assert_error(
        r#"{"default_action": "maybe"}"#,
        "default_action: unknown variant `maybe`",
    );
    assert_error(r#"{"routez": []}"#, "unknown field `routez`");
    assert_error(
        r#"{"routes": [{"name": "a", "allowed": []}]}"#,
        "routes[0].allowed: unknown field `allowed`",
    );
    assert_error(
        r#"{"routes": [{"allow": []}]}"#,
        "routes[0]: missing field `name`",
    );
    assert_error(
        r#"{"routes": [{"name": "a", "match": {"path": "/"}}]}"#,
        "routes[0].match.path: unknown field `path`",
    );
    assert_error(
        r#"{"routes": [{"name": "a", "allow": [{"dnz": "x"}]}]}"#,
        "routes[0].allow[0]: unknown variant `dnz`",
    );
    assert_error(
        r#"{"routes": [{"name": "a", "allow": [{}]}]}"#,
        "routes[0].allow[0]",
    );
    assert_error(
        r#"{"routes": [{"name": "a", "allow": [{"dns": "a.b", "uri": "spiffe://x/y"}]}]}"#,
        "routes[0].allow[0]",
    );
    assert_error(
        r#"{"routes": [{"name": "a", "allow": [{"dns": 5}]}]}"#,
        "routes[0].allow[0].dns: invalid type: integer `5`",
    );
    assert_error(
        r#"{"wildcard_certs": "yes"}"#,
        "wildcard_certs: invalid type: string",
    );
    assert_error(
        r#"{"deny_response": {"status": 70000}}"#,
        "deny_response.status",
    );
    for status in [0, 17] {
        assert_error(
            &format!(r#"{{"deny_response": {{"grpc_status": {status}}}}}"#),
            &format!(
                "deny_response.grpc_status: {status} is not a gRPC error status: a denial answers with 1 to 16"
            ),
        );
    }
    assert_error(
        r#"{"deny_response": {"grpc_message": "a\nb"}}"#,
        "deny_response.grpc_message: \"a\\nb\" holds a control character",
    );
    assert_error(
        r#"{"identity_sources": ["carrier-pigeon"]}"#,
        "identity_sources[0]: unknown variant `carrier-pigeon`, expected one of `connection`, `xfcc`, `alb`",
    );
    assert_error(
        r#"{"routes": [{"name": "a", "allowed": []}]}"#,
        "routes[0].allowed: unknown field `allowed`, expected one of `name`, `match`, `require_client_cert`, `allow`, `deny`, `mode`",
    );
    assert_error(
        r#"{"wildcard_certs": "yes"}"#,
        r#"wildcard_certs: invalid type: string "yes", expected a boolean"#,
    );
    assert_error(
        r#"{"routes": [{"name": "a", "allow": [{}]}]}"#,
        "routes[0].allow[0]: expected exactly one key, one of `dns`, `uri`, `trust_domain`, `ip`, `email`, `subject_cn`, `sha256`",
    );
    assert_error(
        r#"{"deny_response": {"status": 70000}}"#,
        "deny_response.status: invalid value: integer `70000`, expected an integer from 0 to 65535",
    );
    assert_error(
        r#"{"deny_response": {"status": -1}}"#,
        "deny_response.status: invalid value: integer `-1`",
    );
    assert_error(
        r#"{"deny_response": {"status": 403.0}}"#,
        "deny_response.status: invalid type: floating point `403.0`",
    );
    assert_error(
        r#"{"forwarding": {"xff": {"trusted_hops": 1e3}}}"#,
        "forwarding.xff.trusted_hops: invalid type: floating point `1e3`",
    );
    assert_error(
        r#"{"routes": [{"name": null}]}"#,
        "routes[0].name: invalid type: null, expected a string",
    );
    assert_error(
        r#"{"forwarding": {"identity_headers": {"x-peer": "fingerprint"}}}"#,
        "forwarding.identity_headers.x-peer: unknown variant `fingerprint`",
    );
    assert_error(
        r#"{"forwarding": {"xfcc": {"mode": "sanitize", "details": ["hash", "colour"]}}}"#,
        "forwarding.xfcc.details[1]: unknown variant `colour`",
    );
    assert_error(
        r#"{"telemetry": {"access_record": "loud"}}"#,
        "telemetry.access_record: unknown variant `loud`, expected one of `off`, `debug`, `info`, `warn`",
    );
    assert_error(
        r#"{"telemetry": {"filter_state": ["decision", "colour"]}}"#,
        "telemetry.filter_state[1]: unknown field `colour`, expected one of `route`, `decision`",
    );
    assert_error(
        r#"{"telemetry": {"filter_state": "decision"}}"#,
        "telemetry.filter_state: invalid type: string \"decision\", expected a boolean or a list of record fields",
    );
}

#[test]
fn every_structural_error_is_reported_at_once() {
    let errors = errors(
        r#"{"mode": "strict", "routez": [],
            "routes": [{"allow": [{"dnz": "x"}]}, {"name": "b", "require_client_cert": "no"}],
            "deny_response": {"status": "403"}}"#,
    );
    let expected = [
        "mode: unknown variant `strict`, expected `enforce` or `audit`",
        "routez: unknown field `routez`",
        "routes[0]: missing field `name`",
        "routes[0].allow[0]: unknown variant `dnz`",
        "routes[1].require_client_cert: invalid type: string \"no\", expected a boolean",
        "deny_response.status: invalid type: string \"403\"",
    ];
    for expected in expected {
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "missing {expected:?} in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
}

#[test]
fn null_stands_for_an_absent_optional_field() {
    config::compile(
        br#"{"routes": [{"name": "a", "allow": null, "mode": null, "match": {"path_prefix": null}}],
             "deny_response": {"body": null}, "forwarding": {"xff": null, "xfcc": null}}"#,
    )
    .unwrap_or_else(|errors| panic!("{errors:#?}"));
}

#[test]
fn pattern_errors_name_the_matcher_and_the_value() {
    let route = |matcher: &str| {
        format!(r#"{{"routes": [{{"name": "r", "allow": [{{"dns": "ok.example"}}, {matcher}]}}]}}"#)
    };
    for (matcher, expected) in [
        (
            r#"{"dns": "a*.b"}"#,
            r#"routes[0].allow[1].dns: "a*.b" is not a valid pattern"#,
        ),
        (r#"{"dns": "*.*.b"}"#, "routes[0].allow[1].dns"),
        (r#"{"dns": "b.*.c"}"#, "wildcard in an unsupported place"),
        (r#"{"dns": "*"}"#, "routes[0].allow[1].dns"),
        (r#"{"dns": "a..b"}"#, "has an empty label"),
        (r#"{"dns": ""}"#, "is empty"),
        (r#"{"dns": "bücher.example"}"#, "A-label (xn--)"),
        (r#"{"dns": "a b.example"}"#, "not allowed in a DNS name"),
        (r#"{"dns": "-a.example"}"#, "starts or ends with '-'"),
        (r#"{"uri": ""}"#, "routes[0].allow[1].uri"),
        (r#"{"uri": "no-scheme"}"#, "has no scheme"),
        (r#"{"uri": "https://x/*/y"}"#, "only SPIFFE patterns"),
        (r#"{"uri": "spiffe://*/ns/a"}"#, "as its trust domain"),
        (r#"{"uri": "spiffe://td/ns/a*b/x"}"#, "inside the segment"),
        (
            r#"{"uri": "spiffe://TD/ns/a"}"#,
            "invalid SPIFFE trust domain",
        ),
        (
            r#"{"uri": "spiffe://td/ns//a"}"#,
            "invalid SPIFFE path segment",
        ),
        (
            r#"{"uri": "spiffe://td/ns/../a"}"#,
            "invalid SPIFFE path segment",
        ),
        (r#"{"uri": "spiffe://td*"}"#, "in its trust domain"),
        (
            r#"{"trust_domain": "spiffe://td"}"#,
            "routes[0].allow[1].trust_domain",
        ),
        (
            r#"{"ip": "10.1.0.5/16"}"#,
            "has host bits set: did you mean 10.1.0.0/16?",
        ),
        (
            r#"{"ip": "10.1.0.0/33"}"#,
            "/33 is not a prefix length from 0 to 32",
        ),
        (r#"{"ip": "ten.one"}"#, "is not an IPv4 or IPv6 address"),
        (r#"{"ip": "::ffff:10.0.0.0/64"}"#, "wider than /96"),
        (r#"{"email": "ops"}"#, "local@domain"),
        (r#"{"email": "ops@*.example.com"}"#, "wildcard domain"),
        (r#"{"subject_cn": ""}"#, "routes[0].allow[1].subject_cn"),
        (r#"{"sha256": "abc"}"#, "64 hex digits"),
        (
            r#"{"sha256": "zz3f8e2d1c0b9a8f7e6d5c4b3a29180706f5e4d3c2b1a09f8e7d6c5b4a3928170"}"#,
            "64 hex digits",
        ),
    ] {
        assert_error(&route(matcher), expected);
    }
}

#[test]
fn semantic_errors_are_all_reported_at_once() {
    let errors = errors(
        r#"{"routes": [
            {"name": "dup", "allow": [{"dns": "a*.b"}], "deny": [{"ip": "300.0.0.1"}]},
            {"name": "dup", "match": {"path_prefix": "nope", "hosts": ["*.*"], "methods": ["G ET"]}, "allow": []},
            {"name": "bad name!"}
        ],
        "deny_response": {"status": 200, "content_type": ""},
        "trusted_proxies": {"cidrs": ["10.0.0.0/8", "nope"], "identities": [{"uri": "spiffe://TD/x"}]},
        "identity_sources": []}"#,
    );
    let expected = [
        r#"routes[0].allow[0].dns: "a*.b" is not a valid pattern"#,
        "routes[0].deny[0].ip",
        r#"routes[1].name: "dup" names another route too"#,
        r#"routes[1].match.path_prefix: "nope" does not start with '/'"#,
        "routes[1].match.hosts[0]",
        r#"routes[1].match.methods[0]: "G ET" is not an HTTP method name"#,
        "routes[1].allow: is empty",
        r#"routes[2].name: "bad name!" may only use letters"#,
        "deny_response.status: 200 is not an error status",
        "deny_response.content_type",
        r#"trusted_proxies.cidrs[1]: "nope" is not a valid address block"#,
        "trusted_proxies.identities[0].uri",
        "identity_sources: is empty",
    ];
    for expected in expected {
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "missing {expected:?} in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
}

#[test]
fn the_documented_example_configuration_is_accepted() {
    let example = include_str!("../../../../docs/examples/policy.json");
    config::compile(example.as_bytes()).unwrap_or_else(|errors| panic!("{errors:#?}"));
}

#[test]
fn each_error_is_one_log_line_whatever_the_configuration_quotes() {
    let lines = errors(
        "{\"mode\": \"enforce\\r\\n[error] forged\", \"colour\\n\": 1, \"routes\": [{\"name\": \"r\", \"allow\": [{\"dn\\ns\": \"x\"}]}]}",
    );
    assert!(lines.len() >= 2, "{lines:#?}");
    for line in &lines {
        assert!(!line.contains(['\n', '\r']), "{line:?}");
    }
    assert!(
        lines
            .iter()
            .any(|line| line.contains(r"unknown variant `enforce\r\n[error] forged`")),
        "{lines:#?}"
    );
}

#[test]
fn session_resumption_options_are_checked() {
    use crate::identity::resumption::{Resumption, ResumptionMode};
    assert_error(
        r#"{"session_resumption": {"mode": "trust"}}"#,
        "session_resumption.mode: unknown variant `trust`, expected `trust_validated_on_listener` or `refuse`",
    );
    assert_error(
        r#"{"session_resumption": {"validity_secs": 0}}"#,
        "session_resumption.validity_secs: is 0: to refuse every resumed session",
    );
    assert_error(
        r#"{"session_resumption": {"validity_secs": 604801}}"#,
        "session_resumption.validity_secs: 604801 is longer than any session Envoy resumes",
    );
    assert_error(
        r#"{"session_resumption": {"validity_secs": -5}}"#,
        "session_resumption.validity_secs: invalid",
    );
    assert_error(
        r#"{"session_resumption": {"validity": 60}}"#,
        "session_resumption.validity: unknown field `validity`",
    );
    assert_error(
        r#"{"session_resumption": "refuse"}"#,
        "session_resumption: invalid type: string",
    );
    let compiled = |json: &str| config::compile(json.as_bytes()).unwrap().resumption;
    assert_eq!(compiled("{}"), Resumption::default());
    assert_eq!(
        Resumption::default().mode,
        ResumptionMode::TrustValidatedOnListener,
        "resumed sessions are admitted by default"
    );
    assert_eq!(
        compiled(r#"{"session_resumption": {"mode": "refuse", "validity_secs": 7200}}"#),
        Resumption {
            mode: ResumptionMode::Refuse,
            validity_secs: 7200
        }
    );
}
