//! The benchmark policies shared by `core.rs`, `harness.rs` and the Envoy load bench
//! (`envoy_load.rs`), so native, harness and Envoy numbers describe the same work: the routes and
//! their matchers, and the features a typical deployment turns on.
// Each bench uses part of this file.
#![allow(dead_code)]

/// The kind of SAN a bench matcher matches, named as certgate's configuration names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatcherKind {
    Dns,
    Uri,
    UriPrefix,
    Ip,
}

impl MatcherKind {
    /// The configuration key (`{"dns": ...}`).
    pub fn key(self) -> &'static str {
        match self {
            MatcherKind::Dns => "dns",
            MatcherKind::Uri | MatcherKind::UriPrefix => "uri",
            MatcherKind::Ip => "ip",
        }
    }
}

/// Allow matcher `m` of route `r`, in the mix seen in meshes: mostly exact DNS names and SPIFFE IDs,
/// some SPIFFE prefixes and CIDRs.
pub fn allow_matcher(r: usize, m: usize) -> (MatcherKind, String) {
    match m % 6 {
        0 | 1 => (
            MatcherKind::Dns,
            format!("svc-{r}-{m}.ns.svc.cluster.local"),
        ),
        2 | 3 => (
            MatcherKind::Uri,
            format!("spiffe://mesh.local/ns/n{r}/sa/s{m}"),
        ),
        4 => (
            MatcherKind::UriPrefix,
            format!("spiffe://mesh.local/ns/team-{r}-{m}/*"),
        ),
        _ => (MatcherKind::Ip, format!("10.{}.{}.0/24", r % 200, m % 250)),
    }
}

/// The one deny matcher (a DNS name) of route `r`.
pub fn deny_dns(r: usize) -> String {
    format!("legacy-{r}.svc.cluster.local")
}

/// The identity the benches send: allowed by matcher 3 of the last route, the worst case of route
/// search.
pub fn allowed_uri(routes: usize) -> String {
    format!("spiffe://mesh.local/ns/n{}/sa/s3", routes - 1)
}

/// A policy of `routes` routes named `r0`, `r1`, ... (each matching the Envoy route of that name)
/// with `matchers_per_route` allow matchers and one deny matcher each.
pub fn policy_json(routes: usize, matchers_per_route: usize) -> String {
    format!(
        r#"{{"routes": [{}]}}"#,
        routes_json(routes, matchers_per_route)
    )
}

/// [`policy_json`] with every forwarding header and telemetry on: the typical deployment the Envoy
/// load bench measures.
pub fn policy_with_features_json(routes: usize, matchers_per_route: usize) -> String {
    policy_with_json(routes, matchers_per_route, FEATURES)
}

/// [`policy_json`] with more top-level members (`"key": value, ...`).
pub fn policy_with_json(routes: usize, matchers_per_route: usize, members: &str) -> String {
    format!(
        r#"{{"routes": [{}], {members}}}"#,
        routes_json(routes, matchers_per_route)
    )
}

/// Every forwarding header certgate can set, and telemetry as a typical deployment has it: metrics,
/// expiry warnings and the record in filter state for Envoy's access log to print (certgate's own
/// access-record log line stays off, its default); on one line, as Envoy configs embed it.
const FEATURES: &str = concat!(
    r#""forwarding": {"xff": {"append": true, "trusted_hops": 0}, "x_forwarded_proto": true, "#,
    r#""x_forwarded_host": true, "forwarded": "append", "#,
    r#""xfcc": {"mode": "sanitize_set", "details": ["hash", "subject", "uri", "dns"]}, "#,
    r#""client_cert": true, "identity_headers": {"x-client-spiffe-id": "uri", "#,
    r#""x-client-dns": "dns", "x-client-subject": "subject", "x-client-route": "route"}}, "#,
    r#""telemetry": {"expiry_warning_days": 14, "filter_state": true}"#
);

fn routes_json(routes: usize, matchers_per_route: usize) -> String {
    let route = |r: usize| {
        let matchers: Vec<String> = (0..matchers_per_route)
            .map(|m| {
                let (kind, value) = allow_matcher(r, m);
                format!(r#"{{"{}": "{value}"}}"#, kind.key())
            })
            .collect();
        format!(
            r#"{{"name": "r{r}", "match": {{"route_name": "r{r}"}}, "allow": [{}], "deny": [{{"dns": "{}"}}]}}"#,
            matchers.join(","),
            deny_dns(r)
        )
    };
    (0..routes).map(route).collect::<Vec<_>>().join(",")
}
