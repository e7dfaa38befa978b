//! The real `certgate.wasm` never traps and always decides. Random requests (methods, paths,
//! authorities, route names; header names in every spelling, certgate's own headers among them,
//! duplicates, values with separators, control characters and odd bytes) arrive on random
//! connections (plaintext, TLS without a certificate, mTLS, a certificate Envoy did not validate,
//! certificates from a small pool that includes hostile ones, several sources and SNIs), one to four
//! requests per connection, through one plugin per policy kept for the whole run, as a VM is. Every
//! request ends in a decision: forwarded upstream, or answered locally with the policy's deny
//! status (never in audit mode); where no peer is a trusted proxy, a forwarded request carries
//! each header certgate owns at most once, under its own name, whatever spellings the client sent.
//!
//! `CERTGATE_PROPTEST_REQUESTS` sets how many requests the whole suite sends (default
//! [`DEFAULT_REQUESTS`], a few seconds per policy); set it to hundreds of thousands for a deep run.

mod support;

use certgate::rewrite::is_spelling_of;
use host_harness::{
    Certificate, ClientCertDetails, Connection, ForwardClientCert, HttpConnectionManager,
    PluginSettings, Request, RequestOutcome, Tls, TlsVersion,
};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;
use support::hostile;
use testkit::{CertSpec, IssuedCert, Validity};

/// Requests the whole suite sends unless `CERTGATE_PROPTEST_REQUESTS` says otherwise.
const DEFAULT_REQUESTS: u64 = 50_000;
const POLICIES: u64 = 5;

const ADMIN_URI: &str = "spiffe://mesh.local/ns/ops/sa/admin";
const GATEWAY_URI: &str = "spiffe://mesh.local/ns/edge/sa/gateway";

fn requests_per_policy() -> u64 {
    let total = std::env::var("CERTGATE_PROPTEST_REQUESTS")
        .ok()
        .map(|text| {
            text.parse::<u64>()
                .unwrap_or_else(|_| panic!("CERTGATE_PROPTEST_REQUESTS={text:?} is not a count"))
        })
        .unwrap_or(DEFAULT_REQUESTS);
    (total / POLICIES).max(1)
}

/// The client certificates connections present: ordinary ones from the suite CA, and hostile ones.
struct Pool {
    certificates: Vec<Certificate>,
    /// Header values a client (or a proxy) might send: XFCC elements, ALB leaves, hostile text.
    values: Vec<String>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let issued: Vec<IssuedCert> = [
            CertSpec::client().uri(ADMIN_URI).cn("admin"),
            CertSpec::client().uri(GATEWAY_URI),
            CertSpec::client()
                .uri("spiffe://mesh.local/ns/web/sa/frontend")
                .dns("banned.example.com"),
            CertSpec::client()
                .dns("*.example.com")
                .dns("api.example.com"),
            CertSpec::client().ip("10.1.2.3".parse().unwrap()),
            CertSpec::client()
                .email("ops@example.com")
                .cn("Ops, \"Inc\"; <x>"),
            CertSpec::client().validity(Validity::Expired).cn("expired"),
            CertSpec::client()
                .validity(Validity::ExpiresInDays(3))
                .cn("expiring"),
            CertSpec::client(),
        ]
        .iter()
        .map(support::issue)
        .collect();
        let hostiles = [
            hostile::many_sans("300 DNS SANs", 300),
            hostile::raw_dns(
                "control bytes in a DNS SAN",
                b"ctl\r\nx-injected: 1\0.example",
            ),
            hostile::raw_dns("raw U-label", "bücher.example".as_bytes()),
            hostile::teletex_latin1("TeletexString CN", "Teletex ?", 0xe9),
            hostile::serial("negative serial", &[0x80, 0x01]),
            hostile::validity("valid from 9000", (9000, 1, 1), (9999, 1, 1)),
        ];
        let mut certificates: Vec<Certificate> = issued.iter().map(support::certificate).collect();
        certificates.extend(hostiles.iter().map(hostile::Hostile::certificate));
        let mut values: Vec<String> = Vec::new();
        for certificate in &certificates {
            let leaf = IssuedCert {
                cert_pem: certificate.pem(),
                key_pem: String::new(),
                der: certificate.der().to_vec(),
            };
            values.push(leaf.alb_leaf_header_value());
            values.push(format!(
                "Hash={};Cert=\"{}\"",
                certificate.sha256_digest(),
                leaf.alb_leaf_header_value()
            ));
        }
        values.extend(
            [
                "",
                " ",
                "By=spiffe://edge;URI=spiffe://mesh.local/ns/ops/sa/admin",
                "URI=spiffe://mesh.local/ns/ops/sa/admin,URI=spiffe://evil/x",
                "Subject=\"CN=admin\";DNS=api.example.com;IP=10.1.2.3;Email=ops@example.com",
                "Cert=\"%zz\"",
                "Cert=\"unterminated",
                "a,b;c=\"d\\\"e\"",
                "1.2.3.4, 10.1.2.3,::1, garbage",
                "for=10.1.2.3;proto=https;host=\"a\"",
                ":AAAA:",
                "\r\nx-injected: 1",
                "\0",
                "https",
                "admin",
                "allow",
            ]
            .map(str::to_owned),
        );
        values.push("x".repeat(16 * 1024));
        Pool {
            certificates,
            values,
        }
    })
}

/// Header names certgate owns, reads or that Envoy treats specially.
const NAMES: &[&str] = &[
    "x-forwarded-client-cert",
    "x-amzn-mtls-clientcert-leaf",
    "x-amzn-mtls-clientcert",
    "x-amzn-mtls-clientcert-subject",
    "client-cert",
    "client-cert-chain",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "forwarded",
    "x-client-uri",
    "x-client-dns",
    "x-client-subject",
    "x-client-route",
    "x-client-decision",
    "x-request-id",
    "x-certgate-reason",
    "x-certgate-fault",
    "host",
    ":authority",
    ":path",
    ":method",
    "content-length",
    "x-envoy-original-path",
];

/// `name` in some spelling a client could use: any letter case, `_` for `-`.
fn spelled(name: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec((any::<bool>(), any::<bool>()), name.len()).prop_map(move |flips| {
        name.chars()
            .zip(flips)
            .map(|(c, (upper, underscore))| match c {
                '-' if underscore => '_',
                c if upper => c.to_ascii_uppercase(),
                c => c,
            })
            .collect()
    })
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => select(NAMES).prop_flat_map(spelled),
        2 => "[a-zA-Z0-9_-]{1,24}",
        1 => "\\PC{0,16}",
        1 => any::<String>(),
    ]
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        5 => any::<Index>().prop_map(|index| index.get(&pool().values).clone()),
        2 => "[ -~]{0,40}",
        2 => "\\PC{0,40}",
        1 => any::<String>(),
    ]
}

fn text(pool: &'static [&'static str], random: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(pool).prop_map(str::to_owned),
        1 => random,
        1 => any::<String>(),
    ]
}

#[derive(Debug, Clone)]
struct RequestSpec {
    method: String,
    path: String,
    authority: String,
    route_name: Option<String>,
    headers: Vec<(String, String)>,
}

fn request_spec() -> impl Strategy<Value = RequestSpec> {
    (
        text(
            &["GET", "POST", "HEAD", "DELETE", "get", "CONNECT", ""],
            "[A-Z]{1,10}",
        ),
        text(
            &[
                "/",
                "/admin",
                "/api/v1/orders?x=1",
                "/healthz",
                "/any/x#f",
                "*",
                "",
                "/%2e%2e/admin",
            ],
            "/[ -~]{0,60}",
        ),
        text(
            &[
                "api.example.com",
                "API.Example.COM:8443",
                "x.example.com",
                "[::1]:443",
                "",
                "a:b:c",
                "例え.jp",
            ],
            "[a-z0-9.:-]{0,30}",
        ),
        prop::option::of(text(&["admin", "api", "health", ""], "[a-z_-]{1,12}")),
        prop::collection::vec((header_name(), header_value()), 0..12),
    )
        .prop_map(
            |(method, path, authority, route_name, headers)| RequestSpec {
                method,
                path,
                authority,
                route_name,
                headers,
            },
        )
}

impl RequestSpec {
    fn request(&self) -> Request {
        let mut request = Request::new(&self.method, &self.path).authority(&self.authority);
        if let Some(name) = &self.route_name {
            request = request.route_name(name);
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request
    }
}

/// What the client's connection is: 0 plaintext, 1 TLS without a certificate, 2 mTLS with a
/// validated certificate, 3 a certificate presented but not validated.
#[derive(Debug, Clone)]
struct ConnectionSpec {
    kind: u8,
    certificate: Index,
    tls12: bool,
    sni: Option<&'static str>,
    source: &'static str,
}

fn connection_spec() -> impl Strategy<Value = ConnectionSpec> {
    (
        0u8..4,
        any::<Index>(),
        any::<bool>(),
        prop::option::of(select(&["api.example.com", "other.test", ""][..])),
        select(
            &[
                "10.1.2.3:5000",
                "203.0.113.9:41000",
                "[2001:db8::9]:443",
                "127.0.0.1:50000",
            ][..],
        ),
    )
        .prop_map(|(kind, certificate, tls12, sni, source)| ConnectionSpec {
            kind,
            certificate,
            tls12,
            sni,
            source,
        })
}

impl ConnectionSpec {
    /// A fresh connection (its own id, as Envoy numbers them) for one client.
    fn connection(&self) -> Connection {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let mut tls = Tls::new().version(if self.tls12 {
            TlsVersion::Tls12
        } else {
            TlsVersion::Tls13
        });
        if let Some(sni) = self.sni {
            tls = tls.sni(sni);
        }
        let certificate = self.certificate.get(&pool().certificates).clone();
        let connection = match self.kind {
            0 => Connection::plain(),
            1 => Connection::tls(tls),
            2 => Connection::tls(tls.peer_certificate(certificate)),
            _ => Connection::tls(tls.peer_certificate(certificate).validated(false)),
        };
        connection
            .id(NEXT_ID.fetch_add(1, Ordering::Relaxed))
            .source(self.source.parse().expect("a socket address"))
    }
}

/// A policy under test and what its denials look like.
struct Subject {
    name: &'static str,
    policy: Value,
    hcm: HttpConnectionManager,
    deny_status: u32,
    audit: bool,
    filter_state: bool,
    /// Headers certgate owns whoever the peer is (the policy trusts no proxy): a forwarded request
    /// carries each at most once, under its own lowercase name, whatever spellings the client sent.
    owned: &'static [&'static str],
}

/// What [`every_forwarding_header`] owns when no peer is trusted.
const OWNED_BY_EVERY_FORWARDING_HEADER: &[&str] = &[
    "x-client-uri",
    "x-client-dns",
    "x-client-subject",
    "x-client-route",
    "x-client-decision",
    "x-client-ip",
    "x-client-email",
    "x-client-cn",
    "x-client-sha256",
    "client-cert",
    "client-cert-chain",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "forwarded",
    "x-forwarded-client-cert",
];

fn routes() -> Value {
    json!([
        {"name": "admin", "match": {"route_name": "admin"},
         "allow": [{"uri": ADMIN_URI}], "deny": [{"dns": "banned.example.com"}]},
        {"name": "api", "match": {"hosts": ["api.example.com", "*.example.com"], "path_prefix": "/api/", "methods": ["GET", "POST"]},
         "allow": [{"trust_domain": "mesh.local"}, {"dns": "*.example.com"}, {"ip": "10.1.0.0/16"},
                   {"email": "ops@example.com"}, {"subject_cn": "admin"}, {"uri": "spiffe://mesh.local/ns/*/sa/frontend"}]},
        {"name": "health", "match": {"path_exact": "/healthz"}, "require_client_cert": false},
        {"name": "any", "match": {"path_prefix": "/any"}}
    ])
}

fn every_forwarding_header() -> Value {
    json!({
        "xff": {"append": true, "trusted_hops": 0},
        "x_forwarded_proto": true,
        "x_forwarded_host": true,
        "forwarded": "append",
        "xfcc": {"mode": "sanitize_set", "details": ["hash", "cert", "chain", "subject", "uri", "dns", "ip", "email"]},
        "client_cert": true,
        "identity_headers": {"x-client-uri": "uri", "x-client-dns": "dns", "x-client-subject": "subject",
                             "x-client-route": "route", "x-client-decision": "decision", "x-client-ip": "ip",
                             "x-client-email": "email", "x-client-cn": "subject_cn", "x-client-sha256": "sha256"}
    })
}

fn run(subject: Subject) {
    let settings = PluginSettings::new("certgate").http_connection_manager(subject.hcm);
    let start_plugin = || support::plugin_with(settings.clone(), &subject.policy);
    let plugin = RefCell::new(start_plugin());
    let sent = Cell::new(0u64);
    let budget = requests_per_policy();
    // Cases hold 2.5 requests on average.
    let cases = u32::try_from((budget * 2 / 5).max(1)).unwrap_or(u32::MAX);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let started = Instant::now();
    let strategy = (
        connection_spec(),
        prop::collection::vec(request_spec(), 1..=4),
    );
    let outcome = runner.run(&strategy, |(connection_spec, requests)| {
        let connection = connection_spec.connection();
        let mut plugin = plugin.borrow_mut();
        for spec in &requests {
            sent.set(sent.get() + 1);
            let exchange = match plugin.send(&connection, spec.request()) {
                Ok(exchange) => exchange,
                Err(error) => {
                    // A trapped VM refuses every later call: shrink on a fresh one.
                    *plugin = start_plugin();
                    return Err(TestCaseError::fail(format!("{error}")));
                }
            };
            plugin.take_logs();
            let local = match &exchange.request {
                RequestOutcome::Continued(_) => false,
                RequestOutcome::LocalResponse(reply) if reply.status == subject.deny_status => true,
                other => return Err(TestCaseError::fail(format!("no decision: {other:?}"))),
            };
            prop_assert!(!(local && subject.audit), "audit mode denied a request");
            if let RequestOutcome::Continued(upstream) = &exchange.request {
                for owned in subject.owned {
                    let arrived: Vec<&str> = upstream
                        .headers
                        .iter()
                        .map(|(name, _)| name)
                        .filter(|name| is_spelling_of(name.as_bytes(), owned))
                        .collect();
                    prop_assert!(
                        arrived.len() <= 1 && arrived.iter().all(|name| name == owned),
                        "{owned} reached the upstream as {arrived:?}"
                    );
                }
            }
            if subject.filter_state {
                let verdict = support::state(&exchange, "decision").unwrap_or_default();
                let expected: &[&str] = if local {
                    &["deny"]
                } else {
                    &["allow", "audit_deny"]
                };
                prop_assert!(
                    expected.contains(&verdict.as_str()),
                    "decision {verdict:?}, local reply {local}"
                );
            }
        }
        Ok(())
    });
    eprintln!(
        "{}: {} requests in {:.1} s",
        subject.name,
        sent.get(),
        started.elapsed().as_secs_f64()
    );
    if let Err(failure) = outcome {
        panic!("{}: {failure}", subject.name);
    }
}

#[test]
fn never_traps_with_connection_identities() {
    run(Subject {
        name: "connection",
        policy: json!({
            "routes": routes(),
            "forwarding": every_forwarding_header(),
            "deny_response": {"status": 403, "expose_reason": true},
            "telemetry": {"expiry_warning_days": 400, "access_record": "info", "filter_state": true},
        }),
        hcm: HttpConnectionManager::default(),
        deny_status: 403,
        audit: false,
        filter_state: true,
        owned: OWNED_BY_EVERY_FORWARDING_HEADER,
    });
}

#[test]
fn never_traps_or_denies_in_audit_mode() {
    run(Subject {
        name: "audit",
        policy: json!({
            "mode": "audit",
            "routes": routes(),
            "sni_host_mismatch": "deny",
            "forwarding": every_forwarding_header(),
            "deny_response": {"status": 451},
        }),
        hcm: HttpConnectionManager::default(),
        deny_status: 451,
        audit: true,
        filter_state: true,
        owned: OWNED_BY_EVERY_FORWARDING_HEADER,
    });
}

#[test]
fn never_traps_with_xfcc_identities() {
    run(Subject {
        name: "xfcc",
        policy: json!({
            "routes": routes(),
            "identity_sources": ["xfcc", "connection"],
            "trusted_proxies": {"cidrs": ["10.0.0.0/8"], "identities": [{"uri": GATEWAY_URI}]},
            "forwarding": {
                "xff": {"append": true, "trusted_hops": 2},
                "forwarded": "set",
                "xfcc": {"mode": "append_forward"},
                "client_cert": true,
                "identity_headers": {"x-client-uri": "uri", "x-client-route": "route"},
            },
            "deny_response": {"status": 401, "body": "no", "content_type": "text/plain"},
        }),
        hcm: HttpConnectionManager::default()
            .use_remote_address(true)
            .forward_client_cert(ForwardClientCert::AppendForward, ClientCertDetails::all()),
        deny_status: 401,
        audit: false,
        filter_state: true,
        owned: &[],
    });
}

#[test]
fn never_traps_with_alb_identities() {
    run(Subject {
        name: "alb",
        policy: json!({
            "routes": routes(),
            "identity_sources": ["alb"],
            "trusted_proxies": {"cidrs": ["10.0.0.0/8", "2001:db8::/32"]},
            "forwarding": {"x_forwarded_proto": true, "x_forwarded_host": true, "forwarded": "append",
                           "identity_headers": {"x-client-dns": "dns", "x-client-decision": "decision"}},
            "deny_response": {"status": 418, "expose_reason": true},
        }),
        hcm: HttpConnectionManager::default().use_remote_address(true),
        deny_status: 418,
        audit: false,
        filter_state: true,
        owned: &[],
    });
}

#[test]
fn never_traps_with_every_source_and_strict_checks() {
    run(Subject {
        name: "strict",
        policy: json!({
            "default_action": "allow",
            "wildcard_certs": true,
            "sni_host_mismatch": "deny",
            "assume_presented_certs_validated": true,
            "routes": routes(),
            "identity_sources": ["connection", "xfcc", "alb"],
            "trusted_proxies": {"identities": [{"uri": GATEWAY_URI}]},
            "forwarding": every_forwarding_header(),
            "deny_response": {"status": 503, "body": "{\"denied\":true}"},
            "telemetry": {"access_record": "off", "filter_state": false},
        }),
        hcm: HttpConnectionManager::default(),
        deny_status: 503,
        audit: false,
        filter_state: false,
        owned: &[],
    });
}
