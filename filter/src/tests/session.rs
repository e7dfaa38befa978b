//! The session and the request path through a fake host: a connection's facts are read once, a
//! certificate parsed once, a new policy drops what the old one derived, an Envoy without the
//! certificate degrades to its first-SAN attributes, a resumed session is admitted only where Envoy
//! validated the certificate, and each warning is given once per connection; a request gets the
//! local reply of its denial (HTTP or gRPC), the cheapest header rewrite, its filter state and
//! access record, and its metrics counted until the tick.

use crate::config;
use crate::facts::pairs;
use crate::identity::peer::Peer;
use crate::identity::{IdentityOrigin, PeerIdentity};
use crate::policy::Policy;
use crate::record::access::RecordLevel;
use crate::record::metrics::MetricSink;
use crate::record::series::MetricKind;
use crate::request::{AccessLine, LocalReply, RequestOutcome, Response, Worker};
use crate::rewrite::HeaderEdit;
use crate::session::{Host, KnownConnection, Session, Warning};
use crate::test_support::San::Uri;
use prost::Message as _;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

/// 2026-01-01T00:00:00Z, inside the test certificates' validity.
const NOW: i64 = 1_767_225_600;
const DIGEST: &str = "ab12";

/// Properties by dotted path, shared data, the request's headers, every property read in order,
/// and every write a request made.
#[derive(Default)]
struct FakeHost {
    properties: HashMap<String, Vec<u8>>,
    shared: RefCell<HashMap<String, Vec<u8>>>,
    reads: RefCell<Vec<String>>,
    /// The request header map, pairs-encoded.
    request: Vec<u8>,
    header_map_reads: Cell<usize>,
    writes: RefCell<Vec<Write>>,
}

/// A write of the request path, as the fake host saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Write {
    FilterState(String, Vec<u8>),
    /// One header edit: `remove name`, `replace name: value` or `add name: value`.
    Edit(String),
    /// The whole header map set at once.
    WholeMap(Vec<(String, String)>),
    /// A foreign function called, by name.
    ForeignCall(String),
}

impl Host for FakeHost {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let path = path.join(".");
        let value = self.properties.get(&path).cloned();
        self.reads.borrow_mut().push(path);
        value
    }

    fn shared_data(&self, key: &str) -> Option<Vec<u8>> {
        self.shared.borrow().get(key).cloned()
    }

    fn set_shared_data(&self, key: &str, value: &[u8]) -> bool {
        self.shared
            .borrow_mut()
            .insert(key.to_owned(), value.to_vec());
        true
    }

    fn now(&self) -> Option<i64> {
        Some(NOW)
    }

    fn request_headers(&self) -> Vec<u8> {
        self.header_map_reads.set(self.header_map_reads.get() + 1);
        self.request.clone()
    }

    fn set_request_headers(&self, encoded: &[u8]) -> bool {
        let map = pairs::decode(encoded)
            .unwrap()
            .iter()
            .map(|(key, value)| (text(key), text(value)))
            .collect();
        self.writes.borrow_mut().push(Write::WholeMap(map));
        true
    }

    fn edit_request_header(&self, edit: HeaderEdit<'_>) -> bool {
        let edit = match edit {
            HeaderEdit::Remove(name) => format!("remove {}", text(name)),
            HeaderEdit::Replace(name, value) => format!("replace {name}: {}", text(value)),
            HeaderEdit::Add(name, value) => format!("add {name}: {}", text(value)),
        };
        self.writes.borrow_mut().push(Write::Edit(edit));
        true
    }

    fn set_filter_state(&self, name: &str, value: &[u8]) -> bool {
        self.writes
            .borrow_mut()
            .push(Write::FilterState(name.to_owned(), value.to_vec()));
        true
    }

    fn call_foreign_function(&self, name: &str, _arguments: &[u8]) -> bool {
        self.writes
            .borrow_mut()
            .push(Write::ForeignCall(name.to_owned()));
        true
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl FakeHost {
    fn set(&mut self, path: &str, value: impl Into<Vec<u8>>) {
        self.properties.insert(path.to_owned(), value.into());
    }

    /// A TLS connection whose client presented a certificate Envoy reports `validated` (or not).
    fn mtls(validated: bool, pem: Option<&str>) -> Self {
        let mut host = FakeHost::default();
        host.set("connection.tls_version", "TLSv1.3");
        host.set("connection.requested_server_name", "api.example.com");
        host.set("source.address", "192.0.2.7:51000");
        host.set("destination.address", "10.0.0.1:8443");
        host.set("xds.filter_chain_name", "mtls");
        host.set("connection.mtls", [1]);
        host.set("connection.peer_certificate_valid", [u8::from(validated)]);
        host.set("connection.sha256_peer_certificate_digest", DIGEST);
        if let Some(pem) = pem {
            host.set("connection.peer_certificate", pem);
        }
        host
    }

    /// A plaintext connection from `192.0.2.7`.
    fn plaintext() -> Self {
        let mut host = FakeHost::default();
        host.set("source.address", "192.0.2.7:51000");
        host
    }

    /// The same host on connection `id`.
    fn on_connection(mut self, id: u64) -> Self {
        self.set("connection.id", id.to_le_bytes());
        self
    }

    /// The same host, receiving a request with these headers (after `:method GET`, `:path /`).
    fn request(mut self, authority: &str, headers: &[(&str, &str)]) -> Self {
        let mut all = vec![
            (":method", "GET"),
            (":path", "/"),
            (":authority", authority),
        ];
        all.extend_from_slice(headers);
        self.request = pairs::encode(&all);
        self
    }

    fn writes(&self) -> Vec<Write> {
        self.writes.borrow_mut().drain(..).collect()
    }

    fn reads_of(&self, path: &str) -> usize {
        self.reads
            .borrow()
            .iter()
            .filter(|read| *read == path)
            .count()
    }

    fn read_count(&self) -> usize {
        self.reads.borrow().len()
    }
}

fn policy() -> Rc<Policy> {
    Rc::new(config::compile(br#"{"routes": [{"name": "r"}]}"#).expect("the policy compiles"))
}

fn client_pem() -> String {
    crate::test_support::cert_pem(&[Uri("spiffe://mesh.local/ns/web/sa/ui")], None)
}

fn uris(known: &KnownConnection) -> Vec<String> {
    match &known.peer {
        Peer::Identified(identity) => identity.uris.clone(),
        other => panic!("not identified: {other:?}"),
    }
}

#[test]
fn a_connection_is_read_once_and_its_certificate_parsed_once() {
    let host = FakeHost::mtls(true, Some(&client_pem()));
    let policy = policy();
    let mut session = Session::default();
    let first = session.connection(&host, &policy, Some(7));
    assert_eq!(uris(&first), ["spiffe://mesh.local/ns/web/sa/ui"]);
    assert_eq!(first.tls_version.as_deref(), Some("TLSv1.3"));
    assert_eq!(first.sni.as_deref(), Some("api.example.com"));
    assert!(first.rendered.is_some());
    let reads = host.read_count();
    let again = session.connection(&host, &policy, Some(7));
    assert!(Rc::ptr_eq(&first, &again));
    assert_eq!(
        host.read_count(),
        reads,
        "a known connection costs no hostcall"
    );
    // Another connection with the same certificate: its facts are read, the certificate is not.
    let other = session.connection(&host, &policy, Some(8));
    assert_eq!(uris(&other), uris(&first));
    assert_eq!(host.reads_of("connection.peer_certificate"), 1);
    assert_eq!(host.reads_of("connection.tls_version"), 2);
}

#[test]
fn without_a_connection_id_nothing_is_kept() {
    let host = FakeHost::mtls(true, Some(&client_pem()));
    let policy = policy();
    let mut session = Session::default();
    session.connection(&host, &policy, None);
    session.connection(&host, &policy, None);
    assert_eq!(host.reads_of("connection.tls_version"), 2);
    assert_eq!(
        host.reads_of("connection.peer_certificate"),
        1,
        "the certificate is still parsed once"
    );
}

#[test]
fn a_new_policy_drops_what_was_derived_under_the_old_one() {
    let host = FakeHost::mtls(true, Some(&client_pem()));
    let old = policy();
    let mut session = Session::default();
    session.connection(&host, &old, Some(7));
    // A stream still running the old policy keeps its facts; one under the new policy reads again.
    let new = policy();
    session.connection(&host, &new, Some(7));
    assert_eq!(host.reads_of("connection.tls_version"), 2);
    // Reconfiguring also forgets the parsed certificates.
    session.reconfigured();
    session.connection(&host, &new, Some(7));
    assert_eq!(host.reads_of("connection.tls_version"), 3);
    assert_eq!(host.reads_of("connection.peer_certificate"), 2);
}

#[test]
fn plaintext_and_certificate_less_connections_read_only_what_they_have() {
    let mut host = FakeHost::default();
    host.set("source.address", "192.0.2.7:51000");
    let policy = policy();
    let mut session = Session::default();
    let known = session.connection(&host, &policy, Some(1));
    assert!(matches!(known.peer, Peer::NoCertificate));
    assert_eq!(known.sni, None);
    assert!(!known.address_from_headers);
    assert_eq!(host.reads_of("connection.requested_server_name"), 0);
    assert_eq!(host.reads_of("connection.peer_certificate_valid"), 0);
}

#[test]
fn an_address_with_port_zero_came_from_headers() {
    let mut host = FakeHost::default();
    host.set("source.address", "192.0.2.7:0");
    let known = Session::default().connection(&host, &policy(), Some(1));
    assert!(known.address_from_headers);
}

#[test]
fn an_envoy_without_the_certificate_degrades_to_its_first_san_attributes() {
    let mut host = FakeHost::mtls(true, None);
    host.set(
        "connection.uri_san_peer_certificate",
        "spiffe://mesh.local/ns/web/sa/ui",
    );
    host.set("connection.dns_san_peer_certificate", "ui.example.com");
    host.set("connection.subject_peer_certificate", "CN=ui");
    let policy = policy();
    let mut session = Session::default();
    let known = session.connection(&host, &policy, Some(1));
    let Peer::Identified(identity) = &known.peer else {
        panic!("not identified: {:?}", known.peer);
    };
    assert_eq!(identity.origin, IdentityOrigin::EnvoyAttributes);
    assert_eq!(identity.uris, ["spiffe://mesh.local/ns/web/sa/ui"]);
    assert_eq!(identity.dns, ["ui.example.com"]);
    assert_eq!(identity.sha256, DIGEST);
    // The fallback is kept like a parsed certificate.
    session.connection(&host, &policy, Some(2));
    assert_eq!(host.reads_of("connection.uri_san_peer_certificate"), 1);
}

#[test]
fn unreadable_and_unvalidated_certificates_are_not_identities() {
    let host = FakeHost::mtls(
        true,
        Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
    );
    let known = Session::default().connection(&host, &policy(), Some(1));
    assert!(matches!(known.peer, Peer::Unreadable));
    assert!(known.rendered.is_none());

    let host = FakeHost::mtls(false, Some(&client_pem()));
    let known = Session::default().connection(&host, &policy(), Some(1));
    assert!(matches!(known.peer, Peer::NotValidated));
    assert_eq!(
        host.reads_of("connection.peer_certificate"),
        0,
        "an unvalidated certificate is never parsed"
    );
}

#[test]
fn a_resumed_session_is_admitted_where_envoy_validated_the_certificate() {
    let pem = client_pem();
    let policy = policy();
    let mut session = Session::default();
    session.read_clock(&FakeHost::default());
    let validated = FakeHost::mtls(true, Some(&pem));
    session.connection(&validated, &policy, Some(1));
    // The next connection resumes the TLS session: Envoy reports the certificate not validated.
    let mut resumed = FakeHost::mtls(false, Some(&pem));
    resumed.shared = RefCell::new(validated.shared.borrow().clone());
    let known = session.connection(&resumed, &policy, Some(2));
    assert_eq!(uris(&known), ["spiffe://mesh.local/ns/web/sa/ui"]);
    // Elsewhere (another filter chain) the same certificate was never validated.
    let mut elsewhere = FakeHost::mtls(false, Some(&pem));
    elsewhere.set("xds.filter_chain_name", "other");
    elsewhere.shared = RefCell::new(validated.shared.borrow().clone());
    let known = session.connection(&elsewhere, &policy, Some(3));
    assert!(matches!(known.peer, Peer::NotValidated));
}

#[test]
fn each_warning_is_given_once_per_connection() {
    let mut session = Session::default();
    assert!(session.first_warning(Warning::Spoofing, 1));
    assert!(!session.first_warning(Warning::Spoofing, 1));
    assert!(session.first_warning(Warning::SniHostMismatch, 1));
    assert!(session.first_warning(Warning::Spoofing, 2));
    assert!(!session.first_warning(Warning::SniHostMismatch, 1));
    assert!(session.first_header_address_warning());
    assert!(!session.first_header_address_warning());
}

#[test]
fn the_clock_is_read_for_a_new_certificate_and_kept_when_the_host_has_none() {
    let host = FakeHost::mtls(true, Some(&client_pem()));
    let mut session = Session::default();
    assert_eq!(session.now(), 0);
    session.connection(&host, &policy(), Some(1));
    assert_eq!(session.now(), NOW);
}

// The request path.

/// What the log says on this thread: the level and the line of each record.
mod captured_log {
    use std::cell::RefCell;
    use std::sync::Once;

    thread_local! {
        static LINES: RefCell<Vec<(log::Level, String)>> = const { RefCell::new(Vec::new()) };
    }

    struct ThreadLog;

    impl log::Log for ThreadLog {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            LINES.with(|lines| {
                lines
                    .borrow_mut()
                    .push((record.level(), record.args().to_string()));
            });
        }
        fn flush(&self) {}
    }

    /// Starts capturing this thread's log (each test runs on its own thread).
    pub fn start() {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            log::set_logger(&ThreadLog).expect("no other logger in this suite");
            log::set_max_level(log::LevelFilter::Trace);
        });
        LINES.with(|lines| lines.borrow_mut().clear());
    }

    /// The lines logged at `level` since the last call, which are forgotten.
    pub fn take(level: log::Level) -> Vec<String> {
        LINES.with(|lines| {
            let mut lines = lines.borrow_mut();
            let (taken, kept) = lines.drain(..).partition(|(at, _)| *at == level);
            *lines = kept;
            taken.into_iter().map(|(_, line)| line).collect()
        })
    }
}

/// The metric hostcalls of a flush: `(name, value)` per update, and the definitions.
#[derive(Default)]
struct FakeSink {
    names: Vec<(MetricKind, String)>,
    updates: Vec<(String, u64)>,
}

impl MetricSink for FakeSink {
    fn define(&mut self, kind: MetricKind, name: &str) -> Option<u32> {
        self.names.push((kind, name.to_owned()));
        u32::try_from(self.names.len() - 1).ok()
    }
    fn increment(&mut self, id: u32, delta: u64) -> bool {
        let name = self.names[id as usize].1.clone();
        self.updates.push((name, delta));
        true
    }
    fn record(&mut self, id: u32, value: u64) -> bool {
        let name = self.names[id as usize].1.clone();
        self.updates.push((name, value));
        true
    }
}

impl FakeSink {
    /// The updates of series whose name starts with `prefix`.
    fn updates_of(&self, prefix: &str) -> Vec<(String, u64)> {
        self.updates
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .cloned()
            .collect()
    }
}

fn compiled(json: &str) -> Rc<Policy> {
    Rc::new(config::compile(json.as_bytes()).expect("the policy compiles"))
}

fn reply_of(outcome: RequestOutcome) -> LocalReply {
    match outcome.response {
        Response::Reply(reply) => reply,
        Response::Forward => panic!("forwarded, not answered"),
    }
}

fn reply_headers(reply: &LocalReply) -> Vec<(String, String)> {
    pairs::decode(&reply.headers)
        .unwrap()
        .iter()
        .map(|(key, value)| (text(key), text(value)))
        .collect()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

#[test]
fn without_a_configuration_every_request_is_answered_503_unread() {
    let host = FakeHost::plaintext().request("api.example.com", &[]);
    let outcome = Worker::default().on_request_headers(&host, None);
    assert_eq!(
        outcome,
        RequestOutcome {
            access_record: None,
            response: Response::Reply(LocalReply {
                status: 503,
                headers: pairs::encode::<&str, &str>(&[]),
                body: "certgate has no valid configuration".into(),
                grpc_status: None,
            }),
        }
    );
    assert_eq!(host.header_map_reads.get(), 0);
    assert_eq!(host.read_count(), 0, "no property read");
    assert_eq!(host.writes(), []);
}

/// A request's content type, the policy, and the reply's status, body, gRPC status and headers.
type DenialRow = (
    Option<(&'static str, &'static str)>,
    &'static str,
    u32,
    &'static str,
    Option<u32>,
    &'static [(&'static str, &'static str)],
);

#[test]
fn a_denied_request_gets_the_reply_its_caller_understands() {
    const HIDDEN: &str = r#"{"routes": [{"name": "r"}]}"#;
    const EXPOSED: &str = r#"{"routes": [{"name": "r"}],
        "deny_response": {"status": 401, "expose_reason": true, "grpc_status": 7}}"#;
    const GRPC: (&str, &str) = ("content-type", "application/grpc+proto");
    let rows: [DenialRow; 4] = [
        (
            None,
            HIDDEN,
            403,
            r#"{"error":"forbidden","request_id":"req-1"}"#,
            None,
            &[("content-type", "application/json")],
        ),
        (
            None,
            EXPOSED,
            401,
            r#"{"error":"forbidden","reason":"no_client_cert","request_id":"req-1"}"#,
            None,
            &[
                ("content-type", "application/json"),
                ("x-certgate-reason", "no_client_cert"),
            ],
        ),
        // Envoy answers gRPC trailers-only: the status as `grpc-status`, the body as
        // `grpc-message`, its own content type.
        (
            Some(GRPC),
            HIDDEN,
            403,
            "certgate: unauthenticated (request req-1)",
            Some(16),
            &[],
        ),
        (
            Some(GRPC),
            EXPOSED,
            401,
            "certgate: unauthenticated: no_client_cert (request req-1)",
            Some(7),
            &[("x-certgate-reason", "no_client_cert")],
        ),
    ];
    for (content_type, policy, status, body, grpc_status, headers) in rows {
        let mut request = vec![("x-request-id", "req-1")];
        request.extend(content_type);
        let host = FakeHost::plaintext()
            .on_connection(1)
            .request("api.example.com", &request);
        let outcome = Worker::default().on_request_headers(&host, Some(&compiled(policy)));
        let reply = reply_of(outcome);
        assert_eq!(
            (reply.status, reply.body.as_str(), reply.grpc_status),
            (status, body, grpc_status),
            "{content_type:?} {policy}"
        );
        assert_eq!(reply_headers(&reply), owned(headers), "{policy}");
        // A denied request is not rewritten; only its record is written.
        let writes = host.writes();
        assert!(
            matches!(writes.as_slice(), [Write::FilterState(..)]),
            "{writes:?}"
        );
    }
}

#[test]
fn an_allowed_request_is_rewritten_with_the_fewest_hostcalls() {
    let pem = client_pem();
    let mtls = || FakeHost::mtls(true, Some(&pem)).on_connection(1);
    // No forwarding options: nothing to rewrite.
    let host = mtls().request("api.example.com", &[]);
    let policy = compiled(r#"{"routes": [{"name": "r"}], "telemetry": {"filter_state": false}}"#);
    let outcome = Worker::default().on_request_headers(&host, Some(&policy));
    assert_eq!(outcome.response, Response::Forward);
    assert_eq!(host.writes(), []);
    // One change: one edit.
    let policy = compiled(
        r#"{"routes": [{"name": "r"}], "telemetry": {"filter_state": false},
            "forwarding": {"x_forwarded_proto": true}}"#,
    );
    let host = mtls().request("api.example.com", &[]);
    Worker::default().on_request_headers(&host, Some(&policy));
    assert_eq!(
        host.writes(),
        [Write::Edit("add x-forwarded-proto: https".into())]
    );
    let host = mtls().request("api.example.com", &[("X-Forwarded-Proto", "http")]);
    Worker::default().on_request_headers(&host, Some(&policy));
    assert_eq!(
        host.writes(),
        [Write::Edit("replace x-forwarded-proto: https".into())]
    );
    // Several changes: the whole map at once, untouched headers first.
    let policy = compiled(
        r#"{"routes": [{"name": "r"}], "telemetry": {"filter_state": false},
            "forwarding": {"x_forwarded_proto": true, "x_forwarded_host": true}}"#,
    );
    let host = mtls().request("api.example.com", &[("accept", "*/*")]);
    Worker::default().on_request_headers(&host, Some(&policy));
    assert_eq!(
        host.writes(),
        [Write::WholeMap(owned(&[
            (":method", "GET"),
            (":path", "/"),
            (":authority", "api.example.com"),
            ("accept", "*/*"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "api.example.com"),
            ("x-forwarded-port", "443"),
        ]))]
    );
}

#[test]
fn the_record_goes_to_filter_state_and_to_the_access_record_at_its_level() {
    let host = FakeHost::plaintext()
        .on_connection(1)
        .request("api.example.com", &[("x-request-id", "req-3")]);
    let expected = r#"{"route":"r","decision":"deny","reason":"no_client_cert","identity":null,"san_count":null,"tls_version":null,"sni":null,"days_to_expiry":null,"identity_source":null,"client_address":"192.0.2.7","request_id":"req-3","grpc_status":null}"#;
    for (level, access_record) in [
        ("debug", RecordLevel::Debug),
        ("info", RecordLevel::Info),
        ("warn", RecordLevel::Warn),
    ] {
        let policy = compiled(&format!(
            r#"{{"routes": [{{"name": "r"}}], "telemetry": {{"access_record": "{level}", "filter_state": false}}}}"#
        ));
        let outcome = Worker::default().on_request_headers(&host, Some(&policy));
        let line = outcome.access_record.expect("the access record is on");
        assert_eq!(
            line,
            AccessLine {
                level: access_record,
                line: expected.into()
            }
        );
        captured_log::start();
        line.log();
        assert_eq!(
            captured_log::take(access_record_level(access_record)),
            [expected]
        );
    }
    assert_eq!(host.writes(), [], "filter state off: nothing written");
    // The defaults: no access record, every present field as filter state, one write.
    let policy = compiled(r#"{"routes": [{"name": "r"}]}"#);
    let outcome = Worker::default().on_request_headers(&host, Some(&policy));
    assert_eq!(outcome.access_record, None);
    let writes = host.writes();
    let [Write::FilterState(key, value)] = writes.as_slice() else {
        panic!("not one filter-state write: {writes:?}");
    };
    assert_eq!(key, "certgate");
    let state = prost_types::Struct::decode(value.as_slice()).unwrap();
    let field = |name: &str| match &state.fields[name].kind {
        Some(prost_types::value::Kind::StringValue(text)) => text.clone(),
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(
        state.fields.len(),
        5,
        "route, decision, reason, client_address, request_id: {state:?}"
    );
    assert_eq!(
        [field("route"), field("decision"), field("reason")],
        ["r", "deny", "no_client_cert"]
    );
    assert_eq!(
        [field("client_address"), field("request_id")],
        ["192.0.2.7", "req-3"]
    );
}

fn access_record_level(level: RecordLevel) -> log::Level {
    match level {
        RecordLevel::Debug => log::Level::Debug,
        RecordLevel::Info => log::Level::Info,
        RecordLevel::Warn | RecordLevel::Off => log::Level::Warn,
    }
}

#[test]
fn spoofed_headers_are_removed_counted_and_warned_about_once_per_connection() {
    let policy = compiled(
        r#"{"routes": [{"name": "r", "require_client_cert": false}],
            "telemetry": {"filter_state": false}, "forwarding": {"xfcc": {"mode": "sanitize"}}}"#,
    );
    let mut worker = Worker::default();
    captured_log::start();
    let spoofing = |id| {
        FakeHost::plaintext().on_connection(id).request(
            "api.example.com",
            &[("x-forwarded-client-cert", "URI=spiffe://td/admin")],
        )
    };
    for id in [1, 1, 2] {
        let host = spoofing(id);
        let outcome = worker.on_request_headers(&host, Some(&policy));
        assert_eq!(outcome.response, Response::Forward);
        assert_eq!(
            host.writes(),
            [Write::Edit("remove x-forwarded-client-cert".into())]
        );
    }
    let warning = |id| {
        format!(
            "certgate: connection {id} from 192.0.2.7:51000 (not a trusted proxy) sent headers certgate owns; removed: x-forwarded-client-cert"
        )
    };
    assert_eq!(
        captured_log::take(log::Level::Warn),
        [warning(1), warning(2)]
    );
    let mut sink = FakeSink::default();
    worker.flush_metrics(&mut sink);
    assert_eq!(
        sink.updates_of("certgate_spoofed_headers_total"),
        [(
            "certgate_spoofed_headers_total.header.x-forwarded-client-cert".to_owned(),
            3
        )]
    );
}

#[test]
fn an_sni_that_does_not_cover_the_host_is_noted_once_per_connection() {
    let pem = client_pem();
    let policy = compiled(r#"{"routes": [{"name": "r"}], "telemetry": {"filter_state": false}}"#);
    let mut worker = Worker::default();
    captured_log::start();
    for (id, authority) in [
        (1, "other.example.com"),
        (1, "other.example.com:443"),
        (1, "api.example.com"),
        (2, "other.example.com"),
    ] {
        let host = FakeHost::mtls(true, Some(&pem))
            .on_connection(id)
            .request(authority, &[]);
        worker.on_request_headers(&host, Some(&policy));
    }
    let note = |id| {
        format!(
            "certgate: connection {id} from 192.0.2.7:51000: SNI \"api.example.com\" does not cover the request's host"
        )
    };
    assert_eq!(captured_log::take(log::Level::Info), [note(1), note(2)]);
    let mut sink = FakeSink::default();
    worker.flush_metrics(&mut sink);
    assert_eq!(
        sink.updates_of("certgate_sni_host_mismatch_total"),
        [("certgate_sni_host_mismatch_total".to_owned(), 3)]
    );
}

#[test]
fn an_address_taken_from_headers_is_warned_about_once_and_read_per_request() {
    let policy = compiled(
        r#"{"routes": [{"name": "r", "require_client_cert": false}], "telemetry": {"filter_state": false}}"#,
    );
    let mut worker = Worker::default();
    captured_log::start();
    let mut host = FakeHost::default()
        .on_connection(1)
        .request("api.example.com", &[]);
    host.set("source.address", "203.0.113.9:0");
    worker.on_request_headers(&host, Some(&policy));
    worker.on_request_headers(&host, Some(&policy));
    assert_eq!(
        host.reads_of("source.address"),
        3,
        "once for the connection, then per request"
    );
    assert_eq!(
        captured_log::take(log::Level::Warn),
        [
            "certgate: source.address 203.0.113.9 came from X-Forwarded-For, not the socket: \
          peers are not trusted by address. Set the HTTP connection manager's \
          use_remote_address: true and xff_num_trusted_hops: 0"
        ]
    );
}

/// A certificate for `spiffe://mesh.local/ns/web/sa/ui` whose validity ends on `end`.
fn certificate_ending(end: (i32, u8, u8)) -> String {
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "spiffe://mesh.local/ns/web/sa/ui".try_into().unwrap(),
    )];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(end.0, end.1, end.2);
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().pem()
}

#[test]
fn each_request_is_counted_and_each_certificate_s_expiry_observed_once() {
    let policy = compiled(r#"{"routes": [{"name": "r"}], "telemetry": {"filter_state": false}}"#);
    // 2026-01-08: 7 days after NOW, within the 14 days' warning.
    let pem = certificate_ending((2026, 1, 8));
    let identity = PeerIdentity::from_pem(pem.as_bytes()).unwrap();
    let mut worker = Worker::default();
    captured_log::start();
    for id in [1, 1, 2] {
        let host = FakeHost::mtls(true, Some(&pem))
            .on_connection(id)
            .request("api.example.com", &[]);
        worker.on_request_headers(&host, Some(&policy));
    }
    assert_eq!(
        captured_log::take(log::Level::Warn),
        [format!(
            "certgate: certificate {} (spiffe://mesh.local/ns/web/sa/ui) expires in 7 days",
            identity.sha256
        )]
    );
    let mut sink = FakeSink::default();
    worker.flush_metrics(&mut sink);
    let mut updates = sink.updates.clone();
    updates.sort();
    assert_eq!(
        updates,
        [
            ("certgate_cert_expiring_total.route.r".to_owned(), 3),
            (
                "certgate_identity_source_total.source.connection".to_owned(),
                3
            ),
            ("certgate_peer_cert_days_to_expiry".to_owned(), 7),
            (
                "certgate_requests_total.route.r.decision.allow.reason.validated_cert".to_owned(),
                3
            ),
            ("certgate_tls_version_total.version.TLSv1.3".to_owned(), 3),
        ]
    );
    assert!(sink.names.contains(&(
        MetricKind::Histogram,
        "certgate_peer_cert_days_to_expiry".to_owned()
    )));
    // Counted once handed over; a certificate seen before is not observed again.
    sink.updates.clear();
    let host = FakeHost::mtls(true, Some(&pem))
        .on_connection(3)
        .request("api.example.com", &[]);
    worker.on_request_headers(&host, Some(&policy));
    worker.flush_metrics(&mut sink);
    assert_eq!(sink.updates_of("certgate_peer_cert_days_to_expiry"), []);
    assert_eq!(
        sink.updates_of("certgate_requests_total"),
        [(
            "certgate_requests_total.route.r.decision.allow.reason.validated_cert".to_owned(),
            1
        )]
    );
    assert_eq!(captured_log::take(log::Level::Warn), Vec::<String>::new());
}

#[test]
fn past_the_series_capacity_one_warning_names_the_first_series_not_recorded() {
    // 2,050 routes, one request each: with the TLS-version and identity-source series, the
    // 2,047th route's series is the 2,049th series, one past the capacity of 2,048.
    let routes: Vec<String> = (0..2050)
        .map(|index| format!(r#"{{"name": "r{index}", "match": {{"path_exact": "/r{index}"}}}}"#))
        .collect();
    let policy = compiled(&format!(
        r#"{{"routes": [{}], "telemetry": {{"filter_state": false}}}}"#,
        routes.join(",")
    ));
    let mut worker = Worker::default();
    captured_log::start();
    for index in 0..2050 {
        let mut host = FakeHost::plaintext().on_connection(1);
        host.request = pairs::encode(&[
            (":method", "GET"),
            (":path", format!("/r{index}").as_str()),
            (":authority", "api.example.com"),
        ]);
        worker.on_request_headers(&host, Some(&policy));
    }
    assert_eq!(
        captured_log::take(log::Level::Warn),
        ["certgate: 2048 metric series counted; certgate_requests_total.route.r2046.decision.deny.reason.no_client_cert and any newer series are not recorded"]
    );
    let mut sink = FakeSink::default();
    worker.flush_metrics(&mut sink);
    assert_eq!(sink.names.len(), 2048);
    assert_eq!(sink.updates_of("certgate_requests_total.route.r2046."), []);
}

#[test]
fn an_invalid_configuration_is_refused_with_every_problem_logged() {
    let host = FakeHost::plaintext();
    let mut sink = FakeSink::default();
    captured_log::start();
    let configuration = br#"{"routes": [{"name": "r", "mode": "loud"}], "sni_host_mismatch": 1}"#;
    let policy = Worker::default().configure(&host, &mut sink, configuration.to_vec());
    assert!(policy.is_none());
    let errors = captured_log::take(log::Level::Error);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("certgate: invalid configuration: routes[0].mode"));
    assert!(errors[1].starts_with("certgate: invalid configuration: sni_host_mismatch"));
    assert_eq!(host.writes(), []);
}

#[test]
fn a_new_configuration_declares_the_record_hands_over_the_counts_and_drops_derived_facts() {
    let pem = client_pem();
    let host = FakeHost::mtls(true, Some(&pem))
        .on_connection(1)
        .request("api.example.com", &[]);
    let mut sink = FakeSink::default();
    let mut worker = Worker::default();
    captured_log::start();
    let policy = Rc::new(
        worker
            .configure(&host, &mut sink, br#"{"routes": [{"name": "r"}]}"#.to_vec())
            .expect("a valid configuration"),
    );
    assert_eq!(
        captured_log::take(log::Level::Info),
        ["certgate: configured with 1 routes"]
    );
    assert_eq!(
        host.writes(),
        [Write::ForeignCall("declare_property".into())],
        "the filter state's type is declared"
    );
    worker.on_request_headers(&host, Some(&policy));
    host.writes();
    assert_eq!(sink.updates, [], "counted, not handed over yet");
    // Without filter state nothing is declared; what the old policy counted is handed over.
    let quiet = br#"{"routes": [{"name": "r"}], "telemetry": {"filter_state": false}}"#;
    let policy = Rc::new(worker.configure(&host, &mut sink, quiet.to_vec()).unwrap());
    assert_eq!(host.writes(), []);
    assert_eq!(
        sink.updates_of("certgate_requests_total"),
        [(
            "certgate_requests_total.route.r.decision.allow.reason.validated_cert".to_owned(),
            1
        )]
    );
    // The connection and its certificate are read again under the new policy.
    worker.on_request_headers(&host, Some(&policy));
    assert_eq!(host.reads_of("connection.tls_version"), 2);
    assert_eq!(host.reads_of("connection.peer_certificate"), 2);
}
