//! The pure core: configuration, identity, matching and decisions, with no proxy-wasm types.

pub mod address;
pub mod alb;
pub mod cache;
pub mod config;
pub mod decision;
pub mod der;
pub mod dns;
pub mod forwarded;
pub mod forwarding;
pub mod hash;
pub mod identity;
pub mod ip;
pub mod json;
pub mod matcher;
pub mod pairs;
pub mod pem;
pub mod percent;
pub mod policy;
pub mod request;
pub mod rewrite;
pub mod route;
pub mod sources;
pub mod telemetry;
pub mod uri;
pub mod x509;
pub mod xfcc;
