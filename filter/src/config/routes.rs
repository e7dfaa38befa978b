//! `routes`: each route's `match` block and its `allow`/`deny` matchers, read and compiled.

use super::json::Json;
use super::matchers::{compile_matchers, matcher, RawMatcher};
use super::read::*;
use crate::decide::access::{Mode, Route};
use crate::decide::route::RouteMatch;
use crate::names::dns::DnsPattern;
use crate::record::series::NO_ROUTE;

pub(super) struct RawRoute {
    pub(super) name: String,
    pub(super) route_match: RawRouteMatch,
    pub(super) require_client_cert: bool,
    pub(super) allow: Option<Vec<RawMatcher>>,
    pub(super) deny: Vec<RawMatcher>,
    pub(super) mode: Option<Mode>,
}

impl RawRoute {
    pub(super) fn read(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<Self> {
        const KEYS: &[&str] = &[
            "name",
            "match",
            "require_client_cert",
            "allow",
            "deny",
            "mode",
        ];
        let fields = Fields::read(value, path, KEYS, problems)?;
        let name = fields.required("name", problems, string);
        let route = RawRoute {
            name: String::new(),
            route_match: fields
                .get("match", problems, RawRouteMatch::read)
                .unwrap_or_default(),
            require_client_cert: fields
                .get("require_client_cert", problems, boolean)
                .unwrap_or(true),
            allow: fields.optional("allow", problems, list(matcher)),
            deny: fields
                .get("deny", problems, list(matcher))
                .unwrap_or_default(),
            mode: fields.optional("mode", problems, keyword(Mode::NAMES)),
        };
        Some(RawRoute {
            name: name?,
            ..route
        })
    }
}

#[derive(Default)]
pub(super) struct RawRouteMatch {
    pub(super) route_name: Option<String>,
    pub(super) path_prefix: Option<String>,
    pub(super) path_exact: Option<String>,
    pub(super) hosts: Vec<String>,
    pub(super) methods: Vec<String>,
}

impl RawRouteMatch {
    pub(super) fn read(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<Self> {
        const KEYS: &[&str] = &[
            "route_name",
            "path_prefix",
            "path_exact",
            "hosts",
            "methods",
        ];
        let fields = Fields::read(value, path, KEYS, problems)?;
        Some(RawRouteMatch {
            route_name: fields.optional("route_name", problems, string),
            path_prefix: fields.optional("path_prefix", problems, string),
            path_exact: fields.optional("path_exact", problems, string),
            hosts: fields
                .get("hosts", problems, list(string))
                .unwrap_or_default(),
            methods: fields
                .get("methods", problems, list(string))
                .unwrap_or_default(),
        })
    }
}

impl RawRoute {
    pub(super) fn compile(
        self,
        path: &str,
        policy_mode: Mode,
        problems: &mut Problems<'_>,
    ) -> Route {
        if let Some(why) = route_name_problem(&self.name) {
            problems.add(format!("{path}.name"), format!("{:?} {why}", self.name));
        }
        let allow = self.allow.map(|allow| {
            if allow.is_empty() {
                problems.add(
                    format!("{path}.allow"),
                    "is empty: omit `allow` to admit any validated certificate, or list at least one matcher",
                );
            }
            compile_matchers(&allow, &format!("{path}.allow"), problems)
        });
        Route {
            route_match: self.route_match.compile(&format!("{path}.match"), problems),
            require_client_cert: self.require_client_cert,
            allow,
            deny: compile_matchers(&self.deny, &format!("{path}.deny"), problems),
            mode: self.mode.unwrap_or(policy_mode),
            name: self.name,
        }
    }
}

/// Route names become metric name segments and label values, so they keep to a safe alphabet.
pub(super) fn route_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 64 {
        Some("must be 1 to 64 characters long")
    } else if name == NO_ROUTE {
        Some("is reserved: it is the route label of requests no route matched")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Some("may only use letters, digits, '_' and '-' (it becomes a metric label)")
    } else {
        None
    }
}

impl RawRouteMatch {
    pub(super) fn compile(self, path: &str, problems: &mut Problems<'_>) -> RouteMatch {
        for (field, value) in [
            ("path_prefix", &self.path_prefix),
            ("path_exact", &self.path_exact),
        ] {
            if let Some(value) = value {
                if !value.starts_with('/') {
                    problems.add(
                        format!("{path}.{field}"),
                        format!("{value:?} does not start with '/'"),
                    );
                }
            }
        }
        if let Some(name) = &self.route_name {
            if name.is_empty() {
                problems.add(format!("{path}.route_name"), "is empty");
            }
        }
        let hosts = self
            .hosts
            .iter()
            .enumerate()
            .filter_map(|(index, host)| {
                DnsPattern::parse(host)
                    .map_err(|why| {
                        problems.add(
                            format!("{path}.hosts[{index}]"),
                            format!("{host:?} is not a valid host pattern: {why}"),
                        )
                    })
                    .ok()
            })
            .collect();
        let methods = self
            .methods
            .iter()
            .enumerate()
            .filter_map(|(index, method)| {
                if !method.is_empty()
                    && method.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-')
                {
                    Some(method.to_ascii_uppercase())
                } else {
                    problems.add(
                        format!("{path}.methods[{index}]"),
                        format!("{method:?} is not an HTTP method name"),
                    );
                    None
                }
            })
            .collect();
        RouteMatch {
            route_name: self.route_name,
            path_prefix: self.path_prefix,
            path_exact: self.path_exact,
            hosts,
            methods,
        }
    }
}
