//! The load bench's Envoy (`benches/envoy/bench.yaml`) measures what it claims to: every listener
//! serves the bench request, the certgate and native RBAC variants refuse identities their policy
//! does not allow, and the Wasm floor and the no-filter listener let everything through. Outcomes
//! only; speed is the bench's business (`cargo xtask bench-envoy`).

#[path = "../benches/support/envoy_bench.rs"]
mod envoy_bench;
#[path = "../benches/support/policies.rs"]
mod policies;

use envoy_bench::{bench_request, BenchEnvoy, Modules, Variant};
use testkit::CertSpec;

#[tokio::test]
async fn every_listener_answers_as_its_variant_should() {
    let certgate = testkit::certgate_wasm().unwrap();
    let modules = Modules {
        // The opt-level z build differs only in code generation: the shipped build checks its
        // listener's config, and the suite does not pay for a second build of the filter.
        certgate_opt_z: certgate.clone(),
        certgate_baseline: certgate.clone(),
        certgate,
        wasm_floor: testkit::wasm_floor().unwrap(),
    };
    let bench = BenchEnvoy::start(&modules).await.unwrap();
    let stranger = bench
        .pki
        .client_cert(&CertSpec::client().uri("spiffe://mesh.local/ns/n9/sa/stranger"))
        .unwrap();
    let denied_by_name = bench
        .pki
        .client_cert(
            &envoy_bench::bench_client_spec().dns(&policies::deny_dns(envoy_bench::ROUTES - 1)),
        )
        .unwrap();
    let mut reached_upstream = 0;
    for variant in Variant::ALL {
        let enforces = !matches!(variant, Variant::WasmFloor | Variant::NoFilter);
        let refused = if enforces { 403 } else { 200 };
        // (who, certificate, expected status)
        let table = [
            ("the bench identity", &bench.client_cert, 200),
            ("an identity no route allows", &stranger, refused),
            (
                "an allowed identity with a denied DNS SAN",
                &denied_by_name,
                refused,
            ),
        ];
        for (who, cert, expected) in table {
            let response = bench
                .client_with(variant, cert)
                .unwrap()
                .send(&bench_request())
                .await
                .unwrap();
            assert_eq!(
                response.status,
                expected,
                "{} for {who}: {}",
                variant.name(),
                response.body_text()
            );
            if expected == 200 {
                reached_upstream += 1;
            }
        }
    }
    assert_eq!(bench.upstream.requests_served(), reached_upstream);
}
