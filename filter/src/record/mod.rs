//! What certgate records about a request: metric series and their guest-side counts, the access
//! record (also set as Envoy filter state), and the warnings given once; and the compiled
//! `telemetry` settings that say how much of it.

pub mod access;
pub mod metrics;
pub mod series;
pub(crate) mod warnings;

use access::{RecordFields, RecordLevel};

/// The compiled `telemetry` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Telemetry {
    /// A certificate this close to its end (in days) is warned about and counted.
    pub(crate) expiry_warning_days: u32,
    /// How often the counts are handed to the host, in milliseconds.
    pub(crate) metrics_flush_ms: u32,
    pub access_record: RecordLevel,
    /// The record's fields set as Envoy filter state (`wasm.certgate_<field>`), one hostcall each.
    pub filter_state: RecordFields,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            expiry_warning_days: 14,
            metrics_flush_ms: Telemetry::DEFAULT_METRICS_FLUSH_MS,
            access_record: RecordLevel::Off,
            filter_state: RecordFields::ALL,
        }
    }
}

impl Telemetry {
    /// `telemetry.metrics_flush_ms` when not set.
    pub(crate) const DEFAULT_METRICS_FLUSH_MS: u32 = 1000;
    /// The values `telemetry.metrics_flush_ms` may take: often enough for any scrape interval,
    /// rarely enough to cost nothing per request.
    pub(crate) const METRICS_FLUSH_MS: std::ops::RangeInclusive<u32> = 100..=60_000;
}

#[cfg(test)]
mod tests {
    mod telemetry;
}
