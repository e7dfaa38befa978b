//! Metric series: their names, labels encoded in the name for the `stats_tags` shipped in
//! `envoy/` (Envoy shows them as `wasmcustom.<name>`; the tag regexes turn the segments into labels):
//! - `certgate_requests_total.route.<route>.decision.<decision>.reason.<reason>`
//! - `certgate_tls_version_total.version.<version>` (the version last: it holds a dot)
//! - `certgate_identity_source_total.source.<source>`
//! - `certgate_spoofed_headers_total.header.<header>`
//! - `certgate_cert_expiring_total.route.<route>`
//! - `certgate_sni_host_mismatch_total`
//! - `certgate_peer_cert_days_to_expiry` (histogram)
//!
//! Every label value comes from a bounded set (route names, reasons, header names, versions), so
//! the number of series stays bounded too.

use crate::decide::decision::Verdict;
use crate::identity::sources::IdentitySource;
use std::borrow::Cow;

/// The route label of a request no route matched (route names may not take it).
pub(crate) const NO_ROUTE: &str = "_none";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricKind {
    Counter,
    Histogram,
}

/// One metric series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric<'a> {
    Requests {
        route: Option<&'a str>,
        verdict: Verdict,
    },
    /// A label from `tls_version_label`.
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
    pub(crate) fn kind(&self) -> MetricKind {
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

    /// Appends the name to `out` (what [`crate::record::metrics::MetricCounts`] does per request, without allocating).
    pub(crate) fn write_name(&self, out: &mut String) {
        match self {
            Metric::Requests { route, verdict } => {
                out.push_str("certgate_requests_total.route.");
                out.push_str(&route_label(*route));
                out.push_str(".decision.");
                out.push_str(verdict.as_str());
                out.push_str(".reason.");
                out.push_str(verdict.reason().as_str());
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
pub(crate) fn label_value(text: &str) -> Cow<'_, str> {
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
pub(crate) fn tls_version_label(version: Option<&str>) -> &'static str {
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
pub(crate) fn days_to_expiry(not_after: i64, now: i64) -> i64 {
    not_after.saturating_sub(now).div_euclid(86_400)
}
