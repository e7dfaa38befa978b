//! certgate: a proxy-wasm filter that enforces peer-certificate identity per route.
//!
//! [`core`] decides and knows nothing of proxy-wasm; [`glue`] gathers request facts from the host
//! and applies the core's outcome.

pub mod core;
pub mod glue;
