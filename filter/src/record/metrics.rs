//! Metrics counted in the guest and handed to the host on a timer.
//!
//! Every hostcall that hands something to Envoy costs about as much as native RBAC's whole decision,
//! so a request adds to guest-side totals ([`MetricCounts::add`]) and the root context's tick hands
//! each changed series to the host at once (`MetricCounts::flush`): one `proxy_increment_metric`
//! per changed counter (its delta since the last flush), one `proxy_record_metric` per histogram
//! value. A series is defined with the host the first time it has something to flush. Nothing is
//! dropped between flushes except past the series capacity; a scrape sees counts at most one flush
//! interval late.

use crate::record::series::{Metric, MetricKind};
use rustc_hash::FxHashMap;

/// How many distinct series (label combinations) certgate counts at most.
pub const METRIC_CAPACITY: usize = 2048;

/// How many histogram values one series holds between two flushes; values past it are dropped
/// (and reported by [`Flushed::dropped`]). Expiry is observed once per certificate, so only a
/// client population of more than this many new certificates per flush interval reaches it.
const HISTOGRAM_PENDING_LIMIT: usize = 1024;

/// What the host does with metrics: the three hostcalls, each `false`/`None` when refused.
pub(crate) trait MetricSink {
    fn define(&mut self, kind: MetricKind, name: &str) -> Option<u32>;
    fn increment(&mut self, id: u32, delta: u64) -> bool;
    fn record(&mut self, id: u32, value: u64) -> bool;
}

/// What [`MetricCounts::add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    Counted,
    /// The capacity is reached now, by this series: reported once so the caller can warn once.
    CapacityReached,
    /// Not counted: the capacity was reached earlier, or the host refused the series.
    Dropped,
}

/// What one flush handed over and what it could not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Flushed {
    /// Hostcalls made (definitions included).
    pub(crate) hostcalls: u32,
    /// Series the host refused to define (never counted again) or updates it refused.
    pub(crate) refused: u32,
    /// Histogram values dropped since the last flush ([`HISTOGRAM_PENDING_LIMIT`]).
    pub(crate) dropped: u64,
}

/// The host's id of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostId {
    /// Not defined yet: nothing was flushed for it.
    Undefined,
    Defined(u32),
    Refused,
}

#[derive(Debug)]
enum Pending {
    Counter(u64),
    Histogram(Vec<u64>),
}

#[derive(Debug)]
struct Series {
    name: String,
    id: HostId,
    pending: Pending,
    /// `certgate_requests_total` series flush after every other: once a scrape shows a request
    /// counted, it shows every other series that request moved.
    last: bool,
}

/// The guest-side totals of every series since the last flush, by name.
#[derive(Debug)]
pub struct MetricCounts {
    index: FxHashMap<String, usize>,
    series: Vec<Series>,
    capacity: usize,
    full: bool,
    dropped: u64,
    /// The name being looked up: reused, so a known series costs no allocation.
    name: String,
}

impl Default for MetricCounts {
    fn default() -> Self {
        MetricCounts::new(METRIC_CAPACITY)
    }
}

impl MetricCounts {
    pub(crate) fn new(capacity: usize) -> Self {
        MetricCounts {
            index: FxHashMap::default(),
            series: Vec::new(),
            capacity,
            full: false,
            dropped: 0,
            name: String::new(),
        }
    }

    /// Adds `value` to a counter, or records it in a histogram, until the next flush.
    pub fn add(&mut self, metric: &Metric<'_>, value: u64) -> Added {
        self.name.clear();
        metric.write_name(&mut self.name);
        let position = match self.index.get(self.name.as_str()) {
            Some(position) => *position,
            None if self.series.len() >= self.capacity => {
                return if std::mem::replace(&mut self.full, true) {
                    Added::Dropped
                } else {
                    Added::CapacityReached
                };
            }
            None => {
                let position = self.series.len();
                self.series.push(Series {
                    name: self.name.clone(),
                    id: HostId::Undefined,
                    pending: match metric.kind() {
                        MetricKind::Counter => Pending::Counter(0),
                        MetricKind::Histogram => Pending::Histogram(Vec::new()),
                    },
                    last: matches!(metric, Metric::Requests { .. }),
                });
                self.index.insert(self.name.clone(), position);
                position
            }
        };
        let Some(series) = self.series.get_mut(position) else {
            return Added::Dropped;
        };
        if series.id == HostId::Refused {
            return Added::Dropped;
        }
        match &mut series.pending {
            Pending::Counter(total) => *total = total.saturating_add(value),
            Pending::Histogram(values) if values.len() < HISTOGRAM_PENDING_LIMIT => {
                values.push(value);
            }
            Pending::Histogram(_) => self.dropped += 1,
        }
        Added::Counted
    }

    /// Whether any series has something to flush.
    #[cfg(test)]
    pub(crate) fn is_pending(&self) -> bool {
        self.dropped > 0
            || self.series.iter().any(|series| match &series.pending {
                Pending::Counter(total) => *total > 0,
                Pending::Histogram(values) => !values.is_empty(),
            })
    }

    /// Hands every pending delta and histogram value to `sink`, defining series on first use;
    /// `certgate_requests_total` series go last.
    pub(crate) fn flush(&mut self, sink: &mut impl MetricSink) -> Flushed {
        let mut flushed = Flushed {
            dropped: std::mem::take(&mut self.dropped),
            ..Flushed::default()
        };
        for last in [false, true] {
            for series in self.series.iter_mut().filter(|series| series.last == last) {
                flush_series(series, sink, &mut flushed);
            }
        }
        flushed
    }
}

fn flush_series(series: &mut Series, sink: &mut impl MetricSink, flushed: &mut Flushed) {
    let has_pending = match &series.pending {
        Pending::Counter(total) => *total > 0,
        Pending::Histogram(values) => !values.is_empty(),
    };
    if !has_pending {
        return;
    }
    let id = match series.id {
        HostId::Defined(id) => id,
        HostId::Refused => return,
        HostId::Undefined => {
            flushed.hostcalls += 1;
            let kind = match series.pending {
                Pending::Counter(_) => MetricKind::Counter,
                Pending::Histogram(_) => MetricKind::Histogram,
            };
            match sink.define(kind, &series.name) {
                Some(id) => {
                    series.id = HostId::Defined(id);
                    id
                }
                None => {
                    series.id = HostId::Refused;
                    flushed.refused += 1;
                    series.pending = match series.pending {
                        Pending::Counter(_) => Pending::Counter(0),
                        Pending::Histogram(_) => Pending::Histogram(Vec::new()),
                    };
                    return;
                }
            }
        }
    };
    match &mut series.pending {
        Pending::Counter(total) => {
            flushed.hostcalls += 1;
            if !sink.increment(id, std::mem::take(total)) {
                flushed.refused += 1;
            }
        }
        Pending::Histogram(values) => {
            for value in values.drain(..) {
                flushed.hostcalls += 1;
                if !sink.record(id, value) {
                    flushed.refused += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::decision::{AllowReason, Verdict};

    /// A host that keeps what it was handed, in order.
    #[derive(Default)]
    struct FakeHost {
        names: Vec<String>,
        calls: Vec<(String, u64)>,
        refuse_define: Option<&'static str>,
    }

    impl MetricSink for FakeHost {
        fn define(&mut self, _kind: MetricKind, name: &str) -> Option<u32> {
            if self
                .refuse_define
                .is_some_and(|refused| name.starts_with(refused))
            {
                return None;
            }
            self.names.push(name.to_owned());
            u32::try_from(self.names.len() - 1).ok()
        }
        fn increment(&mut self, id: u32, delta: u64) -> bool {
            self.calls.push((self.names[id as usize].clone(), delta));
            true
        }
        fn record(&mut self, id: u32, value: u64) -> bool {
            self.calls.push((self.names[id as usize].clone(), value));
            true
        }
    }

    const ALLOW: Metric<'static> = Metric::Requests {
        route: Some("admin"),
        verdict: Verdict::Allow(AllowReason::AllowlistMatch { rule: 0 }),
    };

    #[test]
    fn requests_between_flushes_become_one_increment_per_series() {
        let mut counts = MetricCounts::default();
        let mut host = FakeHost::default();
        for _ in 0..3 {
            assert_eq!(counts.add(&ALLOW, 1), Added::Counted);
            counts.add(&Metric::TlsVersion("TLSv1.3"), 1);
        }
        let flushed = counts.flush(&mut host);
        assert_eq!(
            host.calls,
            [
                ("certgate_tls_version_total.version.TLSv1.3".to_owned(), 3),
                (
                    "certgate_requests_total.route.admin.decision.allow.reason.allowlist_match"
                        .to_owned(),
                    3
                ),
            ],
            "requests_total goes last"
        );
        assert_eq!(flushed.hostcalls, 4, "two definitions, two increments");
        assert!(!counts.is_pending());
        host.calls.clear();
        assert_eq!(counts.flush(&mut host).hostcalls, 0, "nothing changed");
        counts.add(&ALLOW, 1);
        assert_eq!(counts.flush(&mut host).hostcalls, 1, "defined once");
        assert_eq!(host.calls.len(), 1);
    }

    #[test]
    fn histogram_values_are_recorded_one_by_one_and_bounded() {
        let mut counts = MetricCounts::default();
        let mut host = FakeHost::default();
        counts.add(&Metric::PeerCertDaysToExpiry, 30);
        counts.add(&Metric::PeerCertDaysToExpiry, 2);
        counts.flush(&mut host);
        let values: Vec<u64> = host.calls.iter().map(|(_, value)| *value).collect();
        assert_eq!(values, [30, 2]);
        for day in 0..HISTOGRAM_PENDING_LIMIT as u64 + 5 {
            counts.add(&Metric::PeerCertDaysToExpiry, day);
        }
        let flushed = counts.flush(&mut host);
        assert_eq!(flushed.dropped, 5);
        assert_eq!(flushed.hostcalls as usize, HISTOGRAM_PENDING_LIMIT);
    }

    #[test]
    fn capacity_is_reported_once_and_series_past_it_are_not_counted() {
        let mut counts = MetricCounts::new(1);
        assert_eq!(counts.add(&ALLOW, 1), Added::Counted);
        assert_eq!(
            counts.add(&Metric::SniHostMismatch, 1),
            Added::CapacityReached
        );
        assert_eq!(counts.add(&Metric::SniHostMismatch, 1), Added::Dropped);
        assert_eq!(
            counts.add(&ALLOW, 1),
            Added::Counted,
            "known series still count"
        );
        let mut host = FakeHost::default();
        counts.flush(&mut host);
        assert_eq!(host.calls.len(), 1);
        assert_eq!(host.calls[0].1, 2);
    }

    #[test]
    fn a_series_the_host_refuses_is_dropped_and_never_defined_again() {
        let mut counts = MetricCounts::default();
        let mut host = FakeHost {
            refuse_define: Some("certgate_sni"),
            ..FakeHost::default()
        };
        counts.add(&Metric::SniHostMismatch, 1);
        counts.add(&ALLOW, 1);
        let flushed = counts.flush(&mut host);
        assert_eq!(flushed.refused, 1);
        assert_eq!(counts.add(&Metric::SniHostMismatch, 1), Added::Dropped);
        assert_eq!(counts.flush(&mut host).hostcalls, 0);
        assert_eq!(host.calls.len(), 1);
    }

    #[test]
    fn large_deltas_saturate_instead_of_wrapping() {
        let mut counts = MetricCounts::default();
        counts.add(&ALLOW, u64::MAX);
        counts.add(&ALLOW, 7);
        let mut host = FakeHost::default();
        counts.flush(&mut host);
        assert_eq!(host.calls[0].1, u64::MAX);
    }
}
