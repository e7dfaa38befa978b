//! `cargo xtask demo`: certgate in real Envoy, in one command. It builds what is missing, starts the
//! shipped `envoy/sidecar.yaml` and `envoy/gateway.yaml` with generated certificates and an echo
//! upstream each, sends requests as several identities, prints what certgate decided and which
//! identity headers the upstream received, then certgate's Prometheus counters (a histogram by its
//! count only, so the output stays a screen long). Two of the sidecar's
//! requests are gRPC calls over HTTP/2 (one allowed, one refused with its gRPC status), answered
//! by the app's gRPC side on the same port, as `testkit::GrpcBackend` answers.
//!
//! Every process and temporary file goes away when the demo ends, also on an error or Ctrl-C: they
//! live in testkit's guards, dropped with the future that owns them.
//!
//! The demo checks itself: a status, decision, reason or upstream header other than the expected one
//! fails it after the table is printed, so running it is also an end-to-end check of both configs.

use crate::{build, envoy};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::pki::ENVOY_SERVER_NAME;
use testkit::{CertSpec, Client, EchoServer, Envoy, IssuedCert, Pki, Request, Response, San};

const OPS_ADMIN: &str = "spiffe://mesh.local/ns/ops/sa/admin";
const SHOP_ORDERS: &str = "spiffe://mesh.local/ns/shop/sa/orders";
const WEB_YELB: &str = "web.yelb.svc.cluster.local";
const LEGACY_YELB: &str = "legacy.yelb.svc.cluster.local";

/// What a forging client adds to its request: an identity, an XFCC and a client address of its choice.
const SPOOFED_HEADERS: [(&str, &str); 3] = [
    ("x-client-spiffe-id", OPS_ADMIN),
    (
        "x-forwarded-client-cert",
        "URI=spiffe://mesh.local/ns/ops/sa/admin",
    ),
    ("x-forwarded-for", "10.6.6.6"),
];

/// The headers certgate writes for the upstream, in the order the table shows them.
const UPSTREAM_HEADERS: [&str; 4] = [
    "x-client-spiffe-id",
    "x-client-dns",
    "x-forwarded-client-cert",
    "x-forwarded-for",
];

/// How long Envoy may take to write the access log and flush its histograms.
const ENVOY_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Who signed a client's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signer {
    MeshCa,
    /// A CA Envoy does not trust.
    UnknownCa,
}

/// A client of the demo: the one SAN of its certificate (none: no certificate), and whether it
/// forges identity headers.
#[derive(Clone, Debug)]
struct Caller {
    san: Option<San>,
    signer: Signer,
    spoofs: bool,
}

impl Caller {
    fn with(san: Option<San>) -> Self {
        Caller {
            san,
            signer: Signer::MeshCa,
            spoofs: false,
        }
    }

    fn uri(uri: &str) -> Self {
        Self::with(Some(San::Uri(uri.to_owned())))
    }

    fn dns(name: &str) -> Self {
        Self::with(Some(San::Dns(name.to_owned())))
    }

    fn anonymous() -> Self {
        Self::with(None)
    }

    fn signed_by(mut self, signer: Signer) -> Self {
        self.signer = signer;
        self
    }

    fn spoofing(mut self) -> Self {
        self.spoofs = true;
        self
    }

    /// The identity column: the certificate, then what is odd about the client.
    fn describe(&self) -> Vec<String> {
        let mut lines = vec![match &self.san {
            Some(San::Uri(uri)) => format!("uri {uri}"),
            Some(San::Dns(name)) => format!("dns {name}"),
            Some(other) => format!("{other:?}"),
            None => "no client certificate".to_owned(),
        }];
        if self.signer == Signer::UnknownCa {
            lines.push("  signed by an unknown CA".to_owned());
        }
        if self.spoofs {
            lines.push("  + forged x-client-spiffe-id,".to_owned());
            lines.push("    XFCC and X-Forwarded-For".to_owned());
        }
        lines
    }

    fn certificate(&self, pki: &Pki) -> Result<Option<IssuedCert>> {
        let Some(san) = &self.san else {
            return Ok(None);
        };
        let spec = CertSpec::client().san(san.clone());
        let cert = match self.signer {
            Signer::MeshCa => pki.client_cert(&spec)?,
            Signer::UnknownCa => pki.untrusted_ca.issue(&spec)?,
        };
        Ok(Some(cert))
    }

    /// The identity headers and XFCC the upstream must receive when the request is allowed: the
    /// certificate's, never the forged ones.
    fn expected_upstream(&self, header: &str) -> Option<String> {
        match (header, &self.san) {
            ("x-client-spiffe-id", Some(San::Uri(uri))) => Some(uri.clone()),
            ("x-client-dns", Some(San::Dns(name))) => Some(name.clone()),
            ("x-forwarded-client-cert", Some(San::Uri(uri))) => Some(format!("URI={uri}")),
            ("x-forwarded-client-cert", Some(San::Dns(name))) => Some(format!("DNS={name}")),
            _ => None,
        }
    }
}

/// What must become of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expected {
    Allow(&'static str),
    Deny(&'static str),
    /// The listener requires a client certificate: Envoy ends the handshake, certgate never runs.
    HandshakeRefused,
}

/// One request of the demo.
struct Visit {
    caller: Caller,
    path: &'static str,
    expected: Expected,
    /// A unary gRPC call over HTTP/2 instead of an HTTP/1.1 GET.
    grpc: bool,
}

fn visit(caller: Caller, path: &'static str, expected: Expected) -> Visit {
    Visit {
        caller,
        path,
        expected,
        grpc: false,
    }
}

fn grpc_call(caller: Caller, path: &'static str, expected: Expected) -> Visit {
    Visit {
        grpc: true,
        ..visit(caller, path, expected)
    }
}

impl Visit {
    /// The request column.
    fn request_line(&self) -> String {
        let method = if self.grpc { "gRPC" } else { "GET" };
        format!("{method} {}", self.path)
    }

    /// The request as sent; the Host is the name the clients' SNI gives (certgate counts a
    /// mismatch of the two).
    fn request(&self) -> Request {
        let mut request = if self.grpc {
            // A unary call with an empty message, as a gRPC client sends it.
            Request::new("POST", self.path)
                .header("host", ENVOY_SERVER_NAME)
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(vec![0; 5])
        } else {
            Request::get(self.path, ENVOY_SERVER_NAME)
        };
        if self.caller.spoofs {
            for (name, value) in SPOOFED_HEADERS {
                request = request.header(name, value);
            }
        }
        request
    }
}

/// A shipped config, the policy it runs, and the requests sent to it.
struct Stage {
    name: &'static str,
    template: &'static str,
    policy: serde_json::Value,
    /// The gateway speaks TLS to its backends; the sidecar's app is plain HTTP on loopback.
    tls_upstream: bool,
    visits: Vec<Visit>,
}

/// The two configs with the policies shipped beside them, and who visits which route.
fn stages() -> Result<[Stage; 2]> {
    use Expected::{Allow, Deny, HandshakeRefused};
    Ok([
        Stage {
            name: "sidecar",
            template: "sidecar.yaml",
            policy: testkit::envoy::shipped_policy("sidecar-policy.json")?,
            tls_upstream: false,
            visits: vec![
                visit(
                    Caller::uri(OPS_ADMIN),
                    "/admin/users",
                    Allow("allowlist_match"),
                ),
                visit(
                    Caller::uri(SHOP_ORDERS),
                    "/admin/users",
                    Deny("not_in_allowlist"),
                ),
                visit(
                    Caller::uri(SHOP_ORDERS),
                    "/orders/7",
                    Allow("allowlist_match"),
                ),
                visit(Caller::dns(WEB_YELB), "/", Allow("allowlist_match")),
                visit(Caller::dns(LEGACY_YELB), "/", Deny("denied_by_rule")),
                visit(Caller::anonymous(), "/", HandshakeRefused),
                visit(
                    Caller::uri(SHOP_ORDERS).spoofing(),
                    "/orders/7",
                    Allow("allowlist_match"),
                ),
                grpc_call(
                    Caller::uri(SHOP_ORDERS),
                    "/shop.Orders/Get",
                    Allow("allowlist_match"),
                ),
                grpc_call(
                    Caller::uri(OPS_ADMIN),
                    "/shop.Orders/Cancel",
                    Deny("not_in_allowlist"),
                ),
            ],
        },
        Stage {
            name: "gateway",
            template: "gateway.yaml",
            policy: testkit::envoy::shipped_policy("gateway-policy.json")?,
            tls_upstream: true,
            visits: vec![
                visit(
                    Caller::uri(OPS_ADMIN),
                    "/admin/users",
                    Allow("allowlist_match"),
                ),
                visit(
                    Caller::uri(OPS_ADMIN).signed_by(Signer::UnknownCa),
                    "/admin/users",
                    Deny("cert_not_validated"),
                ),
                visit(
                    Caller::uri(SHOP_ORDERS),
                    "/orders/7",
                    Allow("allowlist_match"),
                ),
                visit(Caller::anonymous(), "/orders/7", Deny("no_client_cert")),
                visit(Caller::anonymous(), "/docs", Allow("client_cert_optional")),
                visit(
                    Caller::anonymous().spoofing(),
                    "/admin/users",
                    Deny("no_client_cert"),
                ),
                visit(
                    Caller::anonymous().spoofing(),
                    "/docs",
                    Allow("client_cert_optional"),
                ),
            ],
        },
    ])
}

/// Builds and installs what is missing, then runs the demo until it ends or Ctrl-C.
pub fn run() -> Result<()> {
    let wasm = build::certgate_wasm()?;
    envoy::ensure_installed()?;
    // One thread: testkit's Envoys die with the thread that started them, and this one outlives them.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the demo's async runtime")?;
    runtime.block_on(async {
        tokio::select! {
            shown = show(&wasm) => shown,
            // Dropping `show` drops its guards: Envoys killed, upstreams stopped, files removed.
            _ = tokio::signal::ctrl_c() => bail!("interrupted: Envoy and the upstreams are stopped"),
        }
    })
}

/// A stage's Envoy and upstream.
struct Running {
    stage: Stage,
    envoy: Envoy,
    upstream: EchoServer,
}

async fn show(wasm: &Path) -> Result<()> {
    let started = Instant::now();
    let pki = Pki::new()?;
    let [sidecar, gateway] = stages()?;
    let (sidecar, gateway) =
        tokio::try_join!(start(sidecar, &pki, wasm), start(gateway, &pki, wasm))?;
    println!(
        "\ncertgate in Envoy: envoy/sidecar.yaml and envoy/gateway.yaml running {}\n",
        wasm.strip_prefix(build::workspace_root())
            .unwrap_or(wasm)
            .display()
    );
    let mut groups = Vec::new();
    let mut problems = Vec::new();
    for running in [&sidecar, &gateway] {
        groups.push(visit_all(running, &pki, &mut problems).await?);
    }
    print_table(
        &[
            "envoy",
            "identity",
            "request",
            "route",
            "decision",
            "status",
            "upstream saw",
        ],
        &groups,
    );
    for running in [&sidecar, &gateway] {
        println!(
            "\ncertgate series on {}'s /stats/prometheus (histograms by their count):",
            running.stage.name
        );
        for line in certgate_series(running, &mut problems).await? {
            println!("  {line}");
        }
    }
    if !problems.is_empty() {
        bail!(
            "the demo did not go as expected:\n  {}",
            problems.join("\n  ")
        );
    }
    println!(
        "\nEvery outcome was as expected; {:.1} s from certificates to this line.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn start(stage: Stage, pki: &Pki, wasm: &Path) -> Result<Running> {
    let upstream = if stage.tls_upstream {
        EchoServer::tls(&pki.backend)?
    } else {
        EchoServer::plain()?
    };
    let envoy = testkit::envoy(stage.template)
        .wasm(wasm)
        .cert_dir(&pki.dir)
        .upstream_port(upstream.port())
        .plugin_config(&stage.policy)
        .start()
        .await
        .with_context(|| format!("starting envoy/{}", stage.template))?;
    Ok(Running {
        stage,
        envoy,
        upstream,
    })
}

/// What certgate recorded for a request in Envoy's access log.
struct Recorded {
    route: String,
    decision: String,
    reason: String,
}

/// A table row: cells of one or more lines.
type Row = Vec<Vec<String>>;

/// Sends every request of a stage and returns its table rows; a request whose outcome differs
/// from the expected one adds a problem.
async fn visit_all(running: &Running, pki: &Pki, problems: &mut Vec<String>) -> Result<Vec<Row>> {
    let Running {
        stage,
        envoy,
        upstream,
    } = running;
    let listener = envoy.listener("ingress")?;
    let mut outcomes = Vec::new();
    for visit in &stage.visits {
        let tls = pki.client_tls(visit.caller.certificate(pki)?.as_ref())?;
        let client = Client::tls(listener, tls);
        outcomes.push(if visit.grpc {
            client.send_h2(&visit.request()).await
        } else {
            client.send(&visit.request()).await
        });
    }
    let answered = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    let records = access_log_records(envoy, answered).await?;

    let mut rows = Vec::new();
    for (visit, outcome) in stage.visits.iter().zip(outcomes) {
        let what = format!(
            "{}: {} on {}",
            stage.name,
            visit.caller.describe().join(" "),
            visit.path
        );
        let (route, decision, status, upstream_saw) = match (&outcome, visit.expected) {
            (Err(error), Expected::HandshakeRefused) => {
                // Envoy's refusal is a TLS alert; anything else (a reset, a timeout) is not it.
                let error = format!("{error:#}");
                if !error.contains("alert") {
                    problems.push(format!("{what}: expected a TLS alert, got: {error}"));
                }
                (
                    "-".to_owned(),
                    vec!["TLS handshake refused".to_owned()],
                    "-".to_owned(),
                    vec!["(never reached)".to_owned()],
                )
            }
            (Err(error), _) => bail!("{what}: the request failed: {error:#}"),
            (Ok(response), expected) => {
                let recorded = records
                    .get(&request_id(response).unwrap_or_else(|| visit.path.to_owned()))
                    .with_context(|| {
                        format!("{what}: no access-log line for status {}", response.status)
                    })?;
                check(visit, expected, response, recorded, problems, &what);
                (
                    recorded.route.clone(),
                    vec![format!("{} {}", recorded.decision, recorded.reason)],
                    match response.header("grpc-status") {
                        Some(code) => format!("grpc-status {code}"),
                        None => response.status.to_string(),
                    },
                    upstream_view(response),
                )
            }
        };
        let envoy_name = if rows.is_empty() { stage.name } else { "" };
        rows.push(vec![
            vec![envoy_name.to_owned()],
            visit.caller.describe(),
            vec![visit.request_line()],
            vec![route],
            decision,
            vec![status],
            upstream_saw,
        ]);
    }
    let allowed = stage
        .visits
        .iter()
        .filter(|visit| matches!(visit.expected, Expected::Allow(_)))
        .count();
    if upstream.requests_served() != allowed {
        problems.push(format!(
            "{}: the upstream served {} requests, not the {allowed} allowed ones",
            stage.name,
            upstream.requests_served()
        ));
    }
    Ok(rows)
}

/// Compares one answered request with what was expected.
fn check(
    visit: &Visit,
    expected: Expected,
    response: &Response,
    recorded: &Recorded,
    problems: &mut Vec<String>,
    what: &str,
) {
    let (status, decision, reason) = match expected {
        Expected::Allow(reason) => (200, "allow", reason),
        Expected::Deny(reason) => (if visit.grpc { 200 } else { 403 }, "deny", reason),
        Expected::HandshakeRefused => {
            problems.push(format!(
                "{what}: expected a refused handshake, got status {}",
                response.status
            ));
            return;
        }
    };
    // A gRPC answer says OK (0) or PERMISSION_DENIED (7) in `grpc-status`.
    let grpc_status = match (visit.grpc, decision) {
        (false, _) => None,
        (true, "allow") => Some("0"),
        (true, _) => Some("7"),
    };
    if response.status != status
        || response.header("grpc-status") != grpc_status
        || recorded.decision != decision
        || recorded.reason != reason
    {
        problems.push(format!(
            "{what}: expected {status} (grpc-status {grpc_status:?}) {decision} {reason}, got {} ({:?}) {} {}",
            response.status,
            response.header("grpc-status"),
            recorded.decision,
            recorded.reason
        ));
    }
    if let Some(identity) = testkit::grpc::reply_identity(&response.body) {
        let expected = visit.caller.expected_upstream("x-client-spiffe-id");
        if Some(identity.as_str()) != expected.as_deref() {
            problems.push(format!(
                "{what}: the gRPC app saw x-client-spiffe-id {identity:?}"
            ));
        }
        return;
    }
    let Ok(echoed) = response.echoed() else {
        return;
    };
    for header in UPSTREAM_HEADERS {
        let seen = echoed.header_values(header);
        let fine = match visit.caller.expected_upstream(header) {
            Some(value) => seen == [value.as_str()],
            // The real peer is appended last: the one entry of X-Forwarded-For to believe.
            None if header == "x-forwarded-for" => {
                seen.len() == 1 && seen[0].ends_with("127.0.0.1")
            }
            None => seen.is_empty(),
        };
        if !fine {
            problems.push(format!("{what}: the upstream saw {header}: {seen:?}"));
        }
    }
}

/// The request id Envoy gave a request: the upstream saw it, or certgate's deny body names it;
/// `None` for a gRPC call (its log line is found by its path, each call's own).
fn request_id(response: &Response) -> Option<String> {
    match response.echoed() {
        Ok(echoed) => echoed.header("x-request-id").map(str::to_owned),
        Err(_) => response.json().ok()?["request_id"]
            .as_str()
            .map(str::to_owned),
    }
}

/// certgate's fields of the access log, by request id and, for gRPC calls, by path, once `count`
/// lines are written.
async fn access_log_records(envoy: &Envoy, count: usize) -> Result<HashMap<String, Recorded>> {
    let entries = envoy.access_log_entries(count, ENVOY_FLUSH_TIMEOUT).await?;
    let field =
        |entry: &serde_json::Value, key: &str| entry[key].as_str().unwrap_or("-").to_owned();
    Ok(entries
        .iter()
        .map(|entry| {
            let key = if entry["method"] == "POST" {
                "path"
            } else {
                "request_id"
            };
            (
                field(entry, key),
                Recorded {
                    route: field(entry, "certgate_route"),
                    decision: field(entry, "certgate_decision"),
                    reason: field(entry, "certgate_reason"),
                },
            )
        })
        .collect())
}

/// The identity headers, XFCC and XFF the upstream received, one line each.
fn upstream_view(response: &Response) -> Vec<String> {
    if let Some(identity) = testkit::grpc::reply_identity(&response.body) {
        return vec![format!("x-client-spiffe-id: {identity} (over h2c)")];
    }
    let Ok(echoed) = response.echoed() else {
        return vec!["(never reached)".to_owned()];
    };
    UPSTREAM_HEADERS
        .iter()
        .flat_map(|name| {
            echoed
                .header_values(name)
                .into_iter()
                .map(move |value| format!("{name}: {value}"))
        })
        .collect()
}

/// The lines of `/stats/prometheus` that start with `certgate_`, once certgate's tick has handed
/// over a decision per answered request and Envoy has flushed the histogram of days to expiry. A
/// histogram is shown by its `_count` line: its buckets and sum are a scrape away, and a dozen
/// bucket lines per Envoy would bury the counters.
async fn certgate_series(running: &Running, problems: &mut Vec<String>) -> Result<Vec<String>> {
    let Running { stage, envoy, .. } = running;
    let answered = stage
        .visits
        .iter()
        .filter(|visit| visit.expected != Expected::HandshakeRefused)
        .count();
    let scrape = envoy
        .wait_for_prometheus(ENVOY_FLUSH_TIMEOUT, |scrape| {
            scrape
                .value("certgate_peer_cert_days_to_expiry_count", &[])
                .is_some_and(|count| count > 0.0)
                && scrape.value("certgate_requests_total", &[]) == Some(answered as f64)
        })
        .await
        .with_context(|| format!("{}: certgate's counts never all reached Envoy", stage.name))?;
    let decisions = scrape.value("certgate_requests_total", &[]).unwrap_or(0.0);
    if decisions != answered as f64 {
        problems.push(format!(
            "{}: certgate_requests_total adds up to {decisions}, not {answered}",
            stage.name
        ));
    }
    let text = envoy.admin_get("/stats/prometheus").await?;
    Ok(text
        .lines()
        .filter(|line| line.starts_with("certgate_"))
        .filter(|line| !is_histogram_detail(line))
        .map(str::to_owned)
        .collect())
}

/// Whether a Prometheus text line is a histogram's bucket or sum, not its count.
fn is_histogram_detail(line: &str) -> bool {
    let name = line.split(['{', ' ']).next().unwrap_or(line);
    name.ends_with("_bucket") || name.ends_with("_sum")
}

/// Prints groups of rows, a blank line between groups, in columns as wide as their widest line.
fn print_table(header: &[&str], groups: &[Vec<Row>]) {
    let mut widths: Vec<usize> = header.iter().map(|title| title.len()).collect();
    for row in groups.iter().flatten() {
        for (width, cell) in widths.iter_mut().zip(row) {
            for line in cell {
                *width = (*width).max(line.chars().count());
            }
        }
    }
    let print_line = |cells: &[&str]| {
        let line: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    };
    print_line(header);
    let rule: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
    print_line(&rule.iter().map(String::as_str).collect::<Vec<_>>());
    for (index, group) in groups.iter().enumerate() {
        if index > 0 {
            println!();
        }
        for row in group {
            let height = row.iter().map(Vec::len).max().unwrap_or(1);
            for line in 0..height {
                let cells: Vec<&str> = row
                    .iter()
                    .map(|cell| cell.get(line).map(String::as_str).unwrap_or(""))
                    .collect();
                print_line(&cells);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_policies_compile() {
        for stage in stages().unwrap() {
            let policy = stage.policy.to_string();
            if let Err(errors) = certgate::config::compile(policy.as_bytes()) {
                panic!("the {} policy is refused: {errors:?}", stage.name);
            }
        }
    }

    #[test]
    fn histograms_are_shown_by_their_count() {
        let shown: Vec<&str> = [
            r#"certgate_requests_total{route="app",decision="allow",reason="allowlist_match"} 4"#,
            r#"certgate_peer_cert_days_to_expiry_bucket{le="365"} 8"#,
            r#"certgate_peer_cert_days_to_expiry_bucket{le="+Inf"} 8"#,
            "certgate_peer_cert_days_to_expiry_sum{} 2919.45",
            "certgate_peer_cert_days_to_expiry_count{} 8",
        ]
        .into_iter()
        .filter(|line| !is_histogram_detail(line))
        .collect();
        assert_eq!(
            shown,
            [
                r#"certgate_requests_total{route="app",decision="allow",reason="allowlist_match"} 4"#,
                "certgate_peer_cert_days_to_expiry_count{} 8",
            ]
        );
    }
}
