//! `cargo xtask soak`: the full soak and reload runs (`tests/support/soak/`), sizes from the command
//! line: `--harness-requests N` (default 1,000,000) and `--envoy-requests N` (default 200,000; the
//! configs are swapped at 40 % and 70 % of it); 0 skips a part. Every sample is printed as it is
//! taken, then each part's table and verdict. Exits non-zero when a part failed.
//!
//! Declared with `harness = false` and `test = false`: `cargo test` does not run it, the smoke in
//! `tests/soak_smoke.rs` does the same at small sizes.

#[path = "support/soak/mod.rs"]
mod soak;

use soak::{mib, Sizes};
use std::process::ExitCode;

fn main() -> ExitCode {
    let sizes = match sizes(std::env::args().skip(1)) {
        Ok(sizes) => sizes,
        Err(message) => {
            eprintln!("{message}\nusage: soak [--harness-requests N] [--envoy-requests N]");
            return ExitCode::from(2);
        }
    };
    let mut verdicts = Vec::new();
    if sizes.harness_requests > 0 {
        verdicts.push(("harness", harness(sizes.harness_requests)));
    }
    if sizes.envoy_requests > 0 {
        verdicts.push(("envoy", envoy(sizes.envoy_requests)));
    }
    println!();
    let mut passed = true;
    for (part, problems) in &verdicts {
        if problems.is_empty() {
            println!("{part} soak: PASS");
        } else {
            passed = false;
            println!("{part} soak: FAIL");
            for problem in problems {
                println!("  - {problem}");
            }
        }
    }
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The sizes the arguments ask for, the full ones by default.
fn sizes(mut args: impl Iterator<Item = String>) -> Result<Sizes, String> {
    let mut sizes = Sizes::FULL;
    while let Some(flag) = args.next() {
        let target = match flag.as_str() {
            "--harness-requests" => &mut sizes.harness_requests,
            "--envoy-requests" => &mut sizes.envoy_requests,
            other => return Err(format!("unknown argument {other:?}")),
        };
        let value = args.next().ok_or(format!("{flag} needs a number"))?;
        *target = value
            .replace('_', "")
            .parse()
            .map_err(|_| format!("{flag} {value:?} is not a number of requests"))?;
    }
    Ok(sizes)
}

/// Runs the harness soak, printing samples as they come; returns its problems.
fn harness(requests: u64) -> Vec<String> {
    println!("harness soak: {requests} requests, linear memory every tenth");
    let run = soak::harness::run(requests, |sample| {
        println!(
            "  after {:>9} requests: {}",
            sample.requests,
            mib(sample.bytes)
        );
    });
    match run {
        Ok(run) => {
            run.print();
            let mut problems = run.problems(requests);
            problems.extend(run.memory_limit_problem());
            problems
        }
        Err(error) => vec![format!("could not run: {error:#}")],
    }
}

/// Runs the Envoy soak on a runtime of its own thread (testkit's Envoy dies with the thread that
/// started it, and this one outlives it); returns its problems.
fn envoy(requests: u64) -> Vec<String> {
    println!("\nenvoy soak: {requests} requests, valid swap at 40 %, invalid swap at 70 %");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return vec![format!("no async runtime: {error}")],
    };
    let run = runtime.block_on(soak::envoy::run(requests, |sample| {
        println!(
            "  after {:>7} requests: allocated {}, heap {}, resident {}, certgate decisions {}",
            sample.requests,
            mib(sample.allocated),
            mib(sample.heap_size),
            mib(sample.resident),
            sample.certgate_decisions
        );
    }));
    match run {
        Ok(run) => {
            run.print();
            run.problems(requests)
        }
        Err(error) => vec![format!("could not run: {error:#}")],
    }
}
