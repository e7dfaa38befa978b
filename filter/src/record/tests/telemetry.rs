//! Every metric name and label value, the bounded metric ids, expiry days and warn-once memory.

use crate::decide::decision::{AllowReason, DenyReason, Reason, Verdict};
use crate::identity::sources::IdentitySource;
use crate::record::series::{days_to_expiry, label_value, tls_version_label, Metric, MetricKind};
use crate::record::warnings::WarnOnce;

#[test]
fn every_metric_name() {
    let mut rows: Vec<(Metric<'_>, &str)> = vec![
        (
            Metric::Requests {
                route: Some("admin"),
                verdict: Verdict::AuditDeny(DenyReason::NotInAllowlist),
            },
            "certgate_requests_total.route.admin.decision.audit_deny.reason.not_in_allowlist",
        ),
        (
            Metric::Requests {
                route: None,
                verdict: Verdict::Deny(DenyReason::NoRoute),
            },
            "certgate_requests_total.route._none.decision.deny.reason.no_route",
        ),
        (
            Metric::TlsVersion("TLSv1.3"),
            "certgate_tls_version_total.version.TLSv1.3",
        ),
        (
            Metric::IdentitySource(Some(IdentitySource::Xfcc)),
            "certgate_identity_source_total.source.xfcc",
        ),
        (
            Metric::IdentitySource(None),
            "certgate_identity_source_total.source.none",
        ),
        (
            Metric::SpoofedHeader("x-forwarded-client-cert"),
            "certgate_spoofed_headers_total.header.x-forwarded-client-cert",
        ),
        (
            Metric::SpoofedHeader("x.evil header"),
            "certgate_spoofed_headers_total.header.x_evil_header",
        ),
        (
            Metric::CertExpiring { route: Some("api") },
            "certgate_cert_expiring_total.route.api",
        ),
        (
            Metric::CertExpiring { route: None },
            "certgate_cert_expiring_total.route._none",
        ),
        (Metric::SniHostMismatch, "certgate_sni_host_mismatch_total"),
        (
            Metric::PeerCertDaysToExpiry,
            "certgate_peer_cert_days_to_expiry",
        ),
    ];
    for source in [
        IdentitySource::Connection,
        IdentitySource::Xfcc,
        IdentitySource::Alb,
    ] {
        rows.push((Metric::IdentitySource(Some(source)), ""));
    }
    for (metric, expected) in &rows {
        let name = metric.name();
        if !expected.is_empty() {
            assert_eq!(&name, expected);
        }
        // the stats_tags regexes split on dots: only the version label may hold one
        let segments = name.split('.').count();
        let expected_segments = match metric {
            Metric::Requests { .. } => 7,
            Metric::TlsVersion(_) => 4,
            Metric::SniHostMismatch | Metric::PeerCertDaysToExpiry => 1,
            _ => 3,
        };
        assert_eq!(segments, expected_segments, "{name}");
    }
    assert_eq!(Metric::PeerCertDaysToExpiry.kind(), MetricKind::Histogram);
    assert_eq!(Metric::SniHostMismatch.kind(), MetricKind::Counter);
    // every reason and decision is a valid label
    let allow = [
        AllowReason::AllowlistMatch { rule: 0 },
        AllowReason::ValidatedCert,
        AllowReason::ClientCertOptional,
        AllowReason::NoRoute,
    ];
    let deny = [
        DenyReason::NoRoute,
        DenyReason::NoClientCert,
        DenyReason::CertNotValidated,
        DenyReason::CertUnreadable,
        DenyReason::DeniedByRule { rule: 0 },
        DenyReason::NotInAllowlist,
        DenyReason::SniHostMismatch,
        DenyReason::CertExpired,
        DenyReason::CertNotYetValid,
    ];
    let verdicts: Vec<Verdict> = allow
        .into_iter()
        .map(Verdict::Allow)
        .chain(deny.into_iter().map(Verdict::Deny))
        .chain(deny.into_iter().map(Verdict::AuditDeny))
        .collect();
    let reasons: std::collections::HashSet<Reason> =
        verdicts.iter().map(|verdict| verdict.reason()).collect();
    assert_eq!(reasons.len(), Reason::ALL.len(), "every reason is given");
    for verdict in verdicts {
        let reason = verdict.reason();
        {
            let name = Metric::Requests {
                route: Some("r"),
                verdict,
            }
            .name();
            assert!(name.ends_with(&format!(".reason.{reason}")));
            assert!(reason
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }
}

#[test]
fn label_values() {
    for (raw, label) in [
        ("admin", "admin"),
        ("a-b_c9", "a-b_c9"),
        ("a.b", "a_b"),
        ("", "_"),
        ("é", "_"),
    ] {
        assert_eq!(label_value(raw), label);
    }
    for (version, label) in [
        (Some("TLSv1.3"), "TLSv1.3"),
        (Some("TLSv1.2"), "TLSv1.2"),
        (Some("TLSv1.1"), "TLSv1.1"),
        (Some("TLSv1"), "TLSv1"),
        (Some("SSLv3"), "other"),
        (Some("TLSv1.3.evil"), "other"),
        (Some(""), "none"),
        (None, "none"),
    ] {
        assert_eq!(tls_version_label(version), label);
    }
}

#[test]
fn days_to_expiry_rounds_down() {
    let day = 86_400;
    for (not_after, now, days) in [
        (10 * day, 0, 10),
        (10 * day - 1, 0, 9),
        (0, 0, 0),
        (0, 1, -1),
        (0, day, -1),
        (0, day + 1, -2),
        (i64::MAX, i64::MIN, i64::MAX / day),
    ] {
        assert_eq!(days_to_expiry(not_after, now), days, "{not_after} {now}");
    }
}

#[test]
fn warnings_repeat_only_after_capacity_newer_keys() {
    let mut recent = WarnOnce::new(3);
    assert!(recent.first_time(1));
    assert!(!recent.first_time(1));
    assert!(recent.first_time(2));
    assert!(recent.first_time(3));
    assert!(!recent.first_time(2));
    // a fourth key pushes out the oldest
    assert!(recent.first_time(4));
    assert!(recent.first_time(1));
    assert!(!recent.first_time(3) && !recent.first_time(4));
}
