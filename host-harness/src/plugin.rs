//! The test API: a [`Plugin`] is one VM running one guest module with one root context, driven
//! through Envoy's lifecycle; a [`Stream`] is one HTTP request through it. Tests assert on
//! outcomes: what the upstream receives, what the client receives, metrics, logs, filter state.

use crate::abi::{DataAction, HeadersAction, LogLevel, MetricType, Status};
use crate::connection::Connection;
use crate::error::HarnessError;
use crate::hcm::HttpConnectionManager;
use crate::headers::HeaderMap;
use crate::module::{engine, GuestModule};
use crate::shared::SharedData;
use crate::state::{ForeignFunction, HostState, StreamState};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{Instance, Linker, Store, Val, ValType};

/// The id of the plugin's root context (cpp-host numbers the VM context 0, the root 1).
pub(crate) const ROOT_CONTEXT_ID: u32 = 1;

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

    /// Seeds the deterministic generator behind `random_get` and x-request-id.
    pub fn seed(mut self, seed: u64) -> PluginSettings {
        self.seed = seed;
        self
    }
}

/// One log line the guest wrote (`proxy_log`, or stdout/stderr through WASI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub level: LogLevel,
    pub message: String,
    /// The context the line was logged from.
    pub context_id: u32,
}

/// A metric the guest defined: counters and gauges carry a value, histograms their samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    pub name: String,
    pub kind: MetricType,
    pub value: i64,
    pub samples: Vec<u64>,
}

/// All metrics at one moment, by name (as defined by the guest; Envoy shows them as
/// `wasmcustom.<name>` on `/stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    metrics: BTreeMap<String, Metric>,
}

/// How one metric moved between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricChange {
    pub name: String,
    pub kind: MetricType,
    pub before: i64,
    pub after: i64,
    /// Histogram samples recorded in between.
    pub new_samples: Vec<u64>,
}

impl MetricsSnapshot {
    pub fn get(&self, name: &str) -> Option<&Metric> {
        self.metrics.get(name)
    }

    /// The value of a counter or gauge.
    pub fn value(&self, name: &str) -> Option<i64> {
        self.get(name).map(|metric| metric.value)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Metric> {
        self.metrics.values()
    }

    /// Metrics that changed (or appeared) since `earlier`.
    pub fn changes_since(&self, earlier: &MetricsSnapshot) -> Vec<MetricChange> {
        self.metrics
            .values()
            .filter_map(|metric| {
                let before = earlier.get(&metric.name);
                let old_value = before.map_or(0, |b| b.value);
                let old_samples = before.map_or(0, |b| b.samples.len());
                let new_samples = metric.samples[old_samples.min(metric.samples.len())..].to_vec();
                (old_value != metric.value || !new_samples.is_empty() || before.is_none()).then(
                    || MetricChange {
                        name: metric.name.clone(),
                        kind: metric.kind,
                        before: old_value,
                        after: metric.value,
                        new_samples,
                    },
                )
            })
            .collect()
    }
}

/// Hostcalls a stream made, by import name (`proxy_get_header_map_value`, `fd_write`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostcallCounts {
    counts: BTreeMap<String, u64>,
}

impl HostcallCounts {
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    pub fn get(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.counts
            .iter()
            .map(|(name, count)| (name.as_str(), *count))
    }
}

/// The route Envoy matched for a request: what `xds.route_name`, `xds.cluster_name` and
/// `xds.virtual_host_name` return (each missing when unset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    pub name: Option<String>,
    pub cluster: Option<String>,
    pub virtual_host: Option<String>,
}

/// A request as the client sends it.
///
/// ```
/// use host_harness::Request;
/// let request = Request::get("/admin")
///     .authority("api.example.com")
///     .header("x-forwarded-for", "1.1.1.1")
///     .header("x-forwarded-for", "2.2.2.2")
///     .route_name("admin");
/// # let _ = request;
/// ```
#[derive(Debug, Clone)]
pub struct Request {
    headers: HeaderMap,
    body: Vec<Vec<u8>>,
    trailers: Option<HeaderMap>,
    route: Route,
}

impl Request {
    pub fn new(method: &str, path: &str) -> Request {
        let mut headers = HeaderMap::new();
        headers.add(":authority", "example.com");
        headers.add(":path", path);
        headers.add(":method", method);
        Request {
            headers,
            body: Vec::new(),
            trailers: None,
            route: Route::default(),
        }
    }

    pub fn get(path: &str) -> Request {
        Request::new("GET", path)
    }

    pub fn post(path: &str) -> Request {
        Request::new("POST", path)
    }

    /// The `:authority` (HTTP/1 `Host`); `example.com` unless set.
    pub fn authority(mut self, authority: &str) -> Request {
        self.headers.set(":authority", authority);
        self
    }

    /// Adds a header; call again with the same name to send it repeated.
    pub fn header(mut self, key: &str, value: &str) -> Request {
        self.headers.add(key, value);
        self
    }

    /// The body, delivered in one `proxy_on_request_body` call.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = vec![body.into()];
        self
    }

    /// Adds a body chunk: each chunk is one `proxy_on_request_body` call.
    pub fn body_chunk(mut self, chunk: impl Into<Vec<u8>>) -> Request {
        self.body.push(chunk.into());
        self
    }

    pub fn trailer(mut self, key: &str, value: &str) -> Request {
        self.trailers
            .get_or_insert_with(HeaderMap::new)
            .add(key, value);
        self
    }

    pub fn route_name(mut self, name: &str) -> Request {
        self.route.name = Some(name.to_string());
        self
    }

    pub fn cluster_name(mut self, name: &str) -> Request {
        self.route.cluster = Some(name.to_string());
        self
    }

    pub fn virtual_host_name(mut self, name: &str) -> Request {
        self.route.virtual_host = Some(name.to_string());
        self
    }
}

/// A response as the test upstream sends it.
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    headers: HeaderMap,
    body: Vec<Vec<u8>>,
    trailers: Option<HeaderMap>,
}

impl UpstreamResponse {
    pub fn status(status: u32) -> UpstreamResponse {
        let mut headers = HeaderMap::new();
        headers.add(":status", &status.to_string());
        UpstreamResponse {
            headers,
            body: Vec::new(),
            trailers: None,
        }
    }

    /// `200` with no body.
    pub fn ok() -> UpstreamResponse {
        UpstreamResponse::status(200)
    }

    pub fn header(mut self, key: &str, value: &str) -> UpstreamResponse {
        self.headers.add(key, value);
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> UpstreamResponse {
        self.body = vec![body.into()];
        self
    }

    pub fn trailer(mut self, key: &str, value: &str) -> UpstreamResponse {
        self.trailers
            .get_or_insert_with(HeaderMap::new)
            .add(key, value);
        self
    }
}

/// A response the filter generated with `proxy_send_local_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u32,
    /// The extra headers the guest passed (keys lowercased).
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The gRPC status, when the guest gave a well-known one (0..=16).
    pub grpc_status: Option<u32>,
    /// Response code details, whitespace replaced by `_` as Envoy does.
    pub details: String,
}

/// The request as the upstream receives it (after the HCM and the filter; the router's own
/// additions such as `x-envoy-expected-rq-timeout-ms` are not included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRequest {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: Option<HeaderMap>,
}

/// What became of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOutcome {
    /// The filter let it through.
    Continued(UpstreamRequest),
    /// The filter answered it itself.
    LocalResponse(LocalResponse),
    /// The filter stopped iteration and has not resumed (e.g. it awaits an http call).
    Paused,
    /// The filter reset the stream (`proxy_close_stream`).
    Reset,
}

impl RequestOutcome {
    pub fn upstream(&self) -> Option<&UpstreamRequest> {
        match self {
            RequestOutcome::Continued(upstream) => Some(upstream),
            _ => None,
        }
    }

    pub fn local_response(&self) -> Option<&LocalResponse> {
        match self {
            RequestOutcome::LocalResponse(response) => Some(response),
            _ => None,
        }
    }

    pub fn is_continued(&self) -> bool {
        self.upstream().is_some()
    }
}

/// The response as the client receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientResponse {
    pub status: u32,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: Option<HeaderMap>,
    /// Whether the response is the filter's local response.
    pub local: bool,
    /// Whether the filter still holds the response (stopped iteration without resuming).
    pub paused: bool,
}

/// An http call the guest dispatched (`proxy_http_call`), waiting for the test's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchedHttpCall {
    pub token: u32,
    pub cluster: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: HeaderMap,
    pub timeout_ms: u32,
    /// When Envoy's async client gives up on the call (`None`: timeout 0, no deadline).
    pub deadline_ns: Option<u64>,
    /// The context that made the call.
    pub context_id: u32,
}

/// The test's answer to a dispatched http call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpCallResponse {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: HeaderMap,
}

impl HttpCallResponse {
    pub fn status(status: u32) -> HttpCallResponse {
        HttpCallResponse {
            headers: HeaderMap::from([(":status", status.to_string())]),
            ..HttpCallResponse::default()
        }
    }

    pub fn header(mut self, key: &str, value: &str) -> HttpCallResponse {
        self.headers.add(key, value);
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> HttpCallResponse {
        self.body = body.into();
        self
    }
}

/// The result of `proxy_on_configure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configured {
    /// Whether the guest accepted the configuration (Envoy refuses to start otherwise).
    pub accepted: bool,
    /// The lines the guest logged while configuring.
    pub logs: Vec<LogRecord>,
}

/// Everything one request left behind, from [`Plugin::send`] or [`Stream::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub request: RequestOutcome,
    /// The response the client got, when the request was answered.
    pub response: Option<ClientResponse>,
    /// Filter state the guest set with `proxy_set_property`, under Envoy's keys (`wasm.<name>`).
    pub filter_state: BTreeMap<String, Vec<u8>>,
    pub hostcalls: HostcallCounts,
    /// The lines logged from this stream's context.
    pub logs: Vec<LogRecord>,
}

/// One VM running a guest module, with its root context started and configured.
///
/// ```
/// use host_harness::{Connection, GuestModule, Plugin, PluginSettings, Request};
/// let module = GuestModule::from_wat("hello", r#"(module
///   (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
///   (memory (export "memory") 1)
///   (data (i32.const 16) "hello")
///   (func (export "proxy_abi_version_0_2_1"))
///   (func (export "malloc") (param i32) (result i32) (i32.const 1024))
///   (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
///     (drop (call $log (i32.const 2) (i32.const 16) (i32.const 5)))
///     (i32.const 0)))"#).unwrap();
/// let mut plugin = Plugin::new(&module, PluginSettings::new("hello")).unwrap();
/// assert!(plugin.configured().accepted);
/// let exchange = plugin.send(&Connection::plain(), Request::get("/")).unwrap();
/// assert!(exchange.request.is_continued());
/// assert_eq!(plugin.logs_at(host_harness::LogLevel::Info), ["hello"]);
/// ```
pub struct Plugin {
    store: Store<HostState>,
    instance: Instance,
    module_name: Arc<str>,
    configured: Configured,
    failure: Option<String>,
    next_context_id: u32,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("module", &self.module_name)
            .field("configured", &self.configured)
            .finish()
    }
}

fn instantiate_error(module: &GuestModule, reason: impl std::fmt::Display) -> HarnessError {
    HarnessError::Instantiate {
        module: module.name.to_string(),
        reason: reason.to_string(),
    }
}

impl Plugin {
    /// Instantiates the module, runs its WASI initialiser, creates the root context, and calls
    /// `proxy_on_vm_start` and `proxy_on_configure` as Envoy does when it loads the plugin.
    /// A rejected configuration is reported in [`Plugin::configured`], not as an error.
    pub fn new(module: &GuestModule, mut settings: PluginSettings) -> Result<Plugin, HarnessError> {
        let exports: HashSet<String> = module.exports().into_iter().collect();
        if ![
            "proxy_abi_version_0_2_1",
            "proxy_abi_version_0_2_0",
            "proxy_abi_version_0_1_0",
        ]
        .iter()
        .any(|abi| exports.contains(*abi))
        {
            return Err(HarnessError::MissingExport {
                module: module.name.to_string(),
                export: "proxy_abi_version_0_2_1 (or 0_2_0, 0_1_0)".to_string(),
            });
        }
        settings.abi_0_1_0 = exports.contains("proxy_abi_version_0_1_0");
        let mut linker = Linker::new(engine());
        crate::hostcalls::add_to_linker(&mut linker).map_err(|e| instantiate_error(module, e))?;
        crate::wasi::add_to_linker(&mut linker).map_err(|e| instantiate_error(module, e))?;
        let mut store = Store::new(engine(), HostState::new(Arc::new(settings)));
        store.set_epoch_deadline(epoch_ticks(store.data().settings.call_timeout));
        let instance = linker
            .instantiate(&mut store, &module.module)
            .map_err(|e| instantiate_error(module, format!("{e:#}")))?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| instantiate_error(module, "the module exports no `memory`"))?;
        // cpp-host looks for `malloc` first, then `proxy_on_memory_allocate`.
        let allocator = ["malloc", "proxy_on_memory_allocate"]
            .iter()
            .find_map(|name| instance.get_typed_func::<i32, i32>(&mut store, name).ok())
            .ok_or_else(|| HarnessError::MissingExport {
                module: module.name.to_string(),
                export: "malloc or proxy_on_memory_allocate".to_string(),
            })?;
        store.data_mut().memory = Some(memory);
        store.data_mut().allocator = Some(allocator);
        store
            .data_mut()
            .roots
            .insert(ROOT_CONTEXT_ID, Default::default());
        let mut plugin = Plugin {
            store,
            instance,
            module_name: module.name.clone(),
            configured: Configured {
                accepted: false,
                logs: Vec::new(),
            },
            failure: None,
            next_context_id: ROOT_CONTEXT_ID + 1,
        };
        let initializer = if exports.contains("_initialize") {
            "_initialize"
        } else {
            "_start"
        };
        plugin.call(initializer, &[])?;
        plugin.call("proxy_on_context_create", &[ROOT_CONTEXT_ID, 0])?;
        let vm_configuration_size = plugin.store.data().settings.vm_configuration.len() as u32;
        if plugin.call(
            "proxy_on_vm_start",
            &[ROOT_CONTEXT_ID, vm_configuration_size],
        )? == Some(0)
        {
            return Err(instantiate_error(
                module,
                "proxy_on_vm_start returned false",
            ));
        }
        let configuration = plugin.store.data().settings.configuration.clone();
        plugin.configured = plugin.configure(configuration)?;
        Ok(plugin)
    }

    /// Loads and starts a plugin from a file in one step.
    pub fn load(
        path: impl AsRef<std::path::Path>,
        settings: PluginSettings,
    ) -> Result<Plugin, HarnessError> {
        Plugin::new(&GuestModule::load(path)?, settings)
    }

    /// The outcome of the last `proxy_on_configure`.
    pub fn configured(&self) -> &Configured {
        &self.configured
    }

    /// Delivers a new plugin configuration (`proxy_on_configure` again), as a config update does.
    pub fn configure(
        &mut self,
        configuration: impl Into<Vec<u8>>,
    ) -> Result<Configured, HarnessError> {
        let configuration = configuration.into();
        let size = configuration.len() as u32;
        let first_log = self.store.data().logs.len();
        self.store.data_mut().plugin_configuration = configuration;
        self.store.data_mut().configuring = true;
        let result = self.call("proxy_on_configure", &[ROOT_CONTEXT_ID, size]);
        self.store.data_mut().configuring = false;
        let accepted = result? != Some(0);
        let configured = Configured {
            accepted,
            logs: self.store.data().logs[first_log..].to_vec(),
        };
        self.configured = configured.clone();
        Ok(configured)
    }

    /// Every line the guest logged so far.
    pub fn logs(&self) -> &[LogRecord] {
        &self.store.data().logs
    }

    /// Removes and returns the lines logged so far (long runs, such as benchmarks, drain them).
    pub fn take_logs(&mut self) -> Vec<LogRecord> {
        std::mem::take(&mut self.store.data_mut().logs)
    }

    /// The messages logged at `level`, in order.
    pub fn logs_at(&self, level: LogLevel) -> Vec<&str> {
        self.logs()
            .iter()
            .filter(|record| record.level == level)
            .map(|record| record.message.as_str())
            .collect()
    }

    /// The current metrics.
    pub fn metrics(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            metrics: self
                .store
                .data()
                .metrics
                .metrics
                .iter()
                .map(|metric| (metric.name.clone(), metric.clone()))
                .collect(),
        }
    }

    /// The value of one counter or gauge.
    pub fn metric_value(&self, name: &str) -> Option<i64> {
        self.metrics().value(name)
    }

    /// The test clock, in nanoseconds since the epoch.
    pub fn now_ns(&self) -> u64 {
        self.store.data().now_ns
    }

    /// Moves the clock forward, firing in time order `proxy_on_tick` for every tick period that
    /// elapses and the timeout of every http call whose deadline passes (Envoy's async client
    /// answers those itself with a `504` and body `upstream request timeout`).
    pub fn advance_time(&mut self, by: Duration) -> Result<(), HarnessError> {
        let target = self.now_ns().saturating_add(by.as_nanos() as u64);
        loop {
            let tick = self.next_tick().filter(|&due| due <= target);
            let timeout = self
                .store
                .data()
                .http_calls
                .values()
                .filter_map(|call| call.deadline_ns.map(|deadline| (deadline, call.token)))
                .filter(|&(deadline, _)| deadline <= target)
                .min();
            match (tick, timeout) {
                (Some(due), Some((deadline, _))) if due <= deadline => self.fire_tick(due)?,
                (_, Some((deadline, token))) => {
                    self.store.data_mut().now_ns = deadline;
                    let timed_out = HttpCallResponse::status(504)
                        .header("content-type", "text/plain")
                        .body("upstream request timeout");
                    self.respond_http_call(token, timed_out)?;
                }
                (Some(due), None) => self.fire_tick(due)?,
                (None, None) => break,
            }
        }
        self.store.data_mut().now_ns = target;
        Ok(())
    }

    /// Moves the clock to the next tick and fires it; an error if no tick period is set.
    pub fn tick(&mut self) -> Result<(), HarnessError> {
        let due = self
            .next_tick()
            .ok_or_else(|| HarnessError::usage("tick() without a tick period set by the guest"))?;
        self.fire_tick(due)
    }

    fn next_tick(&self) -> Option<u64> {
        self.store
            .data()
            .roots
            .get(&ROOT_CONTEXT_ID)
            .and_then(|root| root.next_tick_ns)
    }

    fn fire_tick(&mut self, due: u64) -> Result<(), HarnessError> {
        let state = self.store.data_mut();
        state.now_ns = due;
        if let Some(root) = state.roots.get_mut(&ROOT_CONTEXT_ID) {
            root.next_tick_ns = Some(due + root.tick_period_ms * 1_000_000);
        }
        self.call("proxy_on_tick", &[ROOT_CONTEXT_ID]).map(drop)
    }

    /// The http calls the guest dispatched and the test has not answered yet.
    pub fn http_calls(&self) -> Vec<DispatchedHttpCall> {
        self.store.data().http_calls.values().cloned().collect()
    }

    /// Answers a dispatched http call (`proxy_on_http_call_response` on the root context).
    pub fn respond_http_call(
        &mut self,
        token: u32,
        response: HttpCallResponse,
    ) -> Result<(), HarnessError> {
        self.take_http_call(token)?;
        let sizes = [
            response.headers.len() as u32,
            response.body.len() as u32,
            response.trailers.len() as u32,
        ];
        self.store.data_mut().http_call_response = Some(response);
        let result = self.call(
            "proxy_on_http_call_response",
            &[ROOT_CONTEXT_ID, token, sizes[0], sizes[1], sizes[2]],
        );
        self.store.data_mut().http_call_response = None;
        result.map(drop)
    }

    /// Fails a dispatched http call as a reset upstream does (status BROKEN_CONNECTION, "reset").
    pub fn fail_http_call(&mut self, token: u32) -> Result<(), HarnessError> {
        self.take_http_call(token)?;
        self.store.data_mut().status = (Status::BrokenConnection as u32, "reset".to_string());
        let result = self.call(
            "proxy_on_http_call_response",
            &[ROOT_CONTEXT_ID, token, 0, 0, 0],
        );
        self.store.data_mut().status = (0, String::new());
        result.map(drop)
    }

    fn take_http_call(&mut self, token: u32) -> Result<DispatchedHttpCall, HarnessError> {
        self.store
            .data_mut()
            .http_calls
            .remove(&token)
            .ok_or_else(|| HarnessError::usage(format!("no pending http call with token {token}")))
    }

    /// The plugin's shared-data store (shared with every plugin given the same store).
    pub fn shared_data(&self) -> &SharedData {
        &self.store.data().settings.shared_data
    }

    /// Enqueues to a queue the guest registered, then delivers `proxy_on_queue_ready`.
    pub fn enqueue(&mut self, queue_name: &str, data: &[u8]) -> Result<(), HarnessError> {
        let state = self.store.data_mut();
        let token = state
            .queues
            .iter()
            .position(|queue| queue.name == queue_name)
            .ok_or_else(|| HarnessError::usage(format!("no shared queue named {queue_name:?}")))?
            as u32
            + 1;
        state.enqueue(token, data.to_vec());
        self.deliver_ready_queues()
    }

    /// Stops the plugin as Envoy does on drain: `proxy_on_done` on the root context, and
    /// `proxy_on_delete` once it is done (at once, or when the guest later calls `proxy_done`).
    /// Returns whether the root context finished.
    pub fn shutdown(&mut self) -> Result<bool, HarnessError> {
        let done = self.call("proxy_on_done", &[ROOT_CONTEXT_ID])? != Some(0);
        if !done {
            self.store.data_mut().pending_done.push(ROOT_CONTEXT_ID);
            return Ok(false);
        }
        self.call("proxy_on_delete", &[ROOT_CONTEXT_ID])?;
        Ok(true)
    }

    /// Whether the guest called `proxy_done` for its root context after a deferred shutdown.
    pub fn done_called(&self) -> bool {
        self.store.data().done_called.contains(&ROOT_CONTEXT_ID)
    }

    /// Opens an HTTP stream for `request` on `connection` and runs the request path.
    pub fn stream(
        &mut self,
        connection: &Connection,
        request: Request,
    ) -> Result<Stream<'_>, HarnessError> {
        if !self.configured.accepted {
            return Err(HarnessError::usage(
                "the plugin rejected its configuration; Envoy would not have started it",
            ));
        }
        let id = self.next_context_id;
        self.next_context_id += 1;
        let connection = Arc::new(connection.clone());
        let mut headers = request.headers;
        let state = self.store.data_mut();
        let first_log = state.logs.len();
        let hcm = state.settings.hcm.clone();
        let source = hcm.apply(&mut headers, &connection, &mut || state.new_request_id());
        let stream = StreamState::new(connection, source, request.route, state.now_ns, headers);
        state.streams.insert(id, stream);
        self.call("proxy_on_context_create", &[id, ROOT_CONTEXT_ID])?;
        let mut stream = Stream {
            plugin: self,
            id,
            request_body: request.body.into(),
            request_trailers: request.trailers,
            request_stage: Stage::Headers,
            upstream_body: Vec::new(),
            outcome: RequestOutcome::Paused,
            response_body: VecDeque::new(),
            response_trailers: None,
            response_stage: Stage::Done,
            client_body: Vec::new(),
            response: None,
            first_log,
            finished: false,
        };
        stream.drive_request()?;
        Ok(stream)
    }

    /// One complete exchange: the request path, a `200` from the upstream if the request went
    /// through, then `proxy_on_log`, `proxy_on_done` and `proxy_on_delete`.
    pub fn send(
        &mut self,
        connection: &Connection,
        request: Request,
    ) -> Result<Exchange, HarnessError> {
        self.exchange(connection, request, UpstreamResponse::ok())
    }

    /// Like [`Plugin::send`] with the upstream answering `response`.
    pub fn exchange(
        &mut self,
        connection: &Connection,
        request: Request,
        response: UpstreamResponse,
    ) -> Result<Exchange, HarnessError> {
        let mut stream = self.stream(connection, request)?;
        if stream.outcome().is_continued() {
            stream.respond(response)?;
        }
        stream.finish()
    }

    /// Calls a guest export with the current context set to the first argument; a missing
    /// export is skipped as cpp-host skips absent callbacks. Returns the first result.
    pub(crate) fn call(&mut self, name: &str, args: &[u32]) -> Result<Option<u32>, HarnessError> {
        let result = self.call_once(name, args)?;
        self.deliver_ready_queues()?;
        Ok(result)
    }

    fn call_once(&mut self, name: &str, args: &[u32]) -> Result<Option<u32>, HarnessError> {
        if let Some(failure) = &self.failure {
            return Err(HarnessError::VmFailed {
                first_failure: failure.clone(),
            });
        }
        let Some(function) = self.instance.get_func(&mut self.store, name) else {
            return Ok(None);
        };
        let ty = function.ty(&self.store);
        let params: Vec<Val> = ty
            .params()
            .enumerate()
            .map(|(index, param)| {
                let arg = args.get(index).copied().unwrap_or(0);
                match param {
                    ValType::I64 => Val::I64(i64::from(arg)),
                    _ => Val::I32(arg as i32),
                }
            })
            .collect();
        let mut results: Vec<Val> = ty.results().map(|_| Val::I32(0)).collect();
        let ticks = epoch_ticks(self.store.data().settings.call_timeout);
        self.store.set_epoch_deadline(ticks);
        let state = self.store.data_mut();
        let previous_context = state.current_context;
        state.current_context = args.first().copied().unwrap_or(0);
        state.effective_context = None;
        state.panic_message = None;
        let outcome = function.call(&mut self.store, &params, &mut results);
        let state = self.store.data_mut();
        state.current_context = previous_context;
        state.effective_context = None;
        match outcome {
            Ok(()) => Ok(results.first().and_then(|value| match value {
                Val::I32(n) => Some(*n as u32),
                Val::I64(n) => Some(*n as u32),
                _ => None,
            })),
            Err(error) => {
                let panic = state.panic_message.take();
                let trap = format!("{error:?}");
                let error = HarnessError::Trap {
                    call: name.to_string(),
                    panic,
                    trap,
                };
                // Envoy marks the VM failed: every later call fails (FAIL_CLOSED answers 503).
                self.failure = Some(error.to_string());
                Err(error)
            }
        }
    }

    fn deliver_ready_queues(&mut self) -> Result<(), HarnessError> {
        while let Some((root, token)) = self.store.data_mut().ready_queues.pop_front() {
            self.call_once("proxy_on_queue_ready", &[root, token])?;
        }
        Ok(())
    }

    fn stream_state(&mut self, id: u32) -> Result<&mut StreamState, HarnessError> {
        self.store
            .data_mut()
            .streams
            .get_mut(&id)
            .ok_or_else(|| HarnessError::usage(format!("stream {id} is gone")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Headers,
    Body,
    Trailers,
    Done,
}

/// One HTTP request through the plugin, advanced by the test: the request path runs when the
/// stream opens; [`Stream::respond`] runs the response path; [`Stream::finish`] logs and
/// destroys the context (dropping an unfinished stream finishes it, ignoring errors).
///
/// ```
/// use host_harness::{Connection, GuestModule, Plugin, PluginSettings, Request, UpstreamResponse};
/// let module = GuestModule::from_wat("noop", r#"(module (memory (export "memory") 1)
///   (func (export "proxy_abi_version_0_2_1"))
///   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#).unwrap();
/// let mut plugin = Plugin::new(&module, PluginSettings::new("noop")).unwrap();
/// let before = plugin.metrics();
/// let request = Request::get("/").header("x-a", "1");
/// let mut stream = plugin.stream(&Connection::plain(), request).unwrap();
/// let upstream = stream.outcome().upstream().unwrap();
/// assert_eq!(upstream.headers.get("x-a"), Some("1"));
/// assert_eq!(upstream.headers.get("x-forwarded-proto"), Some("http")); // the HCM ran
/// let response = stream.respond(UpstreamResponse::status(204)).unwrap();
/// assert_eq!((response.status, response.headers.get("server")), (204, Some("envoy")));
/// let exchange = stream.finish().unwrap();
/// assert_eq!(exchange.hostcalls.total(), 0);
/// assert!(plugin.metrics().changes_since(&before).is_empty());
/// ```
pub struct Stream<'p> {
    plugin: &'p mut Plugin,
    id: u32,
    request_body: VecDeque<Vec<u8>>,
    request_trailers: Option<HeaderMap>,
    request_stage: Stage,
    upstream_body: Vec<u8>,
    outcome: RequestOutcome,
    response_body: VecDeque<Vec<u8>>,
    response_trailers: Option<HeaderMap>,
    response_stage: Stage,
    client_body: Vec<u8>,
    response: Option<ClientResponse>,
    first_log: usize,
    finished: bool,
}

impl Stream<'_> {
    /// The stream's context id.
    pub fn context_id(&self) -> u32 {
        self.id
    }

    /// What became of the request so far.
    pub fn outcome(&self) -> &RequestOutcome {
        &self.outcome
    }

    /// The response the client got, once there is one.
    pub fn response(&self) -> Option<&ClientResponse> {
        self.response.as_ref()
    }

    /// The plugin, e.g. to read metrics or logs mid-stream.
    pub fn plugin(&mut self) -> &mut Plugin {
        self.plugin
    }

    /// Hostcalls this stream's context has made so far.
    pub fn hostcalls(&self) -> HostcallCounts {
        hostcall_counts(self.plugin.store.data(), self.id)
    }

    /// Filter state set so far, under Envoy's keys (`wasm.<name>`).
    pub fn filter_state(&self) -> BTreeMap<String, Vec<u8>> {
        self.plugin
            .store
            .data()
            .streams
            .get(&self.id)
            .map(|stream| stream.filter_state.clone())
            .unwrap_or_default()
    }

    /// Answers an http call and resumes the stream if the guest continued it.
    pub fn respond_http_call(
        &mut self,
        token: u32,
        response: HttpCallResponse,
    ) -> Result<(), HarnessError> {
        self.plugin.respond_http_call(token, response)?;
        self.resume()
    }

    /// Fails an http call and resumes the stream if the guest continued it.
    pub fn fail_http_call(&mut self, token: u32) -> Result<(), HarnessError> {
        self.plugin.fail_http_call(token)?;
        self.resume()
    }

    /// Moves the test clock (ticks, http call timeouts) and resumes the stream if the guest
    /// continued it meanwhile.
    pub fn advance_time(&mut self, by: Duration) -> Result<(), HarnessError> {
        self.plugin.advance_time(by)?;
        self.resume()
    }

    /// Runs the response path with the upstream's `response`; returns what the client gets.
    pub fn respond(&mut self, response: UpstreamResponse) -> Result<&ClientResponse, HarnessError> {
        if !self.outcome.is_continued() {
            return Err(HarnessError::usage(format!(
                "respond() needs a request that went upstream; it is {:?}",
                self.outcome
            )));
        }
        let status = parse_status(&response.headers);
        let stream = self.plugin.stream_state(self.id)?;
        stream.response_headers = Some(response.headers);
        stream.response_code = Some(status);
        stream.response_code_details = Some("via_upstream".to_string());
        self.response_body = response.body.into();
        self.response_trailers = response.trailers;
        self.response_stage = Stage::Headers;
        self.drive_response(false)?;
        self.response
            .as_ref()
            .ok_or_else(|| HarnessError::usage("the response path produced no response"))
    }

    /// `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`; returns what the request left behind.
    pub fn finish(mut self) -> Result<Exchange, HarnessError> {
        self.finished = true;
        let id = self.id;
        let stream = self.plugin.stream_state(id)?;
        stream.live = Default::default();
        stream.access_log_phase = true;
        let logged = self.plugin.call("proxy_on_log", &[id]);
        if let Ok(stream) = self.plugin.stream_state(id) {
            stream.access_log_phase = false;
        }
        logged?;
        self.plugin.call("proxy_on_done", &[id])?;
        self.plugin.call("proxy_on_delete", &[id])?;
        let state = self.plugin.store.data_mut();
        let hostcalls = hostcall_counts(state, id);
        state.hostcalls.remove(&id);
        let filter_state = state
            .streams
            .remove(&id)
            .map(|stream| stream.filter_state)
            .unwrap_or_default();
        let logs = state
            .logs
            .get(self.first_log..)
            .unwrap_or_default()
            .iter()
            .filter(|record| record.context_id == id)
            .cloned()
            .collect();
        Ok(Exchange {
            request: self.outcome.clone(),
            response: self.response.clone(),
            filter_state,
            hostcalls,
            logs,
        })
    }

    /// Continues whichever side the guest resumed with `proxy_continue_stream`.
    fn resume(&mut self) -> Result<(), HarnessError> {
        let id = self.id;
        let Some(stream) = self.plugin.store.data_mut().streams.get_mut(&id) else {
            return Ok(());
        };
        if stream.local_response.is_some() {
            return self.drive_request();
        }
        if self.outcome == RequestOutcome::Paused && std::mem::take(&mut stream.continue_request) {
            self.advance_request()?;
            self.drive_request()?;
        }
        let stream = self.plugin.stream_state(id)?;
        if self.response.as_ref().is_some_and(|r| r.paused)
            && std::mem::take(&mut stream.continue_response)
        {
            self.advance_response()?;
            self.drive_response(false)?;
        }
        Ok(())
    }

    /// Lets the stopped request stage pass (what Envoy's `continueDecoding` does).
    fn advance_request(&mut self) -> Result<(), HarnessError> {
        let stream = self.plugin.stream_state(self.id)?;
        match self.request_stage {
            Stage::Headers => {
                stream.live.request_headers = false;
                self.request_stage = Stage::Body;
            }
            Stage::Body => {
                stream.live.request_body = false;
                self.upstream_body.append(&mut stream.request_body);
                if self.request_body.is_empty() {
                    self.request_stage = Stage::Trailers;
                }
            }
            Stage::Trailers => {
                stream.live.request_trailers = false;
                self.request_stage = Stage::Done;
            }
            Stage::Done => {}
        }
        Ok(())
    }

    fn advance_response(&mut self) -> Result<(), HarnessError> {
        let stream = self.plugin.stream_state(self.id)?;
        match self.response_stage {
            Stage::Headers => {
                stream.live.response_headers = false;
                self.response_stage = Stage::Body;
            }
            Stage::Body => {
                stream.live.response_body = false;
                self.client_body.append(&mut stream.response_body);
                if self.response_body.is_empty() {
                    self.response_stage = Stage::Trailers;
                }
            }
            Stage::Trailers => {
                stream.live.response_trailers = false;
                self.response_stage = Stage::Done;
            }
            Stage::Done => {}
        }
        Ok(())
    }

    /// Runs request callbacks until the request goes upstream, is answered, or stops.
    fn drive_request(&mut self) -> Result<(), HarnessError> {
        let id = self.id;
        loop {
            if self.take_local_response()? {
                return Ok(());
            }
            let more_body = !self.request_body.is_empty();
            let has_trailers = self.request_trailers.is_some();
            let stream = self.plugin.stream_state(id)?;
            if stream.closed {
                self.outcome = RequestOutcome::Reset;
                return Ok(());
            }
            let proceed = match self.request_stage {
                Stage::Headers => {
                    stream.live.request_headers = true;
                    stream.end_of_stream = !more_body && !has_trailers;
                    let args = [
                        id,
                        stream.request_headers.len() as u32,
                        u32::from(stream.end_of_stream),
                    ];
                    let action = self.plugin.call("proxy_on_request_headers", &args)?;
                    HeadersAction::from_code(action.unwrap_or(0)) == HeadersAction::Continue
                }
                Stage::Body if more_body => {
                    let chunk = self.request_body.pop_front().unwrap_or_default();
                    stream.request_body_bytes += chunk.len() as u64;
                    stream.request_body.extend_from_slice(&chunk);
                    stream.live.request_body = true;
                    stream.end_of_stream = self.request_body.is_empty() && !has_trailers;
                    let eos = stream.end_of_stream;
                    let args = [id, stream.request_body.len() as u32, u32::from(eos)];
                    let action = self.plugin.call("proxy_on_request_body", &args)?;
                    let go = DataAction::from_code(action.unwrap_or(0)) == DataAction::Continue;
                    // A stopped chunk short of the end keeps buffering: the next chunk arrives.
                    if !go && !eos && !self.take_continue_request()? {
                        continue;
                    }
                    go
                }
                Stage::Body => {
                    self.request_stage = Stage::Trailers;
                    continue;
                }
                Stage::Trailers => match self.request_trailers.take() {
                    Some(trailers) => {
                        let count = trailers.len() as u32;
                        stream.request_trailers = Some(trailers);
                        stream.live.request_trailers = true;
                        let action = self
                            .plugin
                            .call("proxy_on_request_trailers", &[id, count])?;
                        action.unwrap_or(0) == 0
                    }
                    None => {
                        self.request_stage = Stage::Done;
                        continue;
                    }
                },
                Stage::Done => {
                    let stream = self.plugin.stream_state(id)?;
                    stream.live.request_headers = false;
                    // Data still buffered by a stopped body callback flows once the stream does.
                    self.upstream_body.append(&mut stream.request_body);
                    self.outcome = RequestOutcome::Continued(UpstreamRequest {
                        headers: stream.request_headers.clone(),
                        body: std::mem::take(&mut self.upstream_body),
                        trailers: stream.request_trailers.clone(),
                    });
                    return Ok(());
                }
            };
            if self.take_local_response()? {
                return Ok(());
            }
            if proceed || self.take_continue_request()? {
                self.advance_request()?;
            } else {
                self.outcome = if self.plugin.stream_state(id)?.closed {
                    RequestOutcome::Reset
                } else {
                    RequestOutcome::Paused
                };
                return Ok(());
            }
        }
    }

    fn take_continue_request(&mut self) -> Result<bool, HarnessError> {
        Ok(std::mem::take(
            &mut self.plugin.stream_state(self.id)?.continue_request,
        ))
    }

    /// If the guest sent a local response, records it and runs it through the filter's
    /// response callbacks, as Envoy encodes a local reply through the filter chain.
    fn take_local_response(&mut self) -> Result<bool, HarnessError> {
        let stream = self.plugin.stream_state(self.id)?;
        let Some(local) = stream.local_response.take() else {
            return Ok(false);
        };
        let grpc_request = stream
            .request_headers
            .get("content-type")
            .is_some_and(|content_type| content_type.starts_with("application/grpc"));
        let (headers, body) = local_reply(&local, grpc_request);
        if self.outcome.is_continued() {
            // Sent during the response path: the client gets it instead of the upstream's.
            let mut headers = headers;
            headers.set("server", "envoy");
            self.response = Some(ClientResponse {
                status: parse_status(&headers),
                headers,
                body,
                trailers: None,
                local: true,
                paused: false,
            });
            self.response_stage = Stage::Done;
            return Ok(true);
        }
        stream.live = Default::default();
        stream.response_code = Some(parse_status(&headers));
        stream.response_code_details = Some(local.details.clone());
        stream.response_headers = Some(headers);
        self.outcome = RequestOutcome::LocalResponse(local);
        self.request_stage = Stage::Done;
        self.response_body = if body.is_empty() {
            VecDeque::new()
        } else {
            VecDeque::from([body])
        };
        self.response_trailers = None;
        self.response_stage = Stage::Headers;
        self.drive_response(true)?;
        Ok(true)
    }

    /// Runs response callbacks until the response reaches the client or stops.
    fn drive_response(&mut self, local: bool) -> Result<(), HarnessError> {
        let id = self.id;
        loop {
            let more_body = !self.response_body.is_empty();
            let has_trailers = self.response_trailers.is_some();
            let stream = self.plugin.stream_state(id)?;
            let proceed = match self.response_stage {
                Stage::Headers => {
                    stream.live.response_headers = true;
                    stream.end_of_stream = !more_body && !has_trailers;
                    let count = stream.response_headers.as_ref().map_or(0, HeaderMap::len);
                    let args = [id, count as u32, u32::from(stream.end_of_stream)];
                    let action = self.plugin.call("proxy_on_response_headers", &args)?;
                    HeadersAction::from_code(action.unwrap_or(0)) == HeadersAction::Continue
                }
                Stage::Body if more_body => {
                    let chunk = self.response_body.pop_front().unwrap_or_default();
                    stream.response_body.extend_from_slice(&chunk);
                    stream.live.response_body = true;
                    stream.end_of_stream = self.response_body.is_empty() && !has_trailers;
                    let eos = stream.end_of_stream;
                    let args = [id, stream.response_body.len() as u32, u32::from(eos)];
                    let action = self.plugin.call("proxy_on_response_body", &args)?;
                    let go = DataAction::from_code(action.unwrap_or(0)) == DataAction::Continue;
                    if !go && !eos {
                        continue;
                    }
                    go
                }
                Stage::Body => {
                    self.response_stage = Stage::Trailers;
                    continue;
                }
                Stage::Trailers => match self.response_trailers.take() {
                    Some(trailers) => {
                        let count = trailers.len() as u32;
                        stream.response_trailers = Some(trailers);
                        stream.live.response_trailers = true;
                        let action = self
                            .plugin
                            .call("proxy_on_response_trailers", &[id, count])?;
                        action.unwrap_or(0) == 0
                    }
                    None => {
                        self.response_stage = Stage::Done;
                        continue;
                    }
                },
                Stage::Done => {
                    let stream = self.plugin.stream_state(id)?;
                    stream.live.response_headers = false;
                    self.client_body.append(&mut stream.response_body);
                    let mut headers = stream.response_headers.clone().unwrap_or_default();
                    // Envoy's default server_header_transformation (OVERWRITE).
                    headers.set("server", "envoy");
                    self.response = Some(ClientResponse {
                        status: parse_status(&headers),
                        headers,
                        body: std::mem::take(&mut self.client_body),
                        trailers: stream.response_trailers.clone(),
                        local,
                        paused: false,
                    });
                    return Ok(());
                }
            };
            if !local && self.take_local_response()? {
                return Ok(());
            }
            let resumed = std::mem::take(&mut self.plugin.stream_state(id)?.continue_response);
            if proceed || resumed {
                self.advance_response()?;
            } else {
                let stream = self.plugin.stream_state(id)?;
                self.response = Some(ClientResponse {
                    status: stream.response_code.unwrap_or(0),
                    headers: HeaderMap::new(),
                    body: Vec::new(),
                    trailers: None,
                    local,
                    paused: true,
                });
                return Ok(());
            }
        }
    }
}

impl Drop for Stream<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let id = self.id;
        for callback in ["proxy_on_log", "proxy_on_done", "proxy_on_delete"] {
            if self.plugin.call(callback, &[id]).is_err() {
                break;
            }
        }
        self.plugin.store.data_mut().streams.remove(&id);
    }
}

/// A call timeout in engine epochs (at least one).
fn epoch_ticks(timeout: Duration) -> u64 {
    (timeout.as_millis() / crate::module::EPOCH_TICK.as_millis()).max(1) as u64
}

fn parse_status(headers: &HeaderMap) -> u32 {
    headers
        .get(":status")
        .and_then(|status| status.parse().ok())
        .unwrap_or(0)
}

/// The response Envoy's `sendLocalReply` builds (`prepareLocalReply`): the status, the guest's
/// extra headers, then content length and a `text/plain` default type for a body (both removed
/// for an empty one). A gRPC request gets a trailers-only `200` with `grpc-status` (the guest's,
/// else mapped from the HTTP status) and the body as percent-encoded `grpc-message`.
fn local_reply(local: &LocalResponse, grpc_request: bool) -> (HeaderMap, Vec<u8>) {
    let mut headers = HeaderMap::new();
    headers.add(":status", &local.status.to_string());
    for (key, value) in local.headers.iter() {
        headers.add(key, value);
    }
    if grpc_request {
        headers.set(":status", "200");
        headers.set("content-type", "application/grpc");
        if !headers.contains("grpc-status") {
            let status = local
                .grpc_status
                .unwrap_or_else(|| grpc_status_for_http(local.status));
            headers.set("grpc-status", &status.to_string());
        }
        if !local.body.is_empty() {
            headers.set("grpc-message", &grpc_percent_encode(&local.body));
        }
        return (headers, Vec::new());
    }
    if local.body.is_empty() {
        headers.remove("content-length");
        headers.remove("content-type");
    } else {
        headers.set("content-length", &local.body.len().to_string());
        if !headers.contains("content-type") {
            headers.set("content-type", "text/plain");
        }
    }
    (headers, local.body.clone())
}

/// Envoy's `Grpc::Utility::httpToGrpcStatus`.
fn grpc_status_for_http(status: u32) -> u32 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

/// gRPC's percent-encoding of `grpc-message`: bytes outside printable ASCII, and `%`.
fn grpc_percent_encode(message: &[u8]) -> String {
    message
        .iter()
        .map(|&byte| match byte {
            b' '..=b'~' if byte != b'%' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

fn hostcall_counts(state: &HostState, id: u32) -> HostcallCounts {
    HostcallCounts {
        counts: state
            .hostcalls
            .get(&id)
            .map(|counts| {
                counts
                    .iter()
                    .map(|(name, count)| (name.to_string(), *count))
                    .collect()
            })
            .unwrap_or_default(),
    }
}
