//! Toolchain set-up and builds: the wasm target, `certgate.wasm`, and cargo invocations.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const WASM_TARGET: &str = "wasm32-wasip1";

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set, else `target/` in the workspace.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Runs a command in the workspace root, failing with the command line when it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = format!("{cmd:?}");
    eprintln!("xtask: {line}");
    let status = cmd
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("could not start {line}"))?;
    if !status.success() {
        bail!("{line} failed with {status}");
    }
    Ok(())
}

pub fn cargo(args: &[&str]) -> Result<()> {
    cargo_with_env(args, &[])
}

pub fn cargo_with_env(args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(args);
    for (key, value) in env {
        cmd.env(key, value);
    }
    run(&mut cmd)
}

/// Installs the wasm target with rustup when the toolchain lacks it.
pub fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is needed to install the wasm32-wasip1 target")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|line| line.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

/// Builds a wasm cdylib package in release mode and returns the path of its `.wasm`.
pub fn wasm_package(package: &str, artifact: &str) -> Result<PathBuf> {
    ensure_wasm_target()?;
    cargo(&[
        "build",
        "--release",
        "--target",
        WASM_TARGET,
        "--package",
        package,
    ])?;
    let wasm = target_dir()
        .join(WASM_TARGET)
        .join("release")
        .join(format!("{artifact}.wasm"));
    let size = std::fs::metadata(&wasm)
        .with_context(|| format!("the build did not produce {}", wasm.display()))?
        .len();
    println!(
        "{}: {} bytes ({:.1} KiB)",
        wasm.display(),
        size,
        size as f64 / 1024.0
    );
    Ok(wasm)
}

/// Builds the shipped filter, `target/wasm32-wasip1/release/certgate.wasm`.
pub fn certgate_wasm() -> Result<PathBuf> {
    wasm_package("certgate-filter", "certgate")
}
