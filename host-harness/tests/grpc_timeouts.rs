//! A gRPC call's timeout as Envoy's async client fires it: when the test clock passes the call's
//! deadline with no answer, the guest's `proxy_on_grpc_close` gets status 14 (UNAVAILABLE) with
//! the message `upstream request timeout{response_timeout}`; an answered call, a stream and a call with timeout 0
//! never time out.

use host_harness::{
    Connection, GrpcAnswer, GuestModule, Plugin, PluginSettings, Request, DEADLINE_MESSAGE,
    DEADLINE_STATUS,
};
use std::time::Duration;

/// A guest that, on each request, calls `pkg.Svc/Check` with "ping" and a timeout of 500 ms (0 for
/// a request to `/no-timeout`, told apart by its 11-byte path) and opens a `pkg.Svc/Watch` stream.
/// On `proxy_on_grpc_close` it adds the status to the counter `grpc_close_status`, logs the status
/// message (`proxy_get_status`) and resumes the request.
const TIMED_CALLER: &str = r#"(module
  (import "env" "proxy_grpc_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_stream" (func $stream (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_status" (func $status (param i32 i32 i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $increment (param i32 i64) (result i32)))
  (import "env" "proxy_set_effective_context" (func $effective (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "grpc-backend")
  (data (i32.const 120) "pkg.Svc")
  (data (i32.const 130) "Check")
  (data (i32.const 140) "ping")
  (data (i32.const 150) ":path")
  (data (i32.const 160) "Watch")
  (data (i32.const 170) "grpc_close_status")
  (global $stream_context (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (drop (call $define (i32.const 0) (i32.const 170) (i32.const 17) (i32.const 300)))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param $context i32) (param i32 i32) (result i32)
    (local $timeout i32)
    (global.set $stream_context (local.get $context))
    (drop (call $get (i32.const 0) (i32.const 150) (i32.const 5) (i32.const 80) (i32.const 84)))
    (local.set $timeout (select (i32.const 0) (i32.const 500)
                                (i32.eq (i32.load (i32.const 84)) (i32.const 11))))
    (drop (call $call (i32.const 100) (i32.const 12) (i32.const 120) (i32.const 7)
                      (i32.const 130) (i32.const 5) (i32.const 0) (i32.const 0)
                      (i32.const 140) (i32.const 4) (local.get $timeout) (i32.const 60)))
    (drop (call $stream (i32.const 100) (i32.const 12) (i32.const 120) (i32.const 7)
                        (i32.const 160) (i32.const 5) (i32.const 0) (i32.const 0) (i32.const 64)))
    (i32.const 1))
  (func (export "proxy_on_grpc_close") (param i32 i32) (param $status i32)
    (drop (call $increment (i32.load (i32.const 300)) (i64.extend_i32_u (local.get $status))))
    (drop (call $status (i32.const 88) (i32.const 92) (i32.const 96)))
    (drop (call $log (i32.const 2) (i32.load (i32.const 92)) (i32.load (i32.const 96))))
    (drop (call $effective (global.get $stream_context)))
    (drop (call $continue (i32.const 0)))))"#;

fn plugin() -> Plugin {
    let module = GuestModule::from_wat("timed-caller", TIMED_CALLER).unwrap();
    let settings = PluginSettings::new("timed-caller").cluster("grpc-backend");
    Plugin::new(&module, settings).unwrap()
}

/// The tokens of the open calls (odd) and streams (even).
fn open(plugin: &Plugin) -> Vec<(u32, bool)> {
    plugin
        .grpc_calls()
        .iter()
        .map(|call| (call.token, call.stream))
        .collect()
}

#[test]
fn an_unanswered_call_is_closed_unavailable_when_its_timeout_passes() {
    let mut plugin = plugin();
    let mut stream = plugin
        .stream(&Connection::plain(), Request::get("/"))
        .unwrap();
    let [(call, false), (watch, true)] = open(stream.plugin())[..] else {
        panic!("a call and a stream: {:?}", stream.plugin().grpc_calls());
    };
    let deadline = stream.plugin().grpc_calls()[0].deadline_ns;
    assert_eq!(deadline, Some(stream.plugin().now_ns() + 500_000_000));

    stream.advance_time(Duration::from_millis(499)).unwrap();
    assert_eq!(open(stream.plugin()), [(call, false), (watch, true)]);
    assert!(
        !stream.outcome().is_continued(),
        "still waiting for the call"
    );
    assert_eq!(stream.plugin().metric_value("grpc_close_status"), Some(0));

    stream.advance_time(Duration::from_millis(1)).unwrap();
    assert_eq!(
        stream.plugin().metric_value("grpc_close_status"),
        Some(i64::from(DEADLINE_STATUS))
    );
    assert_eq!(
        (DEADLINE_STATUS, DEADLINE_MESSAGE),
        (14, "upstream request timeout{response_timeout}")
    );
    assert!(stream
        .plugin()
        .logs()
        .iter()
        .any(|record| record.message == DEADLINE_MESSAGE));
    assert!(stream.outcome().is_continued(), "resumed by the close");
    assert_eq!(
        open(stream.plugin()),
        [(watch, true)],
        "a stream has no timeout"
    );

    stream.advance_time(Duration::from_secs(60)).unwrap();
    assert_eq!(
        stream.plugin().metric_value("grpc_close_status"),
        Some(14),
        "one close only"
    );
}

#[test]
fn an_answered_call_does_not_time_out_afterwards() {
    let mut plugin = plugin();
    let mut stream = plugin
        .stream(&Connection::plain(), Request::get("/"))
        .unwrap();
    let (call, _) = open(stream.plugin())[0];
    stream
        .answer_grpc(call, GrpcAnswer::status(7, "denied"))
        .unwrap();
    assert!(stream.plugin().logs().iter().any(|r| r.message == "denied"));
    stream.advance_time(Duration::from_secs(2)).unwrap();
    assert_eq!(stream.plugin().metric_value("grpc_close_status"), Some(7));
}

#[test]
fn a_call_with_timeout_zero_waits_for_its_answer() {
    let mut plugin = plugin();
    let mut stream = plugin
        .stream(&Connection::plain(), Request::get("/no-timeout"))
        .unwrap();
    let calls = stream.plugin().grpc_calls();
    assert_eq!((calls[0].timeout_ms, calls[0].deadline_ns), (0, None));
    stream.advance_time(Duration::from_secs(3600)).unwrap();
    assert_eq!(open(stream.plugin()).len(), 2);
    assert_eq!(stream.plugin().metric_value("grpc_close_status"), Some(0));
}

#[test]
fn a_call_answered_ok_without_a_message_is_closed_internal() {
    let mut plugin = plugin();
    let mut stream = plugin
        .stream(&Connection::plain(), Request::get("/"))
        .unwrap();
    let (call, _) = open(stream.plugin())[0];
    stream.answer_grpc(call, GrpcAnswer::ok()).unwrap();
    assert_eq!(stream.plugin().metric_value("grpc_close_status"), Some(13));
}

#[test]
fn each_worker_s_calls_are_answered_and_timed_out_in_the_vm_that_sent_them() {
    let module = GuestModule::from_wat("timed-caller", TIMED_CALLER).unwrap();
    let settings = PluginSettings::new("timed-caller")
        .cluster("grpc-backend")
        .concurrency(2);
    let mut plugin = Plugin::new(&module, settings).unwrap();
    let (first, second) = (Connection::plain(), Connection::plain());
    plugin.assign_connection(&first, 0).unwrap();
    plugin.assign_connection(&second, 1).unwrap();

    let mut answered = plugin.stream(&first, Request::get("/")).unwrap();
    let (call, _) = open(answered.plugin())[0];
    answered
        .answer_grpc(call, GrpcAnswer::status(7, "denied"))
        .unwrap();
    assert!(answered.outcome().is_continued(), "resumed in its own VM");
    drop(answered);

    let mut timed_out = plugin.stream(&second, Request::get("/")).unwrap();
    let tokens: Vec<(u32, bool)> = open(timed_out.plugin());
    assert_eq!(
        tokens.len(),
        3,
        "one worker's stream and the other's call and stream: {tokens:?}"
    );
    let unique: std::collections::BTreeSet<u32> = tokens.iter().map(|(token, _)| *token).collect();
    assert_eq!(unique.len(), 3, "tokens are unique across VMs: {tokens:?}");
    timed_out.advance_time(Duration::from_millis(500)).unwrap();
    assert!(
        timed_out.outcome().is_continued(),
        "the timeout closed the call in the VM that sent it"
    );
    assert_eq!(
        timed_out.plugin().metric_value("grpc_close_status"),
        Some(7 + 14)
    );
}
