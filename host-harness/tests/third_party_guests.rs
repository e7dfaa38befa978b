//! Guests that have nothing to do with certgate run through the harness as they would in
//! Envoy: a hand-written raw-ABI WAT filter and a Rust SDK filter.

mod common;

use host_harness::{
    Connection, HttpCallResponse, LogLevel, Plugin, PluginSettings, Request, RequestOutcome,
    UpstreamResponse,
};
use std::time::Duration;

#[test]
fn raw_abi_guest_tags_counts_and_denies() {
    let mut plugin = Plugin::new(
        &common::header_gate(),
        PluginSettings::new("gate").configuration("on"),
    )
    .expect("gate starts");
    assert!(plugin.configured().accepted);
    assert_eq!(plugin.configured().logs[0].message, "configured");

    let connection = Connection::plain().source("198.51.100.4:40000".parse().unwrap());
    let allowed = plugin
        .exchange(
            &connection,
            Request::get("/"),
            UpstreamResponse::ok().header("x-app", "1"),
        )
        .expect("allowed exchange");
    let upstream = allowed.request.upstream().expect("went upstream");
    assert_eq!(upstream.headers.get("x-raw-guest"), Some("1"));
    assert_eq!(upstream.headers.get("x-source"), Some("198.51.100.4:40000"));
    let response = allowed.response.expect("client response");
    assert_eq!(response.headers.get("x-raw-guest-response"), Some("seen"));
    assert_eq!(response.headers.get("x-app"), Some("1"));

    let denied = plugin
        .send(&connection, Request::get("/").header("X-Deny", "yes"))
        .expect("denied exchange");
    let local = denied.request.local_response().expect("local response");
    assert_eq!(
        (local.status, local.body.as_slice()),
        (418, &b"denied by raw guest"[..])
    );
    let response = denied.response.expect("client response");
    assert!(response.local);
    assert_eq!(response.headers.get("content-type"), Some("text/plain"));
    // Envoy runs response callbacks on local replies too.
    assert_eq!(response.headers.get("x-raw-guest-response"), Some("seen"));

    assert_eq!(plugin.metric_value("raw_requests"), Some(2));
}

#[test]
fn raw_abi_guest_rejects_an_empty_configuration() {
    let plugin =
        Plugin::new(&common::header_gate(), PluginSettings::new("gate")).expect("gate loads");
    assert!(!plugin.configured().accepted);
}

#[test]
fn rust_sdk_guest_sees_tls_properties_logs_stdio_and_sets_filter_state() {
    let (_, certificate) = common::client_certificate();
    let mut plugin =
        Plugin::new(&common::sdk_probe(), PluginSettings::new("probe")).expect("probe starts");
    let exchange = plugin
        .send(&Connection::mtls(certificate), Request::get("/hello"))
        .expect("exchange");
    let upstream = exchange.request.upstream().expect("continued");
    assert_eq!(upstream.headers.get("x-sdk"), Some("rust"));
    assert_eq!(
        upstream.headers.get("x-peer-uri"),
        Some("spiffe://example.org/ns/a/sa/one")
    );
    assert_eq!(
        exchange
            .filter_state
            .get("wasm.sdk_seen")
            .map(Vec::as_slice),
        Some(&b"yes"[..])
    );
    assert_eq!(
        exchange
            .response
            .expect("response")
            .headers
            .get("x-sdk-response"),
        Some("seen")
    );
    assert!(plugin
        .logs_at(LogLevel::Info)
        .contains(&"stdout from the guest"));
    assert!(plugin
        .logs_at(LogLevel::Error)
        .contains(&"stderr from the guest"));
}

#[test]
fn rust_sdk_guest_waits_for_an_http_call_the_test_answers() {
    let mut plugin =
        Plugin::new(&common::sdk_probe(), PluginSettings::new("probe")).expect("probe starts");
    let connection = Connection::plain();

    let mut granted = plugin
        .stream(&connection, Request::get("/guarded"))
        .expect("stream");
    assert_eq!(granted.outcome(), &RequestOutcome::Paused);
    let call = granted
        .plugin()
        .http_calls()
        .pop()
        .expect("a dispatched call");
    assert_eq!(
        (call.cluster.as_str(), call.headers.get(":path")),
        ("auth", Some("/check"))
    );
    granted
        .respond_http_call(call.token, HttpCallResponse::status(200))
        .expect("answered");
    let upstream = granted.outcome().upstream().expect("resumed upstream");
    assert_eq!(upstream.headers.get("x-auth"), Some("granted"));
    // Calls made for the stream from the root's callback count for the stream.
    let hostcalls = granted.hostcalls();
    assert_eq!(hostcalls.get("proxy_http_call"), 1);
    assert_eq!(hostcalls.get("proxy_replace_header_map_value"), 1);
    granted.finish().expect("finished");

    // The guest's 1 s timeout passes: Envoy's async client answers 504 and the guest denies.
    let mut timed_out = plugin
        .stream(&connection, Request::get("/guarded"))
        .expect("stream");
    timed_out
        .advance_time(Duration::from_millis(1500))
        .expect("time passes");
    assert_eq!(
        timed_out.outcome().local_response().map(|r| r.status),
        Some(401)
    );
    assert!(timed_out.plugin().http_calls().is_empty());
    drop(timed_out);

    let mut denied = plugin
        .stream(&connection, Request::get("/guarded"))
        .expect("stream");
    let token = denied.plugin().http_calls()[0].token;
    denied
        .respond_http_call(token, HttpCallResponse::status(403))
        .expect("answered");
    let local = denied.outcome().local_response().expect("local response");
    assert_eq!(local.status, 401);
    assert_eq!(local.headers.get("x-auth"), Some("denied"));
}

#[test]
fn rust_sdk_guest_counts_in_shared_data_and_ticks_on_the_test_clock() {
    let mut plugin =
        Plugin::new(&common::sdk_probe(), PluginSettings::new("probe")).expect("probe starts");
    for expected in ["1", "2"] {
        let exchange = plugin
            .send(&Connection::plain(), Request::get("/shared"))
            .expect("exchange");
        assert_eq!(
            exchange.request.upstream().unwrap().headers.get("x-hits"),
            Some(expected)
        );
    }
    assert_eq!(
        plugin.shared_data().get(b"hits").map(|(value, _)| value),
        Some(b"2".to_vec())
    );

    plugin
        .advance_time(Duration::from_millis(3500))
        .expect("time advances");
    assert_eq!(plugin.metric_value("probe_ticks"), Some(3));
    plugin.tick().expect("tick");
    assert_eq!(plugin.metric_value("probe_ticks"), Some(4));
}

#[test]
fn plugins_given_one_store_share_data_like_envoy_workers() {
    let store = host_harness::SharedData::new();
    let settings = PluginSettings::new("probe").shared_data(store.clone());
    let mut workers = [
        Plugin::new(&common::sdk_probe(), settings.clone()).expect("worker 1"),
        Plugin::new(&common::sdk_probe(), settings).expect("worker 2"),
    ];
    for worker in &mut workers {
        worker
            .send(&Connection::plain(), Request::get("/shared"))
            .expect("exchange");
    }
    assert_eq!(
        store.get(b"hits").map(|(value, _)| value),
        Some(b"2".to_vec())
    );
}

#[test]
fn a_guest_panic_becomes_an_error_with_the_panic_message_and_fails_the_vm() {
    let mut plugin =
        Plugin::new(&common::sdk_probe(), PluginSettings::new("probe")).expect("probe starts");
    let error = plugin
        .send(&Connection::plain(), Request::get("/panic"))
        .expect_err("the guest panics");
    let message = error.panic_message().expect("panic message captured");
    assert!(message.contains("boom at /panic"), "{message}");
    let later = plugin
        .send(&Connection::plain(), Request::get("/"))
        .expect_err("VM failed");
    assert!(later.to_string().contains("boom at /panic"), "{later}");
}

#[test]
fn a_panic_in_on_configure_is_reported_and_a_rejection_is_not_an_error() {
    let error = Plugin::new(
        &common::sdk_probe(),
        PluginSettings::new("probe").configuration("panic"),
    )
    .expect_err("on_configure panics");
    assert!(error
        .panic_message()
        .unwrap_or_default()
        .contains("configured to panic"));

    let rejected = Plugin::new(
        &common::sdk_probe(),
        PluginSettings::new("probe").configuration("reject"),
    )
    .expect("rejection is an outcome");
    assert!(!rejected.configured().accepted);
    assert_eq!(
        rejected.configured().logs[0].message,
        "rejecting configuration"
    );
}

#[test]
fn certgate_wasm_allows_a_matching_identity_and_denies_a_plain_request() {
    let module = common::certgate();
    let policy = serde_json::json!({"routes": [{
        "name": "admin",
        "match": {"route_name": "admin"},
        "allow": [{"uri": "spiffe://example.org/ns/a/*"}]
    }]});
    let mut plugin = Plugin::new(
        &module,
        PluginSettings::new("certgate").configuration_json(&policy),
    )
    .expect("certgate starts");
    assert!(
        plugin.configured().accepted,
        "{:?}",
        plugin.configured().logs
    );
    let (_, certificate) = common::client_certificate();
    let allowed = plugin
        .send(
            &Connection::mtls(certificate),
            Request::get("/").route_name("admin"),
        )
        .expect("certgate serves an mTLS request");
    assert!(allowed.request.is_continued(), "{:?}", allowed.request);
    let denied = plugin
        .send(&Connection::plain(), Request::get("/").route_name("admin"))
        .expect("certgate serves a plain request");
    assert!(
        denied.request.local_response().is_some(),
        "{:?}",
        denied.request
    );
}
