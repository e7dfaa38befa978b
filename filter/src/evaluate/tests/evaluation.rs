//! A request from facts to outcome, natively: which peer is trusted, where the identity comes from,
//! what is spoofed, the decision, the headers the upstream sees, the metrics and the access record.

use crate::config;
use crate::decide::decision::Reason;
use crate::decide::route::RequestFacts;
use crate::encoding::percent;
use crate::evaluate::{evaluate, ConnectionFacts, Evaluation};
use crate::facts::address::PeerAddress;
use crate::identity::peer::Peer;
use crate::identity::sources::IdentitySource;
use crate::identity::PeerIdentity;
use crate::policy::Policy;
use crate::record::access::RecordFields;
use crate::record::series::Metric;
use crate::rewrite::forwarding::RenderedIdentity;
use crate::rewrite::RewriteCalls;
use crate::test_support;
use crate::test_support::San::{Dns, Email, Ip, Uri};
use prost_types::value::Kind;
use rcgen::{date_time_ymd, CertificateParams, DnType, KeyPair, SanType};

/// 2026-01-01T00:00:00Z
const NOW: i64 = 1_767_225_600;

fn policy(json: &str) -> Policy {
    config::compile(json.as_bytes()).unwrap_or_else(|errors| panic!("{errors:?}"))
}

const REQUEST: RequestFacts<'static> = RequestFacts {
    route_name: None,
    path: "/api/x",
    authority: "api.example.com",
    method: "GET",
};

fn connection<'a>(
    certificate: Peer<&'a PeerIdentity>,
    source_address: &'a str,
) -> ConnectionFacts<'a> {
    ConnectionFacts {
        certificate,
        mtls: !matches!(certificate, Peer::NoCertificate),
        tls_version: Some("TLSv1.3"),
        sni: Some("api.example.com"),
        source_address: Some(source_address),
        local_address: Some("10.9.9.9:8443"),
        rendered: None,
    }
}

type Headers = Vec<(&'static [u8], &'static [u8])>;

fn headers(pairs: &[(&'static str, &'static str)]) -> Headers {
    pairs
        .iter()
        .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
        .collect()
}

/// The headers the upstream sees.
fn upstream(evaluation: &Evaluation<'_>, incoming: &Headers) -> Vec<(String, String)> {
    let map = match evaluation.rewrite.headers.calls(incoming) {
        RewriteCalls::Nothing => incoming.clone(),
        RewriteCalls::WholeMap(map) => map,
        RewriteCalls::Edit(_) => evaluation.rewrite.headers.apply(incoming),
    };
    map.iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Vec<&'h str> {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// A certificate with a chosen validity period, PEM.
fn cert_valid(sans: &[&str], from: (i32, u8, u8), to: (i32, u8, u8)) -> String {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "dated");
    params.subject_alt_names = sans
        .iter()
        .map(|uri| SanType::URI((*uri).try_into().unwrap()))
        .collect();
    params.not_before = date_time_ymd(from.0, from.1, from.2);
    params.not_after = date_time_ymd(to.0, to.1, to.2);
    params
        .self_signed(&KeyPair::generate().unwrap())
        .unwrap()
        .pem()
}

const FORWARDING: &str = r#"{
  "routes": [{"name": "api", "match": {"path_prefix": "/api"}, "allow": [{"trust_domain": "mesh.local"}]}],
  "trusted_proxies": {"cidrs": ["10.0.0.0/8"], "identities": [{"uri": "spiffe://mesh.local/ns/edge/sa/gateway"}]},
  "identity_sources": ["xfcc", "alb", "connection"],
  "forwarding": {
    "xff": {"append": true, "trusted_hops": 1},
    "x_forwarded_proto": true,
    "x_forwarded_host": true,
    "forwarded": "append",
    "xfcc": {"mode": "sanitize_set", "details": ["hash", "uri"]},
    "client_cert": true,
    "identity_headers": {"X-Client-Spiffe-Id": "uri", "x-client-route": "route", "x-client-decision": "decision"}
  }
}"#;

#[test]
fn an_untrusted_peer_gets_every_owned_header_replaced_and_counted() {
    let policy = policy(FORWARDING);
    let client = test_support::identity(
        &[
            Uri("spiffe://mesh.local/ns/web/sa/ui"),
            Ip("10.3.3.3"),
            Email("ui@mesh.local"),
        ],
        None,
    );
    let incoming = headers(&[
        (":authority", "api.example.com"),
        ("x-forwarded-for", "10.0.0.1"),
        ("X-Forwarded-For", "10.0.0.2"),
        ("x-forwarded-proto", "http"),
        ("forwarded", "for=10.0.0.1"),
        (
            "x-forwarded-client-cert",
            "URI=spiffe://mesh.local/ns/ops/sa/admin",
        ),
        ("x-amzn-mtls-clientcert-leaf", "forged"),
        ("client-cert", ":AAAA:"),
        ("X-CLIENT-SPIFFE-ID", "spiffe://mesh.local/ns/ops/sa/admin"),
        ("x_client_spiffe_id", "spiffe://mesh.local/ns/ops/sa/admin"),
        ("accept", "*/*"),
    ]);
    let facts = connection(Peer::Identified(&client), "192.0.2.7:51000");
    let evaluation = evaluate(&policy, &REQUEST, &incoming, &facts, NOW);
    assert!(!evaluation.peer_trusted);
    // the forged XFCC and ALB headers are never an identity: the connection's certificate is
    assert_eq!(evaluation.source, Some(IdentitySource::Connection));
    assert_eq!(
        (
            evaluation.decision.verdict.as_str(),
            evaluation.decision.reason()
        ),
        ("allow", Reason::AllowlistMatch)
    );
    let mut spoofed = evaluation.rewrite.spoofed.clone();
    spoofed.sort();
    assert_eq!(
        spoofed,
        [
            "client-cert",
            "x-amzn-mtls-clientcert-leaf",
            "x-client-spiffe-id",
            "x-client-spiffe-id",
            "x-forwarded-client-cert",
            "x-forwarded-proto",
        ]
    );
    let seen = upstream(&evaluation, &incoming);
    // appended to, as Envoy does, never believed: the client address is the peer
    assert_eq!(
        header(&seen, "x-forwarded-for"),
        ["10.0.0.1, 10.0.0.2, 192.0.2.7"]
    );
    assert_eq!(header(&seen, "x-forwarded-proto"), ["https"]);
    assert_eq!(header(&seen, "x-forwarded-host"), ["api.example.com"]);
    assert_eq!(header(&seen, "x-forwarded-port"), ["443"]);
    assert_eq!(
        header(&seen, "forwarded"),
        [r#"for=10.0.0.1, for=192.0.2.7;by="10.9.9.9:8443";proto=https;host=api.example.com"#]
    );
    assert_eq!(
        header(&seen, "x-forwarded-client-cert"),
        [format!(
            "Hash={};URI=spiffe://mesh.local/ns/web/sa/ui",
            client.sha256
        )
        .as_str()]
    );
    assert_eq!(
        header(&seen, "x-amzn-mtls-clientcert-leaf"),
        Vec::<&str>::new()
    );
    assert_eq!(header(&seen, "x_client_spiffe_id"), Vec::<&str>::new());
    assert_eq!(
        header(&seen, "x-client-spiffe-id"),
        ["spiffe://mesh.local/ns/web/sa/ui"]
    );
    assert_eq!(header(&seen, "x-client-route"), ["api"]);
    assert_eq!(header(&seen, "x-client-decision"), ["allow"]);
    let client_cert = header(&seen, "client-cert");
    assert!(client_cert[0].starts_with(":MII") && client_cert[0].ends_with(':'));
    assert_eq!(header(&seen, "accept"), ["*/*"]);
    assert_eq!(
        evaluation.client_address,
        Some("192.0.2.7".parse().unwrap())
    );
}

#[test]
fn a_trusted_gateway_vouches_for_the_client_through_xfcc() {
    let policy = policy(FORWARDING);
    let gateway = test_support::identity(&[Uri("spiffe://mesh.local/ns/edge/sa/gateway")], None);
    let incoming = headers(&[
        (":authority", "api.example.com:8443"),
        ("x-forwarded-for", "198.51.100.1, 203.0.113.9"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "for=198.51.100.1"),
        (
            "x-forwarded-client-cert",
            "URI=spiffe://elsewhere/x,Hash=cc;URI=spiffe://mesh.local/ns/web/sa/ui",
        ),
    ]);
    // trusted by its certificate, though its address is outside the CIDRs
    let facts = connection(Peer::Identified(&gateway), "192.0.2.50:40000");
    let request = RequestFacts {
        authority: "api.example.com:8443",
        ..REQUEST
    };
    let evaluation = evaluate(&policy, &request, &incoming, &facts, NOW);
    assert!(evaluation.peer_trusted);
    assert_eq!(evaluation.source, Some(IdentitySource::Xfcc));
    assert_eq!(
        evaluation.peer.identity().unwrap().uris,
        ["spiffe://mesh.local/ns/web/sa/ui"]
    );
    assert_eq!(evaluation.decision.reason(), Reason::AllowlistMatch);
    assert!(evaluation.rewrite.spoofed.is_empty());
    // one trusted hop: the entry the gateway appended is the client
    assert_eq!(
        evaluation.client_address,
        Some("203.0.113.9".parse().unwrap())
    );
    let seen = upstream(&evaluation, &incoming);
    assert_eq!(
        header(&seen, "x-forwarded-for"),
        ["198.51.100.1, 203.0.113.9, 192.0.2.50"]
    );
    assert_eq!(header(&seen, "x-forwarded-proto"), ["https"]);
    assert_eq!(
        header(&seen, "forwarded"),
        [
            r#"for=198.51.100.1, for=192.0.2.50;by="10.9.9.9:8443";proto=https;host="api.example.com:8443""#
        ]
    );
    assert_eq!(header(&seen, "x-forwarded-port"), ["8443"]);
    // sanitize_set: the element describes this connection's certificate (the gateway's)
    assert_eq!(
        header(&seen, "x-forwarded-client-cert"),
        [format!(
            "Hash={};URI=spiffe://mesh.local/ns/edge/sa/gateway",
            gateway.sha256
        )
        .as_str()]
    );
    // identity headers carry the identity decided on: the client's
    assert_eq!(
        header(&seen, "x-client-spiffe-id"),
        ["spiffe://mesh.local/ns/web/sa/ui"]
    );
    // no certificate in the element: no Client-Cert
    assert!(header(&seen, "client-cert").is_empty());
}

/// The glue renders a connection's header values once and hands them in: they are what the
/// upstream sees for the connection's certificate, and never for an identity a header vouched for.
/// (A rendering of another certificate makes the source of each value visible.)
#[test]
fn header_values_rendered_for_the_connection_serve_only_its_certificate() {
    let policy = policy(FORWARDING);
    let marker = test_support::identity(&[Uri("spiffe://mesh.local/ns/marker/sa/m")], None);
    let rendered = RenderedIdentity::new(&policy.forwarding, &marker);
    let marked_xfcc = format!(
        "Hash={};URI=spiffe://mesh.local/ns/marker/sa/m",
        marker.sha256
    );

    // The identity is the connection's own: XFCC and identity headers come from the rendering.
    let client = test_support::identity(&[Uri("spiffe://mesh.local/ns/web/sa/ui")], None);
    let incoming = headers(&[(":authority", "api.example.com")]);
    let facts = ConnectionFacts {
        rendered: Some(&rendered),
        ..connection(Peer::Identified(&client), "203.0.113.9:41000")
    };
    let evaluation = evaluate(&policy, &REQUEST, &incoming, &facts, NOW);
    let seen = upstream(&evaluation, &incoming);
    assert_eq!(
        header(&seen, "x-forwarded-client-cert"),
        [marked_xfcc.as_str()]
    );
    assert_eq!(
        header(&seen, "x-client-spiffe-id"),
        ["spiffe://mesh.local/ns/marker/sa/m"]
    );

    // A trusted gateway vouches for the client in XFCC: XFCC still describes the connection (the
    // rendering), the identity headers the client it vouched for (rendered per request).
    let gateway = test_support::identity(&[Uri("spiffe://mesh.local/ns/edge/sa/gateway")], None);
    let incoming = headers(&[
        (":authority", "api.example.com"),
        (
            "x-forwarded-client-cert",
            "URI=spiffe://mesh.local/ns/web/sa/ui",
        ),
    ]);
    let facts = ConnectionFacts {
        rendered: Some(&rendered),
        ..connection(Peer::Identified(&gateway), "10.0.0.5:40000")
    };
    let evaluation = evaluate(&policy, &REQUEST, &incoming, &facts, NOW);
    assert_eq!(evaluation.source, Some(IdentitySource::Xfcc));
    let seen = upstream(&evaluation, &incoming);
    assert_eq!(
        header(&seen, "x-forwarded-client-cert"),
        [marked_xfcc.as_str()]
    );
    assert_eq!(
        header(&seen, "x-client-spiffe-id"),
        ["spiffe://mesh.local/ns/web/sa/ui"]
    );
}

#[test]
fn trust_is_by_socket_address_never_by_a_header_derived_one() {
    let policy = policy(
        r#"{"routes": [{"name": "r", "require_client_cert": false}],
            "trusted_proxies": {"cidrs": ["10.0.0.0/8", "2001:db8::/32"]}, "identity_sources": ["alb", "connection"]}"#,
    );
    let leaf =
        percent::encode(test_support::cert_pem(&[Uri("spiffe://mesh.local/a")], None).as_bytes());
    let leaf: &'static str = Box::leak(leaf.into_boxed_str());
    let incoming = headers(&[("x-amzn-mtls-clientcert-leaf", leaf)]);
    for (source_address, trusted) in [
        ("10.1.2.3:5000", true),
        ("[2001:db8::5]:5000", true),
        ("[::ffff:10.1.2.3]:5000", true),
        ("192.0.2.1:5000", false),
        // Envoy took this from X-Forwarded-For (`use_remote_address: false`): port 0, never trusted
        ("10.1.2.3:0", false),
        ("garbage", false),
    ] {
        let facts = connection(Peer::NoCertificate, source_address);
        let evaluation = evaluate(&policy, &REQUEST, &incoming, &facts, NOW);
        assert_eq!(evaluation.peer_trusted, trusted, "{source_address}");
        let expected_source = trusted.then_some(IdentitySource::Alb);
        assert_eq!(evaluation.source, expected_source, "{source_address}");
        assert_eq!(
            evaluation.rewrite.spoofed.is_empty(),
            trusted,
            "{source_address}"
        );
    }
    assert_eq!(
        PeerAddress::from_source_address(Some("10.1.2.3:0")),
        PeerAddress::FromHeaders("10.1.2.3".parse().unwrap())
    );
}

#[test]
fn certificates_from_headers_are_checked_for_their_validity_period() {
    let policy = policy(
        r#"{"routes": [{"name": "r"}], "trusted_proxies": {"cidrs": ["10.0.0.0/8"]}, "identity_sources": ["alb"]}"#,
    );
    for (from, to, reason) in [
        ((2025, 1, 1), (2025, 6, 1), Reason::CertExpired),
        ((2026, 6, 1), (2027, 1, 1), Reason::CertNotYetValid),
        ((2025, 1, 1), (2027, 1, 1), Reason::ValidatedCert),
    ] {
        let pem = cert_valid(&["spiffe://mesh.local/x"], from, to);
        let encoded: &'static str = Box::leak(
            pem.replace('\n', "%0A")
                .replace(' ', "%20")
                .into_boxed_str(),
        );
        let incoming = headers(&[("x-amzn-mtls-clientcert-leaf", encoded)]);
        let facts = connection(Peer::NoCertificate, "10.0.0.1:1234");
        let evaluation = evaluate(&policy, &REQUEST, &incoming, &facts, NOW);
        assert_eq!(evaluation.decision.reason(), reason, "{from:?}..{to:?}");
    }
    // two leaf headers are ambiguous
    let incoming = headers(&[
        ("x-amzn-mtls-clientcert-leaf", "a"),
        ("x-amzn-mtls-clientcert-leaf", "b"),
    ]);
    let facts = connection(Peer::NoCertificate, "10.0.0.1:1234");
    assert_eq!(
        evaluate(&policy, &REQUEST, &incoming, &facts, NOW)
            .decision
            .reason(),
        Reason::CertUnreadable
    );
}

#[test]
fn sni_host_mismatch_is_counted_and_denied_when_asked() {
    let client = test_support::identity(&[Dns("c.example")], None);
    for (mode, sni, authority, mismatch, reason) in [
        (
            "log",
            "api.example.com",
            "api.example.com:443",
            false,
            Reason::ValidatedCert,
        ),
        (
            "log",
            "API.example.com.",
            "api.example.com",
            false,
            Reason::ValidatedCert,
        ),
        (
            "log",
            "other.example.com",
            "api.example.com",
            true,
            Reason::ValidatedCert,
        ),
        (
            "deny",
            "other.example.com",
            "api.example.com",
            true,
            Reason::SniHostMismatch,
        ),
        ("deny", "", "api.example.com", false, Reason::ValidatedCert),
    ] {
        let policy = policy(&format!(
            r#"{{"sni_host_mismatch": "{mode}", "routes": [{{"name": "r"}}]}}"#
        ));
        let request = RequestFacts {
            authority,
            ..REQUEST
        };
        let mut facts = connection(Peer::Identified(&client), "192.0.2.1:1");
        facts.sni = Some(sni);
        let no_headers = Vec::new();
        let evaluation = evaluate(&policy, &request, &no_headers, &facts, NOW);
        assert_eq!(
            (evaluation.sni_mismatch, evaluation.decision.reason()),
            (mismatch, reason),
            "{mode} {sni} {authority}"
        );
        let counted = evaluation
            .metrics(&policy, facts.tls_version)
            .iter()
            .any(|(metric, _)| *metric == Metric::SniHostMismatch);
        assert_eq!(counted, mismatch);
    }
}

#[test]
fn metrics_and_access_record_of_a_request() {
    let policy = policy(
        r#"{"routes": [{"name": "api", "match": {"path_prefix": "/api"}}], "telemetry": {"expiry_warning_days": 30}}"#,
    );
    let pem = cert_valid(&["spiffe://mesh.local/web"], (2025, 1, 1), (2026, 1, 21));
    let identity = PeerIdentity::from_pem(pem.as_bytes()).unwrap();
    let incoming = headers(&[("x-request-id", "req-\"7\"")]);
    let facts = connection(Peer::Identified(&identity), "[2001:db8::9]:4000");
    let evaluation = evaluate(&policy, &REQUEST, &incoming, &facts, NOW);
    assert_eq!(evaluation.days_to_expiry, Some(20));
    assert!(evaluation.expiring);
    let names: Vec<(String, u64)> = evaluation
        .metrics(&policy, facts.tls_version)
        .iter()
        .map(|(metric, value)| (metric.name(), *value))
        .collect();
    assert_eq!(
        names,
        [
            (
                "certgate_requests_total.route.api.decision.allow.reason.validated_cert".to_owned(),
                1
            ),
            ("certgate_tls_version_total.version.TLSv1.3".to_owned(), 1),
            (
                "certgate_identity_source_total.source.connection".to_owned(),
                1
            ),
            ("certgate_cert_expiring_total.route.api".to_owned(), 1),
        ],
        "the expiry histogram is observed once per certificate, not per request"
    );
    let record = evaluation.record(&policy, &facts, &incoming);
    let json: serde_json::Value = serde_json::from_str(&record.json()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "route": "api", "decision": "allow", "reason": "validated_cert",
            "identity": "spiffe://mesh.local/web", "san_count": 1, "tls_version": "TLSv1.3",
            "sni": "api.example.com", "days_to_expiry": 20, "identity_source": "connection",
            "client_address": "2001:db8::9", "request_id": "req-\"7\"",
            "grpc_status": null
        })
    );
    let state = decode_struct(&record.filter_state(RecordFields::ALL));
    assert_eq!(state.len(), 11);
    assert_eq!(state["decision"], Kind::StringValue("allow".into()));
    assert_eq!(state["days_to_expiry"], Kind::NumberValue(20.0));
    assert_eq!(state["san_count"], Kind::NumberValue(1.0));
    assert_eq!(state["request_id"], Kind::StringValue("req-\"7\"".into()));
    assert_eq!(
        state["client_address"],
        Kind::StringValue("2001:db8::9".into())
    );
    let chosen = RecordFields::named(["decision", "identity"]).unwrap();
    let state = decode_struct(&record.filter_state(chosen));
    assert_eq!(
        state.into_iter().collect::<Vec<_>>(),
        [
            ("decision".to_owned(), Kind::StringValue("allow".into())),
            (
                "identity".to_owned(),
                Kind::StringValue("spiffe://mesh.local/web".into())
            ),
        ]
    );

    // no route, no certificate, plaintext
    let plain = ConnectionFacts {
        tls_version: None,
        sni: None,
        ..connection(Peer::NoCertificate, "192.0.2.1:1")
    };
    let request = RequestFacts {
        path: "/elsewhere",
        ..REQUEST
    };
    let no_headers = Vec::new();
    let evaluation = evaluate(&policy, &request, &no_headers, &plain, NOW);
    let names: Vec<String> = evaluation
        .metrics(&policy, plain.tls_version)
        .iter()
        .map(|(metric, _)| metric.name())
        .collect();
    assert_eq!(
        names,
        [
            "certgate_requests_total.route._none.decision.deny.reason.no_route",
            "certgate_tls_version_total.version.none",
            "certgate_identity_source_total.source.none",
        ]
    );
    let record = evaluation.record(&policy, &plain, &Vec::new());
    assert!(record
        .json()
        .starts_with(r#"{"route":null,"decision":"deny","reason":"no_route","identity":null"#));
    // decision, reason and client address
    assert_eq!(
        decode_struct(&record.filter_state(RecordFields::ALL)).len(),
        3
    );
}

#[test]
fn long_record_values_keep_their_lengths_in_the_filter_state() {
    // Values and entries past 127 and 16,383 bytes take two- and three-byte length varints.
    let policy = policy(r#"{"routes": [{"name": "r", "require_client_cert": false}]}"#);
    let facts = connection(Peer::NoCertificate, "192.0.2.1:1");
    for length in [127, 128, 300, 16_383, 16_384, 20_000] {
        let request_id = "r".repeat(length);
        let incoming = vec![(b"x-request-id".as_slice(), request_id.as_bytes())];
        let evaluation = evaluate(&policy, &REQUEST, &incoming, &facts, NOW);
        let record = evaluation.record(&policy, &facts, &incoming);
        let state = decode_struct(&record.filter_state(RecordFields::ALL));
        assert_eq!(
            state["request_id"],
            Kind::StringValue(request_id.clone()),
            "{length}"
        );
        assert_eq!(state["decision"], Kind::StringValue("allow".into()));
    }
}

#[test]
fn without_forwarding_nothing_is_rewritten() {
    let policy = policy(r#"{"routes": [{"name": "r", "require_client_cert": false}]}"#);
    let incoming = headers(&[
        ("x-forwarded-for", "1.2.3.4"),
        ("x-forwarded-client-cert", "URI=x"),
    ]);
    let facts = connection(Peer::NoCertificate, "192.0.2.1:1");
    let evaluation = evaluate(&policy, &REQUEST, &incoming, &facts, NOW);
    assert!(evaluation.rewrite.headers.is_empty());
    assert!(evaluation.rewrite.spoofed.is_empty());
}

/// The record's filter state as Envoy reads it: a `google.protobuf.Struct`, decoded by prost.
fn decode_struct(bytes: &[u8]) -> std::collections::BTreeMap<String, Kind> {
    use prost::Message;
    prost_types::Struct::decode(bytes)
        .expect("a google.protobuf.Struct")
        .fields
        .into_iter()
        .map(|(name, value)| (name, value.kind.expect("a value")))
        .collect()
}
