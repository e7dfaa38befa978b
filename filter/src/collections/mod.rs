//! The bounded cache the filter keeps between requests.
//!
//! The indexes of matchers, IP blocks and metric series hash with `rustc-hash`'s `FxHasher`, not
//! the standard library's SipHash: their keys come from the configuration, never from clients, so
//! a client cannot fill a table with colliding keys, and SipHash's DoS resistance would buy nothing
//! at a cost that is most of a decision's.

pub(crate) mod cache;
