//! The shipped artifact: `certgate.wasm` exists, is a wasm module, exports the proxy-wasm ABI, and stays
//! within its size budget.

use std::path::PathBuf;

/// `certgate.wasm` as built by `cargo xtask test` (which sets `CERTGATE_WASM`), or its default path.
fn certgate_wasm() -> PathBuf {
    std::env::var_os("CERTGATE_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/wasm32-wasip1/release/certgate.wasm")
        })
}

/// The size budget of the shipped filter: generous, since what an operator pays for is the cost per
/// request and the VM's memory, not bytes on disk (docs/performance.md has today's size).
const SIZE_CEILING: usize = 640 * 1024;

#[test]
fn certgate_wasm_is_a_proxy_wasm_module_within_budget() {
    let path = certgate_wasm();
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}): build it with `cargo xtask build-wasm`",
            path.display()
        )
    });
    assert_eq!(bytes.get(..4), Some(&b"\0asm"[..]), "not a wasm module");
    let exports_abi = bytes.windows(23).any(|w| w == b"proxy_abi_version_0_2_1");
    assert!(
        exports_abi,
        "certgate.wasm does not export proxy_abi_version_0_2_1"
    );
    assert!(
        bytes.len() <= SIZE_CEILING,
        "certgate.wasm is {} bytes, over its {SIZE_CEILING}-byte ceiling",
        bytes.len()
    );
}
