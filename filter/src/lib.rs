//! certgate: a proxy-wasm filter that enforces peer-certificate identity per route.
//!
//! The modules follow a request's data flow: [`facts`] (what the host says) -> [`identity`] (who the
//! peer is) -> [`decide`] (allow or deny, and why) -> [`rewrite`] (the forwarding headers) ->
//! [`record`] (metrics and the access record), with [`evaluate`] running one request through them
//! and [`config`] compiling the plugin configuration into the [`decide`]/[`rewrite`]/[`record`]
//! settings. [`names`], [`encoding`] and `collections` are the vocabulary every stage shares.
//! `session` keeps what a plugin instance learns between requests and `request` takes one
//! request's headers from the host to the outcome, both behind the small `session::Host` trait.
//! None of it knows proxy-wasm: `glue` (built for wasm only) is the proxy-wasm contexts and the
//! hostcalls that implement `session::Host`. `docs/architecture.md` walks through the layout.
//!
//! # Who uses what
//!
//! The shipped product is the `.wasm`: the command-line tool and the host harness run it and use
//! none of this library's Rust API. The API is public for certgate's own tools, and only as far as
//! they reach:
//! - the fuzz targets (`fuzz/src/`, replayed by `tests/fuzz_replay.rs`): [`config::compile`] and
//!   [`evaluate::evaluate`] for whole configurations and requests; [`identity::PeerIdentity`] for
//!   certificates; the header formats [`identity::xfcc`], [`identity::alb`],
//!   [`rewrite::forwarded`] and [`encoding::percent`]; the patterns of [`decide::matcher`] and the
//!   canonical forms of [`names`];
//! - the benches: `benches/core.rs` takes a request the glue's way ([`facts::pairs`],
//!   [`decide::route::RequestFacts`], the access rules of [`policy::Policy`],
//!   [`evaluate::evaluate`], [`rewrite::forwarding::RenderedIdentity`],
//!   [`record::metrics::MetricCounts`], the access record), `benches/x509.rs` reads certificates
//!   with [`identity::x509::parse_certificate`];
//! - the cross-crate suites: `tests/hostile_certificates.rs` (requests through
//!   [`evaluate::evaluate`]), `tests/harness_never_traps.rs` ([`rewrite::is_spelling_of`]),
//!   `tests/envoy_churn.rs` ([`record::metrics::METRIC_CAPACITY`]), and `cargo xtask demo`
//!   ([`config::compile`]).
//!
//! The types in those items' signatures and fields are public with them: the decision vocabulary
//! ([`decide::decision`]), the metric series ([`record::series`]), the identity sources
//! ([`identity::sources`]). Everything else is `pub(crate)`. Every stage is specified by unit tests
//! beside it (`<module>/tests/`, tables of inputs and expected outcomes), and the session and
//! request path by `tests/session.rs` through a fake host; all reach it through `crate::` paths.

// The glue is built for wasm32 only, so natively what only the glue uses looks dead: dead code is
// judged by the wasm32 build (`cargo clippy --target wasm32-wasip1 -p certgate-filter`).
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

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
pub(crate) mod request;
pub mod rewrite;
pub(crate) mod session;

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests {
    mod properties;
    mod session;
}
