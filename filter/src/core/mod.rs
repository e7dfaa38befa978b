//! The pure core: configuration, identity, matching and decisions, with no proxy-wasm types.
