//! What certgate records about a request: metric names and their guest-side counts, and the access
//! record (also set as Envoy filter state).

pub mod metrics;
pub mod telemetry;
