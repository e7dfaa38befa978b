//! Hostcalls the SDK's wrappers get wrong for certgate: header maps read as bytes (the SDK panics on
//! a non-UTF-8 header value, which any client can send), properties read by path, and every write
//! (headers, filter state, metrics, shared data) declared with a plain status code: the SDK panics,
//! trapping the VM, on any status it did not expect, and a refused write must cost a log line, not
//! the request.

use crate::record::series::MetricKind;
use crate::rewrite::HeaderEdit;
use proxy_wasm::types::{MapType, MetricType, Status};

#[link(wasm_import_module = "env")]
extern "C" {
    // Declared with a plain status code: a host that answers with a status the SDK's enum lacks must
    // not become undefined behaviour.
    #[allow(clashing_extern_declarations)]
    fn proxy_get_header_map_pairs(map_type: MapType, data: *mut *mut u8, size: *mut usize) -> u32;
    #[allow(clashing_extern_declarations)]
    fn proxy_set_header_map_pairs(map_type: MapType, data: *const u8, size: usize) -> u32;
    #[allow(clashing_extern_declarations)]
    fn proxy_remove_header_map_value(map_type: MapType, key: *const u8, key_size: usize) -> u32;
    #[allow(clashing_extern_declarations)]
    fn proxy_replace_header_map_value(
        map_type: MapType,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    #[allow(clashing_extern_declarations)]
    fn proxy_add_header_map_value(
        map_type: MapType,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    #[allow(clashing_extern_declarations)]
    fn proxy_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    #[allow(clashing_extern_declarations)]
    fn proxy_define_metric(
        metric_type: MetricType,
        name: *const u8,
        name_size: usize,
        id: *mut u32,
    ) -> u32;
    #[allow(clashing_extern_declarations)]
    fn proxy_call_foreign_function(
        name: *const u8,
        name_size: usize,
        arguments: *const u8,
        arguments_size: usize,
        results: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
    #[allow(clashing_extern_declarations)]
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details: *const u8,
        status_code_details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    #[allow(clashing_extern_declarations)]
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    #[allow(clashing_extern_declarations)]
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    #[allow(clashing_extern_declarations)]
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        value: *mut *mut u8,
        value_size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    #[allow(clashing_extern_declarations)]
    fn proxy_set_shared_data(
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
}

fn ok(status: u32) -> bool {
    status == Status::Ok as u32
}

/// The whole request header map in the pairs encoding, in one hostcall.
pub fn request_header_pairs() -> Vec<u8> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a buffer it allocated with our allocator and its size; we take ownership.
    let status =
        unsafe { proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size) };
    if status != Status::Ok as u32 || data.is_null() {
        return Vec::new();
    }
    // SAFETY: as above; the allocator gave exactly `size` bytes of capacity.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

/// A property's value; `None` when absent (or empty, which no property certgate reads can be).
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    proxy_wasm::hostcalls::get_property(path.to_vec())
        .ok()
        .flatten()
}

/// Replaces the whole request header map with a pairs-encoded one, in one hostcall.
pub fn set_request_header_pairs(encoded: &[u8]) -> bool {
    // SAFETY: the host copies `size` bytes from our buffer, which outlives the call.
    ok(unsafe {
        proxy_set_header_map_pairs(MapType::HttpRequestHeaders, encoded.as_ptr(), encoded.len())
    })
}

/// Applies one edit to the request headers.
pub fn edit_request_header(edit: HeaderEdit<'_>) -> bool {
    let map = MapType::HttpRequestHeaders;
    // SAFETY: the host reads the given lengths from our buffers, which outlive the call.
    ok(unsafe {
        match edit {
            HeaderEdit::Remove(name) => {
                proxy_remove_header_map_value(map, name.as_ptr(), name.len())
            }
            HeaderEdit::Replace(name, value) => proxy_replace_header_map_value(
                map,
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            ),
            HeaderEdit::Add(name, value) => proxy_add_header_map_value(
                map,
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            ),
        }
    })
}

/// Answers the request locally: `headers` pairs-encoded; with `grpc_status`, a gRPC caller gets that
/// status (Envoy sends the body as `grpc-message`). A refusal is logged, never a trap.
pub fn send_local_response(status: u32, headers: &[u8], body: &[u8], grpc_status: Option<u32>) {
    let grpc_status = grpc_status
        .and_then(|code| i32::try_from(code).ok())
        .unwrap_or(-1);
    // SAFETY: the host reads the given lengths from our buffers, which outlive the call.
    let status = unsafe {
        proxy_send_local_response(
            status,
            std::ptr::null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            grpc_status,
        )
    };
    if !ok(status) {
        log::warn!("certgate: the host refused the local reply (status {status})");
    }
}

/// Calls the host's foreign function `name`; its results, if any, are dropped.
pub fn call_foreign_function(name: &str, arguments: &[u8]) -> bool {
    let mut results: *mut u8 = std::ptr::null_mut();
    let mut results_size: usize = 0;
    // SAFETY: the host reads our buffers for the given lengths and may write a buffer it allocated
    // with our allocator, which we take ownership of and free.
    let status = unsafe {
        proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            arguments.as_ptr(),
            arguments.len(),
            &mut results,
            &mut results_size,
        )
    };
    if !results.is_null() {
        // SAFETY: as above; the allocator gave exactly `results_size` bytes of capacity.
        drop(unsafe { Vec::from_raw_parts(results, results_size, results_size) });
    }
    ok(status)
}

/// Sets filter state `name` (a one-segment property path); Envoy stores it as `wasm.<name>`.
pub fn set_filter_state(name: &str, value: &[u8]) -> bool {
    // SAFETY: the host reads the given lengths from our buffers, which outlive the call.
    ok(unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}

/// Defines a metric; `None` when the host refuses.
pub fn define_metric(kind: MetricKind, name: &str) -> Option<u32> {
    let metric_type = match kind {
        MetricKind::Counter => MetricType::Counter,
        MetricKind::Histogram => MetricType::Histogram,
    };
    let mut id = 0;
    // SAFETY: the host reads `name` and writes one u32 into `id`, both live for the call.
    ok(unsafe { proxy_define_metric(metric_type, name.as_ptr(), name.len(), &mut id) })
        .then_some(id)
}

/// Adds to a counter (a zero delta is skipped: hosts refuse it) or records a histogram value.
pub fn update_metric(id: u32, kind: MetricKind, value: u64) -> bool {
    match kind {
        MetricKind::Counter if value == 0 => true,
        MetricKind::Counter => {
            let delta = i64::try_from(value).unwrap_or(i64::MAX);
            // SAFETY: plain values.
            ok(unsafe { proxy_increment_metric(id, delta) })
        }
        // SAFETY: plain values.
        MetricKind::Histogram => ok(unsafe { proxy_record_metric(id, value) }),
    }
}

/// A shared-data value (shared by every VM of the plugin's `vm_id`); `None` when absent or refused.
pub fn shared_data(key: &str) -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    // SAFETY: the host reads `key` and writes a buffer it allocated with our allocator, its size and
    // a CAS token; we take ownership of the buffer.
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    if !ok(status) || data.is_null() {
        return None;
    }
    // SAFETY: as above; the allocator gave exactly `size` bytes of capacity.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// Writes a shared-data value unconditionally (CAS 0).
pub fn set_shared_data(key: &str, value: &[u8]) -> bool {
    // SAFETY: the host copies the given lengths from our buffers, which outlive the call.
    ok(unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), 0) })
}
