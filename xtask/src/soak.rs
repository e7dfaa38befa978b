//! `cargo xtask soak [--harness-requests N] [--envoy-requests N]`: certgate's soak and reload runs
//! at full size (1,000,000 requests through the harness, 200,000 through Envoy with a valid and an
//! invalid config swapped in under load). It builds `certgate.wasm`, installs Envoy if missing, and
//! runs the `soak` target of `tests/` (`tests/soak.rs`), which prints the samples and a verdict.

use crate::{build, counts, envoy};
use anyhow::Result;

/// The options the command passes on to `tests/soak.rs`.
const OPTIONS: [&str; 2] = ["--harness-requests", "--envoy-requests"];

pub fn run(args: &[String]) -> Result<()> {
    counts::parse("soak", &OPTIONS, args)?;
    let wasm = build::certgate_wasm()?;
    let envoy = envoy::ensure_installed()?;
    let mut cargo_args = vec!["test", "--test", "soak", "--"];
    cargo_args.extend(args.iter().map(String::as_str));
    build::cargo_with_env(
        &cargo_args,
        &[
            ("CERTGATE_WASM", wasm.to_string_lossy().as_ref()),
            ("ENVOY_BIN", envoy.to_string_lossy().as_ref()),
        ],
    )
}
