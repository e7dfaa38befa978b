//! The declarative runner of the host harness, for proxy-wasm authors who do not write Rust: a YAML
//! file says how the plugin is configured and, scenario by scenario, the request, the answers of
//! the upstream and of the guest's HTTP and gRPC calls, time advances and what is expected;
//! [`run_file`] plays each scenario through the real `.wasm` in a [`host_harness::Plugin`] and
//! reports each outcome and every expectation it missed. The `pwh` binary prints those reports as
//! JSON.
//!
//! The same [`ScenarioFile`] drives the guest differential suite, which plays each scenario through
//! real Envoy too: the file format is the one contract between an author's scenarios and both hosts.

mod expect;
mod grpc;
mod outcome;
mod play;
mod scenario;

pub use expect::check;
pub use grpc::{ExpectedGrpcCall, GrpcCallAnswer, SentGrpcCall, WireBytes};
pub use outcome::{Outcome, ReceivedRequest, ReceivedResponse, SentHttpCall};
pub use play::{play, start_plugin};
pub use scenario::{
    Body, Expectation, ExpectedResponse, ExpectedUpstream, FailurePolicyName, HeaderExpectation,
    Headers, HttpAnswer, InputError, LogLevelName, PluginSpec, RequestSpec, Scenario, ScenarioFile,
    DEFAULT_RELOAD_BACKOFF_MS,
};

use std::path::Path;

/// What became of one scenario: its outcome and the expectations it missed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub scenario: String,
    pub passed: bool,
    /// One line per missed expectation, naming the expectation's field path.
    pub failures: Vec<String>,
    pub outcome: Outcome,
}

/// Plays every scenario of `file` through `wasm`, in order, on one plugin (as one Envoy worker
/// would serve them). A scenario whose guest traps gets an outcome with `error` set and later
/// scenarios see the failed VM, as in Envoy.
pub fn run_file(file: &ScenarioFile, wasm: &Path) -> Result<Vec<Report>, String> {
    let module = host_harness::GuestModule::load(wasm)
        .map_err(|error| format!("{}: {error}", wasm.display()))?;
    let mut plugin = start_plugin(&module, &file.plugin)
        .map_err(|error| format!("{}: starting the plugin: {error}", wasm.display()))?;
    let mut first_log = 0;
    Ok(file
        .scenarios
        .iter()
        .map(|scenario| {
            let outcome = play(&mut plugin, scenario, first_log, file.plugin.log_level);
            first_log = plugin.logs().len();
            let failures = check(&scenario.expect, &outcome);
            Report {
                scenario: scenario.name.clone(),
                passed: failures.is_empty(),
                failures,
                outcome,
            }
        })
        .collect())
}
