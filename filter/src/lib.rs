//! certgate: a proxy-wasm filter that enforces peer-certificate identity per route.
//!
//! [`core`] decides and knows nothing of proxy-wasm; `glue` (built for wasm only) gathers request
//! facts from the host with as few hostcalls as it can and applies the core's outcome.

pub mod core;
#[cfg(target_arch = "wasm32")]
mod glue;
