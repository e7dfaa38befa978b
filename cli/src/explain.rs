//! `certgate explain`: one request through the real module, and everything it left behind — the
//! decision and its reason, the request the upstream receives (or the reply the client gets), the
//! metrics that moved and the lines certgate logged.

use crate::wasm;
use anyhow::{bail, Context, Result};
use host_harness::{
    Certificate, Connection, Exchange, HeaderMap, LogRecord, MetricChange, MetricType, Request,
    RequestOutcome, Tls, TlsVersion,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The metric whose name carries route, decision and reason (see the filter's telemetry module).
const REQUESTS_METRIC: &str = "certgate_requests_total.";
/// The route label of a request no route matched.
const NO_ROUTE_LABEL: &str = "_none";
/// The filter-state keys certgate sets: `wasm.certgate_<field>`.
/// Where certgate's record is in filter state (Envoy's key for the `certgate` property).
const RECORD_KEY: &str = "wasm.certgate";

/// The request to explain, as the operator describes it.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The certgate policy (JSON).
    #[arg(long, value_name = "CONFIG")]
    pub config: PathBuf,
    /// The client certificate (PEM; certificates after the first are its chain).
    #[arg(long, value_name = "CLIENT.pem", required_unless_present = "no_cert")]
    pub cert: Option<PathBuf>,
    /// A TLS connection on which the client presented no certificate.
    #[arg(long, conflicts_with_all = ["cert", "untrusted"])]
    pub no_cert: bool,
    /// The certificate was let through the handshake without validation (`ACCEPT_UNTRUSTED`).
    #[arg(long)]
    pub untrusted: bool,
    /// The request path (with query, if any).
    #[arg(long, default_value = "/")]
    pub path: String,
    /// The name of the Envoy route that matched (`xds.route_name`).
    #[arg(long, value_name = "N")]
    pub route_name: Option<String>,
    /// The `:authority` (Host).
    #[arg(long, value_name = "H", default_value = "example.com")]
    pub host: String,
    #[arg(long, value_name = "M", default_value = "GET")]
    pub method: String,
    /// A request header as the client sends it; repeat the flag for more (or for duplicates).
    #[arg(long = "header", value_name = "K:V", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// `TLSv1.3` or `TLSv1.2` (also `1.3`, `1.2`).
    #[arg(long, value_name = "V", default_value = "TLSv1.3", value_parser = parse_tls_version)]
    pub tls_version: TlsVersion,
    /// The SNI the client sent (as recorded by Envoy's `tls_inspector`).
    #[arg(long, value_name = "S")]
    pub sni: Option<String>,
    /// The client's socket address.
    #[arg(long, value_name = "IP:PORT")]
    pub source: Option<SocketAddr>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(format!("{text:?} is not NAME:VALUE")),
    }
}

fn parse_tls_version(text: &str) -> Result<TlsVersion, String> {
    match text {
        "TLSv1.3" | "1.3" => Ok(TlsVersion::Tls13),
        "TLSv1.2" | "1.2" => Ok(TlsVersion::Tls12),
        _ => Err(format!("{text:?} is not TLSv1.3 or TLSv1.2")),
    }
}

/// What became of the request.
#[derive(Debug)]
enum Outcome {
    /// Allowed: the request as the upstream receives it.
    Forwarded(HeaderMap),
    /// Answered by certgate: the reply as the client receives it.
    Replied {
        status: u32,
        headers: HeaderMap,
        body: String,
    },
    /// Neither (the filter paused or reset the stream).
    Other(&'static str),
}

/// Everything one request left behind.
#[derive(Debug)]
pub struct Explanation {
    decision: Option<String>,
    reason: Option<String>,
    route: Option<String>,
    /// The access-record fields certgate set as filter state.
    record: BTreeMap<String, String>,
    outcome: Outcome,
    metrics: Vec<MetricChange>,
    logs: Vec<LogRecord>,
    hostcalls: u64,
}

impl Explanation {
    /// Prints the explanation, as text or as one JSON object.
    pub fn print(&self, as_json: bool) {
        if as_json {
            println!("{}", self.json());
        } else {
            print!("{}", self.text());
        }
    }

    fn text(&self) -> String {
        let field = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_string());
        let mut out = String::new();
        let verdict = match &self.outcome {
            Outcome::Forwarded(_) => "allowed, forwarded upstream".to_string(),
            Outcome::Replied { status, .. } => format!("denied, local reply {status}"),
            Outcome::Other(what) => what.to_string(),
        };
        let mut line = |label: &str, value: &str| out += &format!("{label:<15} {value}\n");
        line(
            "decision",
            &format!("{} ({verdict})", field(&self.decision)),
        );
        line("reason", &field(&self.reason));
        line("route", &field(&self.route));
        for (key, value) in &self.record {
            if !["decision", "reason", "route"].contains(&key.as_str()) {
                line(key, value);
            }
        }
        match &self.outcome {
            Outcome::Forwarded(headers) => {
                out += "\nupstream receives\n";
                out += &indented_headers(headers);
            }
            Outcome::Replied {
                status,
                headers,
                body,
            } => {
                out += &format!("\nclient receives {status}\n");
                out += &indented_headers(headers);
                out += &format!("  body: {body}\n");
            }
            Outcome::Other(_) => {}
        }
        out += "\nmetric changes\n";
        for change in &self.metrics {
            out += &match change.kind {
                MetricType::Histogram => {
                    format!("  {}  recorded {:?}\n", change.name, change.new_samples)
                }
                _ => format!(
                    "  {}  {:+} ({} -> {})\n",
                    change.name,
                    change.after - change.before,
                    change.before,
                    change.after
                ),
            };
        }
        out += "\nlog\n";
        for record in &self.logs {
            out += &format!(
                "  {:<5} {}\n",
                format!("{:?}", record.level).to_lowercase(),
                record.message
            );
        }
        out += &format!("\nhostcalls       {}\n", self.hostcalls);
        out
    }

    fn json(&self) -> Value {
        let headers_json = |headers: &HeaderMap| -> Value {
            headers
                .iter()
                .map(|(name, value)| json!([name, value]))
                .collect()
        };
        let (upstream, reply) = match &self.outcome {
            Outcome::Forwarded(headers) => (json!({"headers": headers_json(headers)}), Value::Null),
            Outcome::Replied {
                status,
                headers,
                body,
            } => (
                Value::Null,
                json!({"status": status, "headers": headers_json(headers), "body": body}),
            ),
            Outcome::Other(_) => (Value::Null, Value::Null),
        };
        let metrics: Vec<Value> = self
            .metrics
            .iter()
            .map(|change| match change.kind {
                MetricType::Histogram => {
                    json!({"name": change.name, "kind": "histogram", "samples": change.new_samples})
                }
                kind => json!({
                    "name": change.name,
                    "kind": format!("{kind:?}").to_lowercase(),
                    "before": change.before,
                    "after": change.after,
                }),
            })
            .collect();
        let logs: Vec<Value> = self
            .logs
            .iter()
            .map(|record| {
                json!({"level": format!("{:?}", record.level).to_lowercase(), "message": record.message})
            })
            .collect();
        json!({
            "decision": self.decision,
            "allowed": matches!(self.outcome, Outcome::Forwarded(_)),
            "status": match &self.outcome {
                Outcome::Replied { status, .. } => json!(status),
                _ => Value::Null,
            },
            "reason": self.reason,
            "route": self.route,
            "record": self.record,
            "upstream_request": upstream,
            "local_reply": reply,
            "metrics": metrics,
            "logs": logs,
            "hostcalls": self.hostcalls,
        })
    }
}

fn indented_headers(headers: &HeaderMap) -> String {
    headers
        .iter()
        .map(|(name, value)| format!("  {name}: {value}\n"))
        .collect()
}

/// Runs the request. `Ok(None)` when certgate rejected the policy (its errors are printed).
pub fn run(wasm_path: &Path, args: &ExplainArgs) -> Result<Option<Explanation>> {
    let connection = connection(args)?;
    let mut plugin = wasm::start(wasm_path, &args.config)?;
    if !plugin.configured().accepted {
        for error in wasm::configuration_errors(plugin.configured()) {
            eprintln!("{}: {error}", args.config.display());
        }
        return Ok(None);
    }
    let before = plugin.metrics();
    let exchange = plugin.send(&connection, request(args))?;
    // certgate hands its counts to the host on its tick.
    plugin.tick()?;
    let metrics = plugin.metrics().changes_since(&before);
    Ok(Some(explanation(exchange, metrics)))
}

fn connection(args: &ExplainArgs) -> Result<Connection> {
    let mut tls = Tls::new().version(args.tls_version);
    if let Some(path) = &args.cert {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut chain = Certificate::chain_from_pem(&pem)
            .with_context(|| format!("{} is not a PEM certificate", path.display()))?
            .into_iter();
        let Some(leaf) = chain.next() else {
            bail!("{} holds no CERTIFICATE block", path.display());
        };
        tls = tls
            .peer_certificate(leaf)
            .peer_chain(chain.collect())
            .validated(!args.untrusted);
    }
    if let Some(sni) = &args.sni {
        tls = tls.sni(sni);
    }
    let connection = Connection::tls(tls);
    Ok(match args.source {
        Some(source) => connection.source(source),
        None => connection,
    })
}

fn request(args: &ExplainArgs) -> Request {
    let mut request = Request::new(&args.method, &args.path).authority(&args.host);
    for (name, value) in &args.headers {
        request = request.header(name, value);
    }
    match &args.route_name {
        Some(name) => request.route_name(name),
        None => request,
    }
}

fn explanation(exchange: Exchange, metrics: Vec<MetricChange>) -> Explanation {
    let record = exchange.filter_state_fields(RECORD_KEY).unwrap_or_default();
    // Filter state can be switched off (`telemetry.filter_state: false`); the requests metric
    // always carries the same three facts.
    let labels = metrics
        .iter()
        .find_map(|change| requests_metric_labels(&change.name));
    let from_metric = |index: usize| labels.as_ref().map(|labels| labels[index].clone());
    let outcome = match (&exchange.request, &exchange.response) {
        (RequestOutcome::Continued(upstream), _) => Outcome::Forwarded(upstream.headers.clone()),
        (RequestOutcome::LocalResponse(_), Some(response)) => Outcome::Replied {
            status: response.status,
            headers: response.headers.clone(),
            body: String::from_utf8_lossy(&response.body).into_owned(),
        },
        (RequestOutcome::LocalResponse(reply), None) => Outcome::Replied {
            status: reply.status,
            headers: reply.headers.clone(),
            body: String::from_utf8_lossy(&reply.body).into_owned(),
        },
        (RequestOutcome::Paused, _) => Outcome::Other("paused"),
        (RequestOutcome::Reset, _) => Outcome::Other("reset"),
    };
    Explanation {
        decision: record.get("decision").cloned().or_else(|| from_metric(1)),
        reason: record.get("reason").cloned().or_else(|| from_metric(2)),
        route: record
            .get("route")
            .cloned()
            .or_else(|| from_metric(0).filter(|route| route != NO_ROUTE_LABEL)),
        record,
        outcome,
        metrics,
        logs: exchange.logs,
        hostcalls: exchange.hostcalls.total(),
    }
}

/// Route, decision and reason from `certgate_requests_total.route.R.decision.D.reason.X`.
fn requests_metric_labels(name: &str) -> Option<[String; 3]> {
    let labels = name.strip_prefix(REQUESTS_METRIC)?;
    let (route, rest) = labels.strip_prefix("route.")?.split_once(".decision.")?;
    let (decision, reason) = rest.split_once(".reason.")?;
    Some([route.to_string(), decision.to_string(), reason.to_string()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_metric_names_give_route_decision_and_reason() {
        assert_eq!(
            requests_metric_labels(
                "certgate_requests_total.route._none.decision.deny.reason.no_route"
            ),
            Some(["_none".into(), "deny".into(), "no_route".into()])
        );
        assert_eq!(
            requests_metric_labels("certgate_tls_version_total.version.TLSv1.3"),
            None
        );
    }

    #[test]
    fn headers_and_tls_versions_parse_or_say_what_is_wrong() {
        assert_eq!(
            parse_header("x-a: b:c"),
            Ok(("x-a".to_string(), "b:c".to_string()))
        );
        assert!(parse_header("no-colon").is_err());
        assert!(parse_header(": value").is_err());
        assert_eq!(parse_tls_version("1.2"), Ok(TlsVersion::Tls12));
        assert!(parse_tls_version("SSLv3").is_err());
    }
}
