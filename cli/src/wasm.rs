//! Where `certgate.wasm` comes from, and loading it with an operator's policy into a harness plugin.

use anyhow::{bail, Context, Result};
use host_harness::{Configured, GuestModule, LogLevel, Plugin, PluginSettings};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable naming the module when `--wasm` is not given.
pub const WASM_ENV: &str = "CERTGATE_WASM";

/// The module path: `--wasm`, else `CERTGATE_WASM`, else the workspace's release build.
pub fn locate(flag: Option<&Path>) -> Result<PathBuf> {
    let (path, origin) = match (flag, std::env::var_os(WASM_ENV)) {
        (Some(path), _) => (path.to_path_buf(), "--wasm"),
        (None, Some(path)) => (PathBuf::from(path), WASM_ENV),
        (None, None) => (default_path(), "the default path"),
    };
    if !path.is_file() {
        bail!(
            "certgate.wasm not found at {} (from {origin}): build it with `cargo xtask build-wasm`, \
             or point --wasm or {WASM_ENV} at it",
            path.display()
        );
    }
    Ok(path)
}

/// `target/wasm32-wasip1/release/certgate.wasm` in the workspace this binary was built from.
fn default_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("target/wasm32-wasip1/release/certgate.wasm")
}

/// Starts certgate with the policy file as its plugin configuration, on today's clock, logging at
/// debug so every line certgate can write is shown. A rejected policy is in [`Plugin::configured`], not an error.
pub fn start(wasm: &Path, policy: &Path) -> Result<Plugin> {
    let configuration =
        std::fs::read(policy).with_context(|| format!("cannot read {}", policy.display()))?;
    let module = GuestModule::load(wasm)?;
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        });
    // certgate counts days to expiry against the host clock: the harness's must be today.
    let settings = PluginSettings::new("certgate")
        .start_time_ns(now_ns)
        .log_level(LogLevel::Debug)
        .configuration(configuration);
    Ok(Plugin::new(&module, settings)?)
}

/// The problems certgate logged while rejecting a configuration, one per line, without its
/// `certgate: ` prefix (each names the field path).
pub fn configuration_errors(configured: &Configured) -> Vec<&str> {
    configured
        .logs
        .iter()
        .filter(|record| record.level >= LogLevel::Error)
        .map(|record| strip_prefix(&record.message))
        .collect()
}

/// A log line without certgate's `certgate: ` prefix.
pub fn strip_prefix(message: &str) -> &str {
    message.strip_prefix("certgate: ").unwrap_or(message)
}
