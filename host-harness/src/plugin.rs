//! The test API's entry point: a [`Plugin`] is one VM running one guest module with one root
//! context, driven through Envoy's lifecycle (start, configure, ticks, http call answers, queues,
//! shutdown); [`Plugin::stream`] opens a [`Stream`] per request.

use crate::abi::{LogLevel, Status};
use crate::callbacks::{Callback, Callbacks};
use crate::error::HarnessError;
use crate::exchange::{Configured, DispatchedHttpCall, HttpCallResponse};
use crate::grpc::{DispatchedGrpcCall, GrpcAnswer};
use crate::headers::HeaderMap;
use crate::module::{engine, GuestModule};
use crate::observe::{LogRecord, MetricsSnapshot};
use crate::settings::{FailurePolicy, PluginSettings};
use crate::shared::SharedData;
use crate::state::{HostState, StreamState, ROOT_CONTEXT_ID};
use std::collections::HashSet;
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
    pub(crate) store: Store<HostState>,
    callbacks: Callbacks,
    module: GuestModule,
    configured: Configured,
    failure: Option<String>,
    next_context_id: u32,
    /// The test clock when this VM was loaded (FAIL_RELOAD's backoff counts from it).
    loaded_ns: u64,
    reloads: u32,
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
        let mut state = HostState::new(settings.clone());
        // Envoy starts the plugin in the main thread's VM and in every worker's before this one.
        for _ in 0..settings.concurrency {
            state = Plugin::start(module, state)?.successor_state();
        }
        Plugin::start(module, state)
    }

    /// A fresh VM's state that keeps what Envoy keeps outside a VM: metrics (stats), logs, the
    /// clock; shared data lives in the settings.
    fn successor_state(&mut self) -> HostState {
        let old = self.store.data_mut();
        let mut state = HostState::new(old.settings.clone());
        state.now_ns = old.now_ns;
        state.metrics = std::mem::take(&mut old.metrics);
        state.logs = std::mem::take(&mut old.logs);
        state
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
        self.call(Callback::Tick, &[ROOT_CONTEXT_ID]).map(drop)
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
            Callback::HttpCallResponse,
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
            Callback::HttpCallResponse,
            &[ROOT_CONTEXT_ID, token, 0, 0, 0],
        );
        self.store.data_mut().status = (0, String::new());
        result.map(drop)
    }

    /// The gRPC calls and streams the guest opened and the test has not closed yet.
    pub fn grpc_calls(&self) -> Vec<DispatchedGrpcCall> {
        self.store.data().grpc_calls.values().cloned().collect()
    }

    /// Delivers the scripted service's `answer` for the call or stream `token` through the root
    /// context's callbacks, as Envoy's async client does: a call gets `proxy_on_grpc_receive`
    /// with its first message on OK, else `proxy_on_grpc_close` with the status; a stream gets
    /// its initial metadata, each message and its trailing metadata, then the close, unless the
    /// answer keeps it open.
    pub fn answer_grpc(&mut self, token: u32, answer: GrpcAnswer) -> Result<(), HarnessError> {
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
        let done = self.call(Callback::Done, &[ROOT_CONTEXT_ID])? != Some(0);
        if !done {
            self.store.data_mut().pending_done.push(ROOT_CONTEXT_ID);
            return Ok(false);
        }
        self.call(Callback::Delete, &[ROOT_CONTEXT_ID])?;
        Ok(true)
    }

    /// Whether the guest called `proxy_done` for its root context after a deferred shutdown.
    pub fn done_called(&self) -> bool {
        self.store.data().done_called.contains(&ROOT_CONTEXT_ID)
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
        let mut fresh = Plugin::start(&self.module, state)?;
        fresh.next_context_id = self.next_context_id;
        fresh.reloads = self.reloads + 1;
        *self = fresh;
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

    fn deliver_ready_queues(&mut self) -> Result<(), HarnessError> {
        while let Some((root, token)) = self.store.data_mut().ready_queues.pop_front() {
            self.call_once(Callback::QueueReady, &[root, token])?;
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
    use crate::connection::Connection;
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
