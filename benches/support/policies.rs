//! The benchmark policies shared by `core.rs` and `harness.rs`: the same shapes the Envoy load
//! bench uses, so native, harness and Envoy numbers describe the same work.

/// A policy of `routes` routes with `matchers_per_route` allow matchers each, in the mix seen in
/// meshes: mostly exact DNS names and SPIFFE IDs, some wildcards, prefixes and CIDRs.
pub fn policy_json(routes: usize, matchers_per_route: usize) -> String {
    let route = |r: usize| {
        let matchers: Vec<String> = (0..matchers_per_route)
            .map(|m| match m % 6 {
                0 | 1 => format!(r#"{{"dns": "svc-{r}-{m}.ns.svc.cluster.local"}}"#),
                2 | 3 => format!(r#"{{"uri": "spiffe://mesh.local/ns/n{r}/sa/s{m}"}}"#),
                4 => format!(r#"{{"uri": "spiffe://mesh.local/ns/team-{r}-{m}/*"}}"#),
                _ => format!(r#"{{"ip": "10.{}.{}.0/24"}}"#, r % 200, m % 250),
            })
            .collect();
        format!(
            r#"{{"name": "r{r}", "match": {{"route_name": "r{r}"}}, "allow": [{}], "deny": [{{"dns": "legacy-{r}.svc.cluster.local"}}]}}"#,
            matchers.join(",")
        )
    };
    let routes: Vec<String> = (0..routes).map(route).collect();
    format!(r#"{{"routes": [{}]}}"#, routes.join(","))
}
