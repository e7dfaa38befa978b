//! Target `whole_request`: the real `certgate.wasm` in the host harness, as Envoy runs it, given
//! arbitrary request headers, route and connection facts and client certificates, under a few
//! policies (each with the HttpConnectionManager settings it is meant for, or unsound ones).
//!
//! Properties: the guest never traps and every request gets a decision: it continues to the
//! upstream or gets a local response, and the client gets an answer. When certgate records its
//! decision as filter state, `deny` is exactly the requests it answered itself, with the policy's
//! deny status.
//!
//! `certgate.wasm` is `CERTGATE_WASM`, else the workspace's release build
//! (`cargo xtask build-wasm`). Plugins start once per thread and serve every input after that,
//! as an Envoy worker serves many requests; each input's connection has its own id.

use super::seed::{self, Mutation};
use super::NOW_SECONDS;
use arbitrary::{Arbitrary, Unstructured};
use certgate::encoding::percent;
use host_harness::{
    Certificate, ClientCertDetails, Connection, Exchange, ForwardClientCert, GuestModule,
    HttpConnectionManager, Plugin, PluginSettings, Request, RequestOutcome, Tls, TlsVersion,
};
use rcgen::{CertificateParams, DnType, KeyPair, SanType};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// A policy and the HttpConnectionManager in front of it.
struct Setup {
    policy: Value,
    hcm: HttpConnectionManager,
}

impl Setup {
    fn deny_status(&self) -> u32 {
        self.policy["deny_response"]["status"]
            .as_u64()
            .and_then(|status| u32::try_from(status).ok())
            .unwrap_or(403)
    }
}

fn setups() -> Vec<Setup> {
    let example: Value = match serde_json::from_str(include_str!("../../docs/examples/policy.json"))
    {
        Ok(policy) => policy,
        Err(why) => panic!("docs/examples/policy.json: {why}"),
    };
    let sound_hcm = HttpConnectionManager::default()
        .use_remote_address(true)
        .skip_xff_append(true);
    vec![
        // The documented example behind Envoy's defaults (use_remote_address false: unsound).
        Setup {
            policy: example,
            hcm: HttpConnectionManager::default(),
        },
        // An edge gateway: identities from a trusted proxy's XFCC or ALB header, every forwarding
        // header certgate can write, SNI checks that deny.
        Setup {
            policy: json!({
                "routes": [
                    {"name": "admin", "match": {"route_name": "admin"},
                     "allow": [{"uri": "spiffe://mesh.local/ns/ops/sa/*"}],
                     "deny": [{"dns": "banned.mesh.local"}]},
                    {"name": "api", "match": {"hosts": ["api.example.com", "*.api.example.com"], "path_prefix": "/v1/"},
                     "allow": [{"trust_domain": "mesh.local"}, {"dns": "*.yelb.svc.cluster.local"},
                               {"ip": "10.1.0.0/16"}, {"email": "ops@example.com"}, {"subject_cn": "client-one"}]},
                    {"name": "public", "match": {"path_prefix": "/public"}, "require_client_cert": false}
                ],
                "identity_sources": ["xfcc", "alb", "connection"],
                "trusted_proxies": {"cidrs": ["10.0.0.0/8", "2001:db8::/32"],
                                    "identities": [{"uri": "spiffe://mesh.local/ns/edge/sa/gateway"}]},
                "forwarding": {
                    "xff": {"append": true, "trusted_hops": 2},
                    "x_forwarded_proto": true,
                    "x_forwarded_host": true,
                    "forwarded": "set",
                    "xfcc": {"mode": "sanitize_set",
                             "details": ["hash", "cert", "chain", "subject", "uri", "dns", "ip", "email"]},
                    "client_cert": true,
                    "identity_headers": {"x-client-uri": "uri", "x-client-dns": "dns", "x-client-ip": "ip",
                                         "x-client-email": "email", "x-client-subject": "subject",
                                         "x-client-cn": "subject_cn", "x-client-sha256": "sha256",
                                         "x-client-route": "route", "x-client-decision": "decision"}
                },
                "telemetry": {"expiry_warning_days": 400, "access_record": "warn"},
                "sni_host_mismatch": "deny",
                "deny_response": {"status": 401, "expose_reason": true}
            }),
            hcm: sound_hcm,
        },
        // Audit everything, allow unmatched requests, count wildcard certificates, append to what
        // a trusted peer (by certificate) forwarded; Envoy's own XFCC in front.
        Setup {
            policy: json!({
                "mode": "audit",
                "default_action": "allow",
                "wildcard_certs": true,
                "routes": [
                    {"name": "yelb", "match": {"methods": ["GET", "POST"]},
                     "allow": [{"dns": "ui.yelb.svc.cluster.local"}], "deny": [{"dns": "legacy.yelb.svc.cluster.local"}]},
                    {"name": "enforced", "match": {"path_exact": "/enforced"}, "mode": "enforce",
                     "allow": [{"sha256": "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff"}]}
                ],
                "identity_sources": ["connection", "xfcc"],
                "trusted_proxies": {"identities": [{"dns": "*.yelb.svc.cluster.local"}]},
                "forwarding": {
                    "xff": {"append": true},
                    "forwarded": "append",
                    "xfcc": {"mode": "append_forward", "details": ["cert", "uri", "dns", "ip", "email"]},
                    "identity_headers": {"x-client-spiffe-id": "uri"}
                },
                "deny_response": {"status": 451, "body": "go away", "content_type": "text/plain"}
            }),
            hcm: HttpConnectionManager::default()
                .forward_client_cert(ForwardClientCert::SanitizeSet, ClientCertDetails::all()),
        },
        // An Envoy before 1.39 behind an ALB: presented certificates count as validated, the
        // identity comes from the ALB header, no filter state or access record.
        Setup {
            policy: json!({
                "assume_presented_certs_validated": true,
                "routes": [{"name": "all", "allow": [{"uri": "spiffe://mesh.local/ns/ops/sa/admin"}, {"ip": "::ffff:10.1.2.3"}]}],
                "identity_sources": ["alb"],
                "trusted_proxies": {"cidrs": ["0.0.0.0/0"]},
                "forwarding": {"xfcc": {"mode": "forward_only"}, "x_forwarded_proto": true},
                "telemetry": {"access_record": "off", "filter_state": false},
                "deny_response": {"status": 503}
            }),
            hcm: sound_hcm.xff_num_trusted_hops(1),
        },
    ]
}

/// `certgate.wasm`, compiled once per process.
fn certgate() -> &'static GuestModule {
    static MODULE: OnceLock<GuestModule> = OnceLock::new();
    MODULE.get_or_init(|| {
        let path = std::env::var_os("CERTGATE_WASM")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                super::workspace_root().join("target/wasm32-wasip1/release/certgate.wasm")
            });
        GuestModule::load(&path).unwrap_or_else(|error| {
            panic!("{error} (build it with `cargo xtask build-wasm`, or set CERTGATE_WASM)")
        })
    })
}

fn start(setup: &Setup) -> Plugin {
    let settings = PluginSettings::new("certgate")
        .configuration_json(&setup.policy)
        .http_connection_manager(setup.hcm)
        .start_time_ns(NOW_SECONDS.unsigned_abs() * 1_000_000_000);
    let plugin = Plugin::new(certgate(), settings)
        .unwrap_or_else(|error| panic!("certgate does not start: {error}"));
    assert!(
        plugin.configured().accepted,
        "certgate refused {}: {:?}",
        setup.policy,
        plugin.configured().logs
    );
    plugin
}

thread_local! {
    static PLUGINS: RefCell<Vec<(Setup, Plugin)>> = RefCell::new(
        setups().into_iter().map(|setup| { let plugin = start(&setup); (setup, plugin) }).collect()
    );
    static NEXT_CONNECTION: Cell<u64> = const { Cell::new(1) };
    static KEY: KeyPair = KeyPair::generate().unwrap_or_else(|error| panic!("a key pair: {error}"));
}

/// Header names worth guessing: everything certgate owns, reads or rewrites, in several spellings.
const HEADER_NAMES: [&str; 20] = [
    "x-forwarded-client-cert",
    "X-Forwarded-Client-Cert",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "forwarded",
    "x-amzn-mtls-clientcert-leaf",
    "x-amzn-mtls-clientcert",
    "x-amzn-mtls-clientcert-subject",
    "client-cert",
    "client-cert-chain",
    "x-client-uri",
    "x-client-spiffe-id",
    "x-client-route",
    "x-client-decision",
    "x-request-id",
    "x-envoy-external-address",
    "host",
    "x-amzn-mtls-clientcert-issuer",
];

/// Text worth guessing: forwarding and identity header values, addresses, names from the policies.
fn known_values() -> &'static [String] {
    static VALUES: OnceLock<Vec<String>> = OnceLock::new();
    VALUES.get_or_init(|| {
        let pem = percent::encode(seed::LEAF_PEM.as_bytes());
        [
            format!("Hash=ab;Cert=\"{pem}\";URI=spiffe://mesh.local/ns/ops/sa/admin"),
            "By=spiffe://mesh.local/ns/edge/sa/gateway;URI=spiffe://mesh.local/ns/ops/sa/admin;DNS=ui.yelb.svc.cluster.local".into(),
            "URI=\"spiffe://mesh.local/ns/ops/sa/admin,URI=x\";Subject=\"CN=a\\\"b\"".into(),
            "IP=10.1.2.3;Email=ops@example.com,IP=nope".into(),
            pem,
            ":MIIBkTCB+wIJAKHBfpegPjMCMA0GCSqGSIb3DQEBCwUAMBExDzANBgNVBAMMBnVudXNlZDAeFw0=:".into(),
            "203.0.113.9, 10.0.0.7".into(),
            "10.0.0.7".into(),
            "2001:db8::7".into(),
            "for=10.0.0.7;proto=https;host=api.example.com, for=\"[2001:db8::1]:80\"".into(),
            "https".into(),
            "api.example.com".into(),
            "x.api.example.com:8443".into(),
            "[2001:db8::1]:443".into(),
            "spiffe://mesh.local/ns/ops/sa/admin".into(),
            "ui.yelb.svc.cluster.local".into(),
            "admin".into(),
            "/v1/orders?id=1".into(),
            "/public/../admin".into(),
            "/enforced".into(),
            "a\r\nx-injected: 1".into(),
            "\0".into(),
            "x".repeat(8192),
            String::new(),
        ]
        .into()
    })
}

/// A string: one of the known ones, or anything.
#[derive(Arbitrary, Debug)]
enum Text {
    Known(u8),
    Any(String),
}

impl Text {
    fn resolve(&self) -> String {
        match self {
            Text::Known(index) => {
                let values = known_values();
                values
                    .get(usize::from(*index) % values.len())
                    .cloned()
                    .unwrap_or_default()
            }
            Text::Any(text) => text.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum HeaderName {
    Known(u8),
    Any(String),
}

impl HeaderName {
    fn resolve(&self) -> String {
        match self {
            HeaderName::Known(index) => HEADER_NAMES
                .get(usize::from(*index) % HEADER_NAMES.len())
                .map(|name| (*name).to_owned())
                .unwrap_or_default(),
            HeaderName::Any(name) => name.clone(),
        }
    }
}

/// RFC 7230 `token`: the only header names Envoy's codecs let through.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[derive(Arbitrary, Debug)]
enum San {
    Dns(Text),
    Uri(Text),
    Email(Text),
    Ip(IpAddr),
}

/// A certificate made for the input: its SANs, subject and validity (days from the host clock).
#[derive(Arbitrary, Debug)]
struct GeneratedCertificate {
    sans: Vec<San>,
    common_name: Option<Text>,
    organization: Option<String>,
    starts_in_days: i16,
    lasts_days: u16,
}

#[derive(Arbitrary, Debug)]
enum ClientCertificate {
    Seed(u8),
    Generated(GeneratedCertificate),
    MutatedSeed { seed: u8, mutations: Vec<Mutation> },
}

#[derive(Arbitrary, Debug)]
enum Peer {
    Plaintext,
    TlsWithoutCertificate,
    Certificate {
        certificate: ClientCertificate,
        validated: bool,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    setup: u8,
    peer: Peer,
    tls12: bool,
    sni: Option<Text>,
    source: (IpAddr, u16),
    destination: (IpAddr, u16),
    method: Text,
    path: Text,
    authority: Text,
    route_name: Option<Text>,
    headers: Vec<(HeaderName, Text)>,
    /// Send the request a second time on the same connection (certgate caches per connection).
    again: bool,
}

pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let connection = connection(&input);
    PLUGINS.with(|plugins| {
        let mut plugins = plugins.borrow_mut();
        let count = plugins.len();
        let Some((setup, plugin)) = plugins.get_mut(usize::from(input.setup) % count.max(1)) else {
            return;
        };
        for _ in 0..if input.again { 2 } else { 1 } {
            let exchange = plugin
                .send(&connection, request(&input))
                .unwrap_or_else(|error| panic!("certgate.wasm failed on {input:?}: {error}"));
            check_decision(setup, &exchange, &input);
        }
        plugin.take_logs();
    });
}

fn check_decision(setup: &Setup, exchange: &Exchange, input: &Input) {
    let answered_locally = match &exchange.request {
        RequestOutcome::Continued(_) => false,
        RequestOutcome::LocalResponse(response) => {
            assert_eq!(
                response.status,
                setup.deny_status(),
                "a local response that is not the deny reply, for {input:?}"
            );
            true
        }
        other => panic!("no decision: {other:?} for {input:?}"),
    };
    assert!(
        exchange.response.is_some(),
        "the client got no answer for {input:?}"
    );
    if let Some(decision) = exchange
        .filter_state_fields("wasm.certgate")
        .and_then(|mut record| record.remove("decision"))
    {
        assert!(
            matches!(decision.as_str(), "allow" | "deny" | "audit_deny"),
            "decision {decision:?}"
        );
        assert_eq!(
            decision == "deny",
            answered_locally,
            "decision {decision} but outcome {:?} for {input:?}",
            exchange.request
        );
    }
}

fn request(input: &Input) -> Request {
    let mut request = Request::new(&input.method.resolve(), &input.path.resolve())
        .authority(&input.authority.resolve());
    if let Some(route) = &input.route_name {
        request = request.route_name(&route.resolve());
    }
    for (name, value) in &input.headers {
        let name = name.resolve();
        if is_token(&name) {
            request = request.header(&name, &value.resolve());
        }
    }
    request
}

fn connection(input: &Input) -> Connection {
    let version = if input.tls12 {
        TlsVersion::Tls12
    } else {
        TlsVersion::Tls13
    };
    let mut tls = Tls::new().version(version);
    if let Some(sni) = &input.sni {
        tls = tls.sni(sni.resolve());
    }
    let connection = match &input.peer {
        Peer::Plaintext => Connection::plain(),
        Peer::TlsWithoutCertificate => Connection::tls(tls),
        Peer::Certificate {
            certificate,
            validated,
        } => match client_certificate(certificate) {
            Some(certificate) => {
                Connection::tls(tls.peer_certificate(certificate).validated(*validated))
            }
            // A certificate the TLS stack could not have parsed never reaches the filter.
            None => Connection::tls(tls),
        },
    };
    let id = NEXT_CONNECTION.with(|next| next.replace(next.get() + 1));
    connection
        .source(SocketAddr::new(input.source.0, input.source.1))
        .destination(SocketAddr::new(input.destination.0, input.destination.1))
        .id(id)
}

fn client_certificate(certificate: &ClientCertificate) -> Option<Certificate> {
    let der = match certificate {
        ClientCertificate::Seed(index) => seed_der(*index).to_vec(),
        ClientCertificate::MutatedSeed { seed, mutations } => {
            seed::mutate(seed_der(*seed), mutations)
        }
        ClientCertificate::Generated(spec) => generate(spec)?,
    };
    Certificate::from_der(&der).ok()
}

fn seed_der(index: u8) -> &'static [u8] {
    seed::CERTIFICATES_DER
        .get(usize::from(index) % seed::CERTIFICATES_DER.len())
        .copied()
        .unwrap_or(seed::LEAF_DER)
}

/// Signs a certificate for the spec; SANs rcgen refuses (not IA5 text) are left out.
fn generate(spec: &GeneratedCertificate) -> Option<Vec<u8>> {
    let mut params = CertificateParams::default();
    params.subject_alt_names = spec
        .sans
        .iter()
        .filter_map(|san| {
            Some(match san {
                San::Dns(name) => SanType::DnsName(name.resolve().try_into().ok()?),
                San::Uri(uri) => SanType::URI(uri.resolve().try_into().ok()?),
                San::Email(email) => SanType::Rfc822Name(email.resolve().try_into().ok()?),
                San::Ip(ip) => SanType::IpAddress(*ip),
            })
        })
        .collect();
    if let Some(cn) = &spec.common_name {
        params
            .distinguished_name
            .push(DnType::CommonName, cn.resolve());
    }
    if let Some(organization) = &spec.organization {
        params
            .distinguished_name
            .push(DnType::OrganizationName, organization.as_str());
    }
    let days = |count: u16| Duration::from_secs(86_400 * u64::from(count));
    let now = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(NOW_SECONDS.unsigned_abs());
    params.not_before = if spec.starts_in_days < 0 {
        now - days(spec.starts_in_days.unsigned_abs())
    } else {
        now + days(spec.starts_in_days.unsigned_abs())
    };
    params.not_after = params.not_before + days(spec.lasts_days);
    KEY.with(|key| params.self_signed(key))
        .ok()
        .map(|certificate| certificate.der().to_vec())
}
