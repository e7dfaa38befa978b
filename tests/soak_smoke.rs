//! The soak and reload runs of `cargo xtask soak` at smoke sizes, in the default test run: the
//! same code (`tests/support/soak/`), 20,000 requests through the harness and 2,000 through Envoy
//! with one valid and one invalid config swap.

#[path = "support/soak/mod.rs"]
mod soak;

use soak::Sizes;

#[test]
fn the_harness_soak_keeps_certgate_memory_flat_and_decides_every_request() {
    let requests = Sizes::SMOKE.harness_requests;
    let run = soak::harness::run(requests, |_| {}).unwrap_or_else(|error| panic!("{error:#}"));
    run.print();
    let problems = run.problems(requests);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_harness_soak_stays_within_4_mib_of_linear_memory() {
    let run = soak::harness::run(Sizes::SMOKE.harness_requests / 10, |_| {})
        .unwrap_or_else(|error| panic!("{error:#}"));
    run.print();
    assert_eq!(run.memory_limit_problem(), None);
}

#[tokio::test]
async fn the_envoy_soak_reloads_under_load_without_a_failed_request() {
    let requests = Sizes::SMOKE.envoy_requests;
    let run = soak::envoy::run(requests, |_| {})
        .await
        .unwrap_or_else(|error| panic!("{error:#}"));
    run.print();
    let problems = run.problems(requests);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
