//! Steering a stream: continue, close, clear the route cache, and the local reply a guest sends
//! instead of the upstream's answer.

use super::{enter, ok, pairs_to_map, text, HostResult};
use crate::abi::{decode_pairs, Status, StreamType};
use crate::exchange::LocalResponse;
use crate::memory::{read, Ctx};
use crate::observe::Hostcall;
use crate::state::HostState;

pub(super) fn proxy_continue_request(mut c: Ctx<'_>) -> HostResult {
    enter(&mut c, Hostcall::ProxyContinueRequest);
    ok(continue_stream(c.data_mut(), StreamType::Request))
}

pub(super) fn proxy_continue_response(mut c: Ctx<'_>) -> HostResult {
    enter(&mut c, Hostcall::ProxyContinueResponse);
    ok(continue_stream(c.data_mut(), StreamType::Response))
}

pub(super) fn proxy_continue_stream(mut c: Ctx<'_>, stream: i32) -> HostResult {
    enter(&mut c, Hostcall::ProxyContinueStream);
    match StreamType::from_code(stream as u32) {
        Some(stream) => ok(continue_stream(c.data_mut(), stream)),
        None => ok(Status::BadArgument),
    }
}

pub(super) fn proxy_close_stream(mut c: Ctx<'_>, stream: i32) -> HostResult {
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
}

pub(super) fn proxy_clear_route_cache(mut c: Ctx<'_>) -> HostResult {
    enter(&mut c, Hostcall::ProxyClearRouteCache);
    ok(Status::Ok)
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
pub(super) fn proxy_send_local_response(
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
