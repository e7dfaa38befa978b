//! Builds of the Wasm modules the suites and the load bench need besides the shipped
//! `certgate.wasm`: the fault-injection filter, the bench's Wasm floor, and certgate at
//! `opt-level = "z"`. Each goes to its own subdirectory of the target directory, so the shipped
//! build is never overwritten, and is built once per process (later calls reuse the result, a
//! failure included).

use crate::envoy::workspace_root;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// One `cargo build --release --target wasm32-wasip1` of a cdylib.
pub(crate) struct WasmBuild<'a> {
    /// What is built, for messages.
    pub what: &'a str,
    /// Arguments after `cargo build --release --target wasm32-wasip1`: the crate and its features.
    pub args: &'a [&'a str],
    /// Environment of the build (cargo profile overrides).
    pub env: &'a [(&'a str, &'a str)],
    /// Subdirectory of the target directory the build writes to.
    pub target_subdir: &'a str,
    /// The file name of the `.wasm` it produces.
    pub artifact: &'a str,
}

/// The result of `build` the first time it is asked for in this process; the same result after.
pub(crate) fn once(
    built: &'static OnceLock<Result<PathBuf, String>>,
    build: &WasmBuild,
) -> Result<PathBuf> {
    built
        .get_or_init(|| run(build).map_err(|error| format!("{error:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn run(build: &WasmBuild) -> Result<PathBuf> {
    let root = workspace_root();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join(build.target_subdir);
    // Cargo sets `CARGO` for the tests and benches it runs; outside cargo, the one on PATH.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .current_dir(&root)
        .args(["build", "--release", "--target", "wasm32-wasip1"])
        .args(build.args)
        .arg("--target-dir")
        .arg(&target_dir)
        .envs(build.env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", PathBuf::from(&cargo).display()))?;
    if !output.status.success() {
        bail!(
            "building {} failed ({}):\n{}",
            build.what,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let wasm = target_dir
        .join("wasm32-wasip1/release")
        .join(build.artifact);
    if !wasm.is_file() {
        bail!("building {} produced no {}", build.what, wasm.display());
    }
    Ok(wasm)
}

/// The load bench's Wasm floor (`benches/fixtures/wasm-floor`): a proxy-wasm filter on certgate's
/// SDK version whose HTTP context continues at once.
pub fn wasm_floor() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    once(
        &BUILT,
        &WasmBuild {
            what: "the Wasm floor fixture",
            args: &[
                "--locked",
                "--manifest-path",
                "benches/fixtures/wasm-floor/Cargo.toml",
            ],
            env: &[],
            target_subdir: "wasm-floor",
            artifact: "wasm_floor.wasm",
        },
    )
}

/// `certgate.wasm` built with `opt-level = "z"` instead of the shipped 3: smaller, and the load
/// bench measures what that costs per request.
pub fn certgate_wasm_opt_z() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    once(
        &BUILT,
        &WasmBuild {
            what: "certgate.wasm at opt-level z",
            args: &["-p", "certgate-filter"],
            env: &[("CARGO_PROFILE_RELEASE_OPT_LEVEL", "z")],
            target_subdir: "opt-z",
            artifact: "certgate.wasm",
        },
    )
}
