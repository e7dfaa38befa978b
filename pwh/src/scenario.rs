//! The scenario file: the plugin's settings (Envoy's plugin config, failure policy, buffer limit
//! and worker count) and, per scenario, the request, the answers of the upstream and of the
//! guest's HTTP and gRPC calls, a time advance and the expectations. Parsed with serde from YAML
//! (JSON is YAML too); an unknown field, a wrong type or a missing one is an [`InputError`] naming
//! the file, the field path and the line.

use crate::grpc::{ExpectedGrpcCall, GrpcCallAnswer};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A whole scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub plugin: PluginSpec,
    pub scenarios: Vec<Scenario>,
}

/// The plugin as Envoy's `envoy.filters.http.wasm` config would set it up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    /// `PluginConfig.name`.
    pub name: String,
    /// `PluginConfig.root_id` (some SDKs pick the root context by it).
    #[serde(default)]
    pub root_id: String,
    /// `VmConfig.vm_id`.
    #[serde(default)]
    pub vm_id: String,
    /// `PluginConfig.configuration`: a string is passed as it is, anything else as its JSON.
    #[serde(default)]
    pub configuration: Option<serde_json::Value>,
    /// The clusters the guest may send HTTP calls to (Envoy refuses a call to an unknown one).
    #[serde(default)]
    pub clusters: Vec<String>,
    /// The clusters the guest sends gRPC calls to: known clusters too, which Envoy reaches over
    /// HTTP/2.
    #[serde(default)]
    pub grpc_clusters: Vec<String>,
    /// The lowest level of the guest's log lines kept in outcomes, as Envoy's `--log-level`
    /// filters them: trace, debug, info (default), warning, error or critical.
    #[serde(default)]
    pub log_level: LogLevelName,
    /// `PluginConfig.failure_policy`: what the client gets once the guest traps. Unset, a trap
    /// is the scenario's error (Envoy's default, FAIL_CLOSED, answers 503 meanwhile).
    #[serde(default)]
    pub failure_policy: Option<FailurePolicyName>,
    /// `PluginConfig.reload_config.backoff.base_interval` in milliseconds, for FAIL_RELOAD
    /// (Envoy's default: 1000).
    #[serde(default)]
    pub reload_backoff_ms: Option<u64>,
    /// The listener's `per_connection_buffer_limit_bytes`: how much body the guest may buffer,
    /// request or response (Envoy's default: 1048576).
    #[serde(default)]
    pub buffer_limit_bytes: Option<usize>,
    /// Envoy's `--concurrency`: the worker threads, each starting its own VM. Unset, the harness
    /// starts one VM (and the differential suite runs Envoy with one worker).
    #[serde(default)]
    pub concurrency: Option<u32>,
}

/// A failure policy as Envoy's `PluginConfig.failure_policy` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum FailurePolicyName {
    #[serde(rename = "FAIL_CLOSED")]
    FailClosed,
    #[serde(rename = "FAIL_OPEN")]
    FailOpen,
    #[serde(rename = "FAIL_RELOAD")]
    FailReload,
}

impl FailurePolicyName {
    /// Envoy's name of the policy.
    pub fn envoy_name(self) -> &'static str {
        match self {
            FailurePolicyName::FailClosed => "FAIL_CLOSED",
            FailurePolicyName::FailOpen => "FAIL_OPEN",
            FailurePolicyName::FailReload => "FAIL_RELOAD",
        }
    }
}

/// Envoy's default `reload_config.backoff.base_interval`.
pub const DEFAULT_RELOAD_BACKOFF_MS: u64 = 1000;

/// A log level as Envoy names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevelName {
    Trace,
    Debug,
    #[default]
    Info,
    Warning,
    Error,
    Critical,
}

impl PluginSpec {
    /// The configuration's bytes as the guest reads them.
    pub fn configuration_bytes(&self) -> Vec<u8> {
        match &self.configuration {
            None => Vec::new(),
            Some(serde_json::Value::String(text)) => text.clone().into_bytes(),
            Some(other) => other.to_string().into_bytes(),
        }
    }
}

/// One scenario: an optional request, the answers it meets, a time advance, the expectations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// The client's request; a scenario without one only advances time.
    #[serde(default)]
    pub request: Option<RequestSpec>,
    /// The answers to the HTTP calls the guest dispatches, in dispatch order; a call without an
    /// answer stays pending (a time advance past its timeout answers it 504, as Envoy does).
    #[serde(default)]
    pub http_calls: Vec<HttpAnswer>,
    /// The answers to the unary gRPC calls the guest sends, in dispatch order; a call without an
    /// answer stays pending (a time advance past its timeout closes it, as Envoy does).
    #[serde(default)]
    pub grpc_calls: Vec<GrpcCallAnswer>,
    /// The upstream's answer when the request reaches it (default: 200, no headers, no body).
    #[serde(default)]
    pub upstream: HttpAnswer,
    /// Milliseconds the clock moves after the request path (ticks fire, calls time out).
    #[serde(default)]
    pub advance_ms: u64,
    #[serde(default)]
    pub expect: Expectation,
}

/// The client's request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    #[serde(default = "default_method")]
    pub method: String,
    pub path: String,
    #[serde(default = "default_authority")]
    pub authority: String,
    #[serde(default)]
    pub headers: Headers,
    #[serde(default)]
    pub body: Body,
    /// Dynamic metadata earlier filters left, by namespace (`envoy.filters.http.lua: {key: value}`),
    /// read by the guest as `metadata.filter_metadata.<namespace>.<key>`.
    #[serde(default)]
    pub dynamic_metadata: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    /// The matched route's metadata by namespace, read by the guest as `xds.route_metadata`.
    #[serde(default)]
    pub route_metadata: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
}

fn default_method() -> String {
    "GET".into()
}

fn default_authority() -> String {
    "example.com".into()
}

/// An HTTP answer: the upstream's, or a called cluster's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpAnswer {
    #[serde(default = "default_status")]
    pub status: u16,
    #[serde(default)]
    pub headers: Headers,
    #[serde(default)]
    pub body: Body,
}

fn default_status() -> u16 {
    200
}

impl Default for HttpAnswer {
    fn default() -> Self {
        HttpAnswer {
            status: default_status(),
            headers: Headers::default(),
            body: Body::default(),
        }
    }
}

/// What a scenario expects; every part is optional and only what is written is checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// What the client receives.
    #[serde(default)]
    pub response: Option<ExpectedResponse>,
    /// What the upstream receives.
    #[serde(default)]
    pub upstream: Option<ExpectedUpstream>,
    /// How many HTTP calls the guest dispatches, and to which clusters, in order.
    #[serde(default)]
    pub http_calls: Option<Vec<String>>,
    /// The unary gRPC calls the guest sends, in order: as many as written, each with the fields
    /// written.
    #[serde(default)]
    pub grpc_calls: Option<Vec<ExpectedGrpcCall>>,
    /// Texts each of which some line the guest logged during the scenario contains.
    #[serde(default)]
    pub logs: Vec<String>,
    /// For each text, how many lines the guest logged during the scenario contain it (a start-up
    /// line once per VM, say).
    #[serde(default)]
    pub log_counts: BTreeMap<String, usize>,
    /// A text the error contains when the guest fails (traps); without it, an error fails the
    /// scenario.
    #[serde(default)]
    pub error: Option<String>,
}

/// The client's response as expected.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedResponse {
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderExpectation>,
    #[serde(default)]
    pub body: Option<Body>,
    /// How many body bytes the client receives (for bodies too long to write out).
    #[serde(default)]
    pub body_size: Option<usize>,
    /// Whether the stream is reset after the headers went out, cutting the body short.
    #[serde(default)]
    pub reset: Option<bool>,
}

/// The request the upstream receives, as expected.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedUpstream {
    /// Whether the request reaches the upstream at all (default: it does, when this is written).
    #[serde(default = "reached_by_default")]
    pub reached: bool,
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderExpectation>,
    #[serde(default)]
    pub body: Option<Body>,
}

fn reached_by_default() -> bool {
    true
}

/// A body: a string as it is, or `{repeat: TEXT, size: BYTES}`, TEXT repeated (and cut) to
/// BYTES bytes, for bodies too long to write out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Body(pub String);

impl std::ops::Deref for Body {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextOrRepeat;
        impl<'de> Visitor<'de> for TextOrRepeat {
            type Value = Body;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, or a mapping {repeat: TEXT, size: BYTES}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Body, E> {
                Ok(Body(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Body, A::Error> {
                let repeated = Repeated::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if repeated.repeat.is_empty() && repeated.size > 0 {
                    return Err(de::Error::invalid_value(
                        de::Unexpected::Str(""),
                        &"a non-empty text to repeat",
                    ));
                }
                if !repeated.repeat.is_ascii() {
                    return Err(de::Error::invalid_value(
                        de::Unexpected::Str(&repeated.repeat),
                        &"ASCII text to repeat (the size counts bytes)",
                    ));
                }
                Ok(Body(
                    repeated
                        .repeat
                        .chars()
                        .cycle()
                        .take(repeated.size)
                        .collect(),
                ))
            }
        }
        deserializer.deserialize_any(TextOrRepeat)
    }
}

/// `{repeat: TEXT, size: BYTES}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Repeated {
    repeat: String,
    size: usize,
}

/// A header's expected first value, or (YAML `null`) its absence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderExpectation {
    Absent,
    Value(String),
}

impl<'de> Deserialize<'de> for HeaderExpectation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Option::<Text>::deserialize(deserializer)? {
            None => HeaderExpectation::Absent,
            Some(Text(value)) => HeaderExpectation::Value(value),
        })
    }
}

/// Header lines in the order written: a YAML mapping from name to value (a scalar: `1` and `true`
/// are read as text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Headers;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping from header name to value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
                let mut lines = Vec::new();
                while let Some((name, Text(value))) = map.next_entry::<String, Text>()? {
                    lines.push((name, value));
                }
                Ok(Headers(lines))
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

/// A scalar read as text.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Scalar;
        impl Visitor<'_> for Scalar {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, a number or a boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        deserializer.deserialize_any(Scalar)
    }
}

/// A scenario file that could not be read or is not a valid one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub file: PathBuf,
    /// What is wrong, with the field path and the line (`scenarios[1].request: missing field
    /// `path` at line 7 column 5`).
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

impl std::error::Error for InputError {}

impl ScenarioFile {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<ScenarioFile, InputError> {
        let text = std::fs::read_to_string(path).map_err(|error| InputError {
            file: path.to_owned(),
            message: format!("cannot be read: {error}"),
        })?;
        ScenarioFile::parse(&text, path)
    }

    /// Parses `text`; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<ScenarioFile, InputError> {
        let parsed: ScenarioFile = serde_norway::from_str(text).map_err(|error| InputError {
            file: file.to_owned(),
            message: error.to_string(),
        })?;
        if let Some((index, _)) = parsed
            .scenarios
            .iter()
            .enumerate()
            .find(|(index, scenario)| {
                parsed.scenarios[..*index]
                    .iter()
                    .any(|earlier| earlier.name == scenario.name)
            })
        {
            let name = &parsed.scenarios[index].name;
            let line = line_of_nth_name(text, name, 2)
                .map(|line| format!(" at line {line}"))
                .unwrap_or_default();
            return Err(InputError {
                file: file.to_owned(),
                message: format!(
                    "scenarios[{index}].name: {name:?} names an earlier scenario too; names must be unique{line}"
                ),
            });
        }
        parsed.plugin.check(text, file)?;
        Ok(parsed)
    }
}

impl PluginSpec {
    /// The combinations serde cannot refuse: a reload backoff without FAIL_RELOAD, no workers.
    fn check(&self, text: &str, file: &Path) -> Result<(), InputError> {
        let refuse = |key: &str, why: String| {
            let line = line_of_key(text, key)
                .map(|line| format!(" at line {line}"))
                .unwrap_or_default();
            Err(InputError {
                file: file.to_owned(),
                message: format!("plugin.{key}: {why}{line}"),
            })
        };
        if self.reload_backoff_ms.is_some()
            && self.failure_policy != Some(FailurePolicyName::FailReload)
        {
            let policy = self
                .failure_policy
                .map_or("unset", FailurePolicyName::envoy_name);
            return refuse(
                "reload_backoff_ms",
                format!("only FAIL_RELOAD reloads a VM; failure_policy is {policy}"),
            );
        }
        if self.concurrency == Some(0) {
            return refuse(
                "concurrency",
                "Envoy runs at least one worker; write 1 or more".into(),
            );
        }
        Ok(())
    }
}

/// The 1-based line of the first `key:` (block style).
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            line.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.starts_with(':'))
        })
        .map(|index| index + 1)
}

/// The 1-based line of the `nth` `name:` key whose value is `name`.
fn line_of_nth_name(text: &str, name: &str, nth: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let key = line.trim_start().trim_start_matches("- ").trim_start();
            key.strip_prefix("name:")
                .is_some_and(|value| value.trim().trim_matches(|c| c == '"' || c == '\'') == name)
        })
        .nth(nth - 1)
        .map(|(index, _)| index + 1)
}
