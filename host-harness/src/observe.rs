//! What a test observes besides the traffic: log lines, metrics and their changes, and hostcall
//! counts per request.

use crate::abi::{LogLevel, MetricType};
use crate::state::HostState;
use std::collections::BTreeMap;

/// One log line the guest wrote (`proxy_log`, or stdout/stderr through WASI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub level: LogLevel,
    pub message: String,
    /// The context the line was logged from.
    pub context_id: u32,
}

/// A metric the guest defined: counters and gauges carry a value, histograms their samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    pub name: String,
    pub kind: MetricType,
    pub value: i64,
    pub samples: Vec<u64>,
}

/// All metrics at one moment, by name (as defined by the guest; Envoy shows them as
/// `wasmcustom.<name>` on `/stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub(crate) metrics: BTreeMap<String, Metric>,
}

/// How one metric moved between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricChange {
    pub name: String,
    pub kind: MetricType,
    pub before: i64,
    pub after: i64,
    /// Histogram samples recorded in between.
    pub new_samples: Vec<u64>,
}

impl MetricsSnapshot {
    pub fn get(&self, name: &str) -> Option<&Metric> {
        self.metrics.get(name)
    }

    /// The value of a counter or gauge.
    pub fn value(&self, name: &str) -> Option<i64> {
        self.get(name).map(|metric| metric.value)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Metric> {
        self.metrics.values()
    }

    /// Metrics that changed (or appeared) since `earlier`.
    pub fn changes_since(&self, earlier: &MetricsSnapshot) -> Vec<MetricChange> {
        self.metrics
            .values()
            .filter_map(|metric| {
                let before = earlier.get(&metric.name);
                let old_value = before.map_or(0, |b| b.value);
                let old_samples = before.map_or(0, |b| b.samples.len());
                let new_samples = metric.samples[old_samples.min(metric.samples.len())..].to_vec();
                (old_value != metric.value || !new_samples.is_empty() || before.is_none()).then(
                    || MetricChange {
                        name: metric.name.clone(),
                        kind: metric.kind,
                        before: old_value,
                        after: metric.value,
                        new_samples,
                    },
                )
            })
            .collect()
    }
}

/// Hostcalls a stream made, by import name (`proxy_get_header_map_value`, `fd_write`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostcallCounts {
    counts: BTreeMap<String, u64>,
}

impl HostcallCounts {
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    pub fn get(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.counts
            .iter()
            .map(|(name, count)| (name.as_str(), *count))
    }
}

pub(crate) fn hostcall_counts(state: &HostState, id: u32) -> HostcallCounts {
    HostcallCounts {
        counts: state
            .hostcalls
            .get(&id)
            .map(|counts| {
                counts
                    .iter()
                    .map(|(name, count)| (name.to_string(), *count))
                    .collect()
            })
            .unwrap_or_default(),
    }
}
