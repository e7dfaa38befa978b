//! The plugin configuration: its JSON schema (the public contract) and its compilation into a ready
//! [`Policy`], reporting every problem with the path of the field that has it.

use super::alb;
use super::dns::DnsPattern;
use super::forwarded::ForwardedMode;
use super::forwarding::{
    Forwarding, IdentityField, IdentityHeader, XfccForwarding, Xff, RESERVED_HEADERS,
};
use super::ip::IpNet;
use super::matcher::{Matcher, MatcherKind, MatcherSet};
use super::policy::{
    DefaultAction, DenyResponse, IdentitySource, Mode, Policy, Route, SniHostMismatch,
    TrustedProxies,
};
use super::route::RouteMatch;
use super::telemetry::{RecordLevel, Telemetry, NO_ROUTE};
use super::xfcc::{XfccDetail, XfccMode};
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
    #[serde(default)]
    forwarding: Object<RawForwarding>,
    #[serde(default)]
    telemetry: Object<RawTelemetry>,
    #[serde(default)]
    sni_host_mismatch: SniHostMismatch,
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawForwarding {
    xff: Option<Object<RawXff>>,
    #[serde(default)]
    x_forwarded_proto: bool,
    #[serde(default)]
    x_forwarded_host: bool,
    #[serde(default)]
    forwarded: ForwardedMode,
    xfcc: Option<Object<RawXfcc>>,
    #[serde(default)]
    client_cert: bool,
    #[serde(default)]
    identity_headers: RawIdentityHeaders,
}

/// `identity_headers`: a JSON object (header name -> field), kept in the order written.
#[derive(Default)]
struct RawIdentityHeaders(Vec<(String, IdentityField)>);

impl<'de> Deserialize<'de> for RawIdentityHeaders {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeadersVisitor;
        impl<'de> serde::de::Visitor<'de> for HeadersVisitor {
            type Value = RawIdentityHeaders;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawIdentityHeaders, A::Error> {
                let mut headers = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    headers.push(entry);
                }
                Ok(RawIdentityHeaders(headers))
            }
        }
        deserializer.deserialize_map(HeadersVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawXff {
    #[serde(default = "yes")]
    append: bool,
    #[serde(default)]
    trusted_hops: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawXfcc {
    mode: Option<XfccMode>,
    #[serde(default = "default_xfcc_details")]
    details: Vec<XfccDetail>,
}

fn default_xfcc_details() -> Vec<XfccDetail> {
    vec![
        XfccDetail::Hash,
        XfccDetail::Subject,
        XfccDetail::Uri,
        XfccDetail::Dns,
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    #[serde(default = "default_expiry_warning_days")]
    expiry_warning_days: u32,
    #[serde(default)]
    access_record: RecordLevel,
    #[serde(default = "yes")]
    filter_state: bool,
}

fn default_expiry_warning_days() -> u32 {
    Telemetry::default().expiry_warning_days
}

impl Default for RawTelemetry {
    fn default() -> Self {
        RawTelemetry {
            expiry_warning_days: default_expiry_warning_days(),
            access_record: RecordLevel::default(),
            filter_state: true,
        }
    }
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
        let trusted_proxies = self.trusted_proxies.0.compile(&mut problems);
        let anyone_trusted =
            !trusted_proxies.cidrs.is_empty() || !trusted_proxies.identities.is_empty();
        let mut seen_sources = HashSet::new();
        for (index, source) in self.identity_sources.iter().enumerate() {
            if !seen_sources.insert(*source) {
                problems.add(
                    format!("identity_sources[{index}]"),
                    format!("{:?} is listed twice", source.as_str()),
                );
            }
            if source.reads_headers() && !anyone_trusted {
                problems.add(
                    format!("identity_sources[{index}]"),
                    format!(
                        "{:?} reads request headers, which certgate believes only from a trusted peer: \
                         list the proxy in trusted_proxies (cidrs or identities)",
                        source.as_str()
                    ),
                );
            }
        }
        let forwarding = self.forwarding.0.compile(anyone_trusted, &mut problems);
        Policy {
            mode: self.mode,
            default_action: self.default_action,
            routes,
            wildcard_certs: self.wildcard_certs,
            deny_response: self.deny_response.0.compile(&mut problems),
            trusted_proxies,
            identity_sources: self.identity_sources,
            assume_presented_certs_validated: self.assume_presented_certs_validated,
            forwarding,
            telemetry: self.telemetry.0.compile(&mut problems),
            sni_host_mismatch: self.sni_host_mismatch,
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

impl RawForwarding {
    fn compile(self, anyone_trusted: bool, problems: &mut Problems<'_>) -> Forwarding {
        let xff = self.xff.map(|Object(xff)| {
            if xff.trusted_hops > 0 && !anyone_trusted {
                problems.add(
                    "forwarding.xff.trusted_hops",
                    format!(
                        "{} hops are believed only from a trusted peer: list the proxy in trusted_proxies",
                        xff.trusted_hops
                    ),
                );
            }
            if xff.trusted_hops > 32 {
                problems.add(
                    "forwarding.xff.trusted_hops",
                    format!("{} is more hops than any real chain of proxies (at most 32)", xff.trusted_hops),
                );
            }
            Xff {
                append: xff.append,
                trusted_hops: xff.trusted_hops,
            }
        });
        let xfcc = self.xfcc.and_then(|Object(xfcc)| xfcc.compile(problems));
        let mut names = HashSet::new();
        let identity_headers = self
            .identity_headers
            .0
            .into_iter()
            .filter_map(|(name, field)| {
                let path = format!("forwarding.identity_headers.{name}");
                let lowercase = name.to_ascii_lowercase();
                if let Some(why) = identity_header_problem(&lowercase) {
                    problems.add(path, format!("{name:?} {why}"));
                    return None;
                }
                if !names.insert(lowercase.clone()) {
                    problems.add(
                        path,
                        format!("{name:?} is listed twice (header names ignore case)"),
                    );
                    return None;
                }
                Some(IdentityHeader {
                    name: lowercase,
                    field,
                })
            })
            .collect();
        Forwarding {
            xff,
            x_forwarded_proto: self.x_forwarded_proto,
            x_forwarded_host: self.x_forwarded_host,
            forwarded: self.forwarded,
            xfcc,
            client_cert: self.client_cert,
            identity_headers,
        }
    }
}

impl RawXfcc {
    fn compile(self, problems: &mut Problems<'_>) -> Option<XfccForwarding> {
        let Some(mode) = self.mode else {
            problems.add(
                "forwarding.xfcc.mode",
                "is missing: one of sanitize, forward_only, append_forward, sanitize_set, always_forward_only",
            );
            return None;
        };
        if self.details.is_empty()
            && matches!(mode, XfccMode::AppendForward | XfccMode::SanitizeSet)
        {
            problems.add(
                "forwarding.xfcc.details",
                "is empty: list what the element says, e.g. [\"hash\", \"uri\"]",
            );
        }
        let mut seen = HashSet::new();
        for (index, detail) in self.details.iter().enumerate() {
            if !seen.insert(format!("{detail:?}")) {
                problems.add(
                    format!("forwarding.xfcc.details[{index}]"),
                    "is listed twice",
                );
            }
        }
        Some(XfccForwarding {
            mode,
            details: self.details,
        })
    }
}

/// Identity header names are lowercase tokens of `[a-z0-9-]` (they also become metric labels) and
/// may not take a header that another option, the ALB or HTTP itself owns.
fn identity_header_problem(name: &str) -> Option<&'static str> {
    const PROTOCOL: [&str; 9] = [
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "te",
        "upgrade",
        "x-request-id",
        "authorization",
    ];
    if name.is_empty() || name.len() > 64 {
        Some("must be 1 to 64 characters long")
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Some("may only use letters, digits and '-' (a header name that is also a metric label)")
    } else if RESERVED_HEADERS.contains(&name) || alb::HEADERS.contains(&name) {
        Some("is a forwarding header certgate owns through another option")
    } else if PROTOCOL.contains(&name) || name.starts_with("x-envoy-") {
        Some("is a header the protocol or Envoy owns")
    } else {
        None
    }
}

impl RawTelemetry {
    fn compile(self, problems: &mut Problems<'_>) -> Telemetry {
        if self.expiry_warning_days > 3650 {
            problems.add(
                "telemetry.expiry_warning_days",
                format!("{} is more than ten years", self.expiry_warning_days),
            );
        }
        Telemetry {
            expiry_warning_days: self.expiry_warning_days,
            access_record: self.access_record,
            filter_state: self.filter_state,
        }
    }
}
