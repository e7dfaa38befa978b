//! The guest's exported callbacks (`proxy_on_*`, `_initialize`/`_start`), looked up and
//! type-checked once per instance, so that calling one costs neither an export lookup by name nor
//! a signature check (wasmtime's dynamic `Func::call` re-reads the signature on every call).

use crate::state::HostState;
use wasmtime::{Func, FuncType, Instance, Store, TypedFunc, Val, ValType};

/// A callback the host calls into the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Callback {
    Initialize,
    Start,
    ContextCreate,
    VmStart,
    Configure,
    Tick,
    HttpCallResponse,
    QueueReady,
    RequestHeaders,
    RequestBody,
    RequestTrailers,
    ResponseHeaders,
    ResponseBody,
    ResponseTrailers,
    Log,
    Done,
    Delete,
}

impl Callback {
    const ALL: [Callback; 17] = [
        Callback::Initialize,
        Callback::Start,
        Callback::ContextCreate,
        Callback::VmStart,
        Callback::Configure,
        Callback::Tick,
        Callback::HttpCallResponse,
        Callback::QueueReady,
        Callback::RequestHeaders,
        Callback::RequestBody,
        Callback::RequestTrailers,
        Callback::ResponseHeaders,
        Callback::ResponseBody,
        Callback::ResponseTrailers,
        Callback::Log,
        Callback::Done,
        Callback::Delete,
    ];

    /// The export's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Callback::Initialize => "_initialize",
            Callback::Start => "_start",
            Callback::ContextCreate => "proxy_on_context_create",
            Callback::VmStart => "proxy_on_vm_start",
            Callback::Configure => "proxy_on_configure",
            Callback::Tick => "proxy_on_tick",
            Callback::HttpCallResponse => "proxy_on_http_call_response",
            Callback::QueueReady => "proxy_on_queue_ready",
            Callback::RequestHeaders => "proxy_on_request_headers",
            Callback::RequestBody => "proxy_on_request_body",
            Callback::RequestTrailers => "proxy_on_request_trailers",
            Callback::ResponseHeaders => "proxy_on_response_headers",
            Callback::ResponseBody => "proxy_on_response_body",
            Callback::ResponseTrailers => "proxy_on_response_trailers",
            Callback::Log => "proxy_on_log",
            Callback::Done => "proxy_on_done",
            Callback::Delete => "proxy_on_delete",
        }
    }
}

/// One exported callback with the signature it was found with. The ABI's usual shapes (i32
/// arguments, no result or an i32 one) get a typed call; any other shape (an older ABI's, or a
/// wrong one) goes through a dynamic call, which reports a mismatch as a trap.
enum Export {
    NoArgs(TypedFunc<(), ()>),
    One(TypedFunc<i32, ()>),
    OneStatus(TypedFunc<i32, i32>),
    Two(TypedFunc<(i32, i32), ()>),
    TwoStatus(TypedFunc<(i32, i32), i32>),
    ThreeStatus(TypedFunc<(i32, i32, i32), i32>),
    Other(Func, FuncType),
}

impl Export {
    fn new(store: &Store<HostState>, func: Func) -> Export {
        if let Ok(typed) = func.typed(store) {
            return Export::NoArgs(typed);
        }
        if let Ok(typed) = func.typed(store) {
            return Export::One(typed);
        }
        if let Ok(typed) = func.typed(store) {
            return Export::OneStatus(typed);
        }
        if let Ok(typed) = func.typed(store) {
            return Export::Two(typed);
        }
        if let Ok(typed) = func.typed(store) {
            return Export::TwoStatus(typed);
        }
        if let Ok(typed) = func.typed(store) {
            return Export::ThreeStatus(typed);
        }
        Export::Other(func, func.ty(store))
    }

    /// Calls with `args`, missing ones passed as 0; returns the first result.
    fn call(&self, store: &mut Store<HostState>, args: &[u32]) -> wasmtime::Result<Option<u32>> {
        let arg = |index: usize| args.get(index).copied().unwrap_or(0) as i32;
        let status = |result: i32| Some(result as u32);
        match self {
            Export::NoArgs(f) => f.call(store, ()).map(|()| None),
            Export::One(f) => f.call(store, arg(0)).map(|()| None),
            Export::OneStatus(f) => f.call(store, arg(0)).map(status),
            Export::Two(f) => f.call(store, (arg(0), arg(1))).map(|()| None),
            Export::TwoStatus(f) => f.call(store, (arg(0), arg(1))).map(status),
            Export::ThreeStatus(f) => f.call(store, (arg(0), arg(1), arg(2))).map(status),
            Export::Other(func, ty) => {
                let params: Vec<Val> = ty
                    .params()
                    .enumerate()
                    .map(|(index, param)| match param {
                        ValType::I64 => Val::I64(i64::from(arg(index) as u32)),
                        _ => Val::I32(arg(index)),
                    })
                    .collect();
                let mut results: Vec<Val> = ty.results().map(|_| Val::I32(0)).collect();
                func.call(store, &params, &mut results)?;
                Ok(results.first().and_then(|value| match value {
                    Val::I32(n) => Some(*n as u32),
                    Val::I64(n) => Some(*n as u32),
                    _ => None,
                }))
            }
        }
    }
}

/// Every callback the instance exports, resolved once.
pub(crate) struct Callbacks {
    exports: Vec<Option<Export>>,
}

impl Callbacks {
    pub(crate) fn resolve(instance: &Instance, store: &mut Store<HostState>) -> Callbacks {
        let exports = Callback::ALL
            .iter()
            .map(|callback| {
                let func = instance.get_func(&mut *store, callback.name())?;
                Some(Export::new(store, func))
            })
            .collect();
        Callbacks { exports }
    }

    /// Calls `callback` with `args` (missing ones passed as 0); `Ok(None)` when the guest does
    /// not export it, as cpp-host skips absent callbacks, or when it returns nothing.
    pub(crate) fn call(
        &self,
        store: &mut Store<HostState>,
        callback: Callback,
        args: &[u32],
    ) -> wasmtime::Result<Option<u32>> {
        match &self.exports[callback as usize] {
            Some(export) => export.call(store, args),
            None => Ok(None),
        }
    }

    pub(crate) fn exports(&self, callback: Callback) -> bool {
        self.exports[callback as usize].is_some()
    }
}
