//! Native cost of certgate's core, no Wasm: one decision (route selection + matching) for a typical
//! policy and for a 10,000-matcher policy, and compiling the 10,000-matcher policy.
//!
//! Run with `cargo bench --bench core`. The policies are built by `support/policies.rs`, the same shapes the
//! Envoy load bench uses.

use certgate::core::config;
use certgate::core::identity::PeerIdentity;
use certgate::core::policy::{Peer, Policy};
use certgate::core::route::RequestFacts;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;

#[path = "support/policies.rs"]
mod policies;
use policies::policy_json;

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
        let decision = policy.decide(policy.select_route(&facts), Peer::Identified(&peer));
        assert!(
            !decision.is_denied(),
            "the benchmark identity must be allowed: {decision:?}"
        );
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| {
                let route = policy.select_route(black_box(&facts));
                black_box(policy.decide(route, Peer::Identified(black_box(&peer))))
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
                black_box(policy.decide(
                    policy.select_route(&facts),
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

criterion_group!(benches, decide, scaling, compile_large);
criterion_main!(benches);
