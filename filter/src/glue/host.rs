//! Hostcalls the SDK's wrappers get wrong for certgate: header maps read as bytes (the SDK panics on
//! a non-UTF-8 header value, which any client can send) and properties read by path.

use proxy_wasm::types::{MapType, Status};

#[link(wasm_import_module = "env")]
extern "C" {
    // Declared with a plain status code: a host that answers with a status the SDK's enum lacks must
    // not become undefined behaviour.
    #[allow(clashing_extern_declarations)]
    fn proxy_get_header_map_pairs(map_type: MapType, data: *mut *mut u8, size: *mut usize) -> u32;
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

/// A one-byte boolean property.
pub fn property_bool(path: &[&str]) -> Option<bool> {
    property(path).map(|value| value.first().is_some_and(|byte| *byte != 0))
}

/// A string property (lossy for the rare non-UTF-8 byte).
pub fn property_string(path: &[&str]) -> Option<String> {
    property(path).map(|value| String::from_utf8_lossy(&value).into_owned())
}
