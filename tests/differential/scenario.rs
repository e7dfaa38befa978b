//! The scenario corpus of `tests/scenarios/*.json` read into types: a group (one shipped Envoy config
//! and one certgate configuration) of scenarios, each a connection, a request and the expected
//! outcome. Every reading error names the file, the scenario and the field.

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use testkit::{CertSpec, Validity};

/// The directory of the corpus.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}

/// Every group of the corpus, in file-name order.
pub fn load_corpus() -> Result<Vec<Group>> {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files.iter().map(|path| Group::load(path)).collect()
}

/// Which shipped config of `envoy/` a group runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvoyConfig {
    Sidecar,
    Gateway,
    AlbGateway,
}

impl EnvoyConfig {
    fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "sidecar" => EnvoyConfig::Sidecar,
            "gateway" => EnvoyConfig::Gateway,
            "alb-gateway" => EnvoyConfig::AlbGateway,
            other => bail!("unknown envoy config {other:?} (sidecar, gateway, alb-gateway)"),
        })
    }

    /// The template's file name in `envoy/`.
    pub fn template(self) -> &'static str {
        match self {
            EnvoyConfig::Sidecar => "sidecar.yaml",
            EnvoyConfig::Gateway => "gateway.yaml",
            EnvoyConfig::AlbGateway => "alb-gateway.yaml",
        }
    }
}

/// One file: scenarios sharing an Envoy process (one shipped config, one plugin configuration).
#[derive(Clone, Debug)]
pub struct Group {
    pub file: String,
    pub envoy: EnvoyConfig,
    /// certgate's configuration; `{certs.<name>.sha256}` in it stands for a group certificate's
    /// fingerprint (see [`Group::plugin_config_with`]).
    pub plugin_config: Value,
    /// Certificates issued once for the whole group (before Envoy starts), by name.
    pub certs: BTreeMap<String, CertDescription>,
    pub scenarios: Vec<Scenario>,
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub connection: ConnectionSpec,
    /// A second certificate whose encodings the request may carry (`{header_cert.*}`), e.g. the
    /// leaf an ALB would pass in `x-amzn-mtls-clientcert-leaf`.
    pub header_cert: Option<CertDescription>,
    pub request: RequestSpec,
    pub expect: Expectation,
    /// Set when only real Envoy can play the scenario (its HTTP/1 codec refuses the request before
    /// any filter runs); the reason says what Envoy rejects.
    pub envoy_only: Option<String>,
    /// Set when certgate is known to get the scenario wrong: the expectation states the correct
    /// behaviour, and the suite reports (instead of failing on) a mismatch against it.
    pub filter_bug: Option<String>,
}

/// A client certificate described declaratively; issued at test time.
#[derive(Clone, Debug)]
pub struct CertDescription {
    /// The group certificate it is (issued once, shared by the scenarios naming it).
    pub group_cert: Option<String>,
    pub spec: CertSpec,
    /// Signed by the CA Envoy trusts (`mesh`) or by one it does not (`untrusted`).
    pub trusted_issuer: bool,
    pub validity: Validity,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

#[derive(Clone, Debug)]
pub struct ConnectionSpec {
    pub cert: Option<CertDescription>,
    pub tls: TlsVersion,
}

#[derive(Clone, Debug)]
pub struct RequestSpec {
    pub method: String,
    pub path: String,
    pub authority: String,
    /// Header lines in order, duplicates and case as written; values may hold placeholders.
    pub headers: Vec<(String, String)>,
}

/// What a scenario must produce.
#[derive(Clone, Debug, PartialEq)]
pub struct Expectation {
    pub status: Status,
    /// certgate's (decision, reason); `None` when certgate never saw the request.
    pub decision: Option<(String, String)>,
    /// The watched headers the upstream receives (values are patterns); `None`: the request must
    /// not reach the upstream.
    pub upstream: Option<BTreeMap<String, Vec<String>>>,
    /// A local reply's watched headers and body, when stated.
    pub response: Option<LocalReply>,
    /// Deltas of certgate's counters, when stated (then exact: unlisted counters must not move).
    pub metrics: Option<BTreeMap<String, i64>>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Http(u16),
    /// The listener refused the TLS handshake (no or an unverifiable client certificate on a
    /// listener that requires one).
    TlsRejected,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalReply {
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: String,
}

impl Group {
    fn load(path: &Path) -> Result<Self> {
        let file = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let value: Value =
            serde_json::from_str(&text).with_context(|| format!("{file}: not JSON"))?;
        let group = Fields::new(&value, &file)?;
        group.only(&[
            "description",
            "envoy",
            "plugin_config",
            "certs",
            "scenarios",
        ])?;
        let envoy = EnvoyConfig::parse(group.str("envoy")?).with_context(|| file.clone())?;
        let plugin_config = group.value("plugin_config")?.clone();
        let certs = match group.optional("certs") {
            None => BTreeMap::new(),
            Some(certs) => certs
                .as_object()
                .with_context(|| format!("{file}: certs: not an object"))?
                .iter()
                .map(|(name, cert)| {
                    let mut cert = CertDescription::parse(cert)
                        .with_context(|| format!("{file}: certs.{name}"))?;
                    cert.group_cert = Some(name.clone());
                    Ok((name.clone(), cert))
                })
                .collect::<Result<_>>()?,
        };
        let scenarios = group
            .array("scenarios")?
            .iter()
            .enumerate()
            .map(|(index, scenario)| {
                let name = scenario["name"].as_str().unwrap_or("?");
                Scenario::parse(scenario, &certs)
                    .with_context(|| format!("{file}: scenarios[{index}] ({name})"))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut names: Vec<&str> = scenarios.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            bail!("{file}: two scenarios are named {:?}", pair[0]);
        }
        Ok(Group {
            file,
            envoy,
            plugin_config,
            certs,
            scenarios,
        })
    }

    /// The plugin configuration with `{certs.<name>.sha256}` replaced by `fingerprint(name)`.
    pub fn plugin_config_with(
        &self,
        fingerprint: impl Fn(&str) -> Option<String>,
    ) -> Result<Value> {
        let mut text = self.plugin_config.to_string();
        for name in self.certs.keys() {
            let token = format!("{{certs.{name}.sha256}}");
            if text.contains(&token) {
                let value = fingerprint(name)
                    .with_context(|| format!("{}: no fingerprint for {token}", self.file))?;
                text = text.replace(&token, &value);
            }
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// The identity header names certgate's configuration sets (they are watched upstream).
    pub fn identity_header_names(&self) -> Vec<String> {
        self.plugin_config["forwarding"]["identity_headers"]
            .as_object()
            .map(|headers| {
                headers
                    .keys()
                    .map(|name| name.to_ascii_lowercase())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Scenario {
    fn parse(value: &Value, certs: &BTreeMap<String, CertDescription>) -> Result<Self> {
        let fields = Fields::new(value, "scenario")?;
        fields.only(&[
            "name",
            "connection",
            "header_cert",
            "request",
            "expect",
            "envoy_only",
            "filter_bug",
        ])?;
        Ok(Scenario {
            name: fields.str("name")?.to_owned(),
            connection: ConnectionSpec::parse(fields.value("connection")?, certs)
                .context("connection")?,
            header_cert: CertDescription::reference(fields.optional("header_cert"), certs)
                .context("header_cert")?,
            request: RequestSpec::parse(fields.value("request")?).context("request")?,
            expect: Expectation::parse(fields.value("expect")?).context("expect")?,
            envoy_only: fields.optional_str("envoy_only")?.map(str::to_owned),
            filter_bug: fields.optional_str("filter_bug")?.map(str::to_owned),
        })
    }
}

impl ConnectionSpec {
    fn parse(value: &Value, certs: &BTreeMap<String, CertDescription>) -> Result<Self> {
        let fields = Fields::new(value, "connection")?;
        fields.only(&["cert", "tls"])?;
        let cert = CertDescription::reference(fields.optional("cert"), certs).context("cert")?;
        let tls = match fields.optional_str("tls")? {
            None | Some("1.3") => TlsVersion::Tls13,
            Some("1.2") => TlsVersion::Tls12,
            Some(other) => bail!("tls: {other:?} is not \"1.2\" or \"1.3\""),
        };
        Ok(ConnectionSpec { cert, tls })
    }
}

impl CertDescription {
    /// A certificate written in place, or the name of a group certificate; absent or `null`: none.
    fn reference(
        value: Option<&Value>,
        certs: &BTreeMap<String, CertDescription>,
    ) -> Result<Option<Self>> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(name)) => certs
                .get(name)
                .cloned()
                .map(Some)
                .with_context(|| format!("the group has no certificate {name:?}")),
            Some(cert) => Self::parse(cert).map(Some),
        }
    }

    fn parse(value: &Value) -> Result<Self> {
        let fields = Fields::new(value, "certificate")?;
        fields.only(&[
            "cn", "org", "ou", "dns", "uri", "ip", "email", "validity", "issuer",
        ])?;
        let mut spec = CertSpec::client();
        for name in fields.strings("dns")? {
            spec = spec.dns(&name);
        }
        for uri in fields.strings("uri")? {
            spec = spec.uri(&uri);
        }
        for ip in fields.strings("ip")? {
            let ip: IpAddr = ip
                .parse()
                .with_context(|| format!("ip: {ip:?} is not an IP address"))?;
            spec = spec.ip(ip);
        }
        for email in fields.strings("email")? {
            spec = spec.email(&email);
        }
        if let Some(cn) = fields.optional_str("cn")? {
            spec = spec.cn(cn);
        }
        if let Some(org) = fields.optional_str("org")? {
            spec = spec.org(org);
        }
        if let Some(ou) = fields.optional_str("ou")? {
            spec = spec.ou(ou);
        }
        let validity = match fields.optional_str("validity")? {
            None | Some("current") => Validity::Current,
            Some("expired") => Validity::Expired,
            Some("not_yet_valid") => Validity::NotYetValid,
            Some(other) => match other.strip_prefix("expires_in_days:") {
                Some(days) => Validity::ExpiresInDays(
                    days.parse()
                        .with_context(|| format!("validity: {other:?}: days"))?,
                ),
                None => bail!(
                    "validity: {other:?} (current, expired, not_yet_valid, expires_in_days:N)"
                ),
            },
        };
        let trusted_issuer = match fields.optional_str("issuer")? {
            None | Some("mesh") => true,
            Some("untrusted") => false,
            Some(other) => bail!("issuer: {other:?} is not \"mesh\" or \"untrusted\""),
        };
        Ok(CertDescription {
            group_cert: None,
            spec: spec.validity(validity),
            trusted_issuer,
            validity,
        })
    }

    /// Whether Envoy's chain validation accepts it (trusted issuer, inside its validity period).
    pub fn verifies(&self) -> bool {
        self.trusted_issuer
            && matches!(
                self.validity,
                Validity::Current | Validity::ExpiresInDays(_)
            )
    }
}

impl RequestSpec {
    fn parse(value: &Value) -> Result<Self> {
        let fields = Fields::new(value, "request")?;
        fields.only(&["method", "path", "authority", "headers"])?;
        let headers = match fields.optional("headers") {
            None => Vec::new(),
            Some(Value::Array(lines)) => lines
                .iter()
                .enumerate()
                .map(|(index, line)| match line.as_array().map(Vec::as_slice) {
                    Some([Value::String(name), Value::String(value)]) => {
                        Ok((name.clone(), value.clone()))
                    }
                    _ => bail!("headers[{index}]: not a [name, value] pair of strings: {line}"),
                })
                .collect::<Result<_>>()?,
            Some(other) => bail!("headers: not an array of [name, value] pairs: {other}"),
        };
        Ok(RequestSpec {
            method: fields.optional_str("method")?.unwrap_or("GET").to_owned(),
            path: fields.str("path")?.to_owned(),
            authority: fields
                .optional_str("authority")?
                .unwrap_or("envoy.mesh.local")
                .to_owned(),
            headers,
        })
    }
}

impl Expectation {
    fn parse(value: &Value) -> Result<Self> {
        let fields = Fields::new(value, "expect")?;
        fields.only(&["status", "decision", "upstream", "response", "metrics"])?;
        let status = match fields.value("status")? {
            Value::Number(number) => Status::Http(
                number
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .with_context(|| format!("status: {number} is not an HTTP status"))?,
            ),
            Value::String(text) if text == "tls_rejected" => Status::TlsRejected,
            other => bail!("status: {other} is neither a number nor \"tls_rejected\""),
        };
        let decision = match fields.optional("decision") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => {
                let (decision, reason) = text
                    .split_once('/')
                    .with_context(|| format!("decision: {text:?} is not \"decision/reason\""))?;
                Some((decision.to_owned(), reason.to_owned()))
            }
            Some(other) => bail!("decision: {other} is not \"decision/reason\""),
        };
        let upstream = fields
            .optional("upstream")
            .map(|headers| header_values(headers).context("upstream"))
            .transpose()?;
        let response = fields
            .optional("response")
            .map(|reply| {
                let reply_fields = Fields::new(reply, "response")?;
                reply_fields.only(&["headers", "body"])?;
                Ok::<_, anyhow::Error>(LocalReply {
                    headers: header_values(reply_fields.value("headers")?)
                        .context("response.headers")?,
                    body: reply_fields.str("body")?.to_owned(),
                })
            })
            .transpose()?;
        let metrics = fields
            .optional("metrics")
            .map(|metrics| {
                metrics
                    .as_object()
                    .context("metrics: not an object")?
                    .iter()
                    .map(|(name, delta)| {
                        let delta = delta
                            .as_i64()
                            .with_context(|| format!("metrics.{name}: not an integer"))?;
                        Ok((name.clone(), delta))
                    })
                    .collect::<Result<BTreeMap<_, _>>>()
            })
            .transpose()?;
        Ok(Expectation {
            status,
            decision,
            upstream,
            response,
            metrics,
        })
    }
}

/// `{"name": "value"}` or `{"name": ["value", "value"]}`, names lowercased.
fn header_values(value: &Value) -> Result<BTreeMap<String, Vec<String>>> {
    value
        .as_object()
        .context("not an object of header values")?
        .iter()
        .map(|(name, values)| {
            let values = match values {
                Value::String(one) => vec![one.clone()],
                Value::Array(many) => many
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .with_context(|| format!("{name}: values must be strings"))?,
                other => bail!("{name}: {other} is not a string or an array of strings"),
            };
            Ok((name.to_ascii_lowercase(), values))
        })
        .collect()
}

/// A JSON object read strictly: unknown keys are errors, missing or mistyped ones name the key.
struct Fields<'a> {
    object: &'a Map<String, Value>,
    what: &'a str,
}

impl<'a> Fields<'a> {
    fn new(value: &'a Value, what: &'a str) -> Result<Self> {
        let object = value
            .as_object()
            .with_context(|| format!("{what}: not a JSON object"))?;
        Ok(Fields { object, what })
    }

    fn only(&self, known: &[&str]) -> Result<()> {
        if let Some(unknown) = self
            .object
            .keys()
            .find(|key| !known.contains(&key.as_str()))
        {
            bail!("{}: unknown key {unknown:?} (known: {known:?})", self.what);
        }
        Ok(())
    }

    fn optional(&self, key: &str) -> Option<&'a Value> {
        self.object.get(key)
    }

    fn value(&self, key: &str) -> Result<&'a Value> {
        self.optional(key)
            .with_context(|| format!("{}: {key:?} is missing", self.what))
    }

    fn str(&self, key: &str) -> Result<&'a str> {
        self.value(key)?
            .as_str()
            .with_context(|| format!("{}: {key:?} is not a string", self.what))
    }

    fn optional_str(&self, key: &str) -> Result<Option<&'a str>> {
        self.optional(key)
            .map(|value| {
                value
                    .as_str()
                    .with_context(|| format!("{}: {key:?} is not a string", self.what))
            })
            .transpose()
    }

    fn array(&self, key: &str) -> Result<&'a Vec<Value>> {
        self.value(key)?
            .as_array()
            .with_context(|| format!("{}: {key:?} is not an array", self.what))
    }

    /// A string or an array of strings (absent: none).
    fn strings(&self, key: &str) -> Result<Vec<String>> {
        match self.optional(key) {
            None => Ok(Vec::new()),
            Some(Value::String(one)) => Ok(vec![one.clone()]),
            Some(Value::Array(many)) => many
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .with_context(|| format!("{}: {key:?} must hold strings", self.what)),
            Some(other) => bail!("{}: {key:?}: {other} is not a string list", self.what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Group> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("certgate-scenario-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("group.json");
        std::fs::write(&path, text)?;
        let group = Group::load(&path);
        std::fs::remove_dir_all(&dir)?;
        group
    }

    #[test]
    fn a_mistake_is_named_with_its_file_scenario_and_field() {
        let error = load(
            r#"{"envoy": "sidecar", "plugin_config": {}, "scenarios": [
                {"name": "a", "connection": {"cert": {"dns": "x", "colour": "red"}},
                 "request": {"path": "/"}, "expect": {"status": 200}}]}"#,
        )
        .unwrap_err();
        let message = format!("{error:#}");
        for part in [
            "group.json",
            "scenarios[0] (a)",
            "connection",
            "cert",
            "\"colour\"",
        ] {
            assert!(message.contains(part), "{part} in {message}");
        }
        let error = load(r#"{"envoy": "edge", "plugin_config": {}, "scenarios": []}"#).unwrap_err();
        assert!(format!("{error:#}").contains("unknown envoy config \"edge\""));
        let error = load(
            r#"{"envoy": "gateway", "plugin_config": {}, "scenarios": [
                {"name": "a", "connection": {"cert": "missing"},
                 "request": {"path": "/"}, "expect": {"status": "teapot"}}]}"#,
        )
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("no certificate \"missing\""),
            "{error:#}"
        );
    }
}
