;; A third-party guest written against the raw proxy-wasm ABI 0.2.1 (no SDK):
;; - on_configure accepts any non-empty plugin configuration;
;; - every request increments the counter `raw_requests`;
;; - a request carrying `x-deny` gets a local 418 "denied by raw guest";
;; - other requests get `x-raw-guest: 1` and `x-source: <source.address property>`;
;; - responses get `x-raw-guest-response: seen`.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value" (func $replace_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $define_metric (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $increment_metric (param i32 i64) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $send_local_response (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 2)
  ;; 0: out pointer, 4: out size, 8: metric id, 12: metric defined flag
  (data (i32.const 100) "source\00address")       ;; 14 bytes
  (data (i32.const 120) "x-deny")                 ;; 6
  (data (i32.const 130) "x-raw-guest")            ;; 11
  (data (i32.const 145) "1")                      ;; 1
  (data (i32.const 150) "x-source")               ;; 8
  (data (i32.const 160) "raw_requests")           ;; 12
  (data (i32.const 180) "denied by raw guest")    ;; 19
  (data (i32.const 200) "x-raw-guest-response")   ;; 20
  (data (i32.const 225) "seen")                   ;; 4
  (data (i32.const 230) "configured")             ;; 10

  (global $heap (mut i32) (i32.const 4096))

  (func (export "proxy_abi_version_0_2_1"))

  ;; A bump allocator: enough for a test guest.
  (func (export "malloc") (param $size i32) (result i32)
    (local $at i32)
    (local.set $at (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (global.get $heap) (local.get $size)) (i32.const 7)) (i32.const -8)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add (i32.div_u (local.get $size) (i32.const 65536)) (i32.const 1))))))
    (local.get $at))

  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 230) (i32.const 10)))
    (i32.ne (local.get $size) (i32.const 0)))

  (func (export "proxy_on_request_headers") (param $ctx i32) (param $headers i32) (param $eos i32) (result i32)
    (if (i32.eqz (i32.load (i32.const 12)))
      (then
        (drop (call $define_metric (i32.const 0) (i32.const 160) (i32.const 12) (i32.const 8)))
        (i32.store (i32.const 12) (i32.const 1))))
    (drop (call $increment_metric (i32.load (i32.const 8)) (i64.const 1)))
    ;; A request with x-deny is answered locally.
    (if (i32.eqz (call $get_header (i32.const 0) (i32.const 120) (i32.const 6) (i32.const 0) (i32.const 4)))
      (then
        (drop (call $send_local_response (i32.const 418) (i32.const 0) (i32.const 0)
          (i32.const 180) (i32.const 19) (i32.const 0) (i32.const 0) (i32.const -1)))
        (return (i32.const 1))))
    (drop (call $add_header (i32.const 0) (i32.const 130) (i32.const 11) (i32.const 145) (i32.const 1)))
    (if (i32.eqz (call $get_property (i32.const 100) (i32.const 14) (i32.const 0) (i32.const 4)))
      (then
        (drop (call $add_header (i32.const 0) (i32.const 150) (i32.const 8)
          (i32.load (i32.const 0)) (i32.load (i32.const 4))))))
    (i32.const 0))

  (func (export "proxy_on_response_headers") (param $ctx i32) (param $headers i32) (param $eos i32) (result i32)
    (drop (call $replace_header (i32.const 2) (i32.const 200) (i32.const 20) (i32.const 225) (i32.const 4)))
    (i32.const 0))
)
