//! The fault-injection build of certgate: the filter compiled with its `fault-injection` feature,
//! whose VM traps on a request carrying `x-certgate-fault: trap`. Built into its own target
//! directory so the shipped `certgate.wasm` is never overwritten; used only by tests.

use crate::envoy::workspace_root;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The request header that makes the fault-injection build trap, and the value that does it.
pub const FAULT_HEADER: (&str, &str) = ("x-certgate-fault", "trap");

/// The fault-injection `certgate.wasm`, built once per process (later calls reuse the result,
/// a failure included).
pub fn fault_injection_wasm() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_fault_injection_wasm().map_err(|error| format!("{error:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build_fault_injection_wasm() -> Result<PathBuf> {
    let root = workspace_root();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("fault-injection");
    // Cargo sets `CARGO` for the tests it runs; outside cargo, the one on PATH.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip1",
            "-p",
            "certgate-filter",
            "--features",
            "fault-injection",
            "--target-dir",
        ])
        .arg(&target_dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", PathBuf::from(&cargo).display()))?;
    if !output.status.success() {
        bail!(
            "building the fault-injection certgate.wasm failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let wasm = target_dir.join("wasm32-wasip1/release/certgate.wasm");
    if !wasm.is_file() {
        bail!("the fault-injection build produced no {}", wasm.display());
    }
    Ok(wasm)
}
