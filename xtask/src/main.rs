//! certgate's project commands, run as `cargo xtask <command>`.
//!
//! Each command does its own set-up on a fresh machine (wasm target, `.wasm` build, Envoy), so the
//! README's commands are the whole contract.

mod bench_envoy;
mod build;
mod churn;
mod counts;
mod debian;
mod demo;
mod envoy;
mod fuzz;
mod package;
mod soak;

use anyhow::{bail, Result};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  demo         set up, run Envoy with certgate, show its decisions for several identities
  test         set up, build certgate.wasm, check fmt and clippy, run every test
  build-wasm   build target/wasm32-wasip1/release/certgate.wasm and print its size
  package      build certgate.wasm as an OCI image (Istio, Envoy Gateway) in
               target/package/certgate-oci.tar and print its digest [--out PATH] [--tag TAG]
  fuzz         set up, run every fuzz target for --seconds N each [--target NAME] (docs/fuzzing.md)
  soak         set up, soak certgate in the harness and in Envoy with config reloads under load
               [--harness-requests N (1000000)] [--envoy-requests N (200000)]
  churn        set up, measure worker CPU per request and Envoy's memory under hostile churn
               (a new certificate per connection, many routes) beside a normal load
               [--connections N (5000)] [--routes R (5000)]
  bench-envoy  set up, run the Envoy load bench [--seconds S] [--rounds R] [--connections N]
               [--mode keepalive|newconn|h2|both|all] [--warmup S] [--json PATH]";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => demo::run(),
        Some("test") => test(),
        Some("build-wasm") => build::certgate_wasm().map(|_| ()),
        Some("package") => package::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("soak") => soak::run(&args[1..]),
        Some("churn") => churn::run(&args[1..]),
        Some("bench-envoy") => bench_envoy::run(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}

/// The README's test command: everything CI checks, in the order that fails fastest.
fn test() -> Result<()> {
    let wasm = build::certgate_wasm()?;
    build::cargo(&["fmt", "--all", "--", "--check"])?;
    build::cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    // The host glue is compiled for wasm only: lint it where it is built.
    build::cargo(&[
        "clippy",
        "--package",
        "certgate-filter",
        "--target",
        build::WASM_TARGET,
        "--",
        "-D",
        "warnings",
    ])?;
    let envoy = envoy::ensure_installed()?;
    debian::ensure_installed()?;
    build::cargo_with_env(
        &["test", "--workspace"],
        &[
            ("CERTGATE_WASM", wasm.to_string_lossy().as_ref()),
            ("ENVOY_BIN", envoy.to_string_lossy().as_ref()),
        ],
    )?;
    Ok(())
}
