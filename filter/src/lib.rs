//! certgate: a proxy-wasm filter that enforces peer-certificate identity per route.
//!
//! The modules follow a request's data flow: [`facts`] (what the host says) -> [`identity`] (who the
//! peer is) -> [`decide`] (allow or deny, and why) -> [`rewrite`] (the forwarding headers) ->
//! [`record`] (metrics and the access record), with [`evaluate`] running one request through them
//! and [`config`] compiling the plugin configuration into the [`decide`]/[`rewrite`]/[`record`]
//! settings. [`names`], [`encoding`] and `collections` are the vocabulary every stage shares. None
//! of it knows proxy-wasm: `glue` (built for wasm only) gathers the facts from the host with as few
//! hostcalls as it can and applies the outcome. `docs/architecture.md` walks through the layout.
//!
//! # Who uses what
//!
//! The shipped product is the `.wasm`; this library's Rust API serves certgate's own tools:
//! - the fuzz targets (`fuzz/`): [`config::compile`], [`identity::PeerIdentity`] and the header
//!   formats ([`identity::xfcc`], [`identity::alb`], [`rewrite::forwarded`]), [`evaluate`];
//! - the benches (`benches/`) and the cross-crate suites (`tests/`): [`config`], [`evaluate`],
//!   [`decide`], [`facts::pairs`], [`rewrite::is_spelling_of`];
//! - `filter/tests/session.rs`, the session through a fake host.
//!
//! The command-line tool and the host harness use none of it: they run the `.wasm`. Every stage is
//! specified by unit tests beside it (`<module>/tests/`, tables of inputs and expected outcomes),
//! which reach it through `crate::` paths.

pub(crate) mod collections;
pub mod config;
pub mod decide;
pub mod encoding;
pub mod evaluate;
pub mod facts;
#[cfg(target_arch = "wasm32")]
mod glue;
pub mod identity;
pub mod names;
pub mod policy;
pub mod record;
pub mod rewrite;
pub mod session;

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests {
    mod properties;
}
