//! Calls out of the filter: `proxy_http_call` to a declared cluster, answered by the test, and the
//! gRPC calls and streams.

use super::{enter, ok, pairs_to_map, text, HostResult};
use crate::abi::{decode_pairs, Status};
use crate::exchange::DispatchedHttpCall;
use crate::grpc::DispatchedGrpcCall;
use crate::memory::{read, write_u32, Ctx};
use crate::observe::Hostcall;

#[allow(clippy::too_many_arguments)]
pub(super) fn proxy_http_call(
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
    // Envoy's async client marks its requests internal and the router announces the timeout.
    let mut headers = headers;
    headers.set("x-envoy-internal", "true");
    if timeout_ms != 0 {
        headers.set_owned(
            "x-envoy-expected-rq-timeout-ms",
            (timeout_ms as u32).to_string(),
        );
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

/// Opens a gRPC call or stream: records it for the test to answer and writes its token (calls
/// odd, streams even, as Envoy numbers them). A service naming an undeclared cluster (once the
/// test declared any) is PARSE_FAILURE, Envoy's answer for a service it cannot resolve.
fn open_grpc(
    caller: &mut Ctx<'_>,
    [service, service_name, method, metadata]: [(i32, i32); 4],
    message: Option<Vec<u8>>,
    timeout_ms: u32,
    token_ptr: i32,
) -> HostResult {
    let (Some(service), Some(service_name), Some(method), Some(metadata)) = (
        read(caller, service.0, service.1),
        read(caller, service_name.0, service_name.1),
        read(caller, method.0, method.1),
        read(caller, metadata.0, metadata.1),
    ) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let cluster = text(&service);
    let state = caller.data_mut();
    let known = &state.settings.clusters;
    if !known.is_empty() && !known.contains(&cluster) {
        return ok(Status::ParseFailure);
    }
    let stream = message.is_none();
    let mut token = state.next_grpc_token;
    if token.is_multiple_of(2) != stream {
        token += 1;
    }
    state.next_grpc_token = token + 1;
    let call = DispatchedGrpcCall {
        token,
        stream,
        cluster,
        service: text(&service_name),
        method: text(&method),
        initial_metadata: pairs_to_map(decode_pairs(&metadata)),
        messages: message.into_iter().collect(),
        local_closed: !stream,
        timeout_ms,
        deadline_ns: (!stream && timeout_ms != 0)
            .then(|| state.now_ns + u64::from(timeout_ms) * 1_000_000),
    };
    state.grpc_calls.insert(token, call);
    if !write_u32(caller, token_ptr, token) {
        return ok(Status::InvalidMemoryAccess);
    }
    ok(Status::Ok)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn proxy_grpc_call(
    mut c: Ctx<'_>,
    service_ptr: i32,
    service_size: i32,
    service_name_ptr: i32,
    service_name_size: i32,
    method_ptr: i32,
    method_size: i32,
    metadata_ptr: i32,
    metadata_size: i32,
    message_ptr: i32,
    message_size: i32,
    timeout_ms: i32,
    token_ptr: i32,
) -> HostResult {
    enter(&mut c, Hostcall::ProxyGrpcCall);
    let Some(message) = read(&c, message_ptr, message_size) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let parts = [
        (service_ptr, service_size),
        (service_name_ptr, service_name_size),
        (method_ptr, method_size),
        (metadata_ptr, metadata_size),
    ];
    open_grpc(&mut c, parts, Some(message), timeout_ms as u32, token_ptr)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn proxy_grpc_stream(
    mut c: Ctx<'_>,
    service_ptr: i32,
    service_size: i32,
    service_name_ptr: i32,
    service_name_size: i32,
    method_ptr: i32,
    method_size: i32,
    metadata_ptr: i32,
    metadata_size: i32,
    token_ptr: i32,
) -> HostResult {
    enter(&mut c, Hostcall::ProxyGrpcStream);
    let parts = [
        (service_ptr, service_size),
        (service_name_ptr, service_name_size),
        (method_ptr, method_size),
        (metadata_ptr, metadata_size),
    ];
    open_grpc(&mut c, parts, None, 0, token_ptr)
}

/// Sends a message on an open stream; NOT_FOUND for an unknown token or a call (calls carry
/// their one message), BAD_ARGUMENT after the guest half-closed it.
pub(super) fn proxy_grpc_send(
    mut c: Ctx<'_>,
    token: i32,
    message_ptr: i32,
    message_size: i32,
    end_stream: i32,
) -> HostResult {
    enter(&mut c, Hostcall::ProxyGrpcSend);
    let Some(message) = read(&c, message_ptr, message_size) else {
        return ok(Status::InvalidMemoryAccess);
    };
    let Some(stream) = c
        .data_mut()
        .grpc_calls
        .get_mut(&(token as u32))
        .filter(|call| call.stream)
    else {
        return ok(Status::NotFound);
    };
    if stream.local_closed {
        return ok(Status::BadArgument);
    }
    stream.messages.push(message);
    stream.local_closed = end_stream != 0;
    ok(Status::Ok)
}

/// Cancels a call or stream: it is forgotten, and the guest hears nothing more of it.
pub(super) fn proxy_grpc_cancel(mut c: Ctx<'_>, token: i32) -> HostResult {
    enter(&mut c, Hostcall::ProxyGrpcCancel);
    match c.data_mut().grpc_calls.remove(&(token as u32)) {
        Some(_) => ok(Status::Ok),
        None => ok(Status::NotFound),
    }
}

/// Closes a call (as a cancel) or half-closes a stream, whose answers still arrive.
pub(super) fn proxy_grpc_close(mut c: Ctx<'_>, token: i32) -> HostResult {
    enter(&mut c, Hostcall::ProxyGrpcClose);
    let calls = &mut c.data_mut().grpc_calls;
    match calls.get_mut(&(token as u32)) {
        Some(call) if call.stream => {
            call.local_closed = true;
            ok(Status::Ok)
        }
        Some(_) => {
            calls.remove(&(token as u32));
            ok(Status::Ok)
        }
        None => ok(Status::NotFound),
    }
}
