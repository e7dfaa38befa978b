//! Buffers: the plugin and VM configuration, the request and response bodies, an http call's
//! response body, and Envoy's rules for reading and rewriting them.

use super::{enter, ok, HostResult};
use crate::abi::{BufferType, Status};
use crate::memory::{copy_out, read, write_u32, Ctx};
use crate::observe::Hostcall;
use crate::state::HostState;

pub(super) fn proxy_get_configuration(
    mut caller: Ctx<'_>,
    ptr_ptr: i32,
    size_ptr: i32,
) -> HostResult {
    enter(&mut caller, Hostcall::ProxyGetConfiguration);
    let state = caller.data();
    let configuration = if state.configuring {
        state.plugin_configuration.clone()
    } else {
        state.settings.vm_configuration.clone()
    };
    ok(copy_out(&mut caller, &configuration, ptr_ptr, size_ptr)?)
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
        BufferType::GrpcReceiveBuffer => {
            Some((state.grpc_message.clone().unwrap_or_default(), false))
        }
        BufferType::DownstreamData | BufferType::UpstreamData => Some((Vec::new(), false)),
    }
}

pub(super) fn proxy_get_buffer_status(
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

pub(super) fn proxy_get_buffer_bytes(
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

pub(super) fn proxy_set_buffer_bytes(
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
