//! Hostile client certificates (`support/hostile.rs`) get the right decision, at a cost that does
//! not grow with what the certificate holds, both natively through the core and on the real
//! `certgate.wasm` through the harness: one table of (certificate, where it comes from, route,
//! decision, reason) drives both. Forwarded identity headers and the access record stay one clean
//! header value and one JSON line whatever the certificate's names hold.

mod support;

use certgate::config;
use certgate::decide::route::RequestFacts;
use certgate::encoding::percent;
use certgate::evaluate::{evaluate, ConnectionFacts};
use certgate::facts::pairs::HeaderPairs;
use certgate::identity::peer::Peer;
use certgate::identity::PeerIdentity;
use certgate::policy::Policy;
use certgate::rewrite::RewriteCalls;
use host_harness::{
    ClientCertDetails, Connection, Exchange, ForwardClientCert, HttpConnectionManager,
    PluginSettings, Request, Tls,
};
use rcgen::DnType;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use support::hostile::{self, Hostile, BANNED, LABEL_63, NEEDLE};
use support::{access_record, decision, status};
use testkit::IssuedCert;

/// 2026-01-01T00:00:00Z, the harness's default clock.
const NOW: i64 = 1_767_225_600;
/// The SANs of the bulk certificate.
const BULK: usize = 10_000;
const ALB_LEAF: &str = "x-amzn-mtls-clientcert-leaf";
const XFCC: &str = "x-forwarded-client-cert";
/// A trusted proxy (an ALB, or a proxy that sets XFCC) and a client that is not one.
const PROXY_PEER: &str = "10.0.0.5:40000";
const CLIENT_PEER: &str = "203.0.113.9:40000";

fn policy_json() -> Value {
    let route = |name: &str, allow: Value| json!({"name": name, "match": {"path_prefix": format!("/{name}")}, "allow": allow});
    json!({
        "routes": [
            {"name": "open", "match": {"path_prefix": "/open"}},
            route("needle", json!([{"dns": NEEDLE}])),
            {"name": "banned", "match": {"path_prefix": "/banned"},
             "allow": [{"dns": "*.bulk.example"}], "deny": [{"dns": BANNED}]},
            route("idn", json!([{"dns": "xn--bcher-kva.example"}])),
            route("long", json!([{"dns": format!("{LABEL_63}.long.example")}])),
            route("ip", json!([{"ip": "10.1.0.0/16"}, {"ip": "2001:db8::/32"}])),
            route("email", json!([{"email": "ops@example.com"}])),
            route("cn", json!([{"subject_cn": "printable"}, {"subject_cn": "Ünïcode"},
                {"subject_cn": "Bmp☺"}, {"subject_cn": "𝔘niversal"}, {"subject_cn": "Teletex é"}])),
            route("uri", json!([{"trust_domain": "mesh.local"}])),
            route("dup", json!([{"dns": "dup.example"}])),
        ],
        "trusted_proxies": {"cidrs": ["10.0.0.0/8"]},
        "identity_sources": ["alb", "xfcc", "connection"],
        "forwarding": {
            "xfcc": {"mode": "sanitize_set", "details": ["hash", "subject", "uri", "dns", "ip", "email"]},
            "identity_headers": {"x-client-dns": "dns", "x-client-uri": "uri", "x-client-subject": "subject"},
        },
        // The record's log line, so the suite sees it stay one JSON line for every certificate.
        "telemetry": {"access_record": "info"},
    })
}

/// A DNS name of `length` characters made of 63-character labels.
fn long_name(length: usize) -> String {
    let mut name = String::new();
    while name.len() < length {
        if !name.is_empty() {
            name.push('.');
        }
        let label = (length - name.len()).min(63);
        name.push_str(&"b".repeat(label));
    }
    name
}

fn certificates() -> &'static [Hostile] {
    static CERTIFICATES: OnceLock<Vec<Hostile>> = OnceLock::new();
    CERTIFICATES.get_or_init(|| {
        use hostile::{build, dns, email, ip, params, uri};
        let long_uri = format!("spiffe://mesh.local/{}end", "s/".repeat(4096));
        let mut unknown_attributes = params(vec![]);
        for arc in 0..1000 {
            unknown_attributes.distinguished_name.push(
                DnType::CustomDnType(vec![1, 3, 6, 1, 4, 1, 99999, arc]),
                "x",
            );
        }
        vec![
            hostile::many_sans("10,000 DNS SANs", BULK),
            hostile::many_sans("one DNS SAN", 1),
            hostile::many_sans("two DNS SANs", 2),
            build(
                "63-character label",
                params(vec![dns(&format!("{LABEL_63}.long.example"))]),
            ),
            build(
                "64-character label",
                params(vec![dns(&format!("{LABEL_63}a.long.example"))]),
            ),
            build("300-character name", params(vec![dns(&long_name(300))])),
            build("8 KiB URI", params(vec![uri(&long_uri)])),
            build("IDNA A-label", params(vec![dns("xn--bcher-kva.example")])),
            build(
                "IDNA A-label in capitals",
                params(vec![dns("XN--BCHER-KVA.EXAMPLE.")]),
            ),
            hostile::raw_dns("raw U-label", "bücher.example".as_bytes()),
            hostile::raw_dns(
                "control bytes in a DNS SAN",
                b"ctl\r\nx-injected: 1\0.example",
            ),
            build(
                "only IP SANs",
                params(vec![
                    ip("10.1.2.3"),
                    ip("2001:db8::7"),
                    ip("::ffff:10.1.200.1"),
                ]),
            ),
            build(
                "only email SANs",
                params(vec![email("ops@EXAMPLE.com"), email("dev@example.org")]),
            ),
            build(
                "duplicate SANs",
                params(vec![
                    dns("dup.example"),
                    dns("dup.example"),
                    dns("DUP.example"),
                    uri("spiffe://mesh.local/dup"),
                    uri("spiffe://mesh.local/dup"),
                ]),
            ),
            build("empty subject, no SAN", params(vec![])),
            hostile::common_name("PrintableString CN", hostile::printable("printable")),
            hostile::common_name("UTF8String CN", "Ünïcode".into()),
            hostile::common_name("BMPString CN", hostile::bmp("Bmp☺")),
            hostile::common_name("UniversalString CN", hostile::universal("𝔘niversal")),
            hostile::teletex_latin1("TeletexString CN with a Latin-1 byte", "Teletex ?", 0xe9),
            build("1,000 unknown subject attributes", unknown_attributes),
            hostile::serial("negative serial", &[0x80, 0x01, 0x02, 0x03]),
            hostile::serial("64-byte serial", &[0x7f; 64]),
            hostile::serial("zero serial", &[0x00]),
            hostile::validity("valid until 9999", (2020, 1, 1), (9999, 12, 31)),
            hostile::validity("valid since year 1", (1, 1, 1), (2040, 1, 1)),
            hostile::validity("expired in 1950", (1949, 1, 1), (1950, 1, 1)),
            hostile::validity("valid from 9000", (9000, 1, 1), (9999, 1, 1)),
        ]
    })
}

fn certificate(name: &str) -> &'static Hostile {
    certificates()
        .iter()
        .find(|hostile| hostile.name == name)
        .unwrap_or_else(|| panic!("no hostile certificate {name:?}"))
}

/// Where the certificate reaches certgate from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// The TLS connection Envoy terminated (and validated).
    Connection,
    /// The leaf header of a trusted AWS ALB: certgate checks the validity period itself.
    AlbHeader,
    /// The `Cert=` of a trusted proxy's XFCC element: the validity period is checked too.
    XfccHeader,
}

/// (certificate, via, path, decision, reason)
type Row = (&'static str, Via, &'static str, &'static str, &'static str);

#[rustfmt::skip]
const ROWS: &[Row] = &[
    ("10,000 DNS SANs", Via::Connection, "/needle", "allow", "allowlist_match"),
    ("10,000 DNS SANs", Via::Connection, "/banned", "deny", "denied_by_rule"),
    ("10,000 DNS SANs", Via::Connection, "/open", "allow", "validated_cert"),
    ("10,000 DNS SANs", Via::Connection, "/ip", "deny", "not_in_allowlist"),
    ("one DNS SAN", Via::Connection, "/needle", "allow", "allowlist_match"),
    ("63-character label", Via::Connection, "/long", "allow", "allowlist_match"),
    ("64-character label", Via::Connection, "/long", "deny", "not_in_allowlist"),
    ("64-character label", Via::Connection, "/open", "allow", "validated_cert"),
    ("300-character name", Via::Connection, "/open", "allow", "validated_cert"),
    ("300-character name", Via::Connection, "/long", "deny", "not_in_allowlist"),
    ("8 KiB URI", Via::Connection, "/uri", "allow", "allowlist_match"),
    ("IDNA A-label", Via::Connection, "/idn", "allow", "allowlist_match"),
    ("IDNA A-label in capitals", Via::Connection, "/idn", "allow", "allowlist_match"),
    // A dNSName is an IA5String: raw UTF-8 makes the certificate unreadable, and unreadable denies.
    ("raw U-label", Via::Connection, "/idn", "deny", "cert_unreadable"),
    ("raw U-label", Via::Connection, "/open", "deny", "cert_unreadable"),
    ("control bytes in a DNS SAN", Via::Connection, "/open", "allow", "validated_cert"),
    ("only IP SANs", Via::Connection, "/ip", "allow", "allowlist_match"),
    ("only IP SANs", Via::Connection, "/email", "deny", "not_in_allowlist"),
    ("only email SANs", Via::Connection, "/email", "allow", "allowlist_match"),
    ("only email SANs", Via::Connection, "/ip", "deny", "not_in_allowlist"),
    ("duplicate SANs", Via::Connection, "/dup", "allow", "allowlist_match"),
    ("empty subject, no SAN", Via::Connection, "/open", "allow", "validated_cert"),
    ("empty subject, no SAN", Via::Connection, "/cn", "deny", "not_in_allowlist"),
    ("PrintableString CN", Via::Connection, "/cn", "allow", "allowlist_match"),
    ("UTF8String CN", Via::Connection, "/cn", "allow", "allowlist_match"),
    ("BMPString CN", Via::Connection, "/cn", "allow", "allowlist_match"),
    ("UniversalString CN", Via::Connection, "/cn", "allow", "allowlist_match"),
    ("TeletexString CN with a Latin-1 byte", Via::Connection, "/cn", "allow", "allowlist_match"),
    ("1,000 unknown subject attributes", Via::Connection, "/open", "allow", "validated_cert"),
    ("1,000 unknown subject attributes", Via::Connection, "/cn", "deny", "not_in_allowlist"),
    ("negative serial", Via::Connection, "/open", "allow", "validated_cert"),
    ("64-byte serial", Via::Connection, "/open", "allow", "validated_cert"),
    ("zero serial", Via::Connection, "/open", "allow", "validated_cert"),
    // Envoy validated the connection's chain, dates included: certgate does not judge them again.
    ("expired in 1950", Via::Connection, "/open", "allow", "validated_cert"),
    ("valid until 9999", Via::AlbHeader, "/open", "allow", "validated_cert"),
    ("valid since year 1", Via::AlbHeader, "/open", "allow", "validated_cert"),
    ("expired in 1950", Via::AlbHeader, "/open", "deny", "cert_expired"),
    ("valid from 9000", Via::AlbHeader, "/open", "deny", "cert_not_yet_valid"),
    ("negative serial", Via::AlbHeader, "/open", "allow", "validated_cert"),
    ("TeletexString CN with a Latin-1 byte", Via::AlbHeader, "/cn", "allow", "allowlist_match"),
    ("10,000 DNS SANs", Via::XfccHeader, "/needle", "allow", "allowlist_match"),
    ("raw U-label", Via::XfccHeader, "/idn", "deny", "cert_unreadable"),
    ("valid until 9999", Via::XfccHeader, "/open", "allow", "validated_cert"),
    ("expired in 1950", Via::XfccHeader, "/open", "deny", "cert_expired"),
    ("valid from 9000", Via::XfccHeader, "/open", "deny", "cert_not_yet_valid"),
    ("BMPString CN", Via::XfccHeader, "/cn", "allow", "allowlist_match"),
];

/// The header a trusted proxy carries the certificate in, and the peer that sends the request.
fn carried(hostile: &Hostile, via: Via) -> (Option<(&'static str, String)>, &'static str) {
    let pem = hostile.certificate().pem();
    match via {
        Via::Connection => (None, CLIENT_PEER),
        Via::AlbHeader => {
            let leaf = IssuedCert {
                cert_pem: pem,
                key_pem: String::new(),
                der: hostile.der.clone(),
            };
            (Some((ALB_LEAF, leaf.alb_leaf_header_value())), PROXY_PEER)
        }
        Via::XfccHeader => {
            let element = format!(
                "By=spiffe://mesh.local/edge;Cert=\"{}\"",
                percent::encode(pem.as_bytes())
            );
            (Some((XFCC, element)), PROXY_PEER)
        }
    }
}

fn has_control(text: &[u8]) -> bool {
    text.iter().any(u8::is_ascii_control)
}

#[test]
fn the_bulk_certificate_is_read_whole() {
    let identity = PeerIdentity::from_der(&certificate("10,000 DNS SANs").der).expect("readable");
    assert_eq!(identity.dns.len(), BULK);
    assert_eq!(identity.dns.last().map(String::as_str), Some(NEEDLE));
    assert_eq!(identity.dns[BULK / 2], BANNED);
}

#[test]
fn natively_each_hostile_certificate_gets_its_decision() {
    let policy: Policy = config::compile(policy_json().to_string().as_bytes())
        .unwrap_or_else(|errors| panic!("{errors:?}"));
    for &(name, via, path, verdict, reason) in ROWS {
        let case = format!("{name} via {via:?} on {path}");
        let hostile = certificate(name);
        // The glue reads the connection's PEM the same way: unreadable is a decision, not an error.
        let read = PeerIdentity::from_pem(hostile.certificate().pem().as_bytes());
        let (header, source) = carried(hostile, via);
        let headers: HeaderPairs<'_> = header
            .iter()
            .map(|(name, value)| (name.as_bytes(), value.as_bytes()))
            .collect();
        let certificate = match via {
            Via::Connection => read.as_ref().map_or(Peer::Unreadable, Peer::Identified),
            Via::AlbHeader | Via::XfccHeader => Peer::NoCertificate,
        };
        let connection = ConnectionFacts {
            certificate,
            mtls: via == Via::Connection,
            tls_version: Some("TLSv1.3"),
            sni: None,
            source_address: Some(source),
            local_address: None,
            rendered: None,
        };
        let request = RequestFacts {
            route_name: None,
            path,
            authority: "api.example.com",
            method: "GET",
        };
        let evaluation = evaluate(&policy, &request, &headers, &connection, NOW);
        assert_eq!(
            (
                evaluation.decision.verdict.as_str(),
                evaluation.decision.reason().as_str()
            ),
            (verdict, reason),
            "{case}"
        );
        if verdict == "allow" {
            let upstream = match evaluation.rewrite.headers.calls(&headers) {
                RewriteCalls::Nothing => headers.clone(),
                _ => evaluation.rewrite.headers.apply(&headers),
            };
            for (key, value) in &upstream {
                assert!(
                    !has_control(value),
                    "{case}: {} carries a control byte",
                    String::from_utf8_lossy(key)
                );
            }
        }
        let record = evaluation.record(&policy, &connection, &headers).json();
        assert!(!record.contains('\n'), "{case}: {record}");
        serde_json::from_str::<Value>(&record)
            .unwrap_or_else(|error| panic!("{case}: {error}: {record}"));
    }
}

/// certgate through the harness with an edge HCM, so a proxy's socket address is its own, that
/// passes an incoming XFCC on to the filter.
fn harness_plugin() -> host_harness::Plugin {
    let hcm = HttpConnectionManager::default()
        .use_remote_address(true)
        .forward_client_cert(
            ForwardClientCert::AlwaysForwardOnly,
            ClientCertDetails::default(),
        );
    let settings = PluginSettings::new("certgate").http_connection_manager(hcm);
    support::plugin_with(settings, &policy_json())
}

/// Each client on its own connection, as Envoy numbers them.
fn next_connection_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn send(plugin: &mut host_harness::Plugin, hostile: &Hostile, via: Via, path: &str) -> Exchange {
    let id = next_connection_id();
    let (header, source) = carried(hostile, via);
    let (connection, request) = match header {
        None => (Connection::mtls(hostile.certificate()), Request::get(path)),
        Some((name, value)) => (
            Connection::tls(Tls::new()),
            Request::get(path).header(name, &value),
        ),
    };
    let connection = connection
        .id(id)
        .source(source.parse().expect("an address"));
    plugin
        .send(&connection, request)
        .unwrap_or_else(|error| panic!("{} via {via:?} on {path}: {error}", hostile.name))
}

#[test]
fn through_the_harness_each_hostile_certificate_gets_its_decision() {
    let mut plugin = harness_plugin();
    for &(name, via, path, verdict, reason) in ROWS {
        let case = format!("{name} via {via:?} on {path}");
        let exchange = send(&mut plugin, certificate(name), via, path);
        assert_eq!(
            decision(&exchange),
            (verdict.into(), reason.into()),
            "{case}"
        );
        assert_eq!(
            status(&exchange),
            if verdict == "allow" { 200 } else { 403 },
            "{case}"
        );
        match exchange.request.upstream() {
            Some(upstream) => {
                assert_eq!(
                    verdict, "allow",
                    "{case}: a denied request is never forwarded"
                );
                for (key, value) in upstream.headers.iter() {
                    assert!(
                        !has_control(value.as_bytes()),
                        "{case}: {key} carries a control byte"
                    );
                }
            }
            None => assert_eq!(verdict, "deny", "{case}"),
        }
        access_record(&exchange);
        plugin.take_logs();
    }
}

/// The bulk certificate costs no more hostcalls than a two-SAN certificate on the same route: what
/// grows with the certificate is work inside the VM, never crossings of the boundary.
#[test]
fn ten_thousand_sans_cost_no_more_hostcalls_than_two() {
    let mut plugin = harness_plugin();
    // The first request opens the route's series; both compared requests find them counted.
    send(
        &mut plugin,
        certificate("one DNS SAN"),
        Via::Connection,
        "/needle",
    );
    let bulk = send(
        &mut plugin,
        certificate("10,000 DNS SANs"),
        Via::Connection,
        "/needle",
    );
    let small = send(
        &mut plugin,
        certificate("two DNS SANs"),
        Via::Connection,
        "/needle",
    );
    assert_eq!(decision(&bulk), decision(&small));
    assert_eq!(access_record(&bulk)["san_count"], json!(BULK));
    assert_eq!(access_record(&small)["san_count"], json!(2));
    assert_eq!(
        bulk.hostcalls.total(),
        small.hostcalls.total(),
        "bulk {:?} vs small {:?}",
        bulk.hostcalls,
        small.hostcalls
    );
}
