//! How a plugin is configured: the settings Envoy's `envoy.filters.http.wasm` config carries,
//! plus the harness's own (clock, seed, call timeout, HCM emulation, shared data).

use crate::abi::{LogLevel, Status};
use crate::hcm::HttpConnectionManager;
use crate::shared::SharedData;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Envoy's default `per_connection_buffer_limit_bytes`.
pub const DEFAULT_BUFFER_LIMIT_BYTES: usize = 1024 * 1024;

/// A test-registered foreign function: arguments in, result bytes or a status out.
pub type ForeignFunction = Arc<dyn Fn(&[u8]) -> Result<Vec<u8>, Status> + Send + Sync>;

/// How the plugin is configured, as the `envoy.filters.http.wasm` config would say.
///
/// ```
/// use host_harness::PluginSettings;
/// let settings = PluginSettings::new("certgate").configuration_json(&serde_json::json!({"routes": []}));
/// # let _ = settings;
/// ```
#[derive(Clone)]
pub struct PluginSettings {
    pub(crate) name: String,
    pub(crate) root_id: String,
    pub(crate) vm_id: String,
    pub(crate) vm_configuration: Vec<u8>,
    pub(crate) configuration: Vec<u8>,
    pub(crate) log_level: LogLevel,
    pub(crate) environment: Vec<(String, String)>,
    pub(crate) foreign_functions: HashMap<String, ForeignFunction>,
    pub(crate) clusters: HashSet<String>,
    pub(crate) hcm: HttpConnectionManager,
    pub(crate) start_time_ns: u64,
    pub(crate) seed: u64,
    pub(crate) call_timeout: Duration,
    pub(crate) shared_data: SharedData,
    pub(crate) abi_0_1_0: bool,
    pub(crate) buffer_limit_bytes: usize,
    pub(crate) failure_policy: Option<FailurePolicy>,
    pub(crate) concurrency: u32,
}

/// What Envoy does for the client once the VM failed (`PluginConfig.failure_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Envoy's default: the failing request and every later one are answered 503
    /// (`wasm_fail_stream`; a gRPC request gets `200` with `grpc-status: 14`).
    FailClosed,
    /// Requests pass through the filter chain without the filter.
    FailOpen,
    /// Like `FailClosed` until `backoff` (Envoy's default: 1 s) has passed since the failed VM
    /// was loaded; the next request then gets a fresh VM, started and configured again.
    FailReload { backoff: Duration },
}

impl PluginSettings {
    /// A plugin called `name` with empty root id, vm id and configurations, log level INFO,
    /// Envoy's default HCM, and the clock at 2026-01-01T00:00:00Z.
    pub fn new(name: impl Into<String>) -> PluginSettings {
        PluginSettings {
            name: name.into(),
            root_id: String::new(),
            vm_id: String::new(),
            vm_configuration: Vec::new(),
            configuration: Vec::new(),
            log_level: LogLevel::Info,
            environment: Vec::new(),
            foreign_functions: HashMap::new(),
            clusters: HashSet::new(),
            hcm: HttpConnectionManager::default(),
            start_time_ns: 1_767_225_600_000_000_000,
            seed: 0x5eed,
            call_timeout: Duration::from_secs(10),
            shared_data: SharedData::new(),
            abi_0_1_0: false,
            buffer_limit_bytes: DEFAULT_BUFFER_LIMIT_BYTES,
            failure_policy: None,
            concurrency: 0,
        }
    }

    pub fn root_id(mut self, root_id: impl Into<String>) -> PluginSettings {
        self.root_id = root_id.into();
        self
    }

    pub fn vm_id(mut self, vm_id: impl Into<String>) -> PluginSettings {
        self.vm_id = vm_id.into();
        self
    }

    pub fn vm_configuration(mut self, bytes: impl Into<Vec<u8>>) -> PluginSettings {
        self.vm_configuration = bytes.into();
        self
    }

    /// The plugin configuration bytes `proxy_on_configure` reads.
    pub fn configuration(mut self, bytes: impl Into<Vec<u8>>) -> PluginSettings {
        self.configuration = bytes.into();
        self
    }

    /// The plugin configuration as JSON text.
    pub fn configuration_json(self, json: &serde_json::Value) -> PluginSettings {
        self.configuration(json.to_string())
    }

    /// What `proxy_get_log_level` answers (Envoy's `wasm` logger level).
    pub fn log_level(mut self, level: LogLevel) -> PluginSettings {
        self.log_level = level;
        self
    }

    /// An environment variable visible through WASI `environ_get` (Envoy's `vm_config.environment_variables`).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> PluginSettings {
        self.environment.push((key.into(), value.into()));
        self
    }

    /// A function the guest can call with `proxy_call_foreign_function`.
    pub fn foreign_function(
        mut self,
        name: impl Into<String>,
        function: impl Fn(&[u8]) -> Result<Vec<u8>, Status> + Send + Sync + 'static,
    ) -> PluginSettings {
        self.foreign_functions
            .insert(name.into(), Arc::new(function));
        self
    }

    /// Declares an upstream cluster for `proxy_http_call`. Once any cluster is declared, calls to
    /// undeclared ones fail with BAD_ARGUMENT as in Envoy; with none declared, every name is
    /// accepted.
    pub fn cluster(mut self, name: impl Into<String>) -> PluginSettings {
        self.clusters.insert(name.into());
        self
    }

    /// The HttpConnectionManager settings applied to every request before the filter.
    pub fn http_connection_manager(mut self, hcm: HttpConnectionManager) -> PluginSettings {
        self.hcm = hcm;
        self
    }

    /// The wall clock at start, in nanoseconds since the epoch.
    pub fn start_time_ns(mut self, ns: u64) -> PluginSettings {
        self.start_time_ns = ns;
        self
    }

    /// How long one call into the guest may run before it is interrupted (a trap); 10 s unless
    /// set, so a guest stuck in a loop fails its test instead of hanging it.
    pub fn call_timeout(mut self, timeout: Duration) -> PluginSettings {
        self.call_timeout = timeout;
        self
    }

    /// The shared-data store; pass clones of one store to several plugins to model Envoy's
    /// workers sharing data. Each plugin gets its own store unless set.
    pub fn shared_data(mut self, store: SharedData) -> PluginSettings {
        self.shared_data = store;
        self
    }

    /// The listener's `per_connection_buffer_limit_bytes` (Envoy's default 1 MiB; 0: no limit):
    /// how much body a filter may buffer before Envoy answers 413 (request) or resets the
    /// stream (response).
    pub fn per_connection_buffer_limit_bytes(mut self, bytes: usize) -> PluginSettings {
        self.buffer_limit_bytes = bytes;
        self
    }

    /// Answers a VM failure as Envoy does under `policy`: the client gets Envoy's response and the
    /// exchange is an outcome, not an error. Unset, a trap is a [`HarnessError::Trap`] (and every
    /// later call [`HarnessError::VmFailed`]), so a test notices a guest that traps.
    ///
    /// [`HarnessError::Trap`]: crate::HarnessError::Trap
    /// [`HarnessError::VmFailed`]: crate::HarnessError::VmFailed
    pub fn failure_policy(mut self, policy: FailurePolicy) -> PluginSettings {
        self.failure_policy = Some(policy);
        self
    }

    /// Envoy's `--concurrency`: the plugin starts as Envoy starts it, first in a canary VM that
    /// checks the configuration and is dropped, then in the main thread's VM and in each of
    /// `workers` workers' VMs (`workers + 2` starts), each running `proxy_on_vm_start` and
    /// `proxy_on_configure`, so start-up logs, metrics and shared data count every instance.
    /// Every VM but the canary then lives on: its ticks fire on the test clock, its http calls
    /// are answered, queue items reach the VM that registered the queue. A connection's requests
    /// run on one worker's VM, given in turn to each new connection or chosen with
    /// [`Plugin::assign_connection`]. Unset, the plugin is one VM started once.
    ///
    /// [`Plugin::assign_connection`]: crate::Plugin::assign_connection
    pub fn concurrency(mut self, workers: u32) -> PluginSettings {
        self.concurrency = workers;
        self
    }

    /// Seeds the deterministic generator behind `random_get` and x-request-id.
    pub fn seed(mut self, seed: u64) -> PluginSettings {
        self.seed = seed;
        self
    }
}
