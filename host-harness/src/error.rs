//! The harness's error type: what went wrong, and where (file, export, hostcall, guest panic).

use std::fmt;
use std::path::PathBuf;

/// Everything that can fail in the harness. Guest traps carry the guest's own panic message
/// when the guest logged one (the Rust SDK logs panics at CRITICAL before trapping).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HarnessError {
    /// A `.wasm` or `.wat` file could not be read.
    Read { path: PathBuf, reason: String },
    /// The module did not compile (invalid wasm or WAT).
    Compile { module: String, reason: String },
    /// The module could not be instantiated: a missing import, a bad start function, no memory.
    Instantiate { module: String, reason: String },
    /// The module lacks an export the ABI requires.
    MissingExport { module: String, export: String },
    /// The guest trapped (or panicked) inside `call`, e.g. `proxy_on_request_headers`.
    Trap {
        call: String,
        /// The panic message the guest logged at CRITICAL, when it logged one.
        panic: Option<String>,
        /// The trap as wasmtime reports it, with the wasm backtrace.
        trap: String,
    },
    /// An earlier trap failed the VM; Envoy fails every later call on it the same way.
    VmFailed { first_failure: String },
    /// A certificate could not be parsed.
    Certificate { reason: String },
    /// The test used the API out of order, e.g. answered an http call that was never made.
    Usage { reason: String },
}

impl HarnessError {
    pub(crate) fn usage(reason: impl Into<String>) -> HarnessError {
        HarnessError::Usage {
            reason: reason.into(),
        }
    }

    pub(crate) fn certificate(reason: impl Into<String>) -> HarnessError {
        HarnessError::Certificate {
            reason: reason.into(),
        }
    }

    /// Whether this is the VM failing (a trap now, or a trap earlier), which Envoy's failure
    /// policy answers for the client.
    pub(crate) fn is_vm_failure(&self) -> bool {
        matches!(
            self,
            HarnessError::Trap { .. } | HarnessError::VmFailed { .. }
        )
    }

    /// The guest's panic message, if this is a trap that followed a logged panic.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            HarnessError::Trap { panic, .. } => panic.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HarnessError::Read { path, reason } => {
                write!(f, "cannot read {}: {reason}", path.display())
            }
            HarnessError::Compile { module, reason } => {
                write!(f, "cannot compile {module}: {reason}")
            }
            HarnessError::Instantiate { module, reason } => {
                write!(f, "cannot instantiate {module}: {reason}")
            }
            HarnessError::MissingExport { module, export } => {
                write!(f, "{module} does not export `{export}`")
            }
            HarnessError::Trap { call, panic, trap } => match panic {
                Some(message) => write!(f, "guest panicked in {call}: {message}"),
                None => write!(f, "guest trapped in {call}: {trap}"),
            },
            HarnessError::VmFailed { first_failure } => {
                write!(
                    f,
                    "the VM failed earlier and refuses calls: {first_failure}"
                )
            }
            HarnessError::Certificate { reason } => write!(f, "bad certificate: {reason}"),
            HarnessError::Usage { reason } => write!(f, "harness misuse: {reason}"),
        }
    }
}

impl std::error::Error for HarnessError {}
