//! `cargo xtask bench-envoy [options]`: the Envoy load bench, set up from scratch (the wasm target,
//! `certgate.wasm`, Envoy in its venv) and run as `cargo bench --bench envoy_load`, which builds the
//! Wasm floor and certgate at opt-level z itself, prints the table and writes the JSON. The options
//! go to the bench as they are: `--seconds S`, `--rounds R`, `--connections N`,
//! `--mode keepalive|newconn|h2|both|all`, `--warmup S`, `--json PATH`, `--baseline-wasm FILE`.

use crate::{build, envoy};
use anyhow::Result;

pub fn run(options: &[String]) -> Result<()> {
    let wasm = build::certgate_wasm()?;
    let envoy = envoy::ensure_installed()?;
    let mut args = vec!["bench", "--bench", "envoy_load", "--"];
    args.extend(options.iter().map(String::as_str));
    build::cargo_with_env(
        &args,
        &[
            ("CERTGATE_WASM", wasm.to_string_lossy().as_ref()),
            ("ENVOY_BIN", envoy.to_string_lossy().as_ref()),
        ],
    )
}
