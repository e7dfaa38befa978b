//! What the host says about a request and its connection, decoded without trusting it: the header
//! map and the peer's socket address.

pub mod address;
pub mod pairs;
