//! The plugin configuration: its JSON schema (the public contract) and its compilation into a ready
//! [`Policy`], reporting every problem with the path of the field that has it.

pub mod json;

use crate::decide::access::{
    AccessPolicy, DefaultAction, DenyResponse, Mode, Route, SniHostMismatch,
};
use crate::decide::matcher::{Matcher, MatcherKind, MatcherSet};
use crate::decide::route::RouteMatch;
use crate::decide::trust::TrustedProxies;
use crate::identity::alb;
use crate::identity::resumption::{Resumption, ResumptionMode, MAX_VALIDITY_SECS};
use crate::identity::sources::IdentitySource;
use crate::identity::xfcc::{XfccDetail, XfccMode};
use crate::names::dns::DnsPattern;
use crate::names::ip::IpNet;
use crate::policy::Policy;
use crate::record::telemetry::{RecordFields, RecordLevel, Telemetry, NO_ROUTE};
use crate::rewrite::forwarded::ForwardedMode;
use crate::rewrite::forwarding::{
    Forwarding, IdentityField, IdentityHeader, XfccForwarding, Xff, RESERVED_HEADERS,
};
use json::Json;
use std::collections::HashSet;
use std::fmt;

/// One problem in the configuration: where (`routes[2].allow[0].dns`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

/// Control characters escaped: paths and messages quote what the configuration wrote, and each
/// error must stay one log line (a `\n` in a key would otherwise forge a second one).
fn one_line(text: &str) -> impl fmt::Display + '_ {
    struct OneLine<'a>(&'a str);
    impl fmt::Display for OneLine<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            for c in self.0.chars() {
                if c.is_control() {
                    write!(f, "{}", c.escape_default())?;
                } else {
                    fmt::Write::write_char(f, c)?;
                }
            }
            Ok(())
        }
    }
    OneLine(text)
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            write!(f, "{}", one_line(&self.message))
        } else {
            write!(f, "{}: {}", one_line(&self.path), one_line(&self.message))
        }
    }
}

/// Parses and compiles a configuration document, or lists everything wrong with it.
pub fn compile(json: &[u8]) -> Result<Policy, Vec<ConfigError>> {
    parse(json).and_then(compile_document)
}

/// The configuration's JSON document; the host's bytes can be freed once it is read.
pub fn parse(json: &[u8]) -> Result<Json, Vec<ConfigError>> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Err(vec![ConfigError {
            path: String::new(),
            message: "the plugin configuration is empty: certgate needs a JSON policy".into(),
        }]);
    }
    json::parse(json).map_err(|error| {
        vec![ConfigError {
            path: String::new(),
            message: error.to_string(),
        }]
    })
}

/// Compiles a parsed configuration document, or lists everything wrong with it.
pub fn compile_document(document: Json) -> Result<Policy, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut problems = Problems(&mut errors);
    // A document of the wrong shape is not compiled: the defaults standing in for its wrong fields
    // would only add misleading errors.
    let raw = RawConfig::read(&document, "", &mut problems);
    // The document is the largest thing alive here: freeing it before compiling lets the compiled
    // policy reuse its memory, and a Wasm VM's memory never shrinks back after its peak.
    drop(document);
    let policy = match raw {
        Some(raw) if problems.0.is_empty() => Some(raw.compile(&mut problems)),
        _ => None,
    };
    match policy {
        Some(policy) if errors.is_empty() => Ok(policy),
        _ => Err(errors),
    }
}

/// How a value of the wrong type is named, in serde's words, which operators already know.
fn unexpected(value: &Json) -> String {
    match value {
        Json::Null => "null".into(),
        Json::Bool(value) => format!("boolean `{value}`"),
        Json::Number(text) if is_integer(text) => format!("integer `{text}`"),
        Json::Number(text) => format!("floating point `{text}`"),
        Json::String(text) => format!("string {text:?}"),
        Json::Array(_) => "sequence".into(),
        Json::Object(_) => "map".into(),
    }
}

fn is_integer(number: &str) -> bool {
    !number.contains(['.', 'e', 'E'])
}

fn invalid_type<T>(
    value: &Json,
    path: &str,
    expected: &str,
    problems: &mut Problems<'_>,
) -> Option<T> {
    problems.add(
        path,
        format!("invalid type: {}, expected {expected}", unexpected(value)),
    );
    None
}

/// "`a`", "`a` or `b`", "one of `a`, `b`, `c`".
fn alternatives<'n>(names: impl Iterator<Item = &'n str>) -> String {
    let names: Vec<String> = names.map(|name| format!("`{name}`")).collect();
    match names.as_slice() {
        [one] => one.clone(),
        [first, second] => format!("{first} or {second}"),
        all => format!("one of {}", all.join(", ")),
    }
}

fn field_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The fields of one JSON object, whose keys were checked against those its schema knows.
struct Fields<'j> {
    path: &'j str,
    members: &'j [(String, Json)],
}

impl<'j> Fields<'j> {
    /// Takes `value` as an object of `known` keys, reporting a value of another type and every
    /// unknown key.
    fn read(
        value: &'j Json,
        path: &'j str,
        known: &[&str],
        problems: &mut Problems<'_>,
    ) -> Option<Self> {
        let Json::Object(members) = value else {
            return invalid_type(value, path, "a JSON object", problems);
        };
        for (key, _) in members {
            if !known.contains(&key.as_str()) {
                problems.add(
                    field_path(path, key),
                    format!(
                        "unknown field `{key}`, expected {}",
                        alternatives(known.iter().copied())
                    ),
                );
            }
        }
        Some(Fields { path, members })
    }

    /// The field read by `read`; `None` when it is absent or wrong (then reported).
    fn get<T>(&self, key: &str, problems: &mut Problems<'_>, read: impl Reader<T>) -> Option<T> {
        let (_, value) = self.members.iter().find(|(name, _)| name == key)?;
        read(value, &field_path(self.path, key), problems)
    }

    /// Like [`Fields::get`], with `null` standing for an absent field.
    fn optional<T>(
        &self,
        key: &str,
        problems: &mut Problems<'_>,
        read: impl Reader<T>,
    ) -> Option<T> {
        self.get(
            key,
            problems,
            |value: &Json, path: &str, problems: &mut Problems<'_>| match value {
                Json::Null => None,
                _ => read(value, path, problems),
            },
        )
    }

    /// Like [`Fields::get`], reporting an absent field.
    fn required<T>(
        &self,
        key: &str,
        problems: &mut Problems<'_>,
        read: impl Reader<T>,
    ) -> Option<T> {
        if !self.members.iter().any(|(name, _)| name == key) {
            problems.add(self.path, format!("missing field `{key}`"));
            return None;
        }
        self.get(key, problems, read)
    }
}

/// Reads a value at a path, reporting what is wrong with it.
trait Reader<T>: Fn(&Json, &str, &mut Problems<'_>) -> Option<T> {}

impl<T, F: Fn(&Json, &str, &mut Problems<'_>) -> Option<T>> Reader<T> for F {}

fn boolean(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<bool> {
    match value {
        Json::Bool(value) => Some(*value),
        _ => invalid_type(value, path, "a boolean", problems),
    }
}

fn string(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<String> {
    match value {
        Json::String(text) => Some(text.clone()),
        _ => invalid_type(value, path, "a string", problems),
    }
}

/// A whole number that fits `T`, described to the operator as `expected`.
fn integer<T: TryFrom<u64>>(expected: &'static str) -> impl Reader<T> {
    move |value: &Json, path: &str, problems: &mut Problems<'_>| match value {
        Json::Number(text) if is_integer(text) => {
            let number = text.parse::<u64>().ok().and_then(|n| T::try_from(n).ok());
            if number.is_none() {
                problems.add(
                    path,
                    format!("invalid value: integer `{text}`, expected {expected}"),
                );
            }
            number
        }
        _ => invalid_type(value, path, expected, problems),
    }
}

/// One of an enum's configuration names.
fn keyword<T: Copy + 'static>(names: &'static [(&'static str, T)]) -> impl Reader<T> {
    move |value: &Json, path: &str, problems: &mut Problems<'_>| {
        let Json::String(text) = value else {
            return invalid_type(value, path, "a string", problems);
        };
        let found = names
            .iter()
            .find(|(name, _)| *name == text.as_str())
            .map(|&(_, value)| value);
        if found.is_none() {
            problems.add(
                path,
                format!(
                    "unknown variant `{text}`, expected {}",
                    alternatives(names.iter().map(|(name, _)| *name))
                ),
            );
        }
        found
    }
}

/// An array whose every item `item` reads.
fn list<T>(item: impl Reader<T>) -> impl Reader<Vec<T>> {
    move |value: &Json, path: &str, problems: &mut Problems<'_>| {
        let Json::Array(items) = value else {
            return invalid_type(value, path, "a sequence", problems);
        };
        let mut read = Vec::with_capacity(items.len());
        let mut complete = true;
        for (index, value) in items.iter().enumerate() {
            match item(value, &format!("{path}[{index}]"), problems) {
                Some(value) => read.push(value),
                None => complete = false,
            }
        }
        complete.then_some(read)
    }
}

/// `{"dns": "..."}` and its siblings: exactly one key per object.
fn matcher(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<RawMatcher> {
    let Json::Object(members) = value else {
        return invalid_type(value, path, "a JSON object", problems);
    };
    let keys = || MatcherKind::ALL.iter().map(|kind| kind.key());
    let [(key, pattern)] = members.as_slice() else {
        problems.add(
            path,
            format!("expected exactly one key, {}", alternatives(keys())),
        );
        return None;
    };
    let Some(kind) = MatcherKind::ALL.into_iter().find(|kind| kind.key() == key) else {
        problems.add(
            path,
            format!("unknown variant `{key}`, expected {}", alternatives(keys())),
        );
        return None;
    };
    string(pattern, &field_path(path, key), problems).map(|pattern| (kind, pattern))
}

/// A matcher's kind and its pattern as written.
type RawMatcher = (MatcherKind, String);

struct RawConfig {
    mode: Mode,
    default_action: DefaultAction,
    routes: Vec<RawRoute>,
    wildcard_certs: bool,
    deny_response: RawDenyResponse,
    trusted_proxies: RawTrustedProxies,
    identity_sources: Vec<IdentitySource>,
    assume_presented_certs_validated: bool,
    session_resumption: RawResumption,
    forwarding: RawForwarding,
    telemetry: RawTelemetry,
    sni_host_mismatch: SniHostMismatch,
}

impl RawConfig {
    fn read(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<Self> {
        const KEYS: &[&str] = &[
            "mode",
            "default_action",
            "routes",
            "wildcard_certs",
            "deny_response",
            "trusted_proxies",
            "identity_sources",
            "assume_presented_certs_validated",
            "session_resumption",
            "forwarding",
            "telemetry",
            "sni_host_mismatch",
        ];
        let fields = Fields::read(value, path, KEYS, problems)?;
        Some(RawConfig {
            mode: fields
                .get("mode", problems, keyword(Mode::NAMES))
                .unwrap_or_default(),
            default_action: fields
                .get("default_action", problems, keyword(DefaultAction::NAMES))
                .unwrap_or_default(),
            routes: fields
                .get("routes", problems, list(RawRoute::read))
                .unwrap_or_default(),
            wildcard_certs: fields
                .get("wildcard_certs", problems, boolean)
                .unwrap_or_default(),
            deny_response: fields
                .get("deny_response", problems, RawDenyResponse::read)
                .unwrap_or_default(),
            trusted_proxies: fields
                .get("trusted_proxies", problems, RawTrustedProxies::read)
                .unwrap_or_default(),
            identity_sources: fields
                .get(
                    "identity_sources",
                    problems,
                    list(keyword(IdentitySource::NAMES)),
                )
                .unwrap_or_else(|| vec![IdentitySource::Connection]),
            assume_presented_certs_validated: fields
                .get("assume_presented_certs_validated", problems, boolean)
                .unwrap_or_default(),
            session_resumption: fields
                .get("session_resumption", problems, RawResumption::read)
                .unwrap_or_default(),
            forwarding: fields
                .get("forwarding", problems, RawForwarding::read)
                .unwrap_or_default(),
            telemetry: fields
                .get("telemetry", problems, RawTelemetry::read)
                .unwrap_or_default(),
            sni_host_mismatch: fields
                .get(
                    "sni_host_mismatch",
                    problems,
                    keyword(SniHostMismatch::NAMES),
                )
                .unwrap_or_default(),
        })
    }
}

struct RawRoute {
    name: String,
    route_match: RawRouteMatch,
    require_client_cert: bool,
    allow: Option<Vec<RawMatcher>>,
    deny: Vec<RawMatcher>,
    mode: Option<Mode>,
}

impl RawRoute {
    fn read(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<Self> {
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
struct RawRouteMatch {
    route_name: Option<String>,
    path_prefix: Option<String>,
    path_exact: Option<String>,
    hosts: Vec<String>,
    methods: Vec<String>,
}

impl RawRouteMatch {
    fn read(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<Self> {
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

struct RawDenyResponse {
    status: u16,
    body: Option<String>,
    content_type: Option<String>,
    expose_reason: bool,
    grpc_status: Option<u32>,
    grpc_message: Option<String>,
}

const FORBIDDEN: u16 = 403;

impl Default for RawDenyResponse {
    fn default() -> Self {
        RawDenyResponse {
            status: FORBIDDEN,
            body: None,
            content_type: None,
            expose_reason: false,
            grpc_status: None,
            grpc_message: None,
        }
    }
}

impl RawDenyResponse {
    fn read(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<Self> {
        const KEYS: &[&str] = &[
            "status",
            "body",
            "content_type",
            "expose_reason",
            "grpc_status",
            "grpc_message",
        ];
        let fields = Fields::read(value, path, KEYS, problems)?;
        Some(RawDenyResponse {
            status: fields
                .get("status", problems, integer("an integer from 0 to 65535"))
                .unwrap_or(FORBIDDEN),
            body: fields.optional("body", problems, string),
            content_type: fields.optional("content_type", problems, string),
            expose_reason: fields
                .get("expose_reason", problems, boolean)
                .unwrap_or_default(),
            grpc_status: fields.optional("grpc_status", problems, integer(U32)),
            grpc_message: fields.optional("grpc_message", problems, string),
        })
    }
}

#[derive(Default)]
struct RawTrustedProxies {
    cidrs: Vec<String>,
    identities: Vec<RawMatcher>,
}

impl RawTrustedProxies {
    fn read(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<Self> {
        let fields = Fields::read(value, path, &["cidrs", "identities"], problems)?;
        Some(RawTrustedProxies {
            cidrs: fields
                .get("cidrs", problems, list(string))
                .unwrap_or_default(),
            identities: fields
                .get("identities", problems, list(matcher))
                .unwrap_or_default(),
        })
    }
}

#[derive(Default)]
struct RawForwarding {
    xff: Option<RawXff>,
    x_forwarded_proto: bool,
    x_forwarded_host: bool,
    forwarded: ForwardedMode,
    xfcc: Option<RawXfcc>,
    client_cert: bool,
    /// Header name -> field, in the order written.
    identity_headers: Vec<(String, IdentityField)>,
}

impl RawForwarding {
    fn read(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<Self> {
        const KEYS: &[&str] = &[
            "xff",
            "x_forwarded_proto",
            "x_forwarded_host",
            "forwarded",
            "xfcc",
            "client_cert",
            "identity_headers",
        ];
        let fields = Fields::read(value, path, KEYS, problems)?;
        Some(RawForwarding {
            xff: fields.optional("xff", problems, RawXff::read),
            x_forwarded_proto: fields
                .get("x_forwarded_proto", problems, boolean)
                .unwrap_or_default(),
            x_forwarded_host: fields
                .get("x_forwarded_host", problems, boolean)
                .unwrap_or_default(),
            forwarded: fields
                .get("forwarded", problems, keyword(ForwardedMode::NAMES))
                .unwrap_or_default(),
            xfcc: fields.optional("xfcc", problems, RawXfcc::read),
            client_cert: fields
                .get("client_cert", problems, boolean)
                .unwrap_or_default(),
            identity_headers: fields
                .get("identity_headers", problems, identity_headers)
                .unwrap_or_default(),
        })
    }
}

/// `identity_headers`: a JSON object (header name -> field), kept in the order written.
fn identity_headers(
    value: &Json,
    path: &str,
    problems: &mut Problems<'_>,
) -> Option<Vec<(String, IdentityField)>> {
    let Json::Object(members) = value else {
        return invalid_type(value, path, "a JSON object", problems);
    };
    let field = keyword(IdentityField::NAMES);
    let mut headers = Vec::with_capacity(members.len());
    let mut complete = true;
    for (name, value) in members {
        match field(value, &field_path(path, name), problems) {
            Some(field) => headers.push((name.clone(), field)),
            None => complete = false,
        }
    }
    complete.then_some(headers)
}

struct RawXff {
    append: bool,
    trusted_hops: u32,
}

impl RawXff {
    fn read(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<Self> {
        let fields = Fields::read(value, path, &["append", "trusted_hops"], problems)?;
        Some(RawXff {
            append: fields.get("append", problems, boolean).unwrap_or(true),
            trusted_hops: fields
                .get("trusted_hops", problems, integer(U32))
                .unwrap_or_default(),
        })
    }
}

/// What [`integer`] tells an operator who wrote something else for a `u32`.
const U32: &str = "an integer from 0 to 4294967295";

struct RawXfcc {
    mode: Option<XfccMode>,
    details: Vec<XfccDetail>,
}

impl RawXfcc {
    fn read(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<Self> {
        let fields = Fields::read(value, path, &["mode", "details"], problems)?;
        Some(RawXfcc {
            mode: fields.optional("mode", problems, keyword(XfccMode::NAMES)),
            details: fields
                .get("details", problems, list(keyword(XfccDetail::NAMES)))
                .unwrap_or_else(|| {
                    vec![
                        XfccDetail::Hash,
                        XfccDetail::Subject,
                        XfccDetail::Uri,
                        XfccDetail::Dns,
                    ]
                }),
        })
    }
}

struct RawResumption {
    mode: ResumptionMode,
    validity_secs: u32,
}

impl Default for RawResumption {
    fn default() -> Self {
        let defaults = Resumption::default();
        RawResumption {
            mode: defaults.mode,
            validity_secs: defaults.validity_secs,
        }
    }
}

impl RawResumption {
    fn read(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<Self> {
        let fields = Fields::read(value, path, &["mode", "validity_secs"], problems)?;
        let defaults = RawResumption::default();
        Some(RawResumption {
            mode: fields
                .get("mode", problems, keyword(ResumptionMode::NAMES))
                .unwrap_or(defaults.mode),
            validity_secs: fields
                .get("validity_secs", problems, integer(U32))
                .unwrap_or(defaults.validity_secs),
        })
    }

    fn compile(self, problems: &mut Problems<'_>) -> Resumption {
        if self.validity_secs == 0 {
            problems.add(
                "session_resumption.validity_secs",
                "is 0: to refuse every resumed session, set session_resumption.mode to \"refuse\"",
            );
        } else if self.validity_secs > MAX_VALIDITY_SECS {
            problems.add(
                "session_resumption.validity_secs",
                format!(
                    "{} is longer than any session Envoy resumes ({MAX_VALIDITY_SECS} seconds, 7 days)",
                    self.validity_secs
                ),
            );
        }
        Resumption {
            mode: self.mode,
            validity_secs: self.validity_secs,
        }
    }
}

struct RawTelemetry {
    expiry_warning_days: u32,
    metrics_flush_ms: u32,
    access_record: RecordLevel,
    filter_state: RecordFields,
}

impl Default for RawTelemetry {
    fn default() -> Self {
        RawTelemetry {
            expiry_warning_days: Telemetry::default().expiry_warning_days,
            metrics_flush_ms: Telemetry::DEFAULT_METRICS_FLUSH_MS,
            access_record: RecordLevel::default(),
            filter_state: Telemetry::default().filter_state,
        }
    }
}

impl RawTelemetry {
    fn read(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<Self> {
        const KEYS: &[&str] = &[
            "expiry_warning_days",
            "metrics_flush_ms",
            "access_record",
            "filter_state",
        ];
        let fields = Fields::read(value, path, KEYS, problems)?;
        let defaults = RawTelemetry::default();
        Some(RawTelemetry {
            expiry_warning_days: fields
                .get("expiry_warning_days", problems, integer(U32))
                .unwrap_or(defaults.expiry_warning_days),
            metrics_flush_ms: fields
                .get("metrics_flush_ms", problems, integer(U32))
                .unwrap_or(defaults.metrics_flush_ms),
            access_record: fields
                .get("access_record", problems, keyword(RecordLevel::NAMES))
                .unwrap_or(defaults.access_record),
            filter_state: fields
                .get("filter_state", problems, record_fields)
                .unwrap_or(defaults.filter_state),
        })
    }
}

/// `true` (every field), `false` (none) or a list of the access record's field names.
fn record_fields(value: &Json, path: &str, problems: &mut Problems<'_>) -> Option<RecordFields> {
    match value {
        Json::Bool(true) => Some(RecordFields::ALL),
        Json::Bool(false) => Some(RecordFields::NONE),
        Json::Array(_) => {
            let names = list(string)(value, path, problems)?;
            match RecordFields::named(names.iter().map(String::as_str)) {
                Ok(fields) => Some(fields),
                Err(unknown) => {
                    let index = names.iter().position(|name| name == unknown).unwrap_or(0);
                    problems.add(
                        format!("{path}[{index}]"),
                        format!(
                            "unknown field `{unknown}`, expected {}",
                            alternatives(RecordFields::NAMES.into_iter())
                        ),
                    );
                    None
                }
            }
        }
        _ => invalid_type(
            value,
            path,
            "a boolean or a list of record fields",
            problems,
        ),
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
    fn compile(self, problems: &mut Problems<'_>) -> Policy {
        let mut names = HashSet::new();
        let routes: Vec<Route> = self
            .routes
            .into_iter()
            .enumerate()
            .map(|(index, route)| {
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
                route.compile(&path, self.mode, problems)
            })
            .collect();
        if self.identity_sources.is_empty() {
            problems.add(
                "identity_sources",
                "is empty: list at least one source, e.g. [\"connection\"]",
            );
        }
        let trusted_proxies = self.trusted_proxies.compile(problems);
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
        let forwarding = self.forwarding.compile(anyone_trusted, problems);
        let uses_route_names = routes
            .iter()
            .any(|route| route.route_match.route_name.is_some());
        let reads_header_certificates = self
            .identity_sources
            .iter()
            .any(|source| source.reads_headers());
        Policy {
            uses_route_names,
            reads_header_certificates,
            access: AccessPolicy {
                mode: self.mode,
                default_action: self.default_action,
                routes,
                wildcard_certs: self.wildcard_certs,
            },
            deny_response: self.deny_response.compile(problems),
            trusted_proxies,
            identity_sources: self.identity_sources,
            assume_presented_certs_validated: self.assume_presented_certs_validated,
            resumption: self.session_resumption.compile(problems),
            forwarding,
            telemetry: self.telemetry.compile(problems),
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
        .filter_map(|(index, (kind, value))| {
            Matcher::parse(*kind, value)
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
        if let Some(status) = self.grpc_status.filter(|status| !(1..=16).contains(status)) {
            problems.add(
                "deny_response.grpc_status",
                format!("{status} is not a gRPC error status: a denial answers with 1 to 16"),
            );
        }
        if let Some(message) = &self.grpc_message {
            if message.bytes().any(|b| b.is_ascii_control()) {
                problems.add(
                    "deny_response.grpc_message",
                    format!("{message:?} holds a control character"),
                );
            }
        }
        DenyResponse {
            status: self.status,
            grpc_status: self.grpc_status,
            grpc_message: self.grpc_message,
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
        let xff = self.xff.map(|xff| {
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
        let xfcc = self.xfcc.and_then(|xfcc| xfcc.compile(problems));
        let mut names = HashSet::new();
        let identity_headers = self
            .identity_headers
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
        let flush = Telemetry::METRICS_FLUSH_MS;
        if !flush.contains(&self.metrics_flush_ms) {
            problems.add(
                "telemetry.metrics_flush_ms",
                format!(
                    "{} is outside {}..={} milliseconds",
                    self.metrics_flush_ms,
                    flush.start(),
                    flush.end()
                ),
            );
        }
        Telemetry {
            expiry_warning_days: self.expiry_warning_days,
            metrics_flush_ms: self.metrics_flush_ms,
            access_record: self.access_record,
            filter_state: self.filter_state,
        }
    }
}
