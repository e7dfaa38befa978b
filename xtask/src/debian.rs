//! The Debian packages the suites use besides Envoy, installed with `apt-get` when missing (as Envoy
//! is from PyPI): `skopeo` and `docker-registry` (the CNCF distribution registry) for the OCI image's
//! round trip through a registry, `prometheus` for `promtool`, which checks and unit-tests the
//! shipped Prometheus rules, and for the Prometheus server that scrapes real Envoys to prove the
//! shipped dashboard and recording rules.

use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;

/// (binary in `/usr/bin`, the package that brings it).
const TOOLS: [(&str, &str); 4] = [
    ("skopeo", "skopeo"),
    ("docker-registry", "docker-registry"),
    ("promtool", "prometheus"),
    ("prometheus", "prometheus"),
];

/// Installs the packages whose binary is missing.
pub fn ensure_installed() -> Result<()> {
    let mut missing: Vec<&str> = TOOLS
        .into_iter()
        .filter(|(binary, _)| !Path::new("/usr/bin").join(binary).is_file())
        .map(|(_, package)| package)
        .collect();
    // One package can bring several of the tools.
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing {} from Debian's packages",
        missing.join(", ")
    );
    crate::build::run(Command::new("apt-get").arg("update").arg("-qq"))
        .context("apt-get update (the suites need skopeo, docker-registry and prometheus)")?;
    crate::build::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .with_context(|| format!("installing {}", missing.join(", ")))
}
