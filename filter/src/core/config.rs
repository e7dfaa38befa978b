//! The plugin configuration: its JSON schema (the public contract) and its compilation into a ready
//! [`Policy`], reporting every problem with the path of the field that has it.

use super::dns::DnsPattern;
use super::ip::IpNet;
use super::matcher::{Matcher, MatcherKind, MatcherSet};
use super::policy::{
    DefaultAction, DenyResponse, IdentitySource, Mode, Policy, Route, TrustedProxies,
};
use super::route::RouteMatch;
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;

/// One problem in the configuration: where (`routes[2].allow[0].dns`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Parses and compiles a configuration document, or lists everything wrong with it.
pub fn compile(json: &[u8]) -> Result<Policy, Vec<ConfigError>> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Err(vec![ConfigError {
            path: String::new(),
            message: "the plugin configuration is empty: certgate needs a JSON policy".into(),
        }]);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let Object(raw): Object<RawConfig> = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| {
            vec![ConfigError {
                path: error.path().to_string(),
                message: error.inner().to_string(),
            }]
        })?;
    let mut errors = Vec::new();
    let policy = raw.compile(&mut errors);
    if errors.is_empty() {
        Ok(policy)
    } else {
        Err(errors)
    }
}

/// A struct that must be written as a JSON object: serde's derive would also take an array and fill
/// the fields by position, which would let a malformed policy through.
#[derive(Default)]
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Object<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Object)
            }
        }
        deserializer.deserialize_map(ObjectVisitor(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    default_action: DefaultAction,
    #[serde(default)]
    routes: Vec<Object<RawRoute>>,
    #[serde(default)]
    wildcard_certs: bool,
    #[serde(default)]
    deny_response: Object<RawDenyResponse>,
    #[serde(default)]
    trusted_proxies: Object<RawTrustedProxies>,
    #[serde(default = "default_identity_sources")]
    identity_sources: Vec<IdentitySource>,
    #[serde(default)]
    assume_presented_certs_validated: bool,
}

fn default_identity_sources() -> Vec<IdentitySource> {
    vec![IdentitySource::Connection]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: String,
    #[serde(default, rename = "match")]
    route_match: Object<RawRouteMatch>,
    #[serde(default = "yes")]
    require_client_cert: bool,
    allow: Option<Vec<RawMatcher>>,
    #[serde(default)]
    deny: Vec<RawMatcher>,
    mode: Option<Mode>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRouteMatch {
    route_name: Option<String>,
    path_prefix: Option<String>,
    path_exact: Option<String>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    methods: Vec<String>,
}

/// `{"dns": "..."}` and its siblings: exactly one key per object.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawMatcher {
    Dns(String),
    Uri(String),
    TrustDomain(String),
    Ip(String),
    Email(String),
    SubjectCn(String),
    Sha256(String),
}

impl RawMatcher {
    fn kind_and_value(&self) -> (MatcherKind, &str) {
        match self {
            RawMatcher::Dns(v) => (MatcherKind::Dns, v),
            RawMatcher::Uri(v) => (MatcherKind::Uri, v),
            RawMatcher::TrustDomain(v) => (MatcherKind::TrustDomain, v),
            RawMatcher::Ip(v) => (MatcherKind::Ip, v),
            RawMatcher::Email(v) => (MatcherKind::Email, v),
            RawMatcher::SubjectCn(v) => (MatcherKind::SubjectCn, v),
            RawMatcher::Sha256(v) => (MatcherKind::Sha256, v),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDenyResponse {
    #[serde(default = "forbidden")]
    status: u16,
    body: Option<String>,
    content_type: Option<String>,
    #[serde(default)]
    expose_reason: bool,
}

fn forbidden() -> u16 {
    403
}

impl Default for RawDenyResponse {
    fn default() -> Self {
        RawDenyResponse {
            status: forbidden(),
            body: None,
            content_type: None,
            expose_reason: false,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTrustedProxies {
    #[serde(default)]
    cidrs: Vec<String>,
    #[serde(default)]
    identities: Vec<RawMatcher>,
}

/// Collects problems with their paths while compiling.
struct Problems<'a>(&'a mut Vec<ConfigError>);

impl Problems<'_> {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }
}

impl RawConfig {
    fn compile(self, errors: &mut Vec<ConfigError>) -> Policy {
        let mut problems = Problems(errors);
        let mut names = HashSet::new();
        let routes = self
            .routes
            .into_iter()
            .enumerate()
            .map(|(index, Object(route))| {
                let path = format!("routes[{index}]");
                if !names.insert(route.name.clone()) {
                    problems.add(
                        format!("{path}.name"),
                        format!(
                            "{:?} names another route too: route names must be unique",
                            route.name
                        ),
                    );
                }
                route.compile(&path, self.mode, &mut problems)
            })
            .collect();
        if self.identity_sources.is_empty() {
            problems.add(
                "identity_sources",
                "is empty: list at least one source, e.g. [\"connection\"]",
            );
        }
        let mut seen_sources = HashSet::new();
        for (index, source) in self.identity_sources.iter().enumerate() {
            if !seen_sources.insert(*source) {
                problems.add(
                    format!("identity_sources[{index}]"),
                    format!("{:?} is listed twice", source.as_str()),
                );
            }
        }
        Policy {
            mode: self.mode,
            default_action: self.default_action,
            routes,
            wildcard_certs: self.wildcard_certs,
            deny_response: self.deny_response.0.compile(&mut problems),
            trusted_proxies: self.trusted_proxies.0.compile(&mut problems),
            identity_sources: self.identity_sources,
            assume_presented_certs_validated: self.assume_presented_certs_validated,
        }
    }
}

impl RawRoute {
    fn compile(self, path: &str, policy_mode: Mode, problems: &mut Problems<'_>) -> Route {
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
            route_match: self
                .route_match
                .0
                .compile(&format!("{path}.match"), problems),
            require_client_cert: self.require_client_cert,
            allow,
            deny: compile_matchers(&self.deny, &format!("{path}.deny"), problems),
            mode: self.mode.unwrap_or(policy_mode),
            name: self.name,
        }
    }
}

/// Route names become metric name segments and label values, so they keep to a safe alphabet.
fn route_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 64 {
        Some("must be 1 to 64 characters long")
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
    fn compile(self, path: &str, problems: &mut Problems<'_>) -> RouteMatch {
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

fn compile_matchers(raw: &[RawMatcher], path: &str, problems: &mut Problems<'_>) -> MatcherSet {
    let matchers = raw
        .iter()
        .enumerate()
        .filter_map(|(index, raw)| {
            let (kind, value) = raw.kind_and_value();
            Matcher::parse(kind, value)
                .map_err(|message| problems.add(format!("{path}[{index}].{}", kind.key()), message))
                .ok()
        })
        .collect();
    MatcherSet::new(matchers)
}

impl RawDenyResponse {
    fn compile(self, problems: &mut Problems<'_>) -> DenyResponse {
        if !(400..=599).contains(&self.status) {
            problems.add(
                "deny_response.status",
                format!(
                    "{} is not an error status: a denial answers with 400 to 599",
                    self.status
                ),
            );
        }
        if let Some(content_type) = &self.content_type {
            if content_type.is_empty() || content_type.bytes().any(|b| b.is_ascii_control()) {
                problems.add(
                    "deny_response.content_type",
                    format!("{content_type:?} is not a valid header value"),
                );
            }
        }
        DenyResponse {
            status: self.status,
            content_type: self.content_type.unwrap_or_else(|| {
                if self.body.is_some() {
                    "text/plain"
                } else {
                    "application/json"
                }
                .to_owned()
            }),
            body: self.body,
            expose_reason: self.expose_reason,
        }
    }
}

impl RawTrustedProxies {
    fn compile(self, problems: &mut Problems<'_>) -> TrustedProxies {
        let cidrs = self
            .cidrs
            .iter()
            .enumerate()
            .filter_map(|(index, cidr)| {
                IpNet::parse(cidr)
                    .map_err(|why| {
                        problems.add(
                            format!("trusted_proxies.cidrs[{index}]"),
                            format!("{cidr:?} is not a valid address block: {why}"),
                        )
                    })
                    .ok()
            })
            .collect();
        TrustedProxies {
            cidrs,
            identities: compile_matchers(&self.identities, "trusted_proxies.identities", problems),
        }
    }
}
