//! The plugin configuration: its JSON schema (the public contract) and its compilation into a ready
//! [`Policy`], reporting every problem with the path of the field that has it.
//!
//! Three steps: `json` reads the document into a tree (or one syntax error with its line and
//! column); each section reads its part of the tree into a raw form (every wrong type, unknown key
//! and bad value reported with its field path, all at once); then the raw forms compile into the
//! [`Policy`], with the checks that span fields. One module per section (`routes`, `deny_response`,
//! `trusted_proxies`, `forwarding`, `session_resumption`, `telemetry`) holds its keys, its raw form,
//! its reading and its compilation, so an option is added in one place; `read` is the vocabulary
//! they share and this module the top level.

mod deny;
mod forwarding;
pub(crate) mod json;
mod matchers;
mod read;
mod resumption;
mod routes;
mod telemetry;
mod trust;

use crate::decide::access::{AccessPolicy, DefaultAction, Mode, Route, SniHostMismatch};
use crate::identity::sources::IdentitySource;
use crate::policy::Policy;
use deny::RawDenyResponse;
use forwarding::RawForwarding;
use json::Json;
use read::*;
use resumption::RawResumption;
use routes::RawRoute;
use std::collections::HashSet;
use std::fmt;
use telemetry::RawTelemetry;
use trust::RawTrustedProxies;

/// One problem in the configuration: where (`routes[2].allow[0].dns`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub(crate) path: String,
    pub(crate) message: String,
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
pub(crate) fn parse(json: &[u8]) -> Result<Json, Vec<ConfigError>> {
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
pub(crate) fn compile_document(document: Json) -> Result<Policy, Vec<ConfigError>> {
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
        Policy {
            uses_route_names,
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

#[cfg(test)]
mod tests {
    mod errors;
    mod forwarding_telemetry;
    mod json;
}
