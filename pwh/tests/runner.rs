//! The `pwh` binary on a guest nobody here wrote (the proxy-wasm-rust-sdk's http_headers example):
//! a scenario file that holds exits 0 with one JSON report per scenario, one with wrong
//! expectations exits 1 naming each miss, and bad input exits 2 naming file, field and line.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Runs `pwh run <file> --wasm <http_headers.wasm>`: (exit code, stdout lines as JSON, stderr).
fn run(file: &Path) -> (i32, Vec<serde_json::Value>, String) {
    let wasm = testkit::sdk_example("http_headers").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_pwh"))
        .arg("run")
        .arg(file)
        .arg("--wasm")
        .arg(wasm)
        .output()
        .unwrap();
    let lines = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    (
        output.status.code().unwrap(),
        lines,
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn a_file_whose_expectations_hold_exits_0_with_a_report_per_scenario() {
    let (code, lines, stderr) = run(&workspace().join("tests/guests/scenarios/http_headers.yaml"));
    assert_eq!(code, 0, "{stderr}{lines:#?}");
    assert_eq!(lines.len(), 3, "two reports and the summary: {lines:#?}");
    let hello = &lines[0];
    assert_eq!(hello["passed"], true);
    assert_eq!(hello["outcome"]["response"]["status"], 200);
    assert_eq!(hello["outcome"]["response"]["body"], "Hello, World!\n");
    assert_eq!(hello["outcome"]["upstream"], serde_json::Value::Null);
    let echoed = &lines[1]["outcome"];
    assert_eq!(echoed["upstream"]["headers"][0][0], ":authority");
    assert!(echoed["logs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|line| line.as_str().unwrap().ends_with("-> x-client: one")));
    assert_eq!(
        lines[2],
        serde_json::json!({"scenarios": 2, "passed": 2, "failed": 0})
    );
}

#[test]
fn a_missed_expectation_exits_1_and_names_each_miss() {
    let (code, lines, _) = run(&workspace().join("pwh/tests/scenarios/http_headers_wrong.yaml"));
    assert_eq!(code, 1);
    assert_eq!(lines[0]["passed"], false);
    assert_eq!(
        lines[0]["failures"],
        serde_json::json!([
            "expect.response.status: wanted 404, got 200",
            "expect.response.headers.hello: wanted \"Moon\", got \"World\"",
            "expect.upstream: the request never reached it",
        ])
    );
    assert_eq!(lines[1]["passed"], true);
    assert_eq!(
        lines[2],
        serde_json::json!({"scenarios": 2, "passed": 1, "failed": 1})
    );
}

#[test]
fn bad_input_exits_2_naming_file_field_path_and_line() {
    let file = workspace().join("pwh/tests/scenarios/http_headers_misspelt.yaml");
    let (code, lines, stderr) = run(&file);
    assert_eq!(code, 2);
    assert!(lines.is_empty());
    assert_eq!(
        stderr.trim(),
        format!(
            "pwh: {}: scenarios[0].request: unknown field `header`, expected one of `method`, `path`, `authority`, `headers`, `body`, `dynamic_metadata`, `route_metadata` at line 7 column 7",
            file.display()
        )
    );
    let (code, _, stderr) = run(Path::new("/nonexistent/scenarios.yaml"));
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("pwh: /nonexistent/scenarios.yaml: cannot be read"),
        "{stderr}"
    );
}

#[test]
fn a_repeated_scenario_name_is_refused_with_its_line() {
    let text = "plugin: { name: p }\nscenarios:\n  - name: same\n  - name: other\n  - name: same\n";
    let error = pwh::ScenarioFile::parse(text, Path::new("s.yaml")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "s.yaml: scenarios[2].name: \"same\" names an earlier scenario too; names must be unique at line 5"
    );
}

#[test]
fn plugin_settings_envoy_would_refuse_are_refused_with_their_line() {
    let parse = |text: &str| {
        pwh::ScenarioFile::parse(text, Path::new("s.yaml"))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        parse("plugin:\n  name: p\n  failure_policy: FAIL_OPEN\n  reload_backoff_ms: 500\nscenarios: []\n"),
        "s.yaml: plugin.reload_backoff_ms: only FAIL_RELOAD reloads a VM; failure_policy is FAIL_OPEN at line 4"
    );
    assert_eq!(
        parse("plugin:\n  name: p\n  concurrency: 0\nscenarios: []\n"),
        "s.yaml: plugin.concurrency: Envoy runs at least one worker; write 1 or more at line 3"
    );
    assert_eq!(
        parse("plugin:\n  name: p\n  failure_policy: FAIL_SOMETIMES\nscenarios: []\n"),
        "s.yaml: plugin.failure_policy: unknown variant `FAIL_SOMETIMES`, expected one of `FAIL_CLOSED`, `FAIL_OPEN`, `FAIL_RELOAD` at line 3 column 19"
    );
}

#[test]
fn a_repeated_body_is_its_text_cut_to_the_size() {
    let text = "plugin: { name: p }\nscenarios:\n  - name: s\n    request: { path: /, body: { repeat: abc, size: 7 } }\n    upstream: { body: { repeat: z, size: 0 } }\n";
    let file = pwh::ScenarioFile::parse(text, Path::new("s.yaml")).unwrap();
    let scenario = &file.scenarios[0];
    assert_eq!(&*scenario.request.as_ref().unwrap().body, "abcabca");
    assert_eq!(&*scenario.upstream.body, "");
    let unknown = "plugin: { name: p }\nscenarios:\n  - name: s\n    upstream:\n      body: { repeat: a, bytes: 3 }\n";
    assert_eq!(
        pwh::ScenarioFile::parse(unknown, Path::new("s.yaml"))
            .unwrap_err()
            .to_string(),
        "s.yaml: scenarios[0].upstream.body: unknown field `bytes`, expected `repeat` or `size` at line 5 column 26"
    );
}

/// `http_headers` logs each response header: a body far over Envoy's 1 MiB limit passes it (it
/// does not buffer), and the log counts say how often a line was logged.
#[test]
fn large_bodies_log_counts_and_plugin_settings_play_through_the_harness() {
    let text = r#"
plugin:
  name: http_headers
  root_id: http_headers
  failure_policy: FAIL_RELOAD
  reload_backoff_ms: 2000
  buffer_limit_bytes: 1024
  concurrency: 2
scenarios:
  - name: a large body passes a guest that does not buffer it
    request: { path: /echo, body: { repeat: "0123456789", size: 2097152 } }
    upstream: { headers: { x-upstream: one }, body: { repeat: "ab", size: 3000000 } }
    expect:
      upstream: { body: { repeat: "0123456789", size: 2097152 } }
      response: { status: 200, body_size: 3000000, reset: false }
      log_counts: { "<- x-upstream: one": 1, "-> :path: /echo": 1 }
  - name: a count that does not hold is a miss
    request: { path: /echo }
    expect:
      log_counts: { "-> :path: /echo": 2 }
      response: { body_size: 5, reset: true }
"#;
    let file = pwh::ScenarioFile::parse(text, Path::new("s.yaml")).unwrap();
    let wasm = testkit::sdk_example("http_headers").unwrap();
    let reports = pwh::run_file(&file, &wasm).unwrap();
    assert!(reports[0].passed, "{:#?}", reports[0].failures);
    assert_eq!(
        reports[1].failures,
        [
            "expect.response.body_size: wanted 5 bytes, got 0",
            "expect.response.reset: wanted true, got false",
            "expect.log_counts.-> :path: /echo: wanted 2 lines containing it, got 1",
        ]
    );
}
