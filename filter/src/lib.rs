//! certgate: a proxy-wasm filter that enforces peer-certificate identity per route.
//!
//! The modules follow a request's data flow: [`facts`] (what the host says) -> [`identity`] (who the
//! peer is) -> [`decide`] (allow or deny, and why) -> [`rewrite`] (the forwarding headers) ->
//! [`record`] (metrics and the access record), with [`evaluate`] running one request through them
//! and [`config`] compiling the plugin configuration into the [`decide`]/[`rewrite`]/[`record`]
//! settings. [`names`], [`encoding`] and `collections` are the vocabulary every stage shares.
//! [`session`] keeps what a plugin instance learns between requests and [`request`] takes one
//! request's headers from the host to the outcome, both behind the small [`session::Host`] trait.
//! None of it knows proxy-wasm: `glue` (built for wasm only) is the proxy-wasm contexts and the
//! hostcalls that implement [`session::Host`]. `docs/architecture.md` walks through the layout.
//!
//! # Who uses what
//!
//! The shipped product is the `.wasm`; this library's Rust API serves certgate's own tools:
//! - the fuzz targets (`fuzz/`): [`config::compile`], [`identity::PeerIdentity`] and the header
//!   formats ([`identity::xfcc`], [`identity::alb`], [`rewrite::forwarded`]), [`evaluate`];
//! - the benches (`benches/`) and the cross-crate suites (`tests/`): [`config`], [`evaluate`],
//!   [`decide`], [`facts::pairs`], [`rewrite::is_spelling_of`];
//! - the filter's own suites (`filter/tests/`), which specify every stage through its public
//!   types, as a table of inputs and expected outcomes.
//!
//! The command-line tool and the host harness use none of it: they run the `.wasm`. What no suite
//! needs from outside (the bounded cache, the DER reader beneath [`identity::x509`]) is
//! `pub(crate)` and unit-tested where it lives.

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
pub mod request;
pub mod rewrite;
pub mod session;
