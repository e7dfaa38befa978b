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
    GrpcReceiveInitialMetadata,
    GrpcReceive,
    GrpcReceiveTrailingMetadata,
    GrpcClose,
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
    /// How many there are (`Delete` is the last).
    const COUNT: usize = Callback::Delete as usize + 1;

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
            Callback::GrpcReceiveInitialMetadata => "proxy_on_grpc_receive_initial_metadata",
            Callback::GrpcReceive => "proxy_on_grpc_receive",
            Callback::GrpcReceiveTrailingMetadata => "proxy_on_grpc_receive_trailing_metadata",
            Callback::GrpcClose => "proxy_on_grpc_close",
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
pub(crate) enum Export {
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
        let ty = func.ty(store);
        let all_i32 = ty
            .params()
            .chain(ty.results())
            .all(|kind| matches!(kind, ValType::I32));
        let typed = match (all_i32, ty.params().len(), ty.results().len()) {
            (true, 0, 0) => func.typed(store).ok().map(Export::NoArgs),
            (true, 1, 0) => func.typed(store).ok().map(Export::One),
            (true, 1, 1) => func.typed(store).ok().map(Export::OneStatus),
            (true, 2, 0) => func.typed(store).ok().map(Export::Two),
            (true, 2, 1) => func.typed(store).ok().map(Export::TwoStatus),
            (true, 3, 1) => func.typed(store).ok().map(Export::ThreeStatus),
            _ => None,
        };
        typed.unwrap_or(Export::Other(func, ty))
    }

    /// Calls with `args`, missing ones passed as 0; returns the first result.
    pub(crate) fn call(
        &self,
        store: &mut Store<HostState>,
        args: &[u32],
    ) -> wasmtime::Result<Option<u32>> {
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

/// The instance's callbacks, each looked up on its first call (instantiating stays cheap for
/// guests and tests that never reach most of them).
pub(crate) struct Callbacks {
    instance: Instance,
    /// Per callback: `None` until looked up, then whether the guest exports it.
    exports: [Option<Option<Export>>; Callback::COUNT],
}

impl Callbacks {
    pub(crate) fn new(instance: Instance) -> Callbacks {
        Callbacks {
            instance,
            exports: Default::default(),
        }
    }

    /// The export behind `callback`; `None` when the guest does not export it, as cpp-host
    /// skips absent callbacks.
    pub(crate) fn get(
        &mut self,
        store: &mut Store<HostState>,
        callback: Callback,
    ) -> Option<&Export> {
        let instance = self.instance;
        self.exports[callback as usize]
            .get_or_insert_with(|| {
                let func = instance.get_func(&mut *store, callback.name())?;
                Some(Export::new(store, func))
            })
            .as_ref()
    }
}
