//! The session through a fake host: a connection's facts are read once, a certificate parsed once,
//! a new policy drops what the old one derived, an Envoy without the certificate degrades to its
//! first-SAN attributes, a resumed session is admitted only where Envoy validated the certificate,
//! and each warning is given once per connection.

// Helpers outside `#[test]` functions build fixtures and fail loudly on fixture bugs.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing
)]

// The shared certificate fixtures; this suite needs only a few of them.
#[allow(dead_code)]
mod support;

use certgate::config;
use certgate::identity::peer::Peer;
use certgate::identity::IdentityOrigin;
use certgate::policy::Policy;
use certgate::session::{Host, KnownConnection, Session, Warning};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use support::San::Uri;

/// 2026-01-01T00:00:00Z, inside the test certificates' validity.
const NOW: i64 = 1_767_225_600;
const DIGEST: &str = "ab12";

/// Properties by dotted path, shared data, and every property read, in order.
#[derive(Default)]
struct FakeHost {
    properties: HashMap<String, Vec<u8>>,
    shared: RefCell<HashMap<String, Vec<u8>>>,
    reads: RefCell<Vec<String>>,
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
    support::cert_pem(&[Uri("spiffe://mesh.local/ns/web/sa/ui")], None)
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
