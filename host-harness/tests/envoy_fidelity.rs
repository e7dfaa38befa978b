//! Behaviour a guest can observe in Envoy beyond the hostcalls themselves: the header map's
//! order, Envoy's buffer limits and its local replies, failure policies. Each test runs a small
//! raw-ABI guest written for it.

use host_harness::{
    Connection, FailurePolicy, GrpcAnswer, GuestModule, Plugin, PluginSettings, Request,
    UpstreamResponse,
};
use std::time::Duration;

/// A guest that adds `x-guest`, then `:x-guest`, to the request headers.
const PSEUDO_ADDER: &str = r#"(module
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "x-guest")
  (data (i32.const 32) ":x-guest")
  (data (i32.const 48) "1")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 0) (i32.const 16) (i32.const 7) (i32.const 48) (i32.const 1)))
    (drop (call $add (i32.const 0) (i32.const 32) (i32.const 8) (i32.const 48) (i32.const 1)))
    (i32.const 0)))"#;

#[test]
fn pseudo_headers_come_first_as_in_envoys_header_map() {
    let module = GuestModule::from_wat("pseudo-adder", PSEUDO_ADDER).unwrap();
    let mut plugin = Plugin::new(&module, PluginSettings::new("pseudo-adder")).unwrap();
    let request = Request::get("/").header("x-client", "1");
    let exchange = plugin
        .exchange(&Connection::plain(), request, UpstreamResponse::ok())
        .unwrap();
    let upstream = exchange.request.upstream().expect("went upstream");
    let keys: Vec<&str> = upstream.headers.iter().map(|(key, _)| key).collect();
    let first_regular = keys.iter().position(|key| !key.starts_with(':')).unwrap();
    assert!(
        keys[first_regular..]
            .iter()
            .all(|key| !key.starts_with(':')),
        "pseudo-headers first: {keys:?}"
    );
    // The HCM's `:scheme` and the guest's `:x-guest` both joined the pseudo-headers.
    assert!(keys[..first_regular].contains(&":scheme"), "{keys:?}");
    assert_eq!(keys[first_regular - 1], ":x-guest", "{keys:?}");
    // The guest's header is the last but the router's, added as the request goes upstream.
    assert_eq!(
        keys[keys.len() - 2..],
        ["x-guest", "x-envoy-expected-rq-timeout-ms"],
        "{keys:?}"
    );
}

/// A guest that buffers whole bodies, as the Rust SDK's examples do: it stops
/// (`StopIterationAndBuffer`) on every body chunk short of the end.
const BODY_BUFFERER: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
    (select (i32.const 0) (i32.const 1) (local.get 2)))
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
    (select (i32.const 0) (i32.const 1) (local.get 2))))"#;

fn body_bufferer(settings: PluginSettings) -> Plugin {
    let module = GuestModule::from_wat("body-bufferer", BODY_BUFFERER).unwrap();
    Plugin::new(&module, settings).unwrap()
}

#[test]
fn a_request_body_buffered_past_the_limit_gets_envoys_413() {
    let mut plugin = body_bufferer(PluginSettings::new("bufferer"));
    let half = vec![b'a'; host_harness::DEFAULT_BUFFER_LIMIT_BYTES / 2];
    let within = Request::post("/")
        .body_chunk(half.clone())
        .body_chunk(half.clone());
    let exchange = plugin.send(&Connection::plain(), within).unwrap();
    let upstream = exchange
        .request
        .upstream()
        .expect("1 MiB fits the default limit");
    assert_eq!(
        upstream.body.len(),
        host_harness::DEFAULT_BUFFER_LIMIT_BYTES
    );

    let over = Request::post("/")
        .body_chunk(half.clone())
        .body_chunk(half.clone())
        .body_chunk(b"x".to_vec());
    let exchange = plugin.send(&Connection::plain(), over).unwrap();
    let local = exchange.request.local_response().expect("Envoy answers");
    assert_eq!(
        (local.status, local.details.as_str()),
        (413, "request_payload_too_large")
    );
    let response = exchange.response.expect("client response");
    assert_eq!(
        (response.status, response.body.as_slice()),
        (413, &b"Payload Too Large"[..])
    );
    assert_eq!(response.headers.get("content-type"), Some("text/plain"));
}

#[test]
fn a_response_body_buffered_past_the_limit_resets_the_stream_after_the_headers() {
    let mut plugin =
        body_bufferer(PluginSettings::new("bufferer").per_connection_buffer_limit_bytes(1000));
    let upstream = UpstreamResponse::ok()
        .header("x-app", "1")
        .body_chunk(vec![b'a'; 600])
        .body_chunk(vec![b'b'; 600])
        .body_chunk(vec![b'c'; 10]);
    let exchange = plugin
        .exchange(&Connection::plain(), Request::get("/"), upstream)
        .unwrap();
    let response = exchange.response.expect("the headers went out");
    assert!(response.reset, "{response:?}");
    assert_eq!((response.status, response.body.len()), (200, 0));
    assert_eq!(response.headers.get("x-app"), Some("1"));

    let within = UpstreamResponse::ok()
        .body_chunk(vec![b'a'; 500])
        .body_chunk(vec![b'b'; 500]);
    let exchange = plugin
        .exchange(&Connection::plain(), Request::get("/"), within)
        .unwrap();
    let response = exchange.response.expect("client response");
    assert!(!response.reset);
    assert_eq!(response.body.len(), 1000);
}

/// A guest that tags each request `x-guest: 1` and traps on a request carrying `x-trap`.
const TRAPPER: &str = r#"(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "x-trap")
  (data (i32.const 32) "x-guest")
  (data (i32.const 48) "1")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get (i32.const 0) (i32.const 16) (i32.const 6) (i32.const 64) (i32.const 68)))
      (then unreachable))
    (drop (call $add (i32.const 0) (i32.const 32) (i32.const 7) (i32.const 48) (i32.const 1)))
    (i32.const 0)))"#;

fn trapper(policy: FailurePolicy) -> Plugin {
    let module = GuestModule::from_wat("trapper", TRAPPER).unwrap();
    Plugin::new(
        &module,
        PluginSettings::new("trapper").failure_policy(policy),
    )
    .unwrap()
}

/// (status, whether the upstream got the request, whether the guest tagged it) for one request.
fn outcome(plugin: &mut Plugin, request: Request) -> (u32, bool, bool) {
    let exchange = plugin.send(&Connection::plain(), request).unwrap();
    let upstream = exchange.request.upstream();
    let tagged = upstream.is_some_and(|u| u.headers.get("x-guest") == Some("1"));
    (
        exchange.response.unwrap().status,
        upstream.is_some(),
        tagged,
    )
}

#[test]
fn fail_closed_answers_503_to_the_failing_request_and_every_later_one() {
    let mut plugin = trapper(FailurePolicy::FailClosed);
    assert_eq!(outcome(&mut plugin, Request::get("/")), (200, true, true));
    let exchange = plugin
        .send(
            &Connection::plain(),
            Request::get("/").header("x-trap", "1"),
        )
        .unwrap();
    let local = exchange.request.local_response().expect("Envoy answers");
    assert_eq!(
        (local.status, local.details.as_str()),
        (503, "wasm_fail_stream")
    );
    assert_eq!(exchange.response.unwrap().status, 503);
    assert!(plugin
        .vm_failure()
        .is_some_and(|failure| failure.contains("proxy_on_request_headers")));
    for _ in 0..3 {
        assert_eq!(outcome(&mut plugin, Request::get("/")), (503, false, false));
    }
    let grpc = Request::post("/pkg.Service/Call").header("content-type", "application/grpc");
    let response = plugin
        .send(&Connection::plain(), grpc)
        .unwrap()
        .response
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.headers.get("grpc-status"), Some("14"));
    assert_eq!(response.headers.get("connection"), Some("close"));
}

#[test]
fn fail_open_answers_503_to_the_failing_request_and_lets_later_ones_through_without_the_filter() {
    let mut plugin = trapper(FailurePolicy::FailOpen);
    let trapping = Request::get("/").header("x-trap", "1");
    assert_eq!(outcome(&mut plugin, trapping), (503, false, false));
    assert_eq!(outcome(&mut plugin, Request::get("/")), (200, true, false));
    assert!(plugin.vm_failure().is_some());
}

#[test]
fn fail_reload_answers_503_until_the_backoff_then_runs_a_fresh_vm() {
    let backoff = Duration::from_secs(1);
    let mut plugin = trapper(FailurePolicy::FailReload { backoff });
    plugin.advance_time(backoff).unwrap();
    // The VM was loaded a backoff ago: the request after the trap gets a fresh one.
    let trapping = Request::get("/").header("x-trap", "1");
    assert_eq!(outcome(&mut plugin, trapping.clone()), (503, false, false));
    assert_eq!(outcome(&mut plugin, Request::get("/")), (200, true, true));
    assert_eq!((plugin.vm_reloads(), plugin.vm_failure()), (1, None));
    // This VM was loaded just now: until the backoff has passed, requests get 503.
    assert_eq!(outcome(&mut plugin, trapping), (503, false, false));
    assert_eq!(outcome(&mut plugin, Request::get("/")), (503, false, false));
    plugin.advance_time(backoff).unwrap();
    assert_eq!(outcome(&mut plugin, Request::get("/")), (200, true, true));
    assert_eq!(plugin.vm_reloads(), 2);
}

/// A guest that copies two metadata fields into request headers: `x-sub` from another filter's
/// dynamic metadata, `x-tier` from the route's.
const METADATA_READER: &str = r#"(module
  (import "env" "proxy_get_property" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "metadata\00filter_metadata\00jwt\00sub")
  (data (i32.const 200) "xds\00route_metadata\00filter_metadata\00app\00tier")
  (data (i32.const 300) "x-sub")
  (data (i32.const 310) "x-tier")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func $copy (param $path i32) (param $len i32) (param $key i32) (param $key_len i32)
    (if (i32.eqz (call $get (local.get $path) (local.get $len) (i32.const 64) (i32.const 68)))
      (then (drop (call $add (i32.const 0) (local.get $key) (local.get $key_len)
                             (i32.load (i32.const 64)) (i32.load (i32.const 68)))))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $copy (i32.const 100) (i32.const 32) (i32.const 300) (i32.const 5))
    (call $copy (i32.const 200) (i32.const 43) (i32.const 310) (i32.const 6))
    (i32.const 0)))"#;

#[test]
fn dynamic_and_route_metadata_reach_the_guest_as_envoy_serialises_them() {
    let module = GuestModule::from_wat("metadata-reader", METADATA_READER).unwrap();
    let mut plugin = Plugin::new(&module, PluginSettings::new("metadata-reader")).unwrap();
    let request = Request::get("/")
        .route_name("app")
        .route_metadata("app", serde_json::json!({"tier": "gold", "weight": 3}))
        .dynamic_metadata("jwt", serde_json::json!({"sub": "alice"}));
    let exchange = plugin.send(&Connection::plain(), request).unwrap();
    let upstream = exchange.request.upstream().expect("went upstream");
    assert_eq!(upstream.headers.get("x-sub"), Some("alice"));
    assert_eq!(upstream.headers.get("x-tier"), Some("gold"));

    let without = plugin.send(&Connection::plain(), Request::get("/").route_name("app"));
    let upstream = without
        .unwrap()
        .request
        .upstream()
        .cloned()
        .expect("went upstream");
    assert_eq!(
        (
            upstream.headers.get("x-sub"),
            upstream.headers.get("x-tier")
        ),
        (None, None)
    );

    let not_an_object = Request::get("/").dynamic_metadata("jwt", serde_json::json!("alice"));
    let error = plugin
        .send(&Connection::plain(), not_an_object)
        .unwrap_err();
    assert!(
        error.to_string().contains("dynamic metadata `jwt`"),
        "{error}"
    );
}

/// A guest that dispatches an http call (timeout 250 ms) with each request and copies the
/// router's `x-envoy-upstream-service-time` into `x-seen` on the response.
const ROUTER_HEADERS: &str = r#"(module
  (import "env" "proxy_http_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "\03\00\00\00\05\00\00\00\01\00\00\00\07\00\00\00\03\00\00\00\0a\00\00\00\04\00\00\00:path\00/\00:method\00GET\00:authority\00auth\00")
  (data (i32.const 200) "auth")
  (data (i32.const 220) "x-envoy-upstream-service-time")
  (data (i32.const 260) "x-seen")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $call (i32.const 200) (i32.const 4) (i32.const 100) (i32.const 64)
                      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
                      (i32.const 250) (i32.const 60)))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get (i32.const 2) (i32.const 220) (i32.const 29) (i32.const 64) (i32.const 68)))
      (then (drop (call $add (i32.const 2) (i32.const 260) (i32.const 6)
                             (i32.load (i32.const 64)) (i32.load (i32.const 68))))))
    (i32.const 0)))"#;

#[test]
fn the_router_s_headers_are_where_the_guest_and_the_cluster_see_them() {
    let module = GuestModule::from_wat("router-headers", ROUTER_HEADERS).unwrap();
    let mut plugin = Plugin::new(&module, PluginSettings::new("router-headers")).unwrap();
    let mut stream = plugin
        .stream(&Connection::plain(), Request::get("/"))
        .unwrap();
    assert!(stream.outcome().is_continued());
    let call = stream
        .plugin()
        .http_calls()
        .pop()
        .expect("a dispatched call");
    assert_eq!(call.headers.get("x-envoy-internal"), Some("true"));
    assert_eq!(
        call.headers.get("x-envoy-expected-rq-timeout-ms"),
        Some("250")
    );
    stream.advance_time(Duration::from_millis(7)).unwrap();
    let response = stream.respond(UpstreamResponse::ok()).unwrap();
    assert_eq!(
        response.headers.get("x-envoy-upstream-service-time"),
        Some("7")
    );
    assert_eq!(
        response.headers.get("x-seen"),
        Some("7"),
        "seen in on_response_headers"
    );
}

/// A guest that, on each request, calls `pkg.Svc/Check` with "ping" and opens a `pkg.Svc/Watch`
/// stream, sending "ping" and half-closing it; it pauses the request until the call's answer,
/// which it copies into `x-grpc-reply`. It counts what its root context receives.
const GRPC_CLIENT: &str = r#"(module
  (import "env" "proxy_grpc_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_stream" (func $stream (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_send" (func $send (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $increment (param i32 i64) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $effective (param i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "grpc-backend")
  (data (i32.const 120) "pkg.Svc")
  (data (i32.const 130) "Check")
  (data (i32.const 140) "ping")
  (data (i32.const 150) "x-grpc-reply")
  (data (i32.const 170) "grpc_messages")
  (data (i32.const 190) "grpc_metadata")
  (data (i32.const 210) "grpc_closes")
  (data (i32.const 230) "Watch")
  (global $stream_context (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (drop (call $define (i32.const 0) (i32.const 170) (i32.const 13) (i32.const 300)))
    (drop (call $define (i32.const 0) (i32.const 190) (i32.const 13) (i32.const 304)))
    (drop (call $define (i32.const 0) (i32.const 210) (i32.const 11) (i32.const 308)))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param $context i32) (param i32 i32) (result i32)
    (global.set $stream_context (local.get $context))
    (drop (call $call (i32.const 100) (i32.const 12) (i32.const 120) (i32.const 7)
                      (i32.const 130) (i32.const 5) (i32.const 0) (i32.const 0)
                      (i32.const 140) (i32.const 4) (i32.const 1000) (i32.const 60)))
    (drop (call $stream (i32.const 100) (i32.const 12) (i32.const 120) (i32.const 7)
                        (i32.const 230) (i32.const 5) (i32.const 0) (i32.const 0) (i32.const 64)))
    (drop (call $send (i32.load (i32.const 64)) (i32.const 140) (i32.const 4) (i32.const 1)))
    (i32.const 1))
  (func (export "proxy_on_grpc_receive") (param i32) (param $token i32) (param $size i32)
    (drop (call $increment (i32.load (i32.const 300)) (i64.const 1)))
    (if (i32.and (local.get $token) (i32.const 1))
      (then
        (drop (call $buffer (i32.const 5) (i32.const 0) (local.get $size) (i32.const 80) (i32.const 84)))
        (drop (call $effective (global.get $stream_context)))
        (drop (call $add (i32.const 0) (i32.const 150) (i32.const 12)
                         (i32.load (i32.const 80)) (i32.load (i32.const 84))))
        (drop (call $continue (i32.const 0))))))
  (func (export "proxy_on_grpc_receive_initial_metadata") (param i32 i32 i32)
    (drop (call $increment (i32.load (i32.const 304)) (i64.const 1))))
  (func (export "proxy_on_grpc_close") (param i32 i32 i32)
    (drop (call $increment (i32.load (i32.const 308)) (i64.const 1)))))"#;

#[test]
fn grpc_calls_and_streams_are_answered_by_the_test_s_scripted_service() {
    let module = GuestModule::from_wat("grpc-client", GRPC_CLIENT).unwrap();
    let settings = PluginSettings::new("grpc-client").cluster("grpc-backend");
    let mut plugin = Plugin::new(&module, settings).unwrap();
    let mut stream = plugin
        .stream(&Connection::plain(), Request::get("/"))
        .unwrap();
    assert!(!stream.outcome().is_continued(), "waits for the call");
    let calls = stream.plugin().grpc_calls();
    let [call, watch] = calls.as_slice() else {
        panic!("a call and a stream: {calls:?}");
    };
    assert_eq!(
        (call.token % 2, call.stream, call.method.as_str()),
        (1, false, "Check")
    );
    assert_eq!(call.messages, [b"ping".to_vec()]);
    assert_eq!(
        (watch.token % 2, watch.stream, watch.method.as_str()),
        (0, true, "Watch")
    );
    assert_eq!(
        (watch.service.as_str(), watch.local_closed),
        ("pkg.Svc", true)
    );
    let (call, watch) = (call.token, watch.token);

    let updates = GrpcAnswer::ok()
        .initial_metadata("x-a", "1")
        .message(b"m1".to_vec())
        .message(b"m2".to_vec())
        .keep_open();
    stream.answer_grpc(watch, updates).unwrap();
    let counts = |plugin: &mut Plugin| {
        ["grpc_messages", "grpc_metadata", "grpc_closes"].map(|name| plugin.metric_value(name))
    };
    assert_eq!(counts(stream.plugin()), [Some(2), Some(1), Some(0)]);

    stream
        .answer_grpc(call, GrpcAnswer::ok().message(b"pong".to_vec()))
        .unwrap();
    let upstream = stream.outcome().upstream().expect("resumed by the answer");
    assert_eq!(upstream.headers.get("x-grpc-reply"), Some("pong"));

    stream
        .answer_grpc(watch, GrpcAnswer::status(14, "gone"))
        .unwrap();
    assert_eq!(counts(stream.plugin()), [Some(3), Some(1), Some(1)]);
    assert!(stream.plugin().grpc_calls().is_empty());
    let unknown = stream.answer_grpc(watch, GrpcAnswer::ok());
    assert!(unknown
        .unwrap_err()
        .to_string()
        .contains("no open gRPC call"));
}

/// A guest that logs `started` and counts `starts` in `proxy_on_vm_start`, and logs `done` in
/// `proxy_on_done` (a stream's and a root context's).
const STARTER: &str = r#"(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $increment (param i32 i64) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "started")
  (data (i32.const 110) "done")
  (data (i32.const 120) "starts")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 100) (i32.const 7)))
    (drop (call $define (i32.const 0) (i32.const 120) (i32.const 6) (i32.const 60)))
    (drop (call $increment (i32.load (i32.const 60)) (i64.const 1)))
    (i32.const 1))
  (func (export "proxy_on_done") (param i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 110) (i32.const 4)))
    (i32.const 1)))"#;

/// Envoy (proxy-wasm-cpp-host's `createWasm`) first starts and configures a canary VM to check
/// the configuration and drops it without `proxy_on_done`; then the main thread's VM and each
/// worker's start and live on. `--concurrency 2` logs a start-up line 4 times.
#[test]
fn a_canary_the_main_thread_and_each_worker_start_their_own_vm() {
    let module = GuestModule::from_wat("starter", STARTER).unwrap();
    let single = Plugin::new(&module, PluginSettings::new("starter")).unwrap();
    assert_eq!(single.metric_value("starts"), Some(1));
    let mut plugin = Plugin::new(&module, PluginSettings::new("starter").concurrency(2)).unwrap();
    assert_eq!(
        plugin.metric_value("starts"),
        Some(4),
        "the canary, the main thread and two workers"
    );
    assert_eq!(plugin.logs_at(host_harness::LogLevel::Info), ["started"; 4]);
    assert_eq!(plugin.workers(), 2);
    let exchange = plugin
        .send(&Connection::plain(), Request::get("/"))
        .unwrap();
    assert!(exchange.request.is_continued());
    assert!(plugin.shutdown().unwrap());
    let roots_done = plugin
        .logs()
        .iter()
        .filter(|record| record.message == "done" && record.context_id == 1)
        .count();
    assert_eq!(roots_done, 3, "the VMs that live on, not the canary");
}

/// A guest that answers each request itself with the bytes `get_property` gave for the dynamic
/// metadata field `ns.v` as the body, and `200 + status` as the status.
const METADATA_VALUE_ECHO: &str = r#"(module
  (import "env" "proxy_get_property" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $respond (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "metadata\00filter_metadata\00ns\00v")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $status i32)
    (i32.store (i32.const 64) (i32.const 0))
    (i32.store (i32.const 68) (i32.const 0))
    (local.set $status (call $get (i32.const 100) (i32.const 29) (i32.const 64) (i32.const 68)))
    (drop (call $respond (i32.add (i32.const 200) (local.get $status)) (i32.const 0) (i32.const 0)
                         (i32.load (i32.const 64)) (i32.load (i32.const 68))
                         (i32.const 0) (i32.const 0) (i32.const -1)))
    (i32.const 1)))"#;

#[test]
fn metadata_lists_are_pairs_of_their_elements_and_nulls_fail_to_serialise() {
    let module = GuestModule::from_wat("metadata-echo", METADATA_VALUE_ECHO).unwrap();
    let mut plugin = Plugin::new(&module, PluginSettings::new("metadata-echo")).unwrap();
    let mut read = |value: serde_json::Value| {
        let request = Request::get("/").dynamic_metadata("ns", serde_json::json!({ "v": value }));
        let response = plugin
            .send(&Connection::plain(), request)
            .unwrap()
            .response
            .unwrap();
        (response.status, response.body)
    };
    // Envoy's serializeValue: a list is the pairs encoding with each element as a key.
    let roles = host_harness::encode_pairs(&[("admin", ""), ("ops", "")]);
    assert_eq!(read(serde_json::json!(["admin", "ops"])), (200, roles));
    assert_eq!(read(serde_json::json!([])), (200, vec![0, 0, 0, 0]));
    let nested = read(serde_json::json!([["a"], {"k": "v"}]));
    let inner = [
        host_harness::encode_pairs(&[("a", "")]),
        host_harness::encode_pairs(&[("k", "v")]),
    ];
    let empty: &[u8] = &[];
    let pairs: Vec<(&[u8], &[u8])> = inner.iter().map(|key| (&key[..], empty)).collect();
    assert_eq!(nested, (200, host_harness::encode_pairs(&pairs)));
    // A null has no serialisation: SERIALIZATION_FAILURE (3).
    assert_eq!(read(serde_json::Value::Null), (203, vec![]));
    assert_eq!(read(serde_json::json!(["a", null])), (203, vec![]));
}

/// A guest that lets the response headers and the first response body chunk pass and traps on
/// the next chunk; on a request carrying `x-early` it traps in the response headers instead.
const RESPONSE_TRAPPER: &str = r#"(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $early (mut i32) (i32.const 0))
  (global $chunks (mut i32) (i32.const 0))
  (data (i32.const 16) "x-early")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (global.set $early
      (i32.eqz (call $get (i32.const 0) (i32.const 16) (i32.const 7) (i32.const 64) (i32.const 68))))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (if (global.get $early) (then unreachable))
    (i32.const 0))
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
    (global.set $chunks (i32.add (global.get $chunks) (i32.const 1)))
    (if (i32.ge_u (global.get $chunks) (i32.const 2)) (then unreachable))
    (i32.const 0)))"#;

#[test]
fn fail_closed_after_the_response_headers_went_out_resets_the_stream() {
    let module = GuestModule::from_wat("response-trapper", RESPONSE_TRAPPER).unwrap();
    let settings =
        PluginSettings::new("response-trapper").failure_policy(FailurePolicy::FailClosed);
    let mut plugin = Plugin::new(&module, settings.clone()).unwrap();
    let upstream = UpstreamResponse::ok()
        .header("x-app", "1")
        .body_chunk(b"abc".to_vec())
        .body_chunk(b"def".to_vec())
        .body_chunk(b"ghi".to_vec());
    let exchange = plugin
        .exchange(&Connection::plain(), Request::get("/"), upstream.clone())
        .unwrap();
    assert!(exchange.request.is_continued());
    let response = exchange.response.expect("the headers went out");
    // Envoy's sendLocalReply once headers were sent: no 503, a reset after what had passed.
    assert!(response.reset && !response.local, "{response:?}");
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"abc"[..])
    );
    assert_eq!(response.headers.get("x-app"), Some("1"));
    assert!(plugin
        .vm_failure()
        .is_some_and(|failure| failure.contains("proxy_on_response_body")));
    let later = plugin
        .send(&Connection::plain(), Request::get("/"))
        .unwrap();
    assert_eq!(
        later.response.map(|r| (r.status, r.reset)),
        Some((503, false))
    );

    // A trap while the response headers are still in the filter: they never went out, so the
    // client gets the 503 in their place.
    let mut plugin = Plugin::new(&module, settings).unwrap();
    let early = Request::get("/").header("x-early", "1");
    let exchange = plugin
        .exchange(&Connection::plain(), early, upstream)
        .unwrap();
    let response = exchange.response.expect("Envoy answers");
    assert_eq!(
        (response.status, response.reset, response.local),
        (503, false, true)
    );
    assert!(response.headers.get("x-app").is_none());
}

#[test]
fn the_router_announces_the_route_timeout_to_the_upstream() {
    use host_harness::HttpConnectionManager;
    let module = GuestModule::from_wat("pseudo-adder", PSEUDO_ADDER).unwrap();
    let headers = |hcm: HttpConnectionManager| {
        let settings = PluginSettings::new("router").http_connection_manager(hcm);
        let mut plugin = Plugin::new(&module, settings).unwrap();
        // A client's own value is an external control header: the HCM drops it first.
        let request = Request::get("/").header("x-envoy-expected-rq-timeout-ms", "1");
        let exchange = plugin.send(&Connection::plain(), request).unwrap();
        let upstream = exchange.request.upstream().expect("went upstream");
        let timeout = upstream.headers.get("x-envoy-expected-rq-timeout-ms");
        let response = exchange.response.expect("client response");
        (
            timeout.map(str::to_string),
            response
                .headers
                .get("x-envoy-upstream-service-time")
                .is_some(),
        )
    };
    let default = HttpConnectionManager::default();
    assert_eq!(headers(default), (Some("15000".to_string()), true));
    let short = default.route_timeout(Duration::from_millis(2500));
    assert_eq!(headers(short), (Some("2500".to_string()), true));
    let none = default.route_timeout(Duration::ZERO);
    assert_eq!(headers(none), (None, true));
    assert_eq!(headers(default.suppress_envoy_headers(true)), (None, false));
    // No emulation: the client's header reaches the upstream as sent, and nothing is added.
    let disabled = HttpConnectionManager::disabled();
    assert_eq!(headers(disabled), (Some("1".to_string()), false));
}
