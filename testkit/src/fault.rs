//! The fault-injection build of certgate: the filter compiled with its `fault-injection` feature,
//! whose VM traps on a request carrying `x-certgate-fault: trap` and whose refusals carry
//! [`BUILD_HEADER`] (the shipped build's do not). Built into its own target
//! directory so the shipped `certgate.wasm` is never overwritten; used only by tests.

use crate::wasm_build::{self, WasmBuild};
use anyhow::Result;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The request header that makes the fault-injection build trap, and the value that does it.
pub const FAULT_HEADER: (&str, &str) = ("x-certgate-fault", "trap");

/// The response header of the fault-injection build's refusals, and its value.
pub const BUILD_HEADER: (&str, &str) = ("x-certgate-build", "fault-injection");

/// The fault-injection `certgate.wasm`, built once per process (later calls reuse the result,
/// a failure included).
pub fn fault_injection_wasm() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    wasm_build::once(
        &BUILT,
        &WasmBuild {
            what: "the fault-injection certgate.wasm",
            args: &["-p", "certgate-filter", "--features", "fault-injection"],
            env: &[],
            target_subdir: "fault-injection",
            artifact: "certgate.wasm",
        },
    )
}
