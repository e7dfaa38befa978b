//! Builds of the Wasm modules the suites and the load bench need besides the shipped
//! `certgate.wasm`: the fault-injection filter, the bench's Wasm floor, certgate at
//! `opt-level = "z"`, and the third-party guests of the guest differential suite (the vendored
//! proxy-wasm-rust-sdk examples, an AssemblyScript filter built with npm). Each goes to its own
//! subdirectory of the target directory, so the shipped build is never overwritten, and is built
//! once per process (later calls reuse the result, a failure included).

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

/// `subdir` of cargo's target directory (`CARGO_TARGET_DIR`, else the workspace's `target/`).
fn target_subdir(subdir: &str) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join(subdir)
}

fn run(build: &WasmBuild) -> Result<PathBuf> {
    let root = workspace_root();
    let target_dir = target_subdir(build.target_subdir);
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

/// The examples of the proxy-wasm Rust SDK vendored in `third_party/` (one workspace, built
/// together the first time one is asked for).
pub const SDK_EXAMPLES: [&str; 7] = [
    "hello_world",
    "http_headers",
    "http_body",
    "http_config",
    "http_auth_random",
    "envoy_filter_metadata",
    "grpc_auth_random",
];

/// The `.wasm` of the vendored proxy-wasm-rust-sdk example `name` (a directory name of
/// `third_party/proxy-wasm-rust-sdk-*/examples`, one of [`SDK_EXAMPLES`]).
pub fn sdk_example(name: &str) -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    if !SDK_EXAMPLES.contains(&name) {
        bail!("{name:?} is not a vendored SDK example; they are {SDK_EXAMPLES:?}");
    }
    let first = once(
        &BUILT,
        &WasmBuild {
            what: "the proxy-wasm-rust-sdk examples (third_party/)",
            args: &[
                "--locked",
                "--workspace",
                "--manifest-path",
                "third_party/Cargo.toml",
            ],
            env: &[],
            target_subdir: "guests/proxy-wasm-rust-sdk",
            artifact: "proxy_wasm_example_hello_world.wasm",
        },
    )?;
    let wasm = first.with_file_name(format!(
        "proxy_wasm_example_{}.wasm",
        name.replace('-', "_")
    ));
    if !wasm.is_file() {
        bail!("building the SDK examples produced no {}", wasm.display());
    }
    Ok(wasm)
}

/// The AssemblyScript guest `tests/guests/assemblyscript-probe` (`@solo-io/proxy-runtime`), built
/// with `npm ci` (the versions its `package-lock.json` pins) and its `build` script into
/// `target/guests/assemblyscript`. Needs `node` and `npm` on the PATH.
pub fn assemblyscript_probe() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_assemblyscript_probe().map_err(|error| format!("{error:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build_assemblyscript_probe() -> Result<PathBuf> {
    let source = workspace_root().join("tests/guests/assemblyscript-probe");
    let out_dir = target_subdir("guests/assemblyscript");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    // `npm ci` reinstalls from scratch each time: skip it when the lock file is already installed.
    let installed = source.join("node_modules/.package-lock.json");
    let steps: &[&[&str]] = if is_newer(&installed, &source.join("package-lock.json")) {
        &[&["run", "build"]]
    } else {
        &[&["ci", "--no-audit", "--no-fund"], &["run", "build"]]
    };
    for args in steps {
        let output = Command::new("npm")
            .current_dir(&source)
            .args(*args)
            .env("OUT_DIR", &out_dir)
            .stdin(Stdio::null())
            .output()
            .context("running npm (node and npm build the AssemblyScript guest)")?;
        if !output.status.success() {
            bail!(
                "`npm {}` in {} failed ({}):\n{}{}",
                args.join(" "),
                source.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    let wasm = out_dir.join("assemblyscript_probe.wasm");
    if !wasm.is_file() {
        bail!("the AssemblyScript build produced no {}", wasm.display());
    }
    Ok(wasm)
}

/// Whether `path` exists and was modified after `than`.
fn is_newer(path: &std::path::Path, than: &std::path::Path) -> bool {
    let modified = |path: &std::path::Path| std::fs::metadata(path).and_then(|m| m.modified());
    matches!((modified(path), modified(than)), (Ok(a), Ok(b)) if a > b)
}
