//! Behaviour a guest can observe in Envoy beyond the hostcalls themselves: the header map's
//! order, Envoy's buffer limits and its local replies, failure policies. Each test runs a small
//! raw-ABI guest written for it.

use host_harness::{Connection, GuestModule, Plugin, PluginSettings, Request, UpstreamResponse};

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
    assert_eq!(keys.last(), Some(&"x-guest"), "{keys:?}");
}
