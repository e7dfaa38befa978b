//! Which route a request belongs to: the `match` block of a route and the request facts it reads.

use crate::names::dns::{authority_host, DnsPattern};

/// What the host tells certgate about the request, borrowed from the host's header map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestFacts<'a> {
    /// Envoy's `xds.route_name`; `None` when the policy does not match on route names (not fetched).
    pub route_name: Option<&'a str>,
    /// `:path`, query included.
    pub path: &'a str,
    /// `:authority`, port included.
    pub authority: &'a str,
    pub method: &'a str,
}

/// A compiled `match` block: every present condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RouteMatch {
    pub(crate) route_name: Option<String>,
    pub(crate) path_prefix: Option<String>,
    pub(crate) path_exact: Option<String>,
    pub(crate) hosts: Vec<DnsPattern>,
    /// Uppercase method names.
    pub(crate) methods: Vec<String>,
}

impl RequestFacts<'_> {
    /// `:path` without its query or fragment, what `path_prefix` and `path_exact` compare.
    pub(crate) fn path_only(&self) -> &str {
        let end = self
            .path
            .bytes()
            .position(|b| b == b'?' || b == b'#')
            .unwrap_or(self.path.len());
        self.path.split_at(end).0
    }
}

impl RouteMatch {
    /// Whether the request fits; `path` is [`RequestFacts::path_only`], found once per request
    /// rather than once per route (it was the largest part of route selection in the guest).
    pub(crate) fn matches(&self, request: &RequestFacts<'_>, path: &str) -> bool {
        self.route_name
            .as_deref()
            .is_none_or(|name| request.route_name == Some(name))
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|prefix| path.starts_with(prefix))
            && self.path_exact.as_deref().is_none_or(|exact| path == exact)
            && (self.methods.is_empty()
                || self
                    .methods
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(request.method)))
            && (self.hosts.is_empty() || {
                let host = authority_host(request.authority);
                self.hosts.iter().any(|pattern| pattern.matches_name(&host))
            })
    }
}
