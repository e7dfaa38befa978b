//! gRPC calls in scenario files, on a guest nobody here wrote (the proxy-wasm-rust-sdk's
//! grpc_auth_random example, which asks `grpcbin.GRPCBin/RandomError` before letting a gRPC
//! request through): scripted answers, an unanswered call that times out, the calls as the
//! outcome lists them, expectations on them, and bad input named by field path and line.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn play(text: &str) -> Vec<pwh::Report> {
    let file = pwh::ScenarioFile::parse(text, Path::new("grpc.yaml")).unwrap();
    let wasm = testkit::sdk_example("grpc_auth_random").unwrap();
    pwh::run_file(&file, &wasm).unwrap()
}

const PLUGIN: &str = "plugin: { name: g, root_id: g, vm_id: g, grpc_clusters: [grpcbin] }\n";

const GRPC_REQUEST: &str =
    "{ method: POST, path: /hello.Hello/Greet, headers: { content-type: application/grpc } }";

#[test]
fn the_example_s_scenario_file_holds() {
    let path = workspace().join("tests/guests/scenarios/grpc_auth_random.yaml");
    let file = pwh::ScenarioFile::load(&path).unwrap();
    let wasm = testkit::sdk_example("grpc_auth_random").unwrap();
    let reports = pwh::run_file(&file, &wasm).unwrap();
    let failed: Vec<_> = reports.iter().filter(|report| !report.passed).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(reports.len(), 6);
}

#[test]
fn the_outcome_lists_each_call_with_its_message_as_hex_and_base64() {
    let reports = play(&format!(
        "{PLUGIN}scenarios:\n  - name: ok\n    request: {GRPC_REQUEST}\n    grpc_calls: [{{ message: {{ base64: CAE= }} }}]\n"
    ));
    let outcome = serde_json::to_value(&reports[0].outcome).unwrap();
    assert_eq!(
        outcome["grpc_calls"],
        serde_json::json!([{
            "cluster": "grpcbin",
            "service": "grpcbin.GRPCBin",
            "method": "RandomError",
            "message": { "hex": "", "base64": "" },
            "initial_metadata": [],
        }])
    );
    assert_eq!(outcome["response"]["status"], 200);
    assert!(outcome["upstream"].is_object(), "let through: {outcome:#}");
}

#[test]
fn an_unanswered_call_pauses_the_request_until_its_timeout_closes_it() {
    let reports = play(&format!(
        "{PLUGIN}scenarios:\n  - name: paused\n    request: {GRPC_REQUEST}\n    advance_ms: 999\n  - name: timed out\n    request: {GRPC_REQUEST}\n    advance_ms: 1000\n"
    ));
    let paused = &reports[0].outcome;
    assert_eq!(
        (paused.response.as_ref(), paused.upstream.as_ref()),
        (None, None)
    );
    assert_eq!(paused.grpc_calls.len(), 1, "recorded though unanswered");
    let timed_out = &reports[1].outcome;
    assert_eq!(
        timed_out.grpc_calls.len(),
        1,
        "the call the first scenario left open is not this scenario's"
    );
    assert!(
        timed_out.upstream.is_some(),
        "UNAVAILABLE is even: let through"
    );
    assert!(timed_out
        .logs
        .iter()
        .any(|line| line == "info: Access granted."));
}

#[test]
fn missed_call_expectations_name_the_call_and_field() {
    let reports = play(&format!(
        "{PLUGIN}scenarios:\n  - name: wrong\n    request: {GRPC_REQUEST}\n    grpc_calls: [{{ status: 7 }}]\n    expect:\n      grpc_calls:\n        - {{ cluster: other, method: DummyUnary, message: {{ hex: 0a01 }}, initial_metadata: {{ x-a: '1' }} }}\n  - name: counted\n    request: {GRPC_REQUEST}\n    grpc_calls: [{{ status: 7 }}]\n    expect: {{ grpc_calls: [] }}\n"
    ));
    assert_eq!(
        reports[0].failures,
        [
            "expect.grpc_calls[0].cluster: wanted \"other\", got \"grpcbin\"",
            "expect.grpc_calls[0].method: wanted \"DummyUnary\", got \"RandomError\"",
            "expect.grpc_calls[0].message: wanted hex \"0a01\", got hex \"\"",
            "expect.grpc_calls[0].initial_metadata.x-a: wanted \"1\", absent",
        ]
    );
    assert_eq!(
        reports[1].failures,
        ["expect.grpc_calls: wanted 0 calls, got 1 [\"grpcbin.GRPCBin/RandomError\"]"]
    );
}

#[test]
fn bad_answers_are_refused_with_field_path_and_line() {
    let refused = |answer: &str| {
        let text = format!("{PLUGIN}scenarios:\n  - name: s\n    grpc_calls:\n      - {answer}\n");
        pwh::ScenarioFile::parse(&text, Path::new("g.yaml"))
            .unwrap_err()
            .to_string()
    };
    let status = refused("{ status: 17 }");
    assert!(
        status.starts_with(
            "g.yaml: scenarios[0].grpc_calls[0].status: 17 is not a gRPC status code (0 to 16)"
        ) && status.contains("line 5"),
        "{status}"
    );
    let both = refused("{ message: { hex: '00', base64: AA== } }");
    assert!(
        both.contains("scenarios[0].grpc_calls[0].message: bytes are written as exactly one of hex, base64 or text")
            && both.contains("line 5"),
        "{both}"
    );
    let digit = refused("{ message: { hex: 0g } }");
    assert!(digit.contains("hex: \"0g\" is not a byte"), "{digit}");
    let base64 = refused("{ message: { base64: '*' } }");
    assert!(base64.contains("message: base64: "), "{base64}");
}
