//! TLS telemetry: metric names (labels encoded in the name for the `stats_tags` shipped in
//! `envoy/`), their lazily defined and bounded ids, and the per-request access record that is also
//! set as Envoy filter state.
//!
//! Names as defined (Envoy shows them as `wasmcustom.<name>`; the tag regexes turn the segments
//! into labels):
//! - `certgate_requests_total.route.<route>.decision.<decision>.reason.<reason>`
//! - `certgate_tls_version_total.version.<version>` (the version last: it holds a dot)
//! - `certgate_identity_source_total.source.<source>`
//! - `certgate_spoofed_headers_total.header.<header>`
//! - `certgate_cert_expiring_total.route.<route>`
//! - `certgate_sni_host_mismatch_total`
//! - `certgate_peer_cert_days_to_expiry` (histogram)

use super::decision::{Reason, Verdict};
use super::hash::FxHashMap;
use super::ip::ip_text;
use super::policy::{push_json_string, IdentitySource};
use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;

/// The route label of a request no route matched (route names may not take it).
pub const NO_ROUTE: &str = "_none";

/// How many distinct metric names (label combinations) certgate defines at most.
pub const METRIC_CAPACITY: usize = 2048;

/// The compiled `telemetry` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Telemetry {
    /// A certificate this close to its end (in days) is warned about and counted.
    pub expiry_warning_days: u32,
    pub access_record: RecordLevel,
    /// The record's fields set as Envoy filter state (`wasm.certgate_<field>`), one hostcall each.
    pub filter_state: RecordFields,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            expiry_warning_days: 14,
            access_record: RecordLevel::Info,
            filter_state: RecordFields::ALL,
        }
    }
}

/// The log level of the access record, or `off`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecordLevel {
    Off,
    Debug,
    #[default]
    Info,
    Warn,
}

impl RecordLevel {
    /// The configuration names, the one source of truth for reading and writing them.
    pub const NAMES: &'static [(&'static str, Self)] = &[
        ("off", RecordLevel::Off),
        ("debug", RecordLevel::Debug),
        ("info", RecordLevel::Info),
        ("warn", RecordLevel::Warn),
    ];
}

/// The record's field names in the order the record prints them, and their filter-state keys.
macro_rules! record_fields {
    ($($name:literal),* $(,)?) => {
        /// The record's field names, in the order the record prints them.
        pub const NAMES: [&'static str; [$($name),*].len()] = [$($name),*];
        /// The filter-state key of each field (`certgate_<field>`; Envoy adds `wasm.`).
        const FILTER_STATE_KEYS: [&'static str; [$($name),*].len()] =
            [$(concat!("certgate_", $name)),*];
    };
}

/// A set of the access record's fields, by their position in [`RecordFields::NAMES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordFields(u16);

impl RecordFields {
    record_fields! {
        "route",
        "decision",
        "reason",
        "identity",
        "san_count",
        "tls_version",
        "sni",
        "days_to_expiry",
        "identity_source",
        "client_address",
        "request_id",
    }
    pub const ALL: RecordFields = RecordFields((1 << Self::NAMES.len()) - 1);
    pub const NONE: RecordFields = RecordFields(0);

    /// The set of the named fields; `Err` carries the first unknown name.
    pub fn named<'n>(names: impl IntoIterator<Item = &'n str>) -> Result<Self, &'n str> {
        names.into_iter().try_fold(Self::NONE, |set, name| {
            let position = Self::NAMES.iter().position(|known| *known == name);
            position
                .map(|index| RecordFields(set.0 | 1 << index))
                .ok_or(name)
        })
    }

    /// Whether the field at `index` of [`RecordFields::NAMES`] is in the set.
    fn has(self, index: usize) -> bool {
        index < Self::NAMES.len() && self.0 & 1 << index != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Histogram,
}

/// One metric series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric<'a> {
    Requests {
        route: Option<&'a str>,
        verdict: Verdict,
        reason: Reason,
    },
    /// A label from [`tls_version_label`].
    TlsVersion(&'static str),
    IdentitySource(Option<IdentitySource>),
    SpoofedHeader(&'a str),
    CertExpiring {
        route: Option<&'a str>,
    },
    SniHostMismatch,
    PeerCertDaysToExpiry,
}

impl Metric<'_> {
    pub fn kind(&self) -> MetricKind {
        match self {
            Metric::PeerCertDaysToExpiry => MetricKind::Histogram,
            _ => MetricKind::Counter,
        }
    }

    /// The name to define, labels included.
    pub fn name(&self) -> String {
        let mut name = String::new();
        self.write_name(&mut name);
        name
    }

    /// Appends the name to `out` (what [`MetricIds`] does per request, without allocating).
    pub fn write_name(&self, out: &mut String) {
        match self {
            Metric::Requests {
                route,
                verdict,
                reason,
            } => {
                out.push_str("certgate_requests_total.route.");
                out.push_str(&route_label(*route));
                out.push_str(".decision.");
                out.push_str(verdict.as_str());
                out.push_str(".reason.");
                out.push_str(reason.as_str());
            }
            Metric::TlsVersion(version) => {
                out.push_str("certgate_tls_version_total.version.");
                out.push_str(version);
            }
            Metric::IdentitySource(source) => {
                out.push_str("certgate_identity_source_total.source.");
                out.push_str(source.map_or("none", IdentitySource::as_str));
            }
            Metric::SpoofedHeader(header) => {
                out.push_str("certgate_spoofed_headers_total.header.");
                out.push_str(&label_value(header));
            }
            Metric::CertExpiring { route } => {
                out.push_str("certgate_cert_expiring_total.route.");
                out.push_str(&route_label(*route));
            }
            Metric::SniHostMismatch => out.push_str("certgate_sni_host_mismatch_total"),
            Metric::PeerCertDaysToExpiry => out.push_str("certgate_peer_cert_days_to_expiry"),
        }
    }
}

fn route_label(route: Option<&str>) -> Cow<'_, str> {
    route.map_or(Cow::Borrowed(NO_ROUTE), label_value)
}

/// A label value that cannot break the name apart: anything but `[A-Za-z0-9_-]` becomes `_`.
/// Route names and header names are validated to that alphabet already; this is the last guard.
pub fn label_value(text: &str) -> Cow<'_, str> {
    let safe = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if !text.is_empty() && text.chars().all(safe) {
        return Cow::Borrowed(text);
    }
    let cleaned: String = text
        .chars()
        .map(|c| if safe(c) { c } else { '_' })
        .collect();
    Cow::Owned(if cleaned.is_empty() {
        "_".to_owned()
    } else {
        cleaned
    })
}

/// The `version` label: Envoy's `connection.tls_version` for the versions there are, `none` on a
/// plaintext connection, `other` for anything unexpected (so the label set stays bounded).
pub fn tls_version_label(version: Option<&str>) -> &'static str {
    match version {
        None | Some("") => "none",
        Some("TLSv1.3") => "TLSv1.3",
        Some("TLSv1.2") => "TLSv1.2",
        Some("TLSv1.1") => "TLSv1.1",
        Some("TLSv1") => "TLSv1",
        Some(_) => "other",
    }
}

/// Whole days from `now` to a certificate's `not_after` (both Unix seconds), rounded down: negative
/// once expired.
pub fn days_to_expiry(not_after: i64, now: i64) -> i64 {
    not_after.saturating_sub(now).div_euclid(86_400)
}

/// What [`MetricIds::id`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricId {
    Id(u32),
    /// The host refused to define it, or the capacity was reached earlier.
    Unavailable,
    /// The capacity is reached now: reported once so the caller can warn once.
    CapacityReached,
}

/// Metric ids by name, each defined on first use, at most [`METRIC_CAPACITY`] of them. Names are
/// built from the configuration and fixed label values, never from what a client sends, so the
/// faster non-keyed hash is safe here.
#[derive(Debug)]
pub struct MetricIds {
    ids: FxHashMap<String, u32>,
    capacity: usize,
    full: bool,
    /// The name being looked up: reused, so a known metric costs no allocation.
    name: String,
}

impl MetricIds {
    pub fn new(capacity: usize) -> Self {
        MetricIds {
            ids: FxHashMap::default(),
            capacity,
            full: false,
            name: String::new(),
        }
    }

    /// The metric's id, defining it through `define` (the hostcall) the first time.
    pub fn id(
        &mut self,
        metric: &Metric<'_>,
        define: impl FnOnce(MetricKind, &str) -> Option<u32>,
    ) -> MetricId {
        self.name.clear();
        metric.write_name(&mut self.name);
        if let Some(id) = self.ids.get(self.name.as_str()) {
            return MetricId::Id(*id);
        }
        if self.ids.len() >= self.capacity {
            return if std::mem::replace(&mut self.full, true) {
                MetricId::Unavailable
            } else {
                MetricId::CapacityReached
            };
        }
        match define(metric.kind(), &self.name) {
            Some(id) => {
                self.ids.insert(self.name.clone(), id);
                MetricId::Id(id)
            }
            None => MetricId::Unavailable,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The last keys seen, in a fixed ring: what makes a warning once per connection or certificate
/// without a hash map (a warning repeats only after `capacity` newer keys).
#[derive(Debug)]
pub struct Recent {
    keys: Vec<u64>,
    next: usize,
    capacity: usize,
}

impl Recent {
    pub fn new(capacity: usize) -> Self {
        Recent {
            keys: Vec::new(),
            next: 0,
            capacity: capacity.max(1),
        }
    }

    /// Whether `key` is not among the recent keys (it is from now on).
    pub fn first_time(&mut self, key: u64) -> bool {
        if self.keys.contains(&key) {
            return false;
        }
        if self.keys.len() < self.capacity {
            self.keys.push(key);
        } else if let Some(slot) = self.keys.get_mut(self.next) {
            *slot = key;
        }
        self.next = (self.next + 1) % self.capacity;
        true
    }
}

/// What certgate records about one request: the access record and the filter state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record<'a> {
    pub route: Option<&'a str>,
    pub decision: Option<Verdict>,
    pub reason: Option<Reason>,
    /// First URI SAN, else first DNS SAN, else subject CN.
    pub identity: Option<&'a str>,
    pub san_count: Option<usize>,
    pub tls_version: Option<&'a str>,
    pub sni: Option<&'a str>,
    pub days_to_expiry: Option<i64>,
    pub identity_source: Option<IdentitySource>,
    pub client_address: Option<IpAddr>,
    pub request_id: Option<&'a str>,
}

/// A field value of the record: text (JSON string) or a number.
enum Value<'a> {
    Text(Cow<'a, str>),
    Number(i64),
}

impl<'a> Record<'a> {
    /// The fields' values, named by [`RecordFields::NAMES`] in the same order.
    fn fields(&self) -> impl Iterator<Item = (&'static str, Option<Value<'a>>)> {
        let text = |value: Option<&'a str>| value.map(|v| Value::Text(Cow::Borrowed(v)));
        let values = [
            text(self.route),
            text(self.decision.map(Verdict::as_str)),
            text(self.reason.map(Reason::as_str)),
            text(self.identity),
            self.san_count
                .map(|n| Value::Number(i64::try_from(n).unwrap_or(i64::MAX))),
            text(self.tls_version),
            text(self.sni),
            self.days_to_expiry.map(Value::Number),
            text(self.identity_source.map(IdentitySource::as_str)),
            self.client_address
                .map(|ip| Value::Text(Cow::Owned(ip_text(ip)))),
            text(self.request_id),
        ];
        RecordFields::NAMES.into_iter().zip(values)
    }

    /// One JSON object on one line; absent fields are `null`.
    pub fn json(&self) -> String {
        let mut out = String::with_capacity(384);
        out.push('{');
        for (index, (key, value)) in self.fields().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push('"');
            out.push_str(key);
            out.push_str("\":");
            match value {
                None => out.push_str("null"),
                Some(Value::Text(text)) => push_json_string(&mut out, &text),
                Some(Value::Number(number)) => {
                    let _ = write!(out, "{number}");
                }
            }
        }
        out.push('}');
        out
    }

    /// The present fields of `selected` as filter state: (`certgate_<field>`, plain value). Envoy
    /// stores each as `wasm.certgate_<field>`.
    pub fn filter_state(
        &self,
        selected: RecordFields,
    ) -> impl Iterator<Item = (&'static str, Cow<'a, str>)> {
        RecordFields::FILTER_STATE_KEYS
            .into_iter()
            .zip(self.fields())
            .enumerate()
            .filter(move |(index, _)| selected.has(*index))
            .filter_map(|(_, (key, (_, value)))| {
                let value = match value? {
                    Value::Text(text) => text,
                    Value::Number(number) => Cow::Owned(number.to_string()),
                };
                Some((key, value))
            })
    }
}
