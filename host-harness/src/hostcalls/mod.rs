//! The `env` imports of proxy-wasm ABI 0.2.1 (and the 0.1.0/0.2.0 extras), each answering
//! with the status Envoy returns in the same situation (Envoy's `context.cc` and
//! proxy-wasm-cpp-host's `exports.cc` are the reference). One submodule per ABI area; this
//! module registers them all, in one list.

mod buffers;
mod calls;
mod foreign;
mod headers;
mod lifecycle;
mod metrics;
mod properties;
mod shared_data;
mod stream_control;

use crate::abi::Status;
use crate::headers::HeaderMap;
use crate::memory::{utf8_lossy, Ctx};
use crate::observe::Hostcall;
use crate::state::HostState;
use wasmtime::Linker;

type HostResult = wasmtime::Result<i32>;

fn ok(status: Status) -> HostResult {
    Ok(status.code())
}

fn enter(caller: &mut Ctx<'_>, hostcall: Hostcall) {
    caller.data_mut().count_hostcall(hostcall);
}

fn text(bytes: &[u8]) -> String {
    utf8_lossy(bytes).into_owned()
}

fn pairs_to_map(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (key, value) in pairs {
        map.add(&text(&key), &text(&value));
    }
    map
}

/// Registers every hostcall under its ABI name.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use Hostcall as H;
    let env = "env";
    // Logging, time, ticks, contexts.
    linker.func_wrap(env, H::ProxyLog.name(), lifecycle::proxy_log)?;
    linker.func_wrap(
        env,
        H::ProxyGetLogLevel.name(),
        lifecycle::proxy_get_log_level,
    )?;
    linker.func_wrap(
        env,
        H::ProxyGetCurrentTimeNanoseconds.name(),
        lifecycle::proxy_get_current_time,
    )?;
    linker.func_wrap(
        env,
        H::ProxySetTickPeriodMilliseconds.name(),
        lifecycle::proxy_set_tick_period,
    )?;
    linker.func_wrap(env, H::ProxyGetStatus.name(), lifecycle::proxy_get_status)?;
    linker.func_wrap(
        env,
        H::ProxySetEffectiveContext.name(),
        lifecycle::proxy_set_effective_context,
    )?;
    linker.func_wrap(env, H::ProxyDone.name(), lifecycle::proxy_done)?;
    // Properties and foreign functions.
    linker.func_wrap(
        env,
        H::ProxyGetProperty.name(),
        properties::proxy_get_property,
    )?;
    linker.func_wrap(
        env,
        H::ProxySetProperty.name(),
        properties::proxy_set_property,
    )?;
    linker.func_wrap(
        env,
        H::ProxyCallForeignFunction.name(),
        foreign::proxy_call_foreign_function,
    )?;
    // Stream control.
    linker.func_wrap(
        env,
        H::ProxyContinueRequest.name(),
        stream_control::proxy_continue_request,
    )?;
    linker.func_wrap(
        env,
        H::ProxyContinueResponse.name(),
        stream_control::proxy_continue_response,
    )?;
    linker.func_wrap(
        env,
        H::ProxyContinueStream.name(),
        stream_control::proxy_continue_stream,
    )?;
    linker.func_wrap(
        env,
        H::ProxyCloseStream.name(),
        stream_control::proxy_close_stream,
    )?;
    linker.func_wrap(
        env,
        H::ProxyClearRouteCache.name(),
        stream_control::proxy_clear_route_cache,
    )?;
    linker.func_wrap(
        env,
        H::ProxySendLocalResponse.name(),
        stream_control::proxy_send_local_response,
    )?;
    // Shared data and queues.
    linker.func_wrap(
        env,
        H::ProxyGetSharedData.name(),
        shared_data::proxy_get_shared_data,
    )?;
    linker.func_wrap(
        env,
        H::ProxySetSharedData.name(),
        shared_data::proxy_set_shared_data,
    )?;
    linker.func_wrap(
        env,
        H::ProxyRegisterSharedQueue.name(),
        shared_data::proxy_register_shared_queue,
    )?;
    linker.func_wrap(
        env,
        H::ProxyResolveSharedQueue.name(),
        shared_data::proxy_resolve_shared_queue,
    )?;
    linker.func_wrap(
        env,
        H::ProxyDequeueSharedQueue.name(),
        shared_data::proxy_dequeue_shared_queue,
    )?;
    linker.func_wrap(
        env,
        H::ProxyEnqueueSharedQueue.name(),
        shared_data::proxy_enqueue_shared_queue,
    )?;
    // Header maps.
    linker.func_wrap(
        env,
        H::ProxyGetHeaderMapValue.name(),
        headers::proxy_get_header_map_value,
    )?;
    linker.func_wrap(
        env,
        H::ProxyGetHeaderMapPairs.name(),
        headers::proxy_get_header_map_pairs,
    )?;
    linker.func_wrap(
        env,
        H::ProxySetHeaderMapPairs.name(),
        headers::proxy_set_header_map_pairs,
    )?;
    linker.func_wrap(
        env,
        H::ProxyGetHeaderMapSize.name(),
        headers::proxy_get_header_map_size,
    )?;
    linker.func_wrap(
        env,
        H::ProxyAddHeaderMapValue.name(),
        headers::proxy_add_header_map_value,
    )?;
    linker.func_wrap(
        env,
        H::ProxyReplaceHeaderMapValue.name(),
        headers::proxy_replace_header_map_value,
    )?;
    linker.func_wrap(
        env,
        H::ProxyRemoveHeaderMapValue.name(),
        headers::proxy_remove_header_map_value,
    )?;
    // Buffers.
    linker.func_wrap(
        env,
        H::ProxyGetConfiguration.name(),
        buffers::proxy_get_configuration,
    )?;
    linker.func_wrap(
        env,
        H::ProxyGetBufferStatus.name(),
        buffers::proxy_get_buffer_status,
    )?;
    linker.func_wrap(
        env,
        H::ProxyGetBufferBytes.name(),
        buffers::proxy_get_buffer_bytes,
    )?;
    linker.func_wrap(
        env,
        H::ProxySetBufferBytes.name(),
        buffers::proxy_set_buffer_bytes,
    )?;
    // Calls out: HTTP and gRPC.
    linker.func_wrap(env, H::ProxyHttpCall.name(), calls::proxy_http_call)?;
    linker.func_wrap(env, H::ProxyGrpcCall.name(), calls::proxy_grpc_call)?;
    linker.func_wrap(env, H::ProxyGrpcStream.name(), calls::proxy_grpc_stream)?;
    linker.func_wrap(env, H::ProxyGrpcSend.name(), calls::proxy_grpc_send)?;
    linker.func_wrap(env, H::ProxyGrpcCancel.name(), calls::proxy_grpc_cancel)?;
    linker.func_wrap(env, H::ProxyGrpcClose.name(), calls::proxy_grpc_close)?;
    // Metrics.
    linker.func_wrap(
        env,
        H::ProxyDefineMetric.name(),
        metrics::proxy_define_metric,
    )?;
    linker.func_wrap(
        env,
        H::ProxyIncrementMetric.name(),
        metrics::proxy_increment_metric,
    )?;
    linker.func_wrap(
        env,
        H::ProxyRecordMetric.name(),
        metrics::proxy_record_metric,
    )?;
    linker.func_wrap(env, H::ProxyGetMetric.name(), metrics::proxy_get_metric)?;
    Ok(())
}
