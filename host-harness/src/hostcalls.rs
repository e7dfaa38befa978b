//! The `env` imports of proxy-wasm ABI 0.2.1 (and the 0.1.0/0.2.0 extras), each answering
//! with the status Envoy returns in the same situation (Envoy's `context.cc` and
//! proxy-wasm-cpp-host's `exports.cc` are the reference).

use crate::abi::{decode_pairs, BufferType, LogLevel, MapType, MetricType, Status, StreamType};
use crate::exchange::{DispatchedHttpCall, LocalResponse};
use crate::headers::HeaderMap;
use crate::memory::{
    allocate, copy_out, guest, guest_mut, read, slice, utf8_lossy, write_u32, write_u64, Ctx,
};
use crate::observe::Hostcall;
use crate::properties;
use crate::state::{HostState, MetricStore, SharedQueue};
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

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap("env", Hostcall::ProxyLog.name(), proxy_log)?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyGetLogLevel.name(),
        proxy_get_log_level,
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyGetCurrentTimeNanoseconds.name(),
        proxy_get_current_time,
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxySetTickPeriodMilliseconds.name(),
        proxy_set_tick_period,
    )?;
    linker.func_wrap("env", Hostcall::ProxyGetProperty.name(), proxy_get_property)?;
    linker.func_wrap("env", Hostcall::ProxySetProperty.name(), proxy_set_property)?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyGetConfiguration.name(),
        proxy_get_configuration,
    )?;
    linker.func_wrap("env", Hostcall::ProxyGetStatus.name(), proxy_get_status)?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyContinueRequest.name(),
        |mut c: Ctx<'_>| {
            enter(&mut c, Hostcall::ProxyContinueRequest);
            ok(continue_stream(c.data_mut(), StreamType::Request))
        },
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyContinueResponse.name(),
        |mut c: Ctx<'_>| {
            enter(&mut c, Hostcall::ProxyContinueResponse);
            ok(continue_stream(c.data_mut(), StreamType::Response))
        },
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyContinueStream.name(),
        |mut c: Ctx<'_>, stream: i32| {
            enter(&mut c, Hostcall::ProxyContinueStream);
            match StreamType::from_code(stream as u32) {
                Some(stream) => ok(continue_stream(c.data_mut(), stream)),
                None => ok(Status::BadArgument),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyCloseStream.name(),
        |mut c: Ctx<'_>, stream: i32| {
            enter(&mut c, Hostcall::ProxyCloseStream);
            match StreamType::from_code(stream as u32) {
                Some(StreamType::Request | StreamType::Response) => {
                    if let Some(state) = c.data_mut().stream_mut() {
                        state.closed = true;
                    }
                    ok(Status::Ok)
                }
                Some(_) => ok(Status::Ok),
                None => ok(Status::BadArgument),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyClearRouteCache.name(),
        |mut c: Ctx<'_>| {
            enter(&mut c, Hostcall::ProxyClearRouteCache);
            ok(Status::Ok)
        },
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxySendLocalResponse.name(),
        proxy_send_local_response,
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxySetEffectiveContext.name(),
        |mut c: Ctx<'_>, id: i32| {
            enter(&mut c, Hostcall::ProxySetEffectiveContext);
            let state = c.data_mut();
            if !state.context_exists(id as u32) {
                return ok(Status::BadArgument);
            }
            state.effective_context = Some(id as u32);
            ok(Status::Ok)
        },
    )?;
    linker.func_wrap("env", Hostcall::ProxyDone.name(), |mut c: Ctx<'_>| {
        enter(&mut c, Hostcall::ProxyDone);
        let state = c.data_mut();
        let id = state.context();
        match state.pending_done.iter().position(|&pending| pending == id) {
            Some(index) => {
                state.pending_done.remove(index);
                state.done_called.push(id);
                ok(Status::Ok)
            }
            None => ok(Status::NotFound),
        }
    })?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyCallForeignFunction.name(),
        proxy_call_foreign_function,
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyGetSharedData.name(),
        proxy_get_shared_data,
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxySetSharedData.name(),
        proxy_set_shared_data,
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyRegisterSharedQueue.name(),
        proxy_register_shared_queue,
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyResolveSharedQueue.name(),
        proxy_resolve_shared_queue,
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyDequeueSharedQueue.name(),
        proxy_dequeue_shared_queue,
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyEnqueueSharedQueue.name(),
        proxy_enqueue_shared_queue,
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyGetHeaderMapValue.name(),
        proxy_get_header_map_value,
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyGetHeaderMapPairs.name(),
        proxy_get_header_map_pairs,
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxySetHeaderMapPairs.name(),
        proxy_set_header_map_pairs,
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyGetHeaderMapSize.name(),
        proxy_get_header_map_size,
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyAddHeaderMapValue.name(),
        |mut c: Ctx<'_>, map: i32, kp: i32, ks: i32, vp: i32, vs: i32| {
            enter(&mut c, Hostcall::ProxyAddHeaderMapValue);
            mutate_map(&mut c, map, kp, ks, Some((vp, vs)), |m, k, v| m.add(k, v))
        },
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyReplaceHeaderMapValue.name(),
        |mut c: Ctx<'_>, map: i32, kp: i32, ks: i32, vp: i32, vs: i32| {
            enter(&mut c, Hostcall::ProxyReplaceHeaderMapValue);
            mutate_map(&mut c, map, kp, ks, Some((vp, vs)), |m, k, v| m.set(k, v))
        },
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyRemoveHeaderMapValue.name(),
        |mut c: Ctx<'_>, map: i32, kp: i32, ks: i32| {
            enter(&mut c, Hostcall::ProxyRemoveHeaderMapValue);
            mutate_map(&mut c, map, kp, ks, None, |m, k, _| m.remove(k))
        },
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyGetBufferStatus.name(),
        proxy_get_buffer_status,
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyGetBufferBytes.name(),
        proxy_get_buffer_bytes,
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxySetBufferBytes.name(),
        proxy_set_buffer_bytes,
    )?;
    linker.func_wrap("env", Hostcall::ProxyHttpCall.name(), proxy_http_call)?;
    add_grpc(linker)?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyDefineMetric.name(),
        proxy_define_metric,
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyIncrementMetric.name(),
        proxy_increment_metric,
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyRecordMetric.name(),
        proxy_record_metric,
    )?;
    linker.func_wrap("env", Hostcall::ProxyGetMetric.name(), proxy_get_metric)?;
    Ok(())
}

fn proxy_log(mut caller: Ctx<'_>, level: i32, ptr: i32, size: i32) -> HostResult {
    enter(&mut caller, Hostcall::ProxyLog);
    let Some(level) = LogLevel::from_code(level as u32) else {
        return ok(Status::BadArgument);
    };
    let Some((memory, state)) = guest_mut(&mut caller) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let Some(message) = slice(memory, ptr, size) else {
        return ok(Status::InvalidMemoryAccess);
    };
    state.log(level, text(message));
    ok(Status::Ok)
}

fn proxy_get_log_level(mut caller: Ctx<'_>, ptr: i32) -> HostResult {
    enter(&mut caller, Hostcall::ProxyGetLogLevel);
    let level = caller.data().settings.log_level as u32;
    if !write_u32(&mut caller, ptr, level) {
        return ok(Status::InvalidMemoryAccess);
    }
    ok(Status::Ok)
}

fn proxy_get_current_time(mut caller: Ctx<'_>, ptr: i32) -> HostResult {
    enter(&mut caller, Hostcall::ProxyGetCurrentTimeNanoseconds);
    let now = caller.data().now_ns;
    if !write_u64(&mut caller, ptr, now) {
        return ok(Status::InvalidMemoryAccess);
    }
    ok(Status::Ok)
}

fn proxy_set_tick_period(mut caller: Ctx<'_>, period_ms: i32) -> HostResult {
    enter(&mut caller, Hostcall::ProxySetTickPeriodMilliseconds);
    let state = caller.data_mut();
    let now = state.now_ns;
    let root = state.settings_root_context();
    let period = u64::from(period_ms as u32);
    let root = state.roots.entry(root).or_default();
    root.tick_period_ms = period;
    root.next_tick_ns = (period > 0).then(|| now + period * 1_000_000);
    ok(Status::Ok)
}

fn proxy_get_property(
    mut caller: Ctx<'_>,
    path_ptr: i32,
    path_size: i32,
    ptr_ptr: i32,
    size_ptr: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxyGetProperty);
    let Some((memory, state)) = guest(&caller) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let Some(path) = slice(memory, path_ptr, path_size) else {
        return ok(Status::InvalidMemoryAccess);
    };
    match properties::get_property(state, path) {
        Ok(value) => ok(copy_out(&mut caller, &value, ptr_ptr, size_ptr)?),
        Err(status) => ok(status),
    }
}

fn proxy_set_property(
    mut caller: Ctx<'_>,
    path_ptr: i32,
    path_size: i32,
    value_ptr: i32,
    value_size: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxySetProperty);
    let Some((memory, state)) = guest_mut(&mut caller) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let (Some(path), Some(value)) = (
        slice(memory, path_ptr, path_size),
        slice(memory, value_ptr, value_size),
    ) else {
        return ok(Status::InvalidMemoryAccess);
    };
    ok(properties::set_property(state, path, value))
}

fn proxy_get_configuration(mut caller: Ctx<'_>, ptr_ptr: i32, size_ptr: i32) -> HostResult {
    enter(&mut caller, Hostcall::ProxyGetConfiguration);
    let state = caller.data();
    let configuration = if state.configuring {
        state.plugin_configuration.clone()
    } else {
        state.settings.vm_configuration.clone()
    };
    ok(copy_out(&mut caller, &configuration, ptr_ptr, size_ptr)?)
}

fn proxy_get_status(mut caller: Ctx<'_>, code_ptr: i32, ptr_ptr: i32, size_ptr: i32) -> HostResult {
    enter(&mut caller, Hostcall::ProxyGetStatus);
    let (code, message) = caller.data().status.clone();
    if !write_u32(&mut caller, code_ptr, code) {
        return ok(Status::InvalidMemoryAccess);
    }
    ok(copy_out(
        &mut caller,
        message.as_bytes(),
        ptr_ptr,
        size_ptr,
    )?)
}

/// Envoy's `continueStream`: resumes the stream after the current VM call and, for the request
/// side, drops the filter's access to the request maps.
fn continue_stream(state: &mut HostState, stream: StreamType) -> Status {
    let Some(current) = state.stream_mut() else {
        return match stream {
            StreamType::Upstream => Status::Unimplemented,
            _ => Status::Ok,
        };
    };
    match stream {
        StreamType::Request => {
            current.continue_request = true;
            current.live.request_headers = false;
            current.live.request_body = false;
            current.live.request_trailers = false;
            Status::Ok
        }
        StreamType::Response => {
            current.continue_response = true;
            current.live.request_headers = false;
            current.live.request_body = false;
            current.live.request_trailers = false;
            Status::Ok
        }
        StreamType::Downstream => Status::Ok,
        StreamType::Upstream => Status::Unimplemented,
    }
}

#[allow(clippy::too_many_arguments)]
fn proxy_send_local_response(
    mut caller: Ctx<'_>,
    status_code: i32,
    details_ptr: i32,
    details_size: i32,
    body_ptr: i32,
    body_size: i32,
    headers_ptr: i32,
    headers_size: i32,
    grpc_status: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxySendLocalResponse);
    let (Some(details), Some(body), Some(headers)) = (
        read(&caller, details_ptr, details_size),
        read(&caller, body_ptr, body_size),
        read(&caller, headers_ptr, headers_size),
    ) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let response = LocalResponse {
        status: status_code as u32,
        headers: pairs_to_map(decode_pairs(&headers)),
        body,
        // SDKs pass -1 for "no gRPC status"; Envoy keeps only well-known codes (0..=16).
        grpc_status: (0..=16)
            .contains(&grpc_status)
            .then_some(grpc_status as u32),
        // Envoy replaces whitespace in details with underscores.
        details: text(&details).replace(char::is_whitespace, "_"),
    };
    if let Some(stream) = caller.data_mut().stream_mut() {
        stream.local_response = Some(response);
    }
    ok(Status::Ok)
}

fn proxy_call_foreign_function(
    mut caller: Ctx<'_>,
    name_ptr: i32,
    name_size: i32,
    args_ptr: i32,
    args_size: i32,
    results_ptr: i32,
    results_size_ptr: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxyCallForeignFunction);
    let (Some(name), Some(arguments)) = (
        read(&caller, name_ptr, name_size),
        read(&caller, args_ptr, args_size),
    ) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let name = text(&name);
    let registered = caller.data().settings.foreign_functions.get(&name).cloned();
    let outcome = match registered {
        Some(function) => function(&arguments),
        // Envoy's own: a test-registered function of the same name takes its place.
        None if name == crate::declared::DECLARE_PROPERTY => {
            let state = caller.data_mut();
            let root = state.context();
            match state.roots.get_mut(&root) {
                Some(root) => crate::declared::declare(&mut root.declared, &arguments),
                // Envoy looks declarations up on the root context: a stream cannot declare.
                None => Err(Status::BadArgument),
            }
        }
        None => return ok(Status::NotFound),
    };
    let (status, result) = match outcome {
        Ok(result) => (Status::Ok, result),
        Err(status) => (status, Vec::new()),
    };
    let mut address = 0;
    if results_ptr != 0 && !result.is_empty() {
        match allocate(&mut caller, &result)? {
            Some(pointer) => address = pointer,
            None => return ok(Status::InvalidMemoryAccess),
        }
    }
    if results_ptr != 0 && !write_u32(&mut caller, results_ptr, address) {
        return ok(Status::InvalidMemoryAccess);
    }
    if results_size_ptr != 0 && !write_u32(&mut caller, results_size_ptr, result.len() as u32) {
        return ok(Status::InvalidMemoryAccess);
    }
    ok(status)
}

fn proxy_get_shared_data(
    mut caller: Ctx<'_>,
    key_ptr: i32,
    key_size: i32,
    ptr_ptr: i32,
    size_ptr: i32,
    cas_ptr: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxyGetSharedData);
    let Some(key) = read(&caller, key_ptr, key_size) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let Some((value, cas)) = caller.data().settings.shared_data.get(&key) else {
        return ok(Status::NotFound);
    };
    let status = copy_out(&mut caller, &value, ptr_ptr, size_ptr)?;
    if status != Status::Ok {
        return ok(status);
    }
    if !write_u32(&mut caller, cas_ptr, cas) {
        return ok(Status::InvalidMemoryAccess);
    }
    ok(Status::Ok)
}

fn proxy_set_shared_data(
    mut caller: Ctx<'_>,
    key_ptr: i32,
    key_size: i32,
    value_ptr: i32,
    value_size: i32,
    cas: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxySetSharedData);
    let (Some(key), Some(value)) = (
        read(&caller, key_ptr, key_size),
        read(&caller, value_ptr, value_size),
    ) else {
        return ok(Status::InvalidMemoryAccess);
    };
    ok(caller
        .data()
        .settings
        .shared_data
        .set(&key, &value, cas as u32))
}

fn proxy_register_shared_queue(
    mut caller: Ctx<'_>,
    name_ptr: i32,
    name_size: i32,
    token_ptr: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxyRegisterSharedQueue);
    let Some(name) = read(&caller, name_ptr, name_size) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let state = caller.data_mut();
    let name = text(&name);
    let vm_id = state.settings.vm_id.clone();
    let root = state.settings_root_context();
    let token = match state
        .queues
        .iter()
        .position(|queue| queue.vm_id == vm_id && queue.name == name)
    {
        Some(index) => {
            state.queues[index].root_context = root;
            index + 1
        }
        None => {
            state.queues.push(SharedQueue {
                vm_id,
                name,
                root_context: root,
                items: Default::default(),
            });
            state.queues.len()
        }
    };
    if !write_u32(&mut caller, token_ptr, token as u32) {
        return ok(Status::InvalidMemoryAccess);
    }
    ok(Status::Ok)
}

fn proxy_resolve_shared_queue(
    mut caller: Ctx<'_>,
    vm_id_ptr: i32,
    vm_id_size: i32,
    name_ptr: i32,
    name_size: i32,
    token_ptr: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxyResolveSharedQueue);
    let (Some(vm_id), Some(name)) = (
        read(&caller, vm_id_ptr, vm_id_size),
        read(&caller, name_ptr, name_size),
    ) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let (vm_id, name) = (text(&vm_id), text(&name));
    let Some(index) = caller
        .data()
        .queues
        .iter()
        .position(|queue| queue.vm_id == vm_id && queue.name == name)
    else {
        return ok(Status::NotFound);
    };
    if !write_u32(&mut caller, token_ptr, index as u32 + 1) {
        return ok(Status::InvalidMemoryAccess);
    }
    ok(Status::Ok)
}

fn proxy_dequeue_shared_queue(
    mut caller: Ctx<'_>,
    token: i32,
    ptr_ptr: i32,
    size_ptr: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxyDequeueSharedQueue);
    let index = (token as u32 as usize).wrapping_sub(1);
    let Some(queue) = caller.data_mut().queues.get_mut(index) else {
        return ok(Status::NotFound);
    };
    let Some(item) = queue.items.pop_front() else {
        return ok(Status::Empty);
    };
    ok(copy_out(&mut caller, &item, ptr_ptr, size_ptr)?)
}

fn proxy_enqueue_shared_queue(mut caller: Ctx<'_>, token: i32, ptr: i32, size: i32) -> HostResult {
    enter(&mut caller, Hostcall::ProxyEnqueueSharedQueue);
    let Some(data) = read(&caller, ptr, size) else {
        return ok(Status::InvalidMemoryAccess);
    };
    ok(caller.data_mut().enqueue(token as u32, data))
}

/// Runs `op` on the map Envoy would hand out for writing; `BadArgument` when that map is not
/// available in the current phase (e.g. response headers while the request is processed).
fn mutate_map(
    caller: &mut Ctx<'_>,
    map: i32,
    key_ptr: i32,
    key_size: i32,
    value: Option<(i32, i32)>,
    op: impl FnOnce(&mut HeaderMap, &str, &str),
) -> HostResult {
    let Some(map) = MapType::from_code(map as u32) else {
        return ok(Status::BadArgument);
    };
    let Some((memory, state)) = guest_mut(caller) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let Some(key) = slice(memory, key_ptr, key_size) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let value = match value {
        Some((ptr, size)) => match slice(memory, ptr, size) {
            Some(value) => value,
            None => return ok(Status::InvalidMemoryAccess),
        },
        None => &[],
    };
    let Some(target) = state
        .stream_mut()
        .and_then(|stream| stream.writable_map(map))
    else {
        return ok(Status::BadArgument);
    };
    op(target, &utf8_lossy(key), &utf8_lossy(value));
    ok(Status::Ok)
}

fn readable_map(state: &HostState, map: MapType) -> Option<&HeaderMap> {
    match map {
        MapType::HttpCallResponseHeaders => state.http_call_response.as_ref().map(|r| &r.headers),
        MapType::HttpCallResponseTrailers => state.http_call_response.as_ref().map(|r| &r.trailers),
        MapType::GrpcReceiveInitialMetadata | MapType::GrpcReceiveTrailingMetadata => None,
        _ => state.stream().and_then(|stream| stream.readable_map(map)),
    }
}

fn proxy_get_header_map_value(
    mut caller: Ctx<'_>,
    map: i32,
    key_ptr: i32,
    key_size: i32,
    ptr_ptr: i32,
    size_ptr: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxyGetHeaderMapValue);
    let Some(map) = MapType::from_code(map as u32) else {
        return ok(Status::BadArgument);
    };
    let Some((memory, state)) = guest(&caller) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let Some(key) = slice(memory, key_ptr, key_size) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let legacy_abi = state.settings.abi_0_1_0;
    let value = match readable_map(state, map) {
        Some(headers) => headers.get(&utf8_lossy(key)).map(str::to_string),
        None if state.stream().is_some_and(|s| s.access_log_phase) => None,
        None => return ok(Status::BadArgument),
    };
    match value {
        Some(value) => ok(copy_out(&mut caller, value.as_bytes(), ptr_ptr, size_ptr)?),
        // ABI 0.1.0 answered a missing header with an empty value.
        None if legacy_abi => ok(copy_out(&mut caller, b"", ptr_ptr, size_ptr)?),
        None => ok(Status::NotFound),
    }
}

fn proxy_get_header_map_pairs(
    mut caller: Ctx<'_>,
    map: i32,
    ptr_ptr: i32,
    size_ptr: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxyGetHeaderMapPairs);
    let Some(map) = MapType::from_code(map as u32) else {
        return ok(Status::BadArgument);
    };
    // An unavailable map reads as empty here, as in Envoy.
    let encoded = match readable_map(caller.data(), map) {
        Some(headers) if !headers.is_empty() => crate::abi::encode_pairs(headers.entries()),
        _ => Vec::new(),
    };
    ok(copy_out(&mut caller, &encoded, ptr_ptr, size_ptr)?)
}

fn proxy_set_header_map_pairs(mut caller: Ctx<'_>, map: i32, ptr: i32, size: i32) -> HostResult {
    enter(&mut caller, Hostcall::ProxySetHeaderMapPairs);
    let Some(map) = MapType::from_code(map as u32) else {
        return ok(Status::BadArgument);
    };
    let Some(data) = read(&caller, ptr, size) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let replacement = pairs_to_map(decode_pairs(&data));
    let Some(target) = caller
        .data_mut()
        .stream_mut()
        .and_then(|stream| stream.writable_map(map))
    else {
        return ok(Status::BadArgument);
    };
    *target = replacement;
    ok(Status::Ok)
}

fn proxy_get_header_map_size(mut caller: Ctx<'_>, map: i32, size_ptr: i32) -> HostResult {
    enter(&mut caller, Hostcall::ProxyGetHeaderMapSize);
    let Some(map) = MapType::from_code(map as u32) else {
        return ok(Status::BadArgument);
    };
    let Some(size) = caller
        .data_mut()
        .stream_mut()
        .and_then(|stream| stream.writable_map(map))
        .map(|headers| headers.byte_size())
    else {
        return ok(Status::BadArgument);
    };
    if !write_u32(&mut caller, size_ptr, size as u32) {
        return ok(Status::InvalidMemoryAccess);
    }
    ok(Status::Ok)
}

/// A buffer as Envoy's `getBuffer` hands it out: its bytes and whether writes are allowed.
/// `None` is Envoy's null buffer (NOT_FOUND).
fn buffer(state: &HostState, buffer: BufferType) -> Option<(Vec<u8>, bool)> {
    let stream = state.stream();
    match buffer {
        BufferType::CallData => Some((state.call_data.clone(), false)),
        BufferType::VmConfiguration => Some((state.settings.vm_configuration.clone(), false)),
        BufferType::PluginConfiguration => state
            .configuring
            .then(|| (state.plugin_configuration.clone(), false)),
        BufferType::HttpRequestBody => Some(match stream {
            Some(s) if s.live.request_body => (s.request_body.clone(), true),
            _ => (Vec::new(), false),
        }),
        BufferType::HttpResponseBody => Some(match stream {
            Some(s) if s.live.response_body => (s.response_body.clone(), true),
            _ => (Vec::new(), false),
        }),
        BufferType::HttpCallResponseBody => state
            .http_call_response
            .as_ref()
            .map(|response| (response.body.clone(), false)),
        BufferType::DownstreamData | BufferType::UpstreamData | BufferType::GrpcReceiveBuffer => {
            Some((Vec::new(), false))
        }
    }
}

fn proxy_get_buffer_status(
    mut caller: Ctx<'_>,
    kind: i32,
    length_ptr: i32,
    flags_ptr: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxyGetBufferStatus);
    let Some(kind) = BufferType::from_code(kind as u32) else {
        return ok(Status::BadArgument);
    };
    let Some((bytes, _)) = buffer(caller.data(), kind) else {
        return ok(Status::NotFound);
    };
    if !write_u32(&mut caller, length_ptr, bytes.len() as u32)
        || !write_u32(&mut caller, flags_ptr, 0)
    {
        return ok(Status::InvalidMemoryAccess);
    }
    ok(Status::Ok)
}

fn proxy_get_buffer_bytes(
    mut caller: Ctx<'_>,
    kind: i32,
    start: i32,
    length: i32,
    ptr_ptr: i32,
    size_ptr: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxyGetBufferBytes);
    let Some(kind) = BufferType::from_code(kind as u32) else {
        return ok(Status::BadArgument);
    };
    let Some((bytes, _)) = buffer(caller.data(), kind) else {
        return ok(Status::NotFound);
    };
    let start = start as u32 as usize;
    let end = start
        .saturating_add(length as u32 as usize)
        .min(bytes.len());
    // Envoy leaves the out-pointers untouched when there is nothing to copy.
    if start >= end {
        return ok(Status::Ok);
    }
    ok(copy_out(
        &mut caller,
        &bytes[start..end],
        ptr_ptr,
        size_ptr,
    )?)
}

fn proxy_set_buffer_bytes(
    mut caller: Ctx<'_>,
    kind: i32,
    start: i32,
    length: i32,
    data_ptr: i32,
    data_size: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxySetBufferBytes);
    let Some(kind) = BufferType::from_code(kind as u32) else {
        return ok(Status::BadArgument);
    };
    let Some((current, writable)) = buffer(caller.data(), kind) else {
        return ok(Status::NotFound);
    };
    let Some(data) = read(&caller, data_ptr, data_size) else {
        return ok(Status::InvalidMemoryAccess);
    };
    if !writable {
        return ok(Status::BadArgument);
    }
    // Envoy's Buffer::copyFrom: prepend, replace all, or append; nothing in between.
    let (start, length) = (start as u32 as usize, length as u32 as usize);
    let updated = if start == 0 && length == 0 {
        [data.as_slice(), current.as_slice()].concat()
    } else if start == 0 && length >= current.len() {
        data
    } else if start >= current.len() {
        [current.as_slice(), data.as_slice()].concat()
    } else {
        return ok(Status::BadArgument);
    };
    if let Some(stream) = caller.data_mut().stream_mut() {
        match kind {
            BufferType::HttpRequestBody => stream.request_body = updated,
            _ => stream.response_body = updated,
        }
    }
    ok(Status::Ok)
}

#[allow(clippy::too_many_arguments)]
fn proxy_http_call(
    mut caller: Ctx<'_>,
    cluster_ptr: i32,
    cluster_size: i32,
    headers_ptr: i32,
    headers_size: i32,
    body_ptr: i32,
    body_size: i32,
    trailers_ptr: i32,
    trailers_size: i32,
    timeout_ms: i32,
    token_ptr: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxyHttpCall);
    let (Some(cluster), Some(headers), Some(body), Some(trailers)) = (
        read(&caller, cluster_ptr, cluster_size),
        read(&caller, headers_ptr, headers_size),
        read(&caller, body_ptr, body_size),
        read(&caller, trailers_ptr, trailers_size),
    ) else {
        return ok(Status::InvalidMemoryAccess);
    };
    if !write_u32(&mut caller, token_ptr, 0) {
        return ok(Status::InvalidMemoryAccess);
    }
    let cluster = text(&cluster);
    let headers = pairs_to_map(decode_pairs(&headers));
    let state = caller.data_mut();
    let known = &state.settings.clusters;
    if (!known.is_empty() && !known.contains(&cluster))
        || [":path", ":method", ":authority"]
            .iter()
            .any(|required| !headers.contains(required))
    {
        return ok(Status::BadArgument);
    }
    let token = state.next_http_token;
    state.next_http_token += 1;
    let call = DispatchedHttpCall {
        token,
        cluster,
        headers,
        body,
        trailers: pairs_to_map(decode_pairs(&trailers)),
        timeout_ms: timeout_ms as u32,
        deadline_ns: (timeout_ms != 0)
            .then(|| state.now_ns + u64::from(timeout_ms as u32) * 1_000_000),
        context_id: state.context(),
    };
    state.http_calls.insert(token, call);
    if !write_u32(&mut caller, token_ptr, token) {
        return ok(Status::InvalidMemoryAccess);
    }
    ok(Status::Ok)
}

/// gRPC has no upstream in the harness: Envoy answers a service it cannot resolve with
/// PARSE_FAILURE and an unknown token with NOT_FOUND.
fn add_grpc(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        Hostcall::ProxyGrpcCall.name(),
        |mut c: Ctx<'_>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32| {
            enter(&mut c, Hostcall::ProxyGrpcCall);
            ok(Status::ParseFailure)
        },
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyGrpcStream.name(),
        |mut c: Ctx<'_>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| {
            enter(&mut c, Hostcall::ProxyGrpcStream);
            ok(Status::ParseFailure)
        },
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyGrpcSend.name(),
        |mut c: Ctx<'_>, _: i32, _: i32, _: i32, _: i32| {
            enter(&mut c, Hostcall::ProxyGrpcSend);
            ok(Status::NotFound)
        },
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyGrpcCancel.name(),
        |mut c: Ctx<'_>, _: i32| {
            enter(&mut c, Hostcall::ProxyGrpcCancel);
            ok(Status::NotFound)
        },
    )?;
    linker.func_wrap(
        "env",
        Hostcall::ProxyGrpcClose.name(),
        |mut c: Ctx<'_>, _: i32| {
            enter(&mut c, Hostcall::ProxyGrpcClose);
            ok(Status::NotFound)
        },
    )?;
    Ok(())
}

fn proxy_define_metric(
    mut caller: Ctx<'_>,
    kind: i32,
    name_ptr: i32,
    name_size: i32,
    id_ptr: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxyDefineMetric);
    let Some(kind) = MetricType::from_code(kind as u32) else {
        return ok(Status::BadArgument);
    };
    let Some(name) = read(&caller, name_ptr, name_size) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let id = caller.data_mut().metrics.define(kind, &text(&name));
    if !write_u32(&mut caller, id_ptr, id) {
        return ok(Status::InvalidMemoryAccess);
    }
    ok(Status::Ok)
}

fn proxy_increment_metric(mut caller: Ctx<'_>, id: i32, offset: i64) -> HostResult {
    enter(&mut caller, Hostcall::ProxyIncrementMetric);
    let id = id as u32;
    let kind = MetricStore::kind_of(id);
    let Some(metric) = caller.data_mut().metrics.get_mut(id) else {
        return ok(match kind {
            Some(MetricType::Counter | MetricType::Gauge) => Status::NotFound,
            _ => Status::BadArgument,
        });
    };
    match kind {
        // Counters only go up: Envoy rejects a zero or negative delta.
        Some(MetricType::Counter) if offset <= 0 => ok(Status::BadArgument),
        Some(MetricType::Counter | MetricType::Gauge) => {
            metric.value = metric.value.wrapping_add(offset);
            ok(Status::Ok)
        }
        _ => ok(Status::BadArgument),
    }
}

fn proxy_record_metric(mut caller: Ctx<'_>, id: i32, value: i64) -> HostResult {
    enter(&mut caller, Hostcall::ProxyRecordMetric);
    let id = id as u32;
    let kind = MetricStore::kind_of(id);
    let Some(metric) = caller.data_mut().metrics.get_mut(id) else {
        return ok(Status::NotFound);
    };
    match kind {
        // Envoy's recordMetric adds to a counter and sets a gauge.
        Some(MetricType::Counter) => metric.value = metric.value.wrapping_add(value),
        Some(MetricType::Gauge) => metric.value = value,
        _ => metric.samples.push(value as u64),
    }
    ok(Status::Ok)
}

fn proxy_get_metric(mut caller: Ctx<'_>, id: i32, value_ptr: i32) -> HostResult {
    enter(&mut caller, Hostcall::ProxyGetMetric);
    let id = id as u32;
    let kind = MetricStore::kind_of(id);
    if !matches!(kind, Some(MetricType::Counter | MetricType::Gauge)) {
        return ok(Status::BadArgument);
    }
    let Some(value) = caller.data_mut().metrics.get_mut(id).map(|m| m.value) else {
        return ok(Status::NotFound);
    };
    if !write_u64(&mut caller, value_ptr, value as u64) {
        return ok(Status::InvalidMemoryAccess);
    }
    ok(Status::Ok)
}

impl HostState {
    /// The root context hostcalls from any context of this plugin belong to.
    pub(crate) fn settings_root_context(&self) -> u32 {
        crate::plugin::ROOT_CONTEXT_ID
    }

    pub(crate) fn enqueue(&mut self, token: u32, data: Vec<u8>) -> Status {
        let index = (token as usize).wrapping_sub(1);
        let Some(queue) = self.queues.get_mut(index) else {
            return Status::NotFound;
        };
        queue.items.push_back(data);
        let root = queue.root_context;
        self.ready_queues.push_back((root, token));
        Status::Ok
    }
}
