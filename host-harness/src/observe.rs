//! What a test observes besides the traffic: log lines, metrics and their changes, and hostcall
//! counts per request.

use crate::abi::{LogLevel, MetricType};
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

/// Declares [`Hostcall`] and its import names in one list, so a name cannot drift from its
/// variant.
macro_rules! hostcalls {
    ($($variant:ident => $name:literal,)*) => {
        /// A hostcall the harness offers, by import; the list is in name order, the order
        /// [`HostcallCounts::iter`] reports them in.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Hostcall {
            $($variant,)*
        }

        impl Hostcall {
            const NAMES: &'static [&'static str] = &[$($name,)*];
        }
    };
}

hostcalls! {
    ArgsGet => "args_get",
    ArgsSizesGet => "args_sizes_get",
    ClockTimeGet => "clock_time_get",
    EnvironGet => "environ_get",
    EnvironSizesGet => "environ_sizes_get",
    FdClose => "fd_close",
    FdFdstatGet => "fd_fdstat_get",
    FdPrestatDirName => "fd_prestat_dir_name",
    FdPrestatGet => "fd_prestat_get",
    FdRead => "fd_read",
    FdSeek => "fd_seek",
    FdWrite => "fd_write",
    PathOpen => "path_open",
    ProcExit => "proc_exit",
    ProxyAddHeaderMapValue => "proxy_add_header_map_value",
    ProxyCallForeignFunction => "proxy_call_foreign_function",
    ProxyClearRouteCache => "proxy_clear_route_cache",
    ProxyCloseStream => "proxy_close_stream",
    ProxyContinueRequest => "proxy_continue_request",
    ProxyContinueResponse => "proxy_continue_response",
    ProxyContinueStream => "proxy_continue_stream",
    ProxyDefineMetric => "proxy_define_metric",
    ProxyDequeueSharedQueue => "proxy_dequeue_shared_queue",
    ProxyDone => "proxy_done",
    ProxyEnqueueSharedQueue => "proxy_enqueue_shared_queue",
    ProxyGetBufferBytes => "proxy_get_buffer_bytes",
    ProxyGetBufferStatus => "proxy_get_buffer_status",
    ProxyGetConfiguration => "proxy_get_configuration",
    ProxyGetCurrentTimeNanoseconds => "proxy_get_current_time_nanoseconds",
    ProxyGetHeaderMapPairs => "proxy_get_header_map_pairs",
    ProxyGetHeaderMapSize => "proxy_get_header_map_size",
    ProxyGetHeaderMapValue => "proxy_get_header_map_value",
    ProxyGetLogLevel => "proxy_get_log_level",
    ProxyGetMetric => "proxy_get_metric",
    ProxyGetProperty => "proxy_get_property",
    ProxyGetSharedData => "proxy_get_shared_data",
    ProxyGetStatus => "proxy_get_status",
    ProxyGrpcCall => "proxy_grpc_call",
    ProxyGrpcCancel => "proxy_grpc_cancel",
    ProxyGrpcClose => "proxy_grpc_close",
    ProxyGrpcSend => "proxy_grpc_send",
    ProxyGrpcStream => "proxy_grpc_stream",
    ProxyHttpCall => "proxy_http_call",
    ProxyIncrementMetric => "proxy_increment_metric",
    ProxyLog => "proxy_log",
    ProxyRecordMetric => "proxy_record_metric",
    ProxyRegisterSharedQueue => "proxy_register_shared_queue",
    ProxyRemoveHeaderMapValue => "proxy_remove_header_map_value",
    ProxyReplaceHeaderMapValue => "proxy_replace_header_map_value",
    ProxyResolveSharedQueue => "proxy_resolve_shared_queue",
    ProxySendLocalResponse => "proxy_send_local_response",
    ProxySetBufferBytes => "proxy_set_buffer_bytes",
    ProxySetEffectiveContext => "proxy_set_effective_context",
    ProxySetHeaderMapPairs => "proxy_set_header_map_pairs",
    ProxySetProperty => "proxy_set_property",
    ProxySetSharedData => "proxy_set_shared_data",
    ProxySetTickPeriodMilliseconds => "proxy_set_tick_period_milliseconds",
    RandomGet => "random_get",
}

impl Hostcall {
    /// The import's name (the same under `env` and both WASI modules).
    pub(crate) fn name(self) -> &'static str {
        Hostcall::NAMES[self as usize]
    }
}

/// Hostcalls a stream made, by import name (`proxy_get_header_map_value`, `fd_write`, ...).
/// Counted in an array indexed by hostcall: counting one is an increment.
#[derive(Clone, PartialEq, Eq)]
pub struct HostcallCounts {
    counts: [u32; Hostcall::NAMES.len()],
}

impl Default for HostcallCounts {
    fn default() -> HostcallCounts {
        HostcallCounts {
            counts: [0; Hostcall::NAMES.len()],
        }
    }
}

impl HostcallCounts {
    pub(crate) fn count(&mut self, hostcall: Hostcall) {
        let count = &mut self.counts[hostcall as usize];
        *count = count.saturating_add(1);
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|&count| u64::from(count)).sum()
    }

    pub fn get(&self, name: &str) -> u64 {
        Hostcall::NAMES
            .binary_search(&name)
            .map_or(0, |index| u64::from(self.counts[index]))
    }

    /// The hostcalls made at least once, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        Hostcall::NAMES
            .iter()
            .zip(self.counts)
            .filter(|&(_, count)| count > 0)
            .map(|(&name, count)| (name, u64::from(count)))
    }
}

impl std::fmt::Debug for HostcallCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostcall_names_are_sorted_and_unique_so_lookups_and_listing_follow_name_order() {
        assert!(Hostcall::NAMES.windows(2).all(|pair| pair[0] < pair[1]));
        let mut counts = HostcallCounts::default();
        counts.count(Hostcall::ProxyLog);
        counts.count(Hostcall::FdWrite);
        counts.count(Hostcall::ProxyLog);
        assert_eq!(
            counts.iter().collect::<Vec<_>>(),
            [("fd_write", 1), ("proxy_log", 2)]
        );
        assert_eq!((counts.get("proxy_log"), counts.get("nope")), (2, 0));
        assert_eq!(counts.total(), 3);
    }
}
