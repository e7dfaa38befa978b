//! The test API's entry point: a [`Plugin`] is a guest module running in one VM, or in one VM
//! per Envoy thread (`PluginSettings::concurrency`), each with its root context, driven through
//! Envoy's lifecycle (start, configure, ticks, http call answers, queues, shutdown);
//! [`Plugin::stream`] opens a [`Stream`] per request on the worker its connection belongs to.
//!
//! Only one VM's parts sit in the `Plugin` at a time (the one the current call runs in); the
//! others wait parked in `vms`, and switching swaps them in, handing over what outlives a VM
//! (clock, metrics, logs, queues). A single VM never switches, so it costs nothing.

use crate::abi::{LogLevel, Status};
use crate::callbacks::{Callback, Callbacks};
use crate::connection::Connection;
use crate::error::HarnessError;
use crate::exchange::{Configured, DispatchedHttpCall, HttpCallResponse};
use crate::grpc::{
    DispatchedGrpcCall, GrpcAnswer, DEADLINE_MESSAGE, DEADLINE_STATUS, MISSING_MESSAGE_STATUS,
};
use crate::headers::HeaderMap;
use crate::module::{engine, GuestModule};
use crate::observe::{LogRecord, MetricsSnapshot};
use crate::settings::{FailurePolicy, PluginSettings};
use crate::shared::SharedData;
use crate::state::{HostState, StreamState, ROOT_CONTEXT_ID};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{Linker, Store};

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
    // The parts of the VM running now.
    pub(crate) store: Store<HostState>,
    callbacks: Callbacks,
    configured: Configured,
    failure: Option<String>,
    next_context_id: u32,
    /// The test clock when this VM was loaded (FAIL_RELOAD's backoff counts from it).
    loaded_ns: u64,
    // The plugin's.
    module: GuestModule,
    reloads: u32,
    /// Every VM by index (0: the main thread's, `i`: worker `i - 1`'s); the running one's slot is
    /// `None`, its parts are the fields above. Empty for a single VM.
    vms: Vec<Option<ParkedVm>>,
    /// The index of the VM running now.
    active: usize,
    /// The worker each connection (by id) runs on.
    connection_workers: HashMap<u64, usize>,
    /// The worker the next unassigned connection goes to (round-robin).
    next_worker: usize,
}

/// A VM's parts while another VM of the plugin runs.
struct ParkedVm {
    store: Store<HostState>,
    callbacks: Callbacks,
    configured: Configured,
    failure: Option<String>,
    next_context_id: u32,
    loaded_ns: u64,
}

/// What [`Plugin::advance_time`] fires at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimedEvent {
    /// The tick of the VM with this index.
    Tick(usize),
    HttpTimeout(u32),
    GrpcTimeout(u32),
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("module", &self.module.name)
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
        let settings = Arc::new(settings);
        let workers = settings.concurrency as usize;
        if workers == 0 {
            return Plugin::start(module, HostState::new(settings));
        }
        // Envoy first checks the configuration in a canary VM (proxy-wasm-cpp-host's
        // `WasmHandleBase::canary`): started and configured, then dropped without
        // `proxy_on_done`. What outlives a VM (logs, metrics, shared data) keeps its traces.
        let mut canary = Plugin::start(module, HostState::new(settings))?;
        let mut plugin = Plugin::start(module, canary.successor_state())?;
        // Then the VMs that live on: the main thread's, then every worker's.
        plugin.vms.push(None);
        for index in 1..=workers {
            let mut state = plugin.successor_state();
            state.vm_index = index;
            let mut started = Plugin::start(module, state)?.into_parked();
            plugin.swap_vm(&mut started);
            plugin.vms.push(Some(started));
            plugin.vms.swap(plugin.active, index);
            plugin.active = index;
        }
        Ok(plugin)
    }

    /// A fresh VM's state, taking over what Envoy keeps outside a VM (metrics, logs, the clock,
    /// queues; shared data lives in the settings) from the running VM.
    fn successor_state(&mut self) -> HostState {
        let old = self.store.data_mut();
        let mut state = HostState::new(old.settings.clone());
        state.vm_index = old.vm_index;
        old.hand_over(&mut state);
        state
    }

    fn into_parked(self) -> ParkedVm {
        ParkedVm {
            store: self.store,
            callbacks: self.callbacks,
            configured: self.configured,
            failure: self.failure,
            next_context_id: self.next_context_id,
            loaded_ns: self.loaded_ns,
        }
    }

    /// Exchanges the running VM's parts with `other`'s.
    fn swap_vm(&mut self, other: &mut ParkedVm) {
        std::mem::swap(&mut self.store, &mut other.store);
        std::mem::swap(&mut self.callbacks, &mut other.callbacks);
        std::mem::swap(&mut self.configured, &mut other.configured);
        std::mem::swap(&mut self.failure, &mut other.failure);
        std::mem::swap(&mut self.next_context_id, &mut other.next_context_id);
        std::mem::swap(&mut self.loaded_ns, &mut other.loaded_ns);
    }

    /// Makes VM `index` the running one, handing it what outlives a VM.
    fn switch_to(&mut self, index: usize) {
        if index == self.active {
            return;
        }
        let Some(mut parked) = self.vms.get_mut(index).and_then(Option::take) else {
            return;
        };
        self.swap_vm(&mut parked);
        parked.store.data_mut().hand_over(self.store.data_mut());
        if let Some(slot) = self.vms.get_mut(self.active) {
            *slot = Some(parked);
        }
        self.active = index;
    }

    /// Runs `f` with VM `index` running, then switches back to the VM that ran before.
    fn on_vm<R>(
        &mut self,
        index: usize,
        f: impl FnOnce(&mut Plugin) -> Result<R, HarnessError>,
    ) -> Result<R, HarnessError> {
        let back = self.active;
        if index == back {
            return f(self);
        }
        self.switch_to(index);
        let result = f(self);
        self.switch_to(back);
        result
    }

    /// The state of every VM with its index, the running one included.
    fn vm_states(&self) -> impl Iterator<Item = (usize, &HostState)> {
        let parked = self
            .vms
            .iter()
            .enumerate()
            .filter_map(|(index, vm)| vm.as_ref().map(|vm| (index, vm.store.data())));
        std::iter::once((self.active, self.store.data())).chain(parked)
    }

    /// The VM indices in start order (main thread first); `[0]` for a single VM.
    fn vm_indices(&self) -> std::ops::Range<usize> {
        0..self.vms.len().max(1)
    }

    /// How many workers serve requests: `concurrency` when set, else 1 (the single VM).
    pub fn workers(&self) -> usize {
        self.vms.len().saturating_sub(1).max(1)
    }

    /// Runs every later request on `connection` on `worker` (0-based, below
    /// [`Plugin::workers`]), as Envoy runs a connection's requests on the worker that accepted
    /// it. Unassigned connections are given to the workers in turn, in the order they arrive.
    pub fn assign_connection(
        &mut self,
        connection: &Connection,
        worker: usize,
    ) -> Result<(), HarnessError> {
        if worker >= self.workers() {
            return Err(HarnessError::usage(format!(
                "worker {worker} does not exist: the plugin has {} (PluginSettings::concurrency)",
                self.workers()
            )));
        }
        self.connection_workers.insert(connection.id, worker);
        Ok(())
    }

    /// Makes the VM of the worker serving `connection` the running one (assigning the
    /// connection a worker on first sight).
    pub(crate) fn enter_worker(&mut self, connection: &Connection) {
        if self.vms.is_empty() {
            return;
        }
        let worker = match self.connection_workers.get(&connection.id) {
            Some(&worker) => worker,
            None => {
                let worker = self.next_worker;
                self.next_worker = (worker + 1) % self.workers();
                self.connection_workers.insert(connection.id, worker);
                worker
            }
        };
        self.switch_to(worker + 1);
    }

    /// Instantiates the module into a store holding `state` and runs Envoy's start-up sequence.
    fn start(module: &GuestModule, state: HostState) -> Result<Plugin, HarnessError> {
        let exports: HashSet<String> = module.exports().into_iter().collect();
        let mut linker = Linker::new(engine());
        crate::hostcalls::add_to_linker(&mut linker).map_err(|e| instantiate_error(module, e))?;
        crate::wasi::add_to_linker(&mut linker).map_err(|e| instantiate_error(module, e))?;
        let loaded_ns = state.now_ns;
        let mut store = Store::new(engine(), state);
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
        store.data_mut().allocator = Some(Arc::new(allocator));
        store
            .data_mut()
            .roots
            .insert(ROOT_CONTEXT_ID, Default::default());
        let callbacks = Callbacks::new(instance);
        let mut plugin = Plugin {
            store,
            callbacks,
            module: module.clone(),
            configured: Configured {
                accepted: false,
                logs: Vec::new(),
            },
            failure: None,
            next_context_id: ROOT_CONTEXT_ID + 1,
            loaded_ns,
            reloads: 0,
            vms: Vec::new(),
            active: 0,
            connection_workers: HashMap::new(),
            next_worker: 0,
        };
        let initializer = if exports.contains("_initialize") {
            Callback::Initialize
        } else {
            Callback::Start
        };
        plugin.call(initializer, &[])?;
        plugin.call(Callback::ContextCreate, &[ROOT_CONTEXT_ID, 0])?;
        let vm_configuration_size = plugin.store.data().settings.vm_configuration.len() as u32;
        if plugin.call(Callback::VmStart, &[ROOT_CONTEXT_ID, vm_configuration_size])? == Some(0) {
            return Err(instantiate_error(
                module,
                "proxy_on_vm_start returned false",
            ));
        }
        let configuration = plugin.store.data().settings.configuration.clone();
        plugin.configure_vm(configuration)?;
        Ok(plugin)
    }

    /// Loads and starts a plugin from a file in one step.
    pub fn load(
        path: impl AsRef<std::path::Path>,
        settings: PluginSettings,
    ) -> Result<Plugin, HarnessError> {
        Plugin::new(&GuestModule::load(path)?, settings)
    }

    /// The outcome of the last `proxy_on_configure` (of the VM that served the last request).
    pub fn configured(&self) -> &Configured {
        &self.configured
    }

    /// Delivers a new plugin configuration (`proxy_on_configure` again) to every VM, as a config
    /// update does; accepted if every VM accepted it, with what they all logged meanwhile.
    pub fn configure(
        &mut self,
        configuration: impl Into<Vec<u8>>,
    ) -> Result<Configured, HarnessError> {
        let configuration = configuration.into();
        let mut all = Configured {
            accepted: true,
            logs: Vec::new(),
        };
        for index in self.vm_indices() {
            let configured = self.on_vm(index, |vm| vm.configure_vm(configuration.clone()))?;
            all.accepted &= configured.accepted;
            all.logs.extend(configured.logs);
        }
        Ok(all)
    }

    /// `proxy_on_configure` on the running VM.
    fn configure_vm(&mut self, configuration: Vec<u8>) -> Result<Configured, HarnessError> {
        let size = configuration.len() as u32;
        let first_log = self.store.data().logs.len();
        self.store.data_mut().plugin_configuration = configuration;
        self.store.data_mut().configuring = true;
        let result = self.call(Callback::Configure, &[ROOT_CONTEXT_ID, size]);
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

    /// The size of the guest's linear memory in bytes: what the VM holds for the guest, in whole
    /// 64 KiB Wasm pages. It only grows (`memory.grow`; Wasm memory never shrinks), so a guest that
    /// leaks shows up as a size that keeps growing over many requests.
    ///
    /// ```
    /// use host_harness::{GuestModule, Plugin, PluginSettings};
    /// let module = GuestModule::from_wat("two-pages", r#"(module
    ///   (memory (export "memory") 2)
    ///   (func (export "proxy_abi_version_0_2_1"))
    ///   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#).unwrap();
    /// let plugin = Plugin::new(&module, PluginSettings::new("two-pages")).unwrap();
    /// assert_eq!(plugin.memory_bytes(), 2 * 65536);
    /// ```
    pub fn memory_bytes(&self) -> usize {
        self.store
            .data()
            .memory
            .map_or(0, |memory| memory.data_size(&self.store))
    }

    /// The test clock, in nanoseconds since the epoch.
    pub fn now_ns(&self) -> u64 {
        self.store.data().now_ns
    }

    /// Moves the clock forward, firing in time order, in every VM, `proxy_on_tick` for every
    /// tick period that elapses and the timeout of every http or gRPC call whose deadline
    /// passes. Envoy's async client answers those itself: an http call gets a `504` with body
    /// `upstream request timeout`, a gRPC call `proxy_on_grpc_close` with [`DEADLINE_STATUS`]
    /// and [`DEADLINE_MESSAGE`]. A tick due at the same instant as a deadline fires first.
    pub fn advance_time(&mut self, by: Duration) -> Result<(), HarnessError> {
        let target = self.now_ns().saturating_add(by.as_nanos() as u64);
        while let Some((due, event)) = self.next_timed_event().filter(|&(due, _)| due <= target) {
            match event {
                TimedEvent::Tick(vm) => self.fire_tick(due, vm)?,
                TimedEvent::HttpTimeout(token) => {
                    self.store.data_mut().now_ns = due;
                    let timed_out = HttpCallResponse::status(504)
                        .header("content-type", "text/plain")
                        .body("upstream request timeout");
                    self.respond_http_call(token, timed_out)?;
                }
                TimedEvent::GrpcTimeout(token) => {
                    self.store.data_mut().now_ns = due;
                    let vm = self.vm_with_grpc_call(token)?;
                    self.on_vm(vm, |plugin| {
                        plugin.store.data_mut().grpc_calls.remove(&token);
                        plugin.close_grpc(token, DEADLINE_STATUS, DEADLINE_MESSAGE.to_owned())
                    })?;
                }
            }
        }
        self.store.data_mut().now_ns = target;
        Ok(())
    }

    /// The earliest of the next tick and the calls' deadlines in any VM (ties in that order,
    /// then by VM or token).
    fn next_timed_event(&self) -> Option<(u64, TimedEvent)> {
        let tick = self
            .next_tick()
            .map(|(due, vm)| (due, TimedEvent::Tick(vm)));
        let http = self
            .vm_states()
            .flat_map(|(_, state)| state.http_calls.values())
            .filter_map(|call| {
                call.deadline_ns
                    .map(|due| (due, TimedEvent::HttpTimeout(call.token)))
            });
        let grpc = self
            .vm_states()
            .flat_map(|(_, state)| state.grpc_calls.values())
            .filter_map(|call| {
                call.deadline_ns
                    .map(|due| (due, TimedEvent::GrpcTimeout(call.token)))
            });
        tick.into_iter().chain(http).chain(grpc).min()
    }

    /// Moves the clock to the next tick of any VM and fires it; an error if no tick period is
    /// set.
    pub fn tick(&mut self) -> Result<(), HarnessError> {
        let (due, vm) = self
            .next_tick()
            .ok_or_else(|| HarnessError::usage("tick() without a tick period set by the guest"))?;
        self.fire_tick(due, vm)
    }

    /// The earliest tick due in any VM, with the VM's index (the first VM's on a tie).
    fn next_tick(&self) -> Option<(u64, usize)> {
        self.vm_states()
            .filter_map(|(vm, state)| {
                let root = state.roots.get(&ROOT_CONTEXT_ID)?;
                Some((root.next_tick_ns?, vm))
            })
            .min()
    }

    fn fire_tick(&mut self, due: u64, vm: usize) -> Result<(), HarnessError> {
        self.store.data_mut().now_ns = due;
        self.on_vm(vm, |plugin| {
            let state = plugin.store.data_mut();
            if let Some(root) = state.roots.get_mut(&ROOT_CONTEXT_ID) {
                root.next_tick_ns = Some(due + root.tick_period_ms * 1_000_000);
            }
            plugin.call(Callback::Tick, &[ROOT_CONTEXT_ID]).map(drop)
        })
    }

    /// The http calls the guest dispatched, from any VM, and the test has not answered yet, in
    /// token order (tokens are unique across the plugin's VMs).
    pub fn http_calls(&self) -> Vec<DispatchedHttpCall> {
        let mut calls: Vec<DispatchedHttpCall> = self
            .vm_states()
            .flat_map(|(_, state)| state.http_calls.values().cloned())
            .collect();
        calls.sort_by_key(|call| call.token);
        calls
    }

    /// The VM that dispatched http call `token`.
    fn vm_with_http_call(&self, token: u32) -> Result<usize, HarnessError> {
        self.vm_states()
            .find(|(_, state)| state.http_calls.contains_key(&token))
            .map(|(vm, _)| vm)
            .ok_or_else(|| HarnessError::usage(format!("no pending http call with token {token}")))
    }

    /// Answers a dispatched http call (`proxy_on_http_call_response` on the root context of the
    /// VM that dispatched it).
    pub fn respond_http_call(
        &mut self,
        token: u32,
        response: HttpCallResponse,
    ) -> Result<(), HarnessError> {
        let vm = self.vm_with_http_call(token)?;
        self.on_vm(vm, |plugin| plugin.answer_http_call(token, response))
    }

    fn answer_http_call(
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
            Callback::HttpCallResponse,
            &[ROOT_CONTEXT_ID, token, sizes[0], sizes[1], sizes[2]],
        );
        self.store.data_mut().http_call_response = None;
        result.map(drop)
    }

    /// Fails a dispatched http call as a reset upstream does (status BROKEN_CONNECTION, "reset").
    pub fn fail_http_call(&mut self, token: u32) -> Result<(), HarnessError> {
        let vm = self.vm_with_http_call(token)?;
        self.on_vm(vm, |plugin| plugin.fail_http_call_here(token))
    }

    fn fail_http_call_here(&mut self, token: u32) -> Result<(), HarnessError> {
        self.take_http_call(token)?;
        self.store.data_mut().status = (Status::BrokenConnection as u32, "reset".to_string());
        let result = self.call(
            Callback::HttpCallResponse,
            &[ROOT_CONTEXT_ID, token, 0, 0, 0],
        );
        self.store.data_mut().status = (0, String::new());
        result.map(drop)
    }

    /// The gRPC calls and streams the guest opened, from any VM, and the test has not closed
    /// yet, in token order (tokens are unique across the plugin's VMs).
    pub fn grpc_calls(&self) -> Vec<DispatchedGrpcCall> {
        let mut calls: Vec<DispatchedGrpcCall> = self
            .vm_states()
            .flat_map(|(_, state)| state.grpc_calls.values().cloned())
            .collect();
        calls.sort_by_key(|call| call.token);
        calls
    }

    /// The VM that opened gRPC call or stream `token`.
    fn vm_with_grpc_call(&self, token: u32) -> Result<usize, HarnessError> {
        self.vm_states()
            .find(|(_, state)| state.grpc_calls.contains_key(&token))
            .map(|(vm, _)| vm)
            .ok_or_else(|| HarnessError::usage(format!("no open gRPC call with token {token}")))
    }

    /// Delivers the scripted service's `answer` for the call or stream `token` through the root
    /// context's callbacks of the VM that opened it, as Envoy's async client does: a call gets
    /// `proxy_on_grpc_receive` with its first message on OK (its metadata is not delivered),
    /// `proxy_on_grpc_close` with status 13 (INTERNAL) on OK without a message, else
    /// `proxy_on_grpc_close` with the status; a stream gets its initial metadata, each message
    /// and its trailing metadata, then the close, unless the answer keeps it open.
    pub fn answer_grpc(&mut self, token: u32, answer: GrpcAnswer) -> Result<(), HarnessError> {
        let vm = self.vm_with_grpc_call(token)?;
        self.on_vm(vm, |plugin| plugin.answer_grpc_here(token, answer))
    }

    fn answer_grpc_here(&mut self, token: u32, answer: GrpcAnswer) -> Result<(), HarnessError> {
        let call = self
            .store
            .data()
            .grpc_calls
            .get(&token)
            .cloned()
            .ok_or_else(|| HarnessError::usage(format!("no open gRPC call with token {token}")))?;
        if !call.stream {
            self.store.data_mut().grpc_calls.remove(&token);
            return match (answer.status, answer.messages.into_iter().next()) {
                (0, Some(message)) => self.deliver_grpc_message(token, message),
                (0, None) => self.close_grpc(token, MISSING_MESSAGE_STATUS, String::new()),
                (status, _) => self.close_grpc(token, status, answer.status_message),
            };
        }
        let initial = answer.initial_metadata;
        self.deliver_grpc_metadata(token, Callback::GrpcReceiveInitialMetadata, initial)?;
        for message in answer.messages {
            self.deliver_grpc_message(token, message)?;
        }
        let trailing = answer.trailing_metadata;
        self.deliver_grpc_metadata(token, Callback::GrpcReceiveTrailingMetadata, trailing)?;
        if answer.keep_open {
            return Ok(());
        }
        self.store.data_mut().grpc_calls.remove(&token);
        self.close_grpc(token, answer.status, answer.status_message)
    }

    fn deliver_grpc_metadata(
        &mut self,
        token: u32,
        callback: Callback,
        metadata: HeaderMap,
    ) -> Result<(), HarnessError> {
        if metadata.is_empty() {
            return Ok(());
        }
        let count = metadata.len() as u32;
        self.store.data_mut().grpc_metadata = Some(metadata);
        let result = self.call(callback, &[ROOT_CONTEXT_ID, token, count]);
        self.store.data_mut().grpc_metadata = None;
        result.map(drop)
    }

    fn deliver_grpc_message(&mut self, token: u32, message: Vec<u8>) -> Result<(), HarnessError> {
        let size = message.len() as u32;
        self.store.data_mut().grpc_message = Some(message);
        let result = self.call(Callback::GrpcReceive, &[ROOT_CONTEXT_ID, token, size]);
        self.store.data_mut().grpc_message = None;
        result.map(drop)
    }

    fn close_grpc(&mut self, token: u32, status: u32, message: String) -> Result<(), HarnessError> {
        self.store.data_mut().status = (status, message);
        let result = self.call(Callback::GrpcClose, &[ROOT_CONTEXT_ID, token, status]);
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

    /// Enqueues to a queue the guest registered, then delivers `proxy_on_queue_ready` to the VM
    /// that registered it last (cpp-host's shared queue).
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

    /// Stops the plugin as Envoy does on drain: in every VM, `proxy_on_done` on the root
    /// context, and `proxy_on_delete` once it is done (at once, or when the guest later calls
    /// `proxy_done`). Returns whether every root context finished.
    pub fn shutdown(&mut self) -> Result<bool, HarnessError> {
        let mut all_done = true;
        for index in self.vm_indices() {
            all_done &= self.on_vm(index, Plugin::shutdown_vm)?;
        }
        Ok(all_done)
    }

    fn shutdown_vm(&mut self) -> Result<bool, HarnessError> {
        let done = self.call(Callback::Done, &[ROOT_CONTEXT_ID])? != Some(0);
        if !done {
            self.store.data_mut().pending_done.push(ROOT_CONTEXT_ID);
            return Ok(false);
        }
        self.call(Callback::Delete, &[ROOT_CONTEXT_ID])?;
        Ok(true)
    }

    /// Whether the guest called `proxy_done` for its root context after a deferred shutdown,
    /// in every VM that deferred it.
    pub fn done_called(&self) -> bool {
        // `proxy_done` takes a root off `pending_done` and records it in `done_called`.
        self.vm_states()
            .all(|(_, state)| !state.pending_done.contains(&ROOT_CONTEXT_ID))
            && self
                .vm_states()
                .any(|(_, state)| state.done_called.contains(&ROOT_CONTEXT_ID))
    }

    /// Why the VM failed (the first trap's message), while it stays failed.
    pub fn vm_failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// How many times a failed VM was replaced by a fresh one (`FailurePolicy::FailReload`).
    pub fn vm_reloads(&self) -> u32 {
        self.reloads
    }

    /// What the settings' failure policy makes of a request arriving now: `None` when the guest
    /// runs it (the VM is healthy, or was just reloaded), else the policy that answers it.
    pub(crate) fn failed_vm_policy(&mut self) -> Result<Option<FailurePolicy>, HarnessError> {
        if self.failure.is_none() {
            return Ok(None);
        }
        let Some(policy) = self.store.data().settings.failure_policy else {
            // No policy: the guest call fails with `VmFailed`, as before.
            return Ok(None);
        };
        match policy {
            FailurePolicy::FailReload { backoff }
                if self.now_ns().saturating_sub(self.loaded_ns) >= backoff.as_nanos() as u64 =>
            {
                self.reload()?;
                Ok(None)
            }
            policy => Ok(Some(policy)),
        }
    }

    /// Replaces the failed VM with a fresh instance, started and configured again. What Envoy
    /// keeps outside the VM carries over: metrics (stats), logs, the clock, shared data.
    fn reload(&mut self) -> Result<(), HarnessError> {
        let state = self.successor_state();
        let mut fresh = Plugin::start(&self.module, state)?.into_parked();
        fresh.next_context_id = self.next_context_id;
        self.swap_vm(&mut fresh);
        self.reloads += 1;
        Ok(())
    }

    /// A fresh context id for a stream.
    pub(crate) fn new_context_id(&mut self) -> u32 {
        let id = self.next_context_id;
        self.next_context_id += 1;
        id
    }

    /// Calls a guest callback with the current context set to the first argument; a missing
    /// export is skipped as cpp-host skips absent callbacks. Returns the first result.
    pub(crate) fn call(
        &mut self,
        callback: Callback,
        args: &[u32],
    ) -> Result<Option<u32>, HarnessError> {
        let result = self.call_once(callback, args)?;
        self.deliver_ready_queues()?;
        Ok(result)
    }

    fn call_once(&mut self, callback: Callback, args: &[u32]) -> Result<Option<u32>, HarnessError> {
        if let Some(failure) = &self.failure {
            return Err(HarnessError::VmFailed {
                first_failure: failure.clone(),
            });
        }
        let Some(export) = self.callbacks.get(&mut self.store, callback) else {
            return Ok(None);
        };
        let ticks = epoch_ticks(self.store.data().settings.call_timeout);
        self.store.set_epoch_deadline(ticks);
        let state = self.store.data_mut();
        let previous_context = state.current_context;
        state.current_context = args.first().copied().unwrap_or(0);
        state.effective_context = None;
        state.panic_message = None;
        let outcome = export.call(&mut self.store, args);
        let state = self.store.data_mut();
        state.current_context = previous_context;
        state.effective_context = None;
        outcome.map_err(|error| {
            let error = HarnessError::Trap {
                call: callback.name().to_string(),
                panic: state.panic_message.take(),
                trap: format!("{error:?}"),
            };
            // Envoy marks the VM failed: every later call fails (FAIL_CLOSED answers 503).
            self.failure = Some(error.to_string());
            error
        })
    }

    /// Delivers `proxy_on_queue_ready` for every queue with new items, each in the VM that
    /// registered it. Another VM's trap fails that VM; under a failure policy it is not this
    /// call's error (that VM answers its own requests by the policy).
    fn deliver_ready_queues(&mut self) -> Result<(), HarnessError> {
        while let Some((vm, root, token)) = self.store.data_mut().ready_queues.pop_front() {
            if vm == self.active {
                self.call_once(Callback::QueueReady, &[root, token])?;
                continue;
            }
            let delivered = self.on_vm(vm, |plugin| {
                plugin.call_once(Callback::QueueReady, &[root, token])
            });
            if self.store.data().settings.failure_policy.is_none() {
                delivered?;
            }
        }
        Ok(())
    }

    pub(crate) fn stream_state(&mut self, id: u32) -> Result<&mut StreamState, HarnessError> {
        self.store
            .data_mut()
            .streams
            .get_mut(&id)
            .ok_or_else(|| HarnessError::usage(format!("stream {id} is gone")))
    }
}

/// A call timeout in engine epochs (at least one).
fn epoch_ticks(timeout: Duration) -> u64 {
    (timeout.as_millis() / crate::module::EPOCH_TICK.as_millis()).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::Request;

    /// A guest whose every request grows its memory by one page, as a leak would.
    const GROWING_GUEST: &str = r#"(module
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "malloc") (param i32) (result i32) (i32.const 1024))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (drop (memory.grow (i32.const 1)))
        (i32.const 0)))"#;

    /// A callback outside the ABI's usual shapes (an i64 argument) takes the dynamic call: it
    /// pauses the request only if it received the header count (3, with the HCM off).
    const I64_GUEST: &str = r#"(module
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "malloc") (param i32) (result i32) (i32.const 1024))
      (func (export "proxy_on_request_headers") (param i32 i64 i32) (result i32)
        (if (result i32) (i64.eq (local.get 1) (i64.const 3))
          (then (i32.const 1))
          (else (i32.const 0)))))"#;

    #[test]
    fn callbacks_of_other_shapes_get_their_arguments_through_the_dynamic_call() {
        let module = GuestModule::from_wat("i64", I64_GUEST).unwrap();
        let settings = PluginSettings::new("i64")
            .http_connection_manager(crate::HttpConnectionManager::disabled());
        let mut plugin = Plugin::new(&module, settings).unwrap();
        let stream = plugin
            .stream(&Connection::plain(), Request::get("/"))
            .unwrap();
        assert_eq!(stream.outcome(), &crate::RequestOutcome::Paused);
    }

    #[test]
    fn memory_bytes_follows_the_guest_growing_its_memory() {
        let module = GuestModule::from_wat("growing", GROWING_GUEST).unwrap();
        let mut plugin = Plugin::new(&module, PluginSettings::new("growing")).unwrap();
        assert_eq!(plugin.memory_bytes(), 65536);
        for _ in 0..3 {
            plugin
                .send(&Connection::plain(), Request::get("/"))
                .unwrap();
        }
        assert_eq!(plugin.memory_bytes(), 4 * 65536);
    }
}
