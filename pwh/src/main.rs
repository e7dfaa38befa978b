//! `pwh run SCENARIOS.yaml --wasm FILTER.wasm`: plays a scenario file through the host harness,
//! prints one JSON report per scenario (its outcome and missed expectations) and a summary, and
//! exits 0 when every expectation holds, 1 when one does not, 2 on bad input.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: pwh run SCENARIOS.yaml --wasm FILTER.wasm

Plays each scenario of the file through FILTER.wasm in the proxy-wasm host harness and prints one
JSON line per scenario ({scenario, passed, failures, outcome}) and a summary line. Exit status: 0
when every expectation holds, 1 when one does not, 2 when the file, the module or the arguments
are wrong. The file format is described in docs/harness.md (\"The declarative runner\").";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (file, wasm) = match parse_args(&args) {
        Ok(paths) => paths,
        Err(message) => {
            eprintln!("pwh: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let scenarios = match pwh::ScenarioFile::load(&file) {
        Ok(scenarios) => scenarios,
        Err(error) => {
            eprintln!("pwh: {error}");
            return ExitCode::from(2);
        }
    };
    let reports = match pwh::run_file(&scenarios, &wasm) {
        Ok(reports) => reports,
        Err(message) => {
            eprintln!("pwh: {message}");
            return ExitCode::from(2);
        }
    };
    for report in &reports {
        println!("{}", serde_json::to_string(report).unwrap_or_default());
    }
    let failed = reports.iter().filter(|report| !report.passed).count();
    println!(
        "{}",
        serde_json::json!({"scenarios": reports.len(), "passed": reports.len() - failed, "failed": failed})
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `run FILE --wasm PATH`, in that order or with `--wasm` first.
fn parse_args(args: &[String]) -> Result<(PathBuf, PathBuf), String> {
    let Some((command, rest)) = args.split_first() else {
        return Err("no command".into());
    };
    if command != "run" {
        return Err(format!("unknown command {command:?}"));
    }
    let mut file = None;
    let mut wasm = None;
    let mut rest = rest.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--wasm" => match rest.next() {
                Some(path) => wasm = Some(PathBuf::from(path)),
                None => return Err("--wasm needs a path".into()),
            },
            other if other.starts_with('-') => return Err(format!("unknown option {other:?}")),
            other if file.is_none() => file = Some(PathBuf::from(other)),
            other => return Err(format!("one scenario file only; {other:?} is a second")),
        }
    }
    match (file, wasm) {
        (Some(file), Some(wasm)) => Ok((file, wasm)),
        (None, _) => Err("no scenario file".into()),
        (_, None) => Err("no --wasm FILTER.wasm".into()),
    }
}
