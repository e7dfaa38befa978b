//! Bodies, trailers, buffers and response-phase replies; WASI calls; time; metric diffs; and
//! many plugins in parallel threads without interference.

mod common;

use host_harness::{
    Connection, GuestModule, HarnessError, LogLevel, Plugin, PluginSettings, Request,
    UpstreamResponse,
};
use std::time::Duration;

const BODY_GUEST: &str = r#"(module
  (import "env" "proxy_set_buffer_bytes" (func $set_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $respond (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "REPLACED")
  (data (i32.const 110) "<")
  (data (i32.const 120) "x-t")
  (data (i32.const 130) "1")
  (data (i32.const 140) "x-block")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 2048))
  ;; Buffer the whole body, then replace it.
  (func (export "proxy_on_request_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
    (if (i32.eqz (local.get $eos)) (then (return (i32.const 1))))
    (drop (call $set_buffer (i32.const 0) (i32.const 0) (local.get $size) (i32.const 100) (i32.const 8)))
    (i32.const 0))
  (func (export "proxy_on_request_trailers") (param $ctx i32) (param i32) (result i32)
    (drop (call $add_header (i32.const 1) (i32.const 120) (i32.const 3) (i32.const 130) (i32.const 1)))
    (i32.const 0))
  ;; An upstream response carrying x-block is replaced by a local 502.
  (func (export "proxy_on_response_headers") (param $ctx i32) (param i32 i32) (result i32)
    (if (i32.eqz (call $get_header (i32.const 2) (i32.const 140) (i32.const 7) (i32.const 0) (i32.const 4)))
      (then
        (drop (call $respond (i32.const 502) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
          (i32.const 0) (i32.const 0) (i32.const -1)))
        (return (i32.const 1))))
    (i32.const 0))
  ;; Prepend "<" to the response body.
  (func (export "proxy_on_response_body") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
    (drop (call $set_buffer (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 110) (i32.const 1)))
    (i32.const 0))
)"#;

fn body_plugin() -> Plugin {
    let module = GuestModule::from_wat("body", BODY_GUEST).expect("compiles");
    Plugin::new(&module, PluginSettings::new("body")).expect("starts")
}

#[test]
fn a_buffered_request_body_is_replaced_at_its_end() {
    let mut plugin = body_plugin();
    let request = Request::post("/upload").body_chunk("ab").body_chunk("cd");
    let exchange = plugin
        .exchange(
            &Connection::plain(),
            request,
            UpstreamResponse::ok().body("xyz"),
        )
        .expect("exchange");
    assert_eq!(
        exchange.request.upstream().expect("continued").body,
        b"REPLACED"
    );
    assert_eq!(exchange.response.expect("response").body, b"<xyz");

    let response = UpstreamResponse::ok().body("xyz").trailer("x-done", "1");
    let with_trailers = plugin
        .exchange(&Connection::plain(), Request::get("/"), response)
        .expect("exchange")
        .response
        .expect("response");
    assert_eq!(with_trailers.body, b"<xyz");
    assert_eq!(
        with_trailers
            .trailers
            .and_then(|t| t.get("x-done").map(str::to_string)),
        Some("1".to_string())
    );
}

#[test]
fn with_trailers_the_body_never_ends_the_stream_and_trailers_can_be_added() {
    let mut plugin = body_plugin();
    let request = Request::post("/upload")
        .body("abcd")
        .trailer("x-checksum", "1");
    let exchange = plugin
        .send(&Connection::plain(), request)
        .expect("exchange");
    let upstream = exchange.request.upstream().expect("continued");
    // The guest only replaces at end_of_stream, which trailers take from the body.
    assert_eq!(upstream.body, b"abcd");
    let trailers = upstream.trailers.as_ref().expect("trailers");
    assert_eq!(
        (trailers.get("x-checksum"), trailers.get("x-t")),
        (Some("1"), Some("1"))
    );
}

#[test]
fn a_local_reply_from_the_response_path_replaces_the_upstream_response() {
    let mut plugin = body_plugin();
    let mut stream = plugin
        .stream(&Connection::plain(), Request::get("/"))
        .expect("stream");
    let response = stream
        .respond(
            UpstreamResponse::status(200)
                .header("x-block", "1")
                .body("secret"),
        )
        .expect("response path");
    assert_eq!((response.status, response.local), (502, true));
    assert!(response.body.is_empty());
}

const WASI_GUEST: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $env_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "env" "proxy_set_property" (func $set_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "to stdout\n")
  (data (i32.const 120) "to stderr")
  (data (i32.const 140) "now")
  (data (i32.const 150) "rnd")
  (data (i32.const 160) "env")
  (data (i32.const 170) "x-exit")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (if (i32.eqz (call $get_header (i32.const 0) (i32.const 170) (i32.const 6) (i32.const 0) (i32.const 4)))
      (then (call $exit (i32.const 3))))
    ;; iovec at 0: {100, 10}; written count at 8
    (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 10))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 0) (i32.const 120)) (i32.store (i32.const 4) (i32.const 9))
    (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
    (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 200)))
    (drop (call $set_property (i32.const 140) (i32.const 3) (i32.const 200) (i32.const 8)))
    (drop (call $random (i32.const 220) (i32.const 16)))
    (drop (call $set_property (i32.const 150) (i32.const 3) (i32.const 220) (i32.const 16)))
    (drop (call $env_sizes (i32.const 240) (i32.const 244)))
    (drop (call $env_get (i32.const 300) (i32.const 400)))
    (drop (call $set_property (i32.const 160) (i32.const 3) (i32.const 400) (i32.load (i32.const 244))))
    (i32.const 0))
)"#;

#[test]
fn wasi_stdio_becomes_logs_and_clock_random_environment_are_the_tests() {
    let module = GuestModule::from_wat("wasi", WASI_GUEST).expect("compiles");
    let settings = PluginSettings::new("wasi")
        .env("MODE", "test")
        .start_time_ns(1_000)
        .seed(7);
    let mut plugin = Plugin::new(&module, settings.clone()).expect("starts");
    let exchange = plugin
        .send(&Connection::plain(), Request::get("/"))
        .expect("exchange");
    assert_eq!(plugin.logs_at(LogLevel::Info), ["to stdout"]);
    assert_eq!(plugin.logs_at(LogLevel::Error), ["to stderr"]);
    assert_eq!(exchange.filter_state["wasm.now"], 1_000u64.to_le_bytes());
    assert_eq!(exchange.filter_state["wasm.env"], b"MODE=test\0");

    // The same seed gives the same randomness: runs are reproducible.
    let mut again = Plugin::new(&module, settings).expect("starts");
    let repeat = again
        .send(&Connection::plain(), Request::get("/"))
        .expect("exchange");
    assert_eq!(
        exchange.filter_state["wasm.rnd"],
        repeat.filter_state["wasm.rnd"]
    );
    assert_eq!(exchange.filter_state["wasm.rnd"].len(), 16);

    let exit = plugin
        .send(
            &Connection::plain(),
            Request::get("/").header("x-exit", "1"),
        )
        .expect_err("proc_exit traps");
    assert!(
        matches!(&exit, HarnessError::Trap { trap, .. } if trap.contains("proc_exit(3)")),
        "{exit}"
    );
}

#[test]
fn a_missing_import_fails_at_load_naming_it() {
    let module = GuestModule::from_wat(
        "needs-more",
        r#"(module (import "env" "proxy_no_such_call" (func (param i32) (result i32)))
             (memory (export "memory") 1)
             (func (export "proxy_abi_version_0_2_1"))
             (func (export "malloc") (param i32) (result i32) (i32.const 0)))"#,
    )
    .expect("compiles");
    let error = Plugin::new(&module, PluginSettings::new("x")).expect_err("cannot link");
    assert!(error.to_string().contains("proxy_no_such_call"), "{error}");
}

#[test]
fn metric_changes_are_reported_between_snapshots() {
    let mut plugin = Plugin::new(
        &common::header_gate(),
        PluginSettings::new("gate").configuration("on"),
    )
    .expect("starts");
    plugin
        .send(&Connection::plain(), Request::get("/"))
        .expect("first");
    let before = plugin.metrics();
    plugin
        .send(&Connection::plain(), Request::get("/"))
        .expect("second");
    let changes = plugin.metrics().changes_since(&before);
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (
            changes[0].name.as_str(),
            changes[0].before,
            changes[0].after
        ),
        ("raw_requests", 1, 2)
    );
    plugin
        .advance_time(Duration::from_secs(5))
        .expect("no tick period: time just moves");
    assert_eq!(plugin.now_ns(), 1_767_225_605_000_000_000);
}

#[test]
fn plugins_in_parallel_threads_keep_their_own_state() {
    let module = common::header_gate();
    let threads: Vec<_> = (0..8u16)
        .map(|thread| {
            let module = module.clone();
            std::thread::spawn(move || {
                let settings = PluginSettings::new("gate").configuration("on");
                let mut plugin = Plugin::new(&module, settings).expect("starts");
                let connection =
                    Connection::plain().source(format!("10.0.0.{thread}:1000").parse().unwrap());
                for _ in 0..25 {
                    let exchange = plugin
                        .send(&connection, Request::get("/"))
                        .expect("exchange");
                    let source = exchange
                        .request
                        .upstream()
                        .unwrap()
                        .headers
                        .get("x-source")
                        .map(str::to_string);
                    assert_eq!(source, Some(format!("10.0.0.{thread}:1000")));
                }
                plugin.metric_value("raw_requests")
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().expect("thread finished"), Some(25));
    }
}

const ROOT_GUEST: &str = r#"(module
  (import "env" "proxy_register_shared_queue" (func $register (param i32 i32 i32) (result i32)))
  (import "env" "proxy_dequeue_shared_queue" (func $dequeue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $increment (param i32 i64) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick_period (param i32) (result i32)))
  (import "env" "proxy_done" (func $done (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "q")
  (data (i32.const 110) "dequeued")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (drop (call $register (i32.const 100) (i32.const 1) (i32.const 0)))
    (drop (call $define (i32.const 0) (i32.const 110) (i32.const 8) (i32.const 8)))
    (drop (call $tick_period (i32.const 10)))
    (i32.const 1))
  (func (export "proxy_on_queue_ready") (param i32) (param $token i32)
    (if (i32.eqz (call $dequeue (local.get $token) (i32.const 16) (i32.const 20)))
      (then (drop (call $increment (i32.load (i32.const 8)) (i64.const 1))))))
  ;; Not done at once: the guest finishes on its next tick.
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 0))
  (func (export "proxy_on_tick") (param i32) (drop (call $done)))
)"#;

#[test]
fn queues_deliver_to_the_root_context_and_done_can_be_deferred() {
    let module = GuestModule::from_wat("root", ROOT_GUEST).expect("compiles");
    let mut plugin = Plugin::new(&module, PluginSettings::new("root")).expect("starts");
    plugin.enqueue("q", b"job").expect("queue exists");
    assert_eq!(plugin.metric_value("dequeued"), Some(1));

    assert!(
        !plugin.shutdown().expect("on_done runs"),
        "the guest defers"
    );
    assert!(!plugin.done_called());
    plugin.tick().expect("tick");
    assert!(plugin.done_called());
}

#[test]
fn closing_the_request_stream_resets_it() {
    let module = GuestModule::from_wat(
        "closer",
        r#"(module
          (import "env" "proxy_close_stream" (func $close (param i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "proxy_abi_version_0_2_1"))
          (func (export "malloc") (param i32) (result i32) (i32.const 1024))
          (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
            (drop (call $close (i32.const 0)))
            (i32.const 1)))"#,
    )
    .expect("compiles");
    let mut plugin = Plugin::new(&module, PluginSettings::new("closer")).expect("starts");
    let exchange = plugin
        .send(&Connection::plain(), Request::get("/"))
        .expect("exchange");
    assert_eq!(exchange.request, host_harness::RequestOutcome::Reset);
    assert!(exchange.response.is_none());
}

const LOCAL_REPLY_GUEST: &str = r#"(module
  (import "env" "proxy_send_local_response"
    (func $respond (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "no entry 100%")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 2048))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $respond (i32.const 403) (i32.const 0) (i32.const 0) (i32.const 100) (i32.const 13)
      (i32.const 0) (i32.const 0) (i32.const -1)))
    (i32.const 1)))"#;

#[test]
fn local_replies_are_built_as_envoy_builds_them_for_http_and_grpc() {
    let module = GuestModule::from_wat("local", LOCAL_REPLY_GUEST).expect("compiles");
    let mut plugin = Plugin::new(&module, PluginSettings::new("local")).expect("starts");
    let http = plugin
        .send(&Connection::plain(), Request::get("/"))
        .expect("exchange");
    let response = http.response.expect("response");
    assert_eq!(response.status, 403);
    assert_eq!(response.headers.get("content-type"), Some("text/plain"));
    assert_eq!(response.headers.get("content-length"), Some("13"));
    assert_eq!(response.body, b"no entry 100%");

    let grpc_request =
        Request::post("/pkg.Service/Call").header("content-type", "application/grpc");
    let grpc = plugin
        .send(&Connection::plain(), grpc_request)
        .expect("exchange");
    let response = grpc.response.expect("response");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.headers.get("grpc-status"),
        Some("7"),
        "403 maps to PERMISSION_DENIED"
    );
    assert_eq!(
        response.headers.get("grpc-message"),
        Some("no entry 100%25")
    );
    assert!(response.body.is_empty());
}

#[test]
fn a_guest_stuck_in_a_loop_is_interrupted_after_the_call_timeout() {
    let module = GuestModule::from_wat(
        "spin",
        r#"(module (memory (export "memory") 1)
          (func (export "proxy_abi_version_0_2_1"))
          (func (export "malloc") (param i32) (result i32) (i32.const 1024))
          (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
            (loop $forever (br $forever))
            (i32.const 0)))"#,
    )
    .expect("compiles");
    let settings = PluginSettings::new("spin").call_timeout(Duration::from_millis(100));
    let mut plugin = Plugin::new(&module, settings).expect("starts");
    let error = plugin
        .send(&Connection::plain(), Request::get("/"))
        .expect_err("interrupted");
    assert!(
        matches!(&error, HarnessError::Trap { call, .. } if call == "proxy_on_request_headers"),
        "{error}"
    );
}
