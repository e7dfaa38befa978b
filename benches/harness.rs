//! The cost of the real `certgate.wasm` through the host harness: instantiating the VM,
//! configuring it, and one whole request (context create, request headers, response headers, log,
//! done, delete) for a typical policy (10 routes, 50 matchers) and a 10,000-matcher policy. The
//! hostcalls one request makes are printed before the measurements.
//!
//! Run with `cargo bench --bench harness` after `cargo xtask build-wasm` (or with `CERTGATE_WASM`
//! set). The policies are those of `core.rs` (`support/policies.rs`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use host_harness::{Certificate, Connection, GuestModule, Plugin, PluginSettings, Request};
use std::hint::black_box;
use testkit::{CertSpec, TestCa};

#[path = "support/policies.rs"]
mod policies;
use policies::policy_json;

/// (label, routes, allow matchers per route)
const POLICIES: [(&str, usize, usize); 2] = [("typical_10x5", 10, 5), ("large_10x1000", 10, 1000)];

fn module() -> GuestModule {
    let path = testkit::certgate_wasm().unwrap_or_else(|error| panic!("{error:#}"));
    GuestModule::load(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn settings(policy: &str) -> PluginSettings {
    PluginSettings::new("certgate").configuration(policy.as_bytes().to_vec())
}

/// A client allowed on the last route (`r{routes-1}`, matcher 3), the worst case of route search.
fn allowed_client(routes: usize) -> Connection {
    let ca = TestCa::new("certgate bench CA").expect("a CA");
    let spec = CertSpec::client().uri(&format!("spiffe://mesh.local/ns/n{}/sa/s3", routes - 1));
    let issued = ca.issue(&spec).expect("a client certificate");
    Connection::mtls(Certificate::from_pem(&issued.cert_pem).expect("rcgen PEM parses"))
}

fn plugin(module: &GuestModule, policy: &str) -> Plugin {
    let plugin = Plugin::new(module, settings(policy)).expect("certgate starts");
    assert!(
        plugin.configured().accepted,
        "{:?}",
        plugin.configured().logs
    );
    plugin
}

fn instantiate(c: &mut Criterion) {
    let module = module();
    let empty = r#"{"routes": []}"#;
    c.bench_function("harness_instantiate", |b| {
        b.iter(|| black_box(plugin(&module, empty)))
    });
}

fn configure(c: &mut Criterion) {
    let module = module();
    let mut group = c.benchmark_group("harness_configure");
    for (label, routes, per_route) in POLICIES {
        let policy = policy_json(routes, per_route);
        let mut plugin = plugin(&module, &policy);
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| {
                let configured = plugin.configure(policy.as_bytes()).expect("configures");
                plugin.take_logs();
                black_box(configured)
            })
        });
    }
    group.finish();
}

fn request(c: &mut Criterion) {
    let module = module();
    let mut group = c.benchmark_group("harness_request");
    for (label, routes, per_route) in POLICIES {
        let mut plugin = plugin(&module, &policy_json(routes, per_route));
        let connection = allowed_client(routes);
        let route = format!("r{}", routes - 1);
        let send = |plugin: &mut Plugin| {
            let exchange = plugin
                .send(
                    &connection,
                    Request::get("/api/v1/items?x=1").route_name(&route),
                )
                .expect("the request runs");
            // Drain whatever the guest logged (its access-record line is off by default) so a long
            // run does not grow.
            plugin.take_logs();
            exchange
        };
        let first = send(&mut plugin);
        assert!(
            first.request.is_continued(),
            "the bench client must be allowed"
        );
        let warm = send(&mut plugin);
        let calls: Vec<String> = warm
            .hostcalls
            .iter()
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        eprintln!(
            "{label}: {} hostcalls per request ({})",
            warm.hostcalls.total(),
            calls.join(", ")
        );
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| black_box(send(&mut plugin)))
        });
    }
    group.finish();
}

criterion_group!(benches, instantiate, configure, request);
criterion_main!(benches);
