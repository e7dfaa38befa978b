//! The pure core: configuration, identity, matching and decisions, with no proxy-wasm types.

pub mod cache;
pub mod config;
pub mod decision;
pub mod dns;
pub mod identity;
pub mod ip;
pub mod matcher;
pub mod pairs;
pub mod pem;
pub mod policy;
pub mod route;
pub mod uri;
