//! Native cost of certgate's core, no Wasm: one decision (route selection + matching) for a typical
//! policy and for a 10,000-matcher policy, compiling the 10,000-matcher policy, and everything the
//! filter computes for one request of the Envoy load bench's typical policy (decision, forwarding
//! headers, metrics counted, the record as filter state): the guest's own work, without the
//! hostcalls.
//!
//! Run with `cargo bench --bench core`. The policies are built by `support/policies.rs`, the same shapes the
//! Envoy load bench uses.

use certgate::config;
use certgate::decide::route::RequestFacts;
use certgate::evaluate::{self, ConnectionFacts};
use certgate::facts::pairs;
use certgate::identity::peer::Peer;
use certgate::identity::PeerIdentity;
use certgate::policy::Policy;
use certgate::record::access::RecordLevel;
use certgate::record::metrics::{Added, MetricCounts};
use certgate::rewrite::forwarding::RenderedIdentity;
use certgate::rewrite::RewriteCalls;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;

#[path = "support/policies.rs"]
mod policies;
use policies::{allowed_uri, policy_json, policy_with_features_json};

fn compile(json: &str) -> Policy {
    config::compile(json.as_bytes()).unwrap_or_else(|errors| panic!("{errors:?}"))
}

/// A client identity whose allowed SPIFFE ID sits in the last route (the worst case for route search).
fn identity(route: usize) -> PeerIdentity {
    PeerIdentity {
        dns: vec!["client.other.svc.cluster.local".into()],
        uris: vec![format!("spiffe://mesh.local/ns/n{route}/sa/s3")],
        subject_cns: vec!["client".into()],
        sha256: "ab".repeat(32),
        ..PeerIdentity::default()
    }
}

fn decide(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide");
    for (label, routes, per_route) in [("typical_10x5", 10, 5), ("large_10x1000", 10, 1000)] {
        let policy = compile(&policy_json(routes, per_route));
        let last = format!("r{}", routes - 1);
        let peer = identity(routes - 1);
        let facts = RequestFacts {
            route_name: Some(&last),
            path: "/api/v1/items?x=1",
            authority: "api:8443",
            method: "GET",
        };
        let decision = policy
            .access
            .decide(policy.access.select_route(&facts), Peer::Identified(&peer));
        assert!(
            !decision.is_denied(),
            "the benchmark identity must be allowed: {decision:?}"
        );
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| {
                let route = policy.access.select_route(black_box(&facts));
                black_box(
                    policy
                        .access
                        .decide(route, Peer::Identified(black_box(&peer))),
                )
            })
        });
    }
    group.finish();
}

/// Growth with the number of matchers in one route: indexed lookups should keep it flat.
fn scaling(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide_by_matchers");
    for per_route in [10, 100, 1_000, 10_000] {
        let policy = compile(&policy_json(1, per_route));
        let peer = identity(0);
        let facts = RequestFacts {
            route_name: Some("r0"),
            path: "/",
            authority: "api",
            method: "GET",
        };
        group.bench_function(BenchmarkId::from_parameter(per_route), |b| {
            b.iter(|| {
                black_box(policy.access.decide(
                    policy.access.select_route(&facts),
                    Peer::Identified(black_box(&peer)),
                ))
            })
        });
    }
    group.finish();
}

fn compile_large(c: &mut Criterion) {
    let json = policy_json(10, 1000);
    c.bench_function("compile_10000_matchers", |b| {
        b.iter(|| black_box(compile(black_box(&json))))
    });
}

/// One request of the Envoy load bench, as the filter computes it between its hostcalls: the
/// evaluation, the metrics counted, the filter state, the access record's JSON when its log line is
/// on (off in the bench's typical policy, as by default), and the header map to write back.
fn whole_request(c: &mut Criterion) {
    let routes = 10;
    let policy = compile(&policy_with_features_json(routes, 5));
    let ca = testkit::TestCa::new("certgate core bench CA").expect("a CA");
    let issued = ca
        .issue(
            &testkit::CertSpec::client()
                .uri(&allowed_uri(routes))
                .dns("client.bench.svc.cluster.local"),
        )
        .expect("a client certificate");
    let peer = PeerIdentity::from_pem(issued.cert_pem.as_bytes()).expect("the certificate reads");
    let route = format!("r{}", routes - 1);
    let path = format!("/r{}/items?page=1", routes - 1);
    let raw_headers = pairs::encode(&[
        (":authority", "app.mesh.local"),
        (":path", path.as_str()),
        (":method", "GET"),
        (":scheme", "https"),
        ("user-agent", "certgate-load"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "5b1d2c3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"),
        ("x-envoy-external-address", "127.0.0.1"),
    ]);
    // Rendered once per connection, as the filter does for a kept-alive connection.
    let rendered = RenderedIdentity::new(&policy.forwarding, &peer);
    let connection = ConnectionFacts {
        certificate: Peer::Identified(&peer),
        mtls: true,
        tls_version: Some("TLSv1.3"),
        sni: Some("app.mesh.local"),
        source_address: Some("127.0.0.1:50000"),
        local_address: Some("127.0.0.1:8443"),
        rendered: Some(&rendered),
    };
    let now = 1_790_000_000;
    let mut counts = MetricCounts::default();
    let request = |counts: &mut MetricCounts| {
        let headers = pairs::decode(black_box(&raw_headers)).expect("pairs decode");
        let facts = RequestFacts {
            route_name: Some(&route),
            path: pairs::first_value(&headers, ":path").unwrap_or_default(),
            authority: pairs::first_value(&headers, ":authority").unwrap_or_default(),
            method: pairs::first_value(&headers, ":method").unwrap_or_default(),
        };
        let evaluation = evaluate::evaluate(&policy, &facts, &headers, &connection, now);
        let mut counted = 0;
        for (metric, value) in evaluation.metrics(&policy, connection.tls_version) {
            if counts.add(&metric, value) == Added::Counted {
                counted += 1;
            }
        }
        let record = evaluation.record(&policy, &connection, &headers);
        let state = record.filter_state(policy.telemetry.filter_state).len();
        let json = (policy.telemetry.access_record != RecordLevel::Off).then(|| record.json());
        let written = match evaluation.rewrite.headers.calls(&headers) {
            RewriteCalls::WholeMap(map) => pairs::encode(&map).len(),
            RewriteCalls::Edit(_) | RewriteCalls::Nothing => 0,
        };
        assert!(
            !evaluation.decision.is_denied(),
            "the bench client is allowed"
        );
        black_box((counted, state, json.map(|json| json.len()), written))
    };
    request(&mut counts);
    c.bench_function("whole_request/typical_10x5", |b| {
        b.iter(|| request(&mut counts))
    });
}

criterion_group!(benches, decide, scaling, compile_large, whole_request);
criterion_main!(benches);
