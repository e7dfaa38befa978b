//! Envoy's worker threads: with `PluginSettings::concurrency(n)` the main thread's VM and one VM
//! per worker all live on. Each fires its own ticks on the test clock, answers its own http
//! calls, and gets `proxy_on_queue_ready` for the queues it registered last; a connection's
//! requests run on one worker's VM.

use host_harness::{Connection, GuestModule, Plugin, PluginSettings, Request};
use std::time::Duration;

/// A guest whose VMs keep their own counts: each request gets `x-served` (requests this VM
/// served, this one included) and `x-queued` (queue items this VM was told of), one digit each;
/// a request with `x-enqueue` puts an item on queue `q`. Every VM registers `q` when
/// configured, ticks every second, counts `ticks` and sends an http call to `auth` on each
/// tick, and counts the `answers` to its calls.
const WORKER_PROBE: &str = r#"(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick_period (param i32) (result i32)))
  (import "env" "proxy_register_shared_queue" (func $register (param i32 i32 i32) (result i32)))
  (import "env" "proxy_resolve_shared_queue" (func $resolve (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_enqueue_shared_queue" (func $enqueue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $increment (param i32 i64) (result i32)))
  (import "env" "proxy_http_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $served (mut i32) (i32.const 0))
  (global $queued (mut i32) (i32.const 0))
  (data (i32.const 16) "x-served")
  (data (i32.const 32) "x-queued")
  (data (i32.const 48) "x-enqueue")
  (data (i32.const 100) "\03\00\00\00\05\00\00\00\01\00\00\00\07\00\00\00\03\00\00\00\0a\00\00\00\04\00\00\00:path\00/\00:method\00GET\00:authority\00auth\00")
  (data (i32.const 200) "auth")
  (data (i32.const 210) "q")
  (data (i32.const 220) "ticks")
  (data (i32.const 230) "answers")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $tick_period (i32.const 1000)))
    (drop (call $register (i32.const 210) (i32.const 1) (i32.const 300)))
    (drop (call $define (i32.const 0) (i32.const 220) (i32.const 5) (i32.const 310)))
    (drop (call $define (i32.const 0) (i32.const 230) (i32.const 7) (i32.const 314)))
    (i32.const 1))
  (func (export "proxy_on_tick") (param i32)
    (drop (call $increment (i32.load (i32.const 310)) (i64.const 1)))
    (drop (call $call (i32.const 200) (i32.const 4) (i32.const 100) (i32.const 64)
                      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
                      (i32.const 0) (i32.const 320))))
  (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
    (drop (call $increment (i32.load (i32.const 314)) (i64.const 1))))
  (func (export "proxy_on_queue_ready") (param i32 i32)
    (global.set $queued (i32.add (global.get $queued) (i32.const 1))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (global.set $served (i32.add (global.get $served) (i32.const 1)))
    (i32.store8 (i32.const 80) (i32.add (i32.const 48) (global.get $served)))
    (i32.store8 (i32.const 81) (i32.add (i32.const 48) (global.get $queued)))
    (drop (call $add (i32.const 0) (i32.const 16) (i32.const 8) (i32.const 80) (i32.const 1)))
    (drop (call $add (i32.const 0) (i32.const 32) (i32.const 8) (i32.const 81) (i32.const 1)))
    (if (i32.eqz (call $get (i32.const 0) (i32.const 48) (i32.const 9) (i32.const 64) (i32.const 68)))
      (then
        (drop (call $resolve (i32.const 0) (i32.const 0) (i32.const 210) (i32.const 1) (i32.const 304)))
        (drop (call $enqueue (i32.load (i32.const 304)) (i32.const 210) (i32.const 1)))))
    (i32.const 0)))"#;

fn probe(settings: PluginSettings) -> Plugin {
    let module = GuestModule::from_wat("worker-probe", WORKER_PROBE).unwrap();
    Plugin::new(&module, settings).unwrap()
}

/// The (`x-served`, `x-queued`) the upstream received for `request` on `connection`.
fn counts(plugin: &mut Plugin, connection: &Connection, request: Request) -> (String, String) {
    let exchange = plugin.send(connection, request).unwrap();
    let upstream = exchange.request.upstream().expect("went upstream");
    let header = |name: &str| upstream.headers.get(name).unwrap_or("-").to_string();
    (header("x-served"), header("x-queued"))
}

fn pair(served: &str, queued: &str) -> (String, String) {
    (served.to_string(), queued.to_string())
}

#[test]
fn connections_run_on_the_workers_in_turn_or_where_assigned() {
    let mut plugin = probe(PluginSettings::new("workers").concurrency(2));
    assert_eq!(plugin.workers(), 2);
    let (a, b, c) = (
        Connection::plain(),
        Connection::plain(),
        Connection::plain(),
    );
    let get = || Request::get("/");
    assert_eq!(
        counts(&mut plugin, &a, get()),
        pair("1", "0"),
        "a: worker 0"
    );
    assert_eq!(
        counts(&mut plugin, &b, get()),
        pair("1", "0"),
        "b: worker 1"
    );
    assert_eq!(
        counts(&mut plugin, &a, get()),
        pair("2", "0"),
        "a stays on worker 0"
    );
    plugin.assign_connection(&c, 1).unwrap();
    assert_eq!(
        counts(&mut plugin, &c, get()),
        pair("2", "0"),
        "c: worker 1"
    );
    let error = plugin.assign_connection(&c, 2).unwrap_err().to_string();
    assert!(error.contains("worker 2 does not exist"), "{error}");

    let mut single = probe(PluginSettings::new("single"));
    assert_eq!(single.workers(), 1);
    assert_eq!(counts(&mut single, &a, get()), pair("1", "0"));
    assert_eq!(counts(&mut single, &b, get()), pair("2", "0"));
}

#[test]
fn queue_items_reach_the_vm_that_registered_the_queue_last() {
    let mut plugin = probe(PluginSettings::new("queues").concurrency(2));
    let (a, b) = (Connection::plain(), Connection::plain());
    let get = || Request::get("/");
    assert_eq!(counts(&mut plugin, &a, get()), pair("1", "0"));
    assert_eq!(counts(&mut plugin, &b, get()), pair("1", "0"));
    // The VMs configured in start order (main thread, worker 0, worker 1): worker 1's VM
    // registered `q` last, so it hears of every item, whoever enqueues.
    plugin.enqueue("q", b"from the test").unwrap();
    assert_eq!(counts(&mut plugin, &a, get()), pair("2", "0"));
    assert_eq!(counts(&mut plugin, &b, get()), pair("2", "1"));
    let enqueue = get().header("x-enqueue", "1");
    assert_eq!(counts(&mut plugin, &a, enqueue), pair("3", "0"));
    assert_eq!(counts(&mut plugin, &b, get()), pair("3", "2"));
}

#[test]
fn every_vm_ticks_and_has_its_http_calls_answered() {
    let mut plugin = probe(PluginSettings::new("ticks").concurrency(2));
    plugin.advance_time(Duration::from_millis(2500)).unwrap();
    assert_eq!(plugin.metric_value("ticks"), Some(6), "3 VMs, 2 ticks each");
    let calls = plugin.http_calls();
    let mut tokens: Vec<u32> = calls.iter().map(|call| call.token).collect();
    tokens.dedup();
    assert_eq!(
        tokens.len(),
        6,
        "one call per tick, tokens unique: {tokens:?}"
    );
    for token in tokens {
        plugin
            .respond_http_call(token, host_harness::HttpCallResponse::status(200))
            .unwrap();
    }
    assert_eq!(plugin.metric_value("answers"), Some(6));
    assert!(plugin.http_calls().is_empty());

    let mut single = probe(PluginSettings::new("single"));
    single.advance_time(Duration::from_millis(2500)).unwrap();
    assert_eq!(single.metric_value("ticks"), Some(2));
    assert_eq!(single.http_calls().len(), 2);
}
