//! Header and trailer maps: reading values and pairs, the byte size, and the writes Envoy allows
//! in the current phase.

use super::{enter, ok, pairs_to_map, HostResult};
use crate::abi::{decode_pairs, MapType, Status};
use crate::headers::HeaderMap;
use crate::memory::{copy_out, guest, guest_mut, read, slice, utf8_lossy, write_u32, Ctx};
use crate::observe::Hostcall;
use crate::state::HostState;

pub(super) fn proxy_add_header_map_value(
    mut c: Ctx<'_>,
    map: i32,
    kp: i32,
    ks: i32,
    vp: i32,
    vs: i32,
) -> HostResult {
    enter(&mut c, Hostcall::ProxyAddHeaderMapValue);
    mutate_map(&mut c, map, kp, ks, Some((vp, vs)), |m, k, v| m.add(k, v))
}

pub(super) fn proxy_replace_header_map_value(
    mut c: Ctx<'_>,
    map: i32,
    kp: i32,
    ks: i32,
    vp: i32,
    vs: i32,
) -> HostResult {
    enter(&mut c, Hostcall::ProxyReplaceHeaderMapValue);
    mutate_map(&mut c, map, kp, ks, Some((vp, vs)), |m, k, v| {
        m.replace(k, v)
    })
}

pub(super) fn proxy_remove_header_map_value(
    mut c: Ctx<'_>,
    map: i32,
    kp: i32,
    ks: i32,
) -> HostResult {
    enter(&mut c, Hostcall::ProxyRemoveHeaderMapValue);
    mutate_map(&mut c, map, kp, ks, None, |m, k, _| m.remove(k))
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
        MapType::GrpcReceiveInitialMetadata | MapType::GrpcReceiveTrailingMetadata => {
            state.grpc_metadata.as_ref()
        }
        _ => state.stream().and_then(|stream| stream.readable_map(map)),
    }
}

pub(super) fn proxy_get_header_map_value(
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

pub(super) fn proxy_get_header_map_pairs(
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

pub(super) fn proxy_set_header_map_pairs(
    mut caller: Ctx<'_>,
    map: i32,
    ptr: i32,
    size: i32,
) -> HostResult {
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

pub(super) fn proxy_get_header_map_size(
    mut caller: Ctx<'_>,
    map: i32,
    size_ptr: i32,
) -> HostResult {
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
