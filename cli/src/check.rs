//! `certgate check CONFIG`: the policy goes through the real module's `on_configure`, and what
//! certgate said about it is printed.

use crate::wasm;
use anyhow::Result;
use host_harness::LogLevel;
use std::path::Path;

/// Prints each problem (`FILE: routes[0].allow[0].dns: ...`) or an OK summary; `Ok(false)` when
/// certgate rejected the policy.
pub fn run(wasm_path: &Path, policy: &Path) -> Result<bool> {
    let plugin = wasm::start(wasm_path, policy)?;
    let configured = plugin.configured();
    let file = policy.display();
    for record in configured
        .logs
        .iter()
        .filter(|record| record.level == LogLevel::Warn)
    {
        println!("{file}: warning: {}", wasm::strip_prefix(&record.message));
    }
    if !configured.accepted {
        let errors = wasm::configuration_errors(configured);
        for error in &errors {
            println!("{file}: {error}");
        }
        println!(
            "{file}: rejected: certgate found {} problem{}",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" }
        );
        return Ok(false);
    }
    let summary = configured
        .logs
        .iter()
        .filter(|record| record.level == LogLevel::Info)
        .map(|record| wasm::strip_prefix(&record.message))
        .find(|message| message.starts_with("configured"))
        .unwrap_or("configured");
    println!("{file}: OK: {summary}");
    Ok(true)
}
