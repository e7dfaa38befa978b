//! Target `config_json`: certgate's configuration compiler on arbitrary bytes.
//!
//! Properties: a document either compiles or is refused with at least one problem, each a single
//! non-empty log line; a compiled policy then evaluates a few canned requests (every identity
//! source, forwarding header and peer kind) with an access record that is one line of valid JSON
//! and metric names that stay in their alphabet.

use super::seed;
use super::NOW_SECONDS;
use certgate::config;
use certgate::decide::route::RequestFacts;
use certgate::encoding::percent;
use certgate::evaluate::{evaluate, ConnectionFacts};
use certgate::identity::peer::Peer;
use certgate::identity::PeerIdentity;
use certgate::policy::Policy;

pub fn run(data: &[u8]) {
    match config::compile(data) {
        Ok(policy) => evaluate_canned_requests(&policy),
        Err(errors) => {
            assert!(
                !errors.is_empty(),
                "a refused configuration names a problem"
            );
            for error in errors {
                let line = error.to_string();
                assert!(!line.is_empty(), "an empty problem for {error:?}");
                assert!(
                    !line.contains(['\n', '\r']),
                    "each problem is one log line: {line:?}"
                );
            }
        }
    }
}

fn evaluate_canned_requests(policy: &Policy) {
    let Ok(identity) = PeerIdentity::from_pem(seed::LEAF_PEM.as_bytes()) else {
        panic!("the seed certificate is readable");
    };
    let xfcc = format!(
        "Hash=00;URI=spiffe://mesh.local/ns/edge/sa/gateway,Cert=\"{}\"",
        percent::encode(seed::LEAF_PEM.as_bytes())
    );
    let alb_leaf = percent::encode(seed::LEAF_PEM.as_bytes());
    let named = [
        (":authority", "api.example.com:8443"),
        (":path", "/admin/users?page=2"),
        (":method", "GET"),
        ("x-forwarded-for", "203.0.113.9, 10.0.0.7"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "for=203.0.113.9;proto=https"),
        ("x-forwarded-client-cert", xfcc.as_str()),
        ("x-amzn-mtls-clientcert-leaf", alb_leaf.as_str()),
        ("x-client-spiffe-id", "spiffe://forged/x"),
        ("x-request-id", "6f1c"),
    ];
    let headers: Vec<(&[u8], &[u8])> = named
        .iter()
        .map(|(name, value)| (name.as_bytes(), value.as_bytes()))
        .collect();
    let requests = [
        RequestFacts {
            route_name: Some("admin"),
            path: "/admin/users?page=2",
            authority: "api.example.com:8443",
            method: "GET",
        },
        RequestFacts {
            route_name: None,
            path: "/healthz",
            authority: "[2001:db8::1]:80",
            method: "head",
        },
    ];
    let peers = [
        Peer::Identified(&identity),
        Peer::NoCertificate,
        Peer::NotValidated,
        Peer::Unreadable,
    ];
    let sources = [Some("10.0.0.7:443"), Some("203.0.113.9:0"), None];
    for request in &requests {
        for peer in peers {
            for source_address in sources {
                let connection = ConnectionFacts {
                    certificate: peer,
                    mtls: peer != Peer::NoCertificate,
                    tls_version: Some("TLSv1.3"),
                    sni: Some("api.example.com"),
                    source_address,
                    local_address: Some("10.0.0.1:8443"),
                    rendered: None,
                };
                let evaluation = evaluate(policy, request, &headers, &connection, NOW_SECONDS);
                let record = evaluation.record(policy, &connection, &headers).json();
                assert!(
                    !record.contains(['\n', '\r']),
                    "the access record is one line: {record}"
                );
                assert!(
                    serde_json::from_str::<serde_json::Value>(&record).is_ok_and(|v| v.is_object()),
                    "the access record is a JSON object: {record}"
                );
                for (metric, _) in evaluation.metrics(policy, connection.tls_version) {
                    let name = metric.name();
                    assert!(
                        name.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)),
                        "metric name out of its alphabet: {name:?}"
                    );
                }
            }
        }
    }
}
