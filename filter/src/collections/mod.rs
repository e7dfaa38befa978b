//! Bounded containers the filter keeps between requests, and the hasher of its indexes.

pub mod cache;
pub mod hash;
