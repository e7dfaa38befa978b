//! The decision for a request: which route it belongs to, whether its peer's identity hits the
//! route's rules, and what a denial answers.

pub mod decision;
pub mod matcher;
pub mod policy;
pub mod route;
pub mod trust;
