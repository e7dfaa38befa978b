//! Every metric name and label value, the bounded metric ids, expiry days, and the configuration of
//! forwarding, telemetry and header identity sources (accepted forms and every rejection).

// Helpers outside `#[test]` functions build fixtures and fail loudly on fixture bugs.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use certgate::config;
use certgate::decide::access::SniHostMismatch;
use certgate::decide::decision::{AllowReason, DenyReason, Reason, Verdict};
use certgate::identity::sources::IdentitySource;
use certgate::identity::xfcc::{XfccDetail, XfccMode};
use certgate::record::access::{RecordFields, RecordLevel};
use certgate::record::series::{
    days_to_expiry, label_value, tls_version_label, Metric, MetricKind,
};
use certgate::record::warnings::WarnOnce;
use certgate::rewrite::forwarded::ForwardedMode;
use certgate::rewrite::forwarding::{IdentityField, IdentityHeader, Xff};

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

fn errors(json: &str) -> Vec<String> {
    match config::compile(json.as_bytes()) {
        Ok(_) => vec![],
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn forwarding_telemetry_and_header_sources_configure() {
    let policy = config::compile(
        br#"{
          "trusted_proxies": {"cidrs": ["10.0.0.0/8"]},
          "identity_sources": ["xfcc", "alb", "connection"],
          "sni_host_mismatch": "deny",
          "forwarding": {
            "xff": {"trusted_hops": 2},
            "x_forwarded_proto": true,
            "forwarded": "set",
            "xfcc": {"mode": "append_forward"},
            "identity_headers": {"X-Client-DNS": "dns", "x-client-cn": "subject_cn"}
          },
          "telemetry": {"expiry_warning_days": 7, "access_record": "off", "filter_state": false}
        }"#,
    )
    .unwrap();
    let forwarding = &policy.forwarding;
    assert_eq!(
        forwarding.xff,
        Some(Xff {
            append: true,
            trusted_hops: 2
        })
    );
    assert_eq!(forwarding.forwarded, ForwardedMode::Set);
    let xfcc = forwarding.xfcc.as_ref().unwrap();
    assert_eq!(xfcc.mode, XfccMode::AppendForward);
    assert_eq!(
        xfcc.details,
        [
            XfccDetail::Hash,
            XfccDetail::Subject,
            XfccDetail::Uri,
            XfccDetail::Dns
        ]
    );
    assert_eq!(
        forwarding.identity_headers,
        [
            IdentityHeader {
                name: "x-client-dns".into(),
                field: IdentityField::Dns
            },
            IdentityHeader {
                name: "x-client-cn".into(),
                field: IdentityField::SubjectCn
            },
        ]
    );
    assert!(!forwarding.client_cert && !forwarding.x_forwarded_host);
    assert_eq!(policy.sni_host_mismatch, SniHostMismatch::Deny);
    assert_eq!(policy.telemetry.expiry_warning_days, 7);
    assert_eq!(policy.telemetry.access_record, RecordLevel::Off);
    assert!(policy.telemetry.filter_state.is_empty());

    let defaults = config::compile(b"{}").unwrap();
    assert_eq!(defaults.forwarding, Default::default());
    assert_eq!(defaults.telemetry.expiry_warning_days, 14);
    assert_eq!(
        defaults.telemetry.access_record,
        RecordLevel::Off,
        "the access log carries the record through filter state"
    );
    assert_eq!(defaults.telemetry.metrics_flush_ms, 1000);
    assert_eq!(defaults.sni_host_mismatch, SniHostMismatch::Log);
    assert_eq!(defaults.telemetry.filter_state, RecordFields::ALL);

    let flushed = config::compile(br#"{"telemetry": {"metrics_flush_ms": 100}}"#).unwrap();
    assert_eq!(flushed.telemetry.metrics_flush_ms, 100);
    for (too_far, shown) in [("99", "99"), ("60001", "60001"), ("0", "0")] {
        let json = format!(r#"{{"telemetry": {{"metrics_flush_ms": {too_far}}}}}"#);
        assert_eq!(
            errors(&json),
            [format!(
                "telemetry.metrics_flush_ms: {shown} is outside 100..=60000 milliseconds"
            )]
        );
    }

    let listed =
        config::compile(br#"{"telemetry": {"filter_state": ["route", "decision"]}}"#).unwrap();
    assert_eq!(
        listed.telemetry.filter_state,
        RecordFields::named(["decision", "route"]).unwrap()
    );
    assert_ne!(listed.telemetry.filter_state, RecordFields::ALL);
}

#[test]
fn forwarding_telemetry_and_header_sources_reject_with_paths() {
    for (json, expected) in [
        (
            r#"{"identity_sources": ["xfcc"]}"#,
            r#"identity_sources[0]: "xfcc" reads request headers"#,
        ),
        (
            r#"{"identity_sources": ["connection", "alb"]}"#,
            r#"identity_sources[1]: "alb" reads request headers"#,
        ),
        (
            r#"{"forwarding": {"xff": {"trusted_hops": 1}}}"#,
            "forwarding.xff.trusted_hops: 1 hops are believed only from a trusted peer",
        ),
        (
            r#"{"trusted_proxies": {"cidrs": ["10.0.0.0/8"]}, "forwarding": {"xff": {"trusted_hops": 33}}}"#,
            "forwarding.xff.trusted_hops: 33 is more hops",
        ),
        (
            r#"{"forwarding": {"xff": {"apend": true}}}"#,
            "forwarding.xff.apend: unknown field `apend`",
        ),
        (
            r#"{"forwarding": {"xff": [true]}}"#,
            "forwarding.xff: invalid type: sequence, expected a JSON object",
        ),
        (
            r#"{"forwarding": {"forwarded": "prepend"}}"#,
            "forwarding.forwarded: unknown variant `prepend`",
        ),
        (
            r#"{"forwarding": {"xfcc": {}}}"#,
            "forwarding.xfcc.mode: is missing",
        ),
        (
            r#"{"forwarding": {"xfcc": {"mode": "sanitize_set", "details": []}}}"#,
            "forwarding.xfcc.details: is empty",
        ),
        (
            r#"{"forwarding": {"xfcc": {"mode": "sanitize_set", "details": ["uri", "uri"]}}}"#,
            "forwarding.xfcc.details[1]: is listed twice",
        ),
        (
            r#"{"forwarding": {"xfcc": {"mode": "append", "details": ["uri"]}}}"#,
            "forwarding.xfcc.mode: unknown variant `append`",
        ),
        (
            r#"{"forwarding": {"xfcc": {"mode": "sanitize", "details": ["serial"]}}}"#,
            "forwarding.xfcc.details[0]: unknown variant `serial`",
        ),
        (
            r#"{"forwarding": {"identity_headers": {"x-client": "issuer"}}}"#,
            "forwarding.identity_headers.x-client: unknown variant `issuer`",
        ),
        (
            r#"{"forwarding": {"identity_headers": {"x_client": "uri"}}}"#,
            r#"forwarding.identity_headers.x_client: "x_client" may only use letters, digits and '-'"#,
        ),
        (
            r#"{"forwarding": {"identity_headers": {"": "uri"}}}"#,
            "must be 1 to 64 characters long",
        ),
        (
            r#"{"forwarding": {"identity_headers": {"X-Forwarded-Client-Cert": "uri"}}}"#,
            "is a forwarding header certgate owns",
        ),
        (
            r#"{"forwarding": {"identity_headers": {"x-amzn-mtls-clientcert-leaf": "uri"}}}"#,
            "is a forwarding header certgate owns",
        ),
        (
            r#"{"forwarding": {"identity_headers": {"host": "uri"}}}"#,
            "is a header the protocol or Envoy owns",
        ),
        (
            r#"{"forwarding": {"identity_headers": {"x-envoy-peer": "uri"}}}"#,
            "is a header the protocol or Envoy owns",
        ),
        (
            r#"{"forwarding": {"identity_headers": {"x-a": "uri", "X-A": "dns"}}}"#,
            "is listed twice",
        ),
        (
            r#"{"forwarding": {"identity_headers": ["x-a"]}}"#,
            "forwarding.identity_headers: invalid type: sequence, expected a JSON object",
        ),
        (
            r#"{"forwarding": {"client_cert": "yes"}}"#,
            "forwarding.client_cert: invalid type: string",
        ),
        (
            r#"{"telemetry": {"access_record": "trace"}}"#,
            "telemetry.access_record: unknown variant `trace`",
        ),
        (
            r#"{"telemetry": {"expiry_warning_days": 5000}}"#,
            "telemetry.expiry_warning_days: 5000 is more than ten years",
        ),
        (
            r#"{"telemetry": {"expiry_warning_days": -1}}"#,
            "telemetry.expiry_warning_days: invalid value",
        ),
        (
            r#"{"sni_host_mismatch": "block"}"#,
            "sni_host_mismatch: unknown variant `block`, expected `log` or `deny`",
        ),
        (
            r#"{"routes": [{"name": "_none"}]}"#,
            r#"routes[0].name: "_none" is reserved"#,
        ),
    ] {
        let errors = errors(json);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "expected {expected:?} for {json} among {errors:#?}"
        );
    }
}
