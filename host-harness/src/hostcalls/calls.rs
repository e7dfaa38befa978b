//! Calls out of the filter: `proxy_http_call` to a declared cluster, answered by the test, and the
//! gRPC calls and streams.

use super::{enter, ok, pairs_to_map, text, HostResult};
use crate::abi::{decode_pairs, Status};
use crate::exchange::DispatchedHttpCall;
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

/// gRPC has no upstream in the harness: Envoy answers a service it cannot resolve with
/// PARSE_FAILURE and an unknown token with NOT_FOUND.
#[allow(clippy::too_many_arguments)]
pub(super) fn proxy_grpc_call(
    mut c: Ctx<'_>,
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
    _: i32,
) -> HostResult {
    enter(&mut c, Hostcall::ProxyGrpcCall);
    ok(Status::ParseFailure)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn proxy_grpc_stream(
    mut c: Ctx<'_>,
    _: i32,
    _: i32,
    _: i32,
    _: i32,
    _: i32,
    _: i32,
    _: i32,
    _: i32,
    _: i32,
) -> HostResult {
    enter(&mut c, Hostcall::ProxyGrpcStream);
    ok(Status::ParseFailure)
}

pub(super) fn proxy_grpc_send(mut c: Ctx<'_>, _: i32, _: i32, _: i32, _: i32) -> HostResult {
    enter(&mut c, Hostcall::ProxyGrpcSend);
    ok(Status::NotFound)
}

pub(super) fn proxy_grpc_cancel(mut c: Ctx<'_>, _: i32) -> HostResult {
    enter(&mut c, Hostcall::ProxyGrpcCancel);
    ok(Status::NotFound)
}

pub(super) fn proxy_grpc_close(mut c: Ctx<'_>, _: i32) -> HostResult {
    enter(&mut c, Hostcall::ProxyGrpcClose);
    ok(Status::NotFound)
}
