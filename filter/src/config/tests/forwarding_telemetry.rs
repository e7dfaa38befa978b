//! The configuration of forwarding, telemetry and header identity sources: the accepted forms and
//! every rejection with its field path.

use crate::config;
use crate::decide::access::SniHostMismatch;
use crate::identity::xfcc::{XfccDetail, XfccMode};
use crate::record::access::{RecordFields, RecordLevel};
use crate::rewrite::forwarded::ForwardedMode;
use crate::rewrite::forwarding::{IdentityField, IdentityHeader, Xff};

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
