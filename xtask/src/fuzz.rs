//! `cargo xtask fuzz --seconds N [--target NAME]`: runs certgate's libFuzzer targets (`fuzz/`) for
//! N seconds each and reports executions, coverage and crashes.
//!
//! Set-up on a fresh machine: cargo-fuzz is installed from crates.io into `<target>/tools` when
//! missing, and `certgate.wasm` is built for `whole_request`. The toolchain is stable:
//! `RUSTC_BOOTSTRAP=1` lets it take the flags cargo-fuzz passes. Each target starts from its
//! committed seeds (`fuzz/seeds/<target>/`, never written) and a working corpus under
//! `<target>/fuzz/corpus/<target>/`, the first corpus directory and so the only one libFuzzer adds
//! to. Crash inputs land in `<target>/fuzz/artifacts/<target>/`, logs in `<target>/fuzz/logs/`.

use crate::build;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The cargo-fuzz release the command installs and expects.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

const USAGE: &str = "usage: cargo xtask fuzz --seconds N [--target NAME]";

pub fn run(args: &[String]) -> Result<()> {
    let (seconds, only) = parse_args(args)?;
    let fuzz_dir = build::workspace_root().join("fuzz");
    let mut targets = target_names(&fuzz_dir)?;
    if let Some(only) = &only {
        if !targets.contains(only) {
            bail!(
                "no fuzz target {only:?}; the targets are {}",
                targets.join(", ")
            );
        }
        targets.retain(|name| name == only);
    }
    let cargo_fuzz = ensure_cargo_fuzz()?;
    let wasm = if targets.iter().any(|name| name == "whole_request") {
        Some(build::certgate_wasm()?)
    } else {
        None
    };
    let work = build::target_dir().join("fuzz");
    let mut build_all = cargo_fuzz_command(&cargo_fuzz, "build", &fuzz_dir, &work);
    if let Some(only) = &only {
        build_all.arg(only);
    }
    build::run(&mut build_all)?;

    let mut results = Vec::new();
    for target in &targets {
        let mut command = cargo_fuzz_command(&cargo_fuzz, "run", &fuzz_dir, &work);
        if let Some(wasm) = &wasm {
            command.env("CERTGATE_WASM", wasm);
        }
        results.push(run_target(command, target, seconds, &fuzz_dir, &work)?);
    }
    print_summary(&results, seconds);
    let crashed: Vec<&str> = results
        .iter()
        .filter(|result| !result.passed)
        .map(|result| result.target.as_str())
        .collect();
    if !crashed.is_empty() {
        bail!("fuzz targets failed: {}", crashed.join(", "));
    }
    Ok(())
}

fn parse_args(args: &[String]) -> Result<(u64, Option<String>)> {
    let mut seconds = None;
    let mut target = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--seconds" => {
                let text = value()?;
                seconds = Some(
                    text.parse::<u64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .with_context(|| {
                            format!("--seconds {text:?} is not a whole number of seconds above 0")
                        })?,
                );
            }
            "--target" => target = Some(value()?.clone()),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let seconds = seconds.with_context(|| format!("--seconds is required\n{USAGE}"))?;
    Ok((seconds, target))
}

/// The targets, one per `fuzz/fuzz_targets/<name>.rs`, sorted.
fn target_names(fuzz_dir: &Path) -> Result<Vec<String>> {
    let dir = fuzz_dir.join("fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .filter_map(|path| Some(path.file_stem()?.to_str()?.to_owned()))
        .collect();
    names.sort();
    Ok(names)
}

/// `<target>/tools/bin/cargo-fuzz`, installed from crates.io unless the right release is there.
fn ensure_cargo_fuzz() -> Result<PathBuf> {
    let root = build::target_dir().join("tools");
    let binary = root.join("bin").join("cargo-fuzz");
    let installed = Command::new(&binary)
        .arg("--version")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains(CARGO_FUZZ_VERSION));
    if !installed {
        build::cargo(&[
            "install",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
            "--locked",
            "--root",
            &root.to_string_lossy(),
        ])?;
    }
    Ok(binary)
}

/// A cargo-fuzz command with the settings every build and run shares: no sanitizer (the code under
/// test is safe Rust; panics, overflow checks and debug assertions are what fail), 16 codegen units
/// (the instrumented wasmtime builds in minutes rather than tens of minutes on two cores).
fn cargo_fuzz_command(
    cargo_fuzz: &Path,
    subcommand: &str,
    fuzz_dir: &Path,
    work: &Path,
) -> Command {
    let mut command = Command::new(cargo_fuzz);
    command
        .arg(subcommand)
        .arg("--fuzz-dir")
        .arg(fuzz_dir)
        .arg("--target-dir")
        .arg(work.join("build"))
        .args(["--sanitizer", "none", "--codegen-units", "16"])
        .env("RUSTC_BOOTSTRAP", "1");
    command
}

/// What one target's run showed.
struct TargetResult {
    target: String,
    passed: bool,
    stats: Stats,
    crash: Option<String>,
    log: PathBuf,
}

/// libFuzzer's figures from a run's log.
#[derive(Default)]
struct Stats {
    executions: Option<u64>,
    executions_per_second: Option<u64>,
    coverage: Option<u64>,
    features: Option<u64>,
    corpus: Option<u64>,
}

fn run_target(
    mut command: Command,
    target: &str,
    seconds: u64,
    fuzz_dir: &Path,
    work: &Path,
) -> Result<TargetResult> {
    let corpus = work.join("corpus").join(target);
    let artifacts = work.join("artifacts").join(target);
    let logs = work.join("logs");
    for dir in [&corpus, &artifacts, &logs] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let log = logs.join(format!("{target}.log"));
    let log_file = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    command
        .arg(target)
        .arg(&corpus)
        .arg(fuzz_dir.join("seeds").join(target))
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .args(["-print_final_stats=1", "-rss_limit_mb=4096", "-timeout=30"])
        .current_dir(build::workspace_root())
        .stdout(Stdio::from(log_file.try_clone()?))
        .stderr(Stdio::from(log_file));
    eprintln!(
        "xtask: fuzzing {target} for {seconds} s (log: {})",
        log.display()
    );
    let status = command
        .status()
        .with_context(|| format!("could not start {command:?}"))?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let crash = text
        .lines()
        .filter_map(|line| line.split_once("Test unit written to "))
        .map(|(_, path)| path.trim().to_owned())
        .next_back();
    if !status.success() {
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        eprintln!(
            "xtask: {target} failed ({status}); the end of its log:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(TargetResult {
        target: target.to_owned(),
        passed: status.success(),
        stats: parse_stats(&text),
        crash,
        log,
    })
}

/// Reads libFuzzer's final statistics (`-print_final_stats=1`) and its last status line
/// (`#N DONE cov: C ft: F corp: K/...`).
fn parse_stats(log: &str) -> Stats {
    let mut stats = Stats::default();
    for line in log.lines() {
        if let Some(value) = line.strip_prefix("stat::number_of_executed_units:") {
            stats.executions = value.trim().parse().ok();
        }
        if let Some(value) = line.strip_prefix("stat::average_exec_per_sec:") {
            stats.executions_per_second = value.trim().parse().ok();
        }
        if line.starts_with('#') && line.contains(" cov: ") {
            let field = |name: &str| -> Option<u64> {
                let after = line.split_once(name)?.1;
                let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            };
            stats.coverage = field(" cov: ").or(stats.coverage);
            stats.features = field(" ft: ").or(stats.features);
            stats.corpus = field(" corp: ").or(stats.corpus);
        }
    }
    stats
}

fn print_summary(results: &[TargetResult], seconds: u64) {
    let show = |value: Option<u64>| value.map_or_else(|| "-".to_owned(), |v| v.to_string());
    println!(
        "\n{:<14} {:>7} {:>12} {:>9} {:>7} {:>8} {:>7}  result",
        "target", "seconds", "executions", "exec/s", "cov", "ft", "corpus"
    );
    for result in results {
        let outcome = match (&result.crash, result.passed) {
            (Some(crash), _) => format!("CRASH {crash}"),
            (None, true) => "ok".to_owned(),
            (None, false) => format!("FAILED, see {}", result.log.display()),
        };
        println!(
            "{:<14} {:>7} {:>12} {:>9} {:>7} {:>8} {:>7}  {outcome}",
            result.target,
            seconds,
            show(result.stats.executions),
            show(result.stats.executions_per_second),
            show(result.stats.coverage),
            show(result.stats.features),
            show(result.stats.corpus),
        );
    }
}
