//! The hostcalls certgate makes for the Envoy load bench's request, pinned per bench variant: each
//! hostcall costs Envoy's worker microseconds, so one more on the hot path is a performance change
//! that has to be seen. Counted by the harness on the real `certgate.wasm` with the bench's own
//! policies, connection manager, client certificate and request (`benches/support/envoy_bench.rs`,
//! the code `cargo xtask bench-envoy` prints them with). Counts are deterministic; speed is the
//! bench's business.

#[path = "../benches/support/envoy_bench.rs"]
mod envoy_bench;
#[path = "../benches/support/policies.rs"]
mod policies;

use envoy_bench::{breakdown, hostcalls_per_request, Hostcalls, Variant};
use host_harness::GuestModule;
use std::sync::OnceLock;

/// What a request reads on any connection: the request headers (one pairs call), `xds.route_name`
/// (the bench routes match on it) and `connection.id` (the key of the connection's cached facts).
const READS: [(&str, u64); 2] = [("proxy_get_header_map_pairs", 1), ("proxy_get_property", 2)];

/// The first request of a new connection (from a certificate certgate has parsed and recorded
/// before) reads the connection's facts as well, 8 more properties: `connection.tls_version`,
/// `connection.requested_server_name`, `source.address`, `connection.mtls`,
/// `connection.peer_certificate_valid`, `connection.sha256_peer_certificate_digest`, and the scope
/// of the resumption record (`destination.address`, `xds.filter_chain_name`); the record itself is
/// not written again within a minute.
const NEW_CONNECTION_READS: [(&str, u64); 2] = [
    ("proxy_get_header_map_pairs", 1),
    ("proxy_get_property", 10),
];

/// (variant, a kept-alive request's hostcalls, a new connection's first request's hostcalls), by
/// hostcall in name order.
type Pinned = (
    Variant,
    &'static [(&'static str, u64)],
    &'static [(&'static str, u64)],
);

/// The typical policy writes the rewritten header map back once (every forwarding header) and the
/// record as one filter-state write; XFCC alone is one header edit. The 10,000-matcher policy makes
/// the typical policy's hostcalls: matchers are guest work.
const PINNED: [Pinned; 4] = [
    (
        Variant::CertgateTypical,
        &[
            ("proxy_get_header_map_pairs", 1),
            ("proxy_get_property", 2),
            ("proxy_set_header_map_pairs", 1),
            ("proxy_set_property", 1),
        ],
        &[
            ("proxy_get_header_map_pairs", 1),
            ("proxy_get_property", 10),
            ("proxy_set_header_map_pairs", 1),
            ("proxy_set_property", 1),
        ],
    ),
    (
        Variant::CertgateLarge,
        &[
            ("proxy_get_header_map_pairs", 1),
            ("proxy_get_property", 2),
            ("proxy_set_header_map_pairs", 1),
            ("proxy_set_property", 1),
        ],
        &[
            ("proxy_get_header_map_pairs", 1),
            ("proxy_get_property", 10),
            ("proxy_set_header_map_pairs", 1),
            ("proxy_set_property", 1),
        ],
    ),
    (Variant::CertgateDecideOnly, &READS, &NEW_CONNECTION_READS),
    (
        Variant::CertgateDecideXfcc,
        &[
            ("proxy_add_header_map_value", 1),
            ("proxy_get_header_map_pairs", 1),
            ("proxy_get_property", 2),
        ],
        &[
            ("proxy_add_header_map_value", 1),
            ("proxy_get_header_map_pairs", 1),
            ("proxy_get_property", 10),
        ],
    ),
];

/// The bench variants' hostcalls, counted once per test process.
fn counted() -> &'static [(Variant, Hostcalls)] {
    static COUNTED: OnceLock<Vec<(Variant, Hostcalls)>> = OnceLock::new();
    COUNTED.get_or_init(|| {
        let wasm = testkit::certgate_wasm().unwrap_or_else(|error| panic!("{error:#}"));
        let module =
            GuestModule::load(&wasm).unwrap_or_else(|error| panic!("{}: {error}", wasm.display()));
        Variant::CERTGATE_POLICIES
            .into_iter()
            .map(|variant| {
                let policy = variant.certgate_policy().expect("a certgate variant");
                let calls = hostcalls_per_request(&module, &policy)
                    .unwrap_or_else(|error| panic!("{}: {error:#}", variant.name()));
                (variant, calls)
            })
            .collect()
    })
}

fn listed(calls: &[(&str, u64)]) -> String {
    calls
        .iter()
        .map(|(name, count)| format!("{name} {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn each_bench_variant_makes_exactly_its_pinned_hostcalls() {
    let counted = counted();
    assert_eq!(
        counted
            .iter()
            .map(|(variant, _)| *variant)
            .collect::<Vec<_>>(),
        PINNED.map(|(variant, _, _)| variant),
        "every certgate variant of the bench is pinned"
    );
    let mut wrong = Vec::new();
    for ((variant, kept_alive, new_connection), (_, calls)) in PINNED.iter().zip(counted) {
        for (request, expected, actual) in [
            ("a kept-alive request", kept_alive, &calls.kept_alive),
            (
                "a new connection's request",
                new_connection,
                &calls.new_connection,
            ),
        ] {
            let expected = listed(expected);
            let actual = breakdown(actual);
            if actual != expected {
                wrong.push(format!(
                    "{}, {request}:\n    made     {actual}\n    expected {expected}",
                    variant.name()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "certgate's hostcalls per bench request changed (each costs Envoy's worker microseconds; \
         the hot path is filter/src/glue/mod.rs, on_http_request_headers). If the change is \
         intended, update the pinned counts here and the figures in docs/performance.md:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn kept_alive_requests_stay_within_the_hostcall_budget() {
    // decide only <= 3, decide + XFCC <= 5, typical and 10,000 matchers <= 6.
    let budgets: Vec<(Variant, Option<u64>)> = Variant::CERTGATE_POLICIES
        .into_iter()
        .map(|variant| (variant, variant.hostcall_budget()))
        .collect();
    assert_eq!(
        budgets,
        [
            (Variant::CertgateTypical, Some(6)),
            (Variant::CertgateLarge, Some(6)),
            (Variant::CertgateDecideOnly, Some(3)),
            (Variant::CertgateDecideXfcc, Some(5)),
        ]
    );
    for (variant, calls) in counted() {
        let budget = variant
            .hostcall_budget()
            .expect("every certgate variant has a budget");
        assert!(
            calls.kept_alive.total() <= budget,
            "{}: {} hostcalls on a kept-alive request, over its budget of {budget} ({})",
            variant.name(),
            calls.kept_alive.total(),
            breakdown(&calls.kept_alive)
        );
    }
}

#[test]
fn matchers_are_guest_work_never_hostcalls() {
    let counted = counted();
    let of = |wanted: Variant| {
        &counted
            .iter()
            .find(|(variant, _)| *variant == wanted)
            .expect("counted")
            .1
    };
    let (typical, large) = (of(Variant::CertgateTypical), of(Variant::CertgateLarge));
    assert_eq!(
        (
            breakdown(&large.kept_alive),
            breakdown(&large.new_connection)
        ),
        (
            breakdown(&typical.kept_alive),
            breakdown(&typical.new_connection)
        ),
        "the 10,000-matcher policy must make the typical policy's hostcalls"
    );
}
