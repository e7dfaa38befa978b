//! Each hostcall answers with the status Envoy gives in the same situation (the Rust SDK panics
//! on any other), checked through a raw-ABI probe guest that records statuses as filter state.

mod common;

use common::{probe, recorded};
use host_harness::{Connection, Plugin, PluginSettings, Request, Status};

const OK: u8 = Status::Ok as u8;
const NOT_FOUND: u8 = Status::NotFound as u8;
const BAD_ARGUMENT: u8 = Status::BadArgument as u8;

fn run(request: &str, response: &str, on_log: &str) -> host_harness::Exchange {
    run_with(PluginSettings::new("probe"), request, response, on_log)
}

fn run_with(
    settings: PluginSettings,
    request: &str,
    response: &str,
    on_log: &str,
) -> host_harness::Exchange {
    let mut plugin =
        Plugin::new(&probe(request, response, on_log), settings).expect("probe starts");
    plugin
        .send(
            &Connection::plain(),
            Request::get("/").header("x-present", "1"),
        )
        .expect("exchange runs")
}

#[test]
fn header_lookups_follow_envoys_phase_rules() {
    let exchange = run(
        "(call $record (i32.const 400) (call $get_header (i32.const 0) (i32.const 300) (i32.const 9) (i32.const 0) (i32.const 4)))
         (call $record (i32.const 402) (call $get_header (i32.const 0) (i32.const 310) (i32.const 9) (i32.const 0) (i32.const 4)))
         (call $record (i32.const 404) (call $get_header (i32.const 2) (i32.const 310) (i32.const 9) (i32.const 0) (i32.const 4)))
         (call $record (i32.const 406) (call $add_header (i32.const 2) (i32.const 380) (i32.const 4) (i32.const 390) (i32.const 1)))
         (call $record (i32.const 408) (call $get_header (i32.const 9) (i32.const 310) (i32.const 9) (i32.const 0) (i32.const 4)))
         (call $record (i32.const 410) (call $get_header (i32.const 0) (i32.const 0x7ffffff0) (i32.const 9) (i32.const 0) (i32.const 4)))",
        "(call $record (i32.const 412) (call $get_header (i32.const 0) (i32.const 310) (i32.const 9) (i32.const 0) (i32.const 4)))
         (call $record (i32.const 414) (call $get_size (i32.const 0) (i32.const 0)))",
        "(call $record (i32.const 416) (call $get_header (i32.const 3) (i32.const 310) (i32.const 9) (i32.const 0) (i32.const 4)))",
    );
    assert_eq!(
        recorded(&exchange, "s1"),
        NOT_FOUND,
        "missing request header"
    );
    assert_eq!(recorded(&exchange, "s2"), OK, "present request header");
    assert_eq!(
        recorded(&exchange, "s3"),
        BAD_ARGUMENT,
        "response headers read during the request"
    );
    assert_eq!(
        recorded(&exchange, "s4"),
        BAD_ARGUMENT,
        "response headers written during the request"
    );
    assert_eq!(recorded(&exchange, "s5"), BAD_ARGUMENT, "unknown map type");
    assert_eq!(
        recorded(&exchange, "s6"),
        Status::InvalidMemoryAccess as u8,
        "key out of bounds"
    );
    assert_eq!(
        recorded(&exchange, "s7"),
        BAD_ARGUMENT,
        "request headers after they continued"
    );
    assert_eq!(
        recorded(&exchange, "s8"),
        BAD_ARGUMENT,
        "request map size after it continued"
    );
    assert_eq!(
        recorded(&exchange, "s9"),
        NOT_FOUND,
        "missing map in the access-log phase"
    );
}

#[test]
fn properties_answer_not_found_serialization_failure_and_accept_a_trailing_nul() {
    let exchange = run(
        "(call $record (i32.const 400) (call $get_property (i32.const 360) (i32.const 11) (i32.const 0) (i32.const 4)))
         (call $record (i32.const 402) (call $get_property (i32.const 340) (i32.const 10) (i32.const 0) (i32.const 4)))
         (call $record (i32.const 404) (call $get_property (i32.const 320) (i32.const 14) (i32.const 0) (i32.const 4)))
         (call $record (i32.const 406) (call $get_property (i32.const 420) (i32.const 15) (i32.const 0) (i32.const 4)))",
        "",
        "",
    );
    assert_eq!(recorded(&exchange, "s1"), NOT_FOUND);
    assert_eq!(
        recorded(&exchange, "s2"),
        Status::SerializationFailure as u8
    );
    assert_eq!(recorded(&exchange, "s3"), OK);
    assert_eq!(
        recorded(&exchange, "s4"),
        OK,
        "the C++ SDK keeps the trailing NUL"
    );
}

#[test]
fn metrics_reject_what_envoy_rejects() {
    // ids: counter 0, gauge 1, histogram 2 (Envoy keeps the type in the low two bits).
    let exchange = run(
        "(drop (call $define_metric (i32.const 0) (i32.const 490) (i32.const 1) (i32.const 64)))
         (drop (call $define_metric (i32.const 1) (i32.const 480) (i32.const 1) (i32.const 64)))
         (drop (call $define_metric (i32.const 2) (i32.const 440) (i32.const 4) (i32.const 64)))
         (call $record (i32.const 400) (call $increment_metric (i32.const 0) (i64.const 0)))
         (call $record (i32.const 402) (call $increment_metric (i32.const 0) (i64.const -1)))
         (call $record (i32.const 404) (call $increment_metric (i32.const 1) (i64.const -1)))
         (call $record (i32.const 406) (call $increment_metric (i32.const 2) (i64.const 1)))
         (call $record (i32.const 408) (call $get_metric (i32.const 2) (i32.const 64)))
         (call $record (i32.const 410) (call $increment_metric (i32.const 400) (i64.const 1)))
         (call $record (i32.const 412) (call $define_metric (i32.const 7) (i32.const 490) (i32.const 1) (i32.const 64)))",
        "",
        "",
    );
    assert_eq!(recorded(&exchange, "s1"), BAD_ARGUMENT, "counter by 0");
    assert_eq!(recorded(&exchange, "s2"), BAD_ARGUMENT, "counter by -1");
    assert_eq!(recorded(&exchange, "s3"), OK, "gauge by -1");
    assert_eq!(
        recorded(&exchange, "s4"),
        BAD_ARGUMENT,
        "histogram increment"
    );
    assert_eq!(recorded(&exchange, "s5"), BAD_ARGUMENT, "histogram read");
    assert_eq!(recorded(&exchange, "s6"), NOT_FOUND, "undefined counter");
    assert_eq!(
        recorded(&exchange, "s7"),
        BAD_ARGUMENT,
        "unknown metric type"
    );
}

#[test]
fn shared_data_queues_contexts_calls_and_foreign_functions() {
    let settings = PluginSettings::new("probe").foreign_function("echo", |args| Ok(args.to_vec()));
    let exchange = run_with(
        settings,
        "(call $record (i32.const 400) (call $get_shared (i32.const 440) (i32.const 4) (i32.const 0) (i32.const 4) (i32.const 8)))
         (drop (call $set_shared (i32.const 440) (i32.const 4) (i32.const 390) (i32.const 1) (i32.const 0)))
         (call $record (i32.const 402) (call $set_shared (i32.const 440) (i32.const 4) (i32.const 390) (i32.const 1) (i32.const 999)))
         (drop (call $register_queue (i32.const 480) (i32.const 1) (i32.const 64)))
         (call $record (i32.const 404) (call $dequeue (i32.load (i32.const 64)) (i32.const 0) (i32.const 4)))
         (call $record (i32.const 406) (call $set_effective (i32.const 999)))
         (call $record (i32.const 408) (call $http_call (i32.const 490) (i32.const 1) (i32.const 0) (i32.const 0)
            (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 64)))
         (call $record (i32.const 410) (call $foreign (i32.const 460) (i32.const 10) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 4)))
         (call $record (i32.const 412) (call $foreign (i32.const 450) (i32.const 4) (i32.const 390) (i32.const 1) (i32.const 0) (i32.const 4)))
         (call $record (i32.const 414) (call $continue_stream (i32.const 9)))",
        "",
        "",
    );
    assert_eq!(recorded(&exchange, "s1"), NOT_FOUND, "missing shared data");
    assert_eq!(recorded(&exchange, "s2"), Status::CasMismatch as u8);
    assert_eq!(
        recorded(&exchange, "s3"),
        Status::Empty as u8,
        "empty queue"
    );
    assert_eq!(
        recorded(&exchange, "s4"),
        BAD_ARGUMENT,
        "unknown effective context"
    );
    assert_eq!(
        recorded(&exchange, "s5"),
        BAD_ARGUMENT,
        "http call without :path/:method/:authority"
    );
    assert_eq!(
        recorded(&exchange, "s6"),
        NOT_FOUND,
        "unregistered foreign function"
    );
    assert_eq!(recorded(&exchange, "s7"), OK, "registered foreign function");
    assert_eq!(
        recorded(&exchange, "s8"),
        BAD_ARGUMENT,
        "unknown stream type"
    );
}

#[test]
fn hostcalls_are_counted_per_request() {
    let exchange = run(
        "(drop (call $get_header (i32.const 0) (i32.const 310) (i32.const 9) (i32.const 0) (i32.const 4)))
         (drop (call $get_header (i32.const 0) (i32.const 300) (i32.const 9) (i32.const 0) (i32.const 4)))",
        "",
        "",
    );
    assert_eq!(exchange.hostcalls.get("proxy_get_header_map_value"), 2);
    assert_eq!(exchange.hostcalls.total(), 2);
}

#[test]
fn abi_0_1_0_guests_get_two_argument_callbacks_and_empty_values_for_missing_headers() {
    let module = host_harness::GuestModule::from_wat(
        "legacy",
        r#"(module
          (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
          (import "env" "proxy_set_property" (func $set (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 100) "x-missing")
          (data (i32.const 120) "s1")
          (func (export "proxy_abi_version_0_1_0"))
          (func (export "malloc") (param i32) (result i32) (i32.const 2048))
          (func (export "proxy_on_request_headers") (param $ctx i32) (param $headers i32) (result i32)
            (i32.store8 (i32.const 60)
              (call $get (i32.const 0) (i32.const 100) (i32.const 9) (i32.const 0) (i32.const 4)))
            (drop (call $set (i32.const 120) (i32.const 2) (i32.const 60) (i32.const 1)))
            (i32.const 0)))"#,
    )
    .expect("compiles");
    let mut plugin = Plugin::new(&module, PluginSettings::new("legacy")).expect("starts");
    let exchange = plugin
        .send(&Connection::plain(), Request::get("/"))
        .expect("exchange");
    assert_eq!(recorded(&exchange, "s1"), OK);
}

#[test]
fn a_new_configuration_can_be_rejected_and_then_accepted() {
    let mut plugin = Plugin::new(
        &common::header_gate(),
        PluginSettings::new("gate").configuration("on"),
    )
    .expect("starts");
    assert!(!plugin.configure("").expect("on_configure runs").accepted);
    let refused = plugin
        .send(&Connection::plain(), Request::get("/"))
        .expect_err("a rejected plugin serves nothing");
    assert!(
        refused.to_string().contains("rejected its configuration"),
        "{refused}"
    );
    assert!(
        plugin
            .configure("again")
            .expect("on_configure runs")
            .accepted
    );
    assert!(plugin
        .send(&Connection::plain(), Request::get("/"))
        .expect("serves again")
        .request
        .is_continued());
}
