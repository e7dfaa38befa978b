//! The harness soak: the real `certgate.wasm` in the host harness, configured with the
//! 10,000-matcher bench policy with every forwarding header and telemetry on, serving a rotation of
//! identities (allowed and denied, several certificates, an untrusted one, none) with forged
//! identity headers, over connections that each carry a few dozen requests as keep-alive clients
//! do. The guest's linear memory is sampled every tenth of the run.
//!
//! It passes when the guest never traps, every request gets its expected decision and status, no
//! forged header reaches the upstream, and no sample after warm-up is larger than the baseline ([`super::growth_after_warm_up`] is 0): Wasm memory grows in
//! whole pages and never shrinks, so "flat" here means not one page added after warm-up. The
//! ceiling of [`MEMORY_LIMIT`] is judged apart ([`HarnessSoak::memory_limit_problem`]).

use super::{growth_after_warm_up, mib, sample_points, Sample};
use host_harness::{
    Certificate, Connection, Exchange, ForwardClientCert, GuestModule, HarnessError,
    HttpConnectionManager, Plugin, PluginSettings, Request, Tls,
};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use testkit::{CertSpec, TestCa};

#[path = "../../../benches/support/policies.rs"]
mod policies;

/// Routes and allow matchers per route: 10,000 matchers.
const ROUTES: usize = 10;
const MATCHERS_PER_ROUTE: usize = 1000;

/// The most linear memory the guest may hold.
pub const MEMORY_LIMIT: u64 = 4 * 1024 * 1024;

/// Requests per connection: a new connection (a new `connection.id`, a new client port) after
/// this many, so per-connection state is created and dropped all run long.
const REQUESTS_PER_CONNECTION: u64 = 50;

/// What a client forges on every other request: an identity header, an XFCC and an address.
const FORGED_IDENTITY: &str = "spiffe://mesh.local/ns/forged/sa/intruder";
const FORGED_HEADERS: [(&str, &str); 3] = [
    ("x-client-spiffe-id", FORGED_IDENTITY),
    (
        "x-forwarded-client-cert",
        "URI=spiffe://mesh.local/ns/forged/sa/intruder",
    ),
    ("x-forwarded-for", "10.66.66.66"),
];

/// How a client's certificate stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Presented {
    Validated,
    /// Presented, not validated (`ACCEPT_UNTRUSTED`).
    Untrusted,
    None,
}

/// One identity on one route, and what certgate must decide.
struct Case {
    name: &'static str,
    spec: CertSpec,
    presented: Presented,
    route: usize,
    decision: &'static str,
    reason: &'static str,
    /// The `x-client-spiffe-id` the upstream must see on an allowed request.
    upstream_identity: Option<String>,
}

fn cases() -> Vec<Case> {
    let allowed_uri = policies::allowed_uri(ROUTES);
    let dns = |route, matcher| policies::allow_matcher(route, matcher).1;
    let case = |name, spec, presented, route, decision, reason| Case {
        name,
        spec,
        presented,
        route,
        decision,
        reason,
        upstream_identity: None,
    };
    vec![
        Case {
            upstream_identity: Some(allowed_uri.clone()),
            ..case(
                "spiffe id, last route",
                CertSpec::client().uri(&allowed_uri),
                Presented::Validated,
                ROUTES - 1,
                "allow",
                "allowlist_match",
            )
        },
        case(
            "dns name, its route",
            CertSpec::client().dns(&dns(3, 0)),
            Presented::Validated,
            3,
            "allow",
            "allowlist_match",
        ),
        case(
            "dns name, another route",
            CertSpec::client().dns(&dns(3, 0)),
            Presented::Validated,
            8,
            "deny",
            "not_in_allowlist",
        ),
        Case {
            upstream_identity: Some("spiffe://mesh.local/ns/team-7-4/sa/api".into()),
            ..case(
                "spiffe prefix",
                CertSpec::client().uri("spiffe://mesh.local/ns/team-7-4/sa/api"),
                Presented::Validated,
                7,
                "allow",
                "allowlist_match",
            )
        },
        case(
            "ip san in a cidr",
            CertSpec::client().ip(Ipv4Addr::new(10, 4, 5, 7).into()),
            Presented::Validated,
            4,
            "allow",
            "allowlist_match",
        ),
        case(
            "denied dns name",
            CertSpec::client().dns(&policies::deny_dns(5)),
            Presented::Validated,
            5,
            "deny",
            "denied_by_rule",
        ),
        case(
            "untrusted certificate",
            CertSpec::client().uri(&allowed_uri),
            Presented::Untrusted,
            ROUTES - 1,
            "deny",
            "cert_not_validated",
        ),
        case(
            "no certificate",
            CertSpec::client(),
            Presented::None,
            0,
            "deny",
            "no_client_cert",
        ),
    ]
}

/// A case with its TLS session and the connection its requests currently use.
struct Client {
    case: Case,
    tls: Tls,
    connection: Connection,
    sent_on_connection: u64,
}

/// What a harness soak measured.
#[derive(Debug)]
pub struct HarnessSoak {
    pub requests: u64,
    pub allowed: u64,
    pub denied: u64,
    pub connections: u64,
    /// Linear memory after configuring (`requests` 0) and every tenth of the run.
    pub samples: Vec<Sample>,
    /// The trap that killed the VM, if one did (the run stops there).
    pub trap: Option<String>,
    /// Requests whose outcome was not the expected one (the first few, and how many in all).
    pub wrong: Vec<String>,
    pub wrong_count: u64,
    pub elapsed: Duration,
}

/// Wrong outcomes kept for the report beyond the count.
const WRONG_KEPT: usize = 10;

/// Runs `requests` requests; `on_sample` sees each sample as it is taken (the command prints them
/// live). An error is a set-up failure (no `.wasm`, a rejected policy), not a finding.
pub fn run(requests: u64, mut on_sample: impl FnMut(&Sample)) -> anyhow::Result<HarnessSoak> {
    let path = testkit::certgate_wasm()?;
    let module = GuestModule::load(&path)?;
    let policy = policies::policy_with_features_json(ROUTES, MATCHERS_PER_ROUTE);
    let mut plugin = Plugin::new(&module, settings(policy))?;
    if !plugin.configured().accepted {
        anyhow::bail!(
            "certgate refused the soak policy: {:?}",
            plugin.configured().logs
        );
    }
    let ca = TestCa::new("certgate soak CA")?;
    let mut clients = Vec::new();
    for case in cases() {
        let tls = match case.presented {
            Presented::None => Tls::new(),
            presented => {
                let issued = ca.issue(&case.spec)?;
                Tls::new()
                    .peer_certificate(Certificate::from_pem(&issued.cert_pem)?)
                    .validated(presented == Presented::Validated)
            }
        };
        clients.push(Client {
            case,
            connection: Connection::tls(tls.clone()),
            tls,
            sent_on_connection: 0,
        });
    }

    let mut soak = HarnessSoak {
        requests: 0,
        allowed: 0,
        denied: 0,
        connections: clients.len() as u64,
        samples: Vec::new(),
        trap: None,
        wrong: Vec::new(),
        wrong_count: 0,
        elapsed: Duration::ZERO,
    };
    let first = sample(&plugin, 0);
    on_sample(&first);
    soak.samples.push(first);
    let points = sample_points(requests);
    let started = Instant::now();
    let mut next_point = points.iter().copied().peekable();
    let rotation = clients.len() as u64;
    for n in 0..requests {
        let client = &mut clients[(n % rotation) as usize];
        if client.sent_on_connection == REQUESTS_PER_CONNECTION {
            soak.connections += 1;
            client.connection = new_connection(&client.tls, soak.connections);
            client.sent_on_connection = 0;
        }
        client.sent_on_connection += 1;
        let route = format!("r{}", client.case.route);
        let mut request = Request::get("/api/items").route_name(&route);
        if n % 2 == 0 {
            for (name, value) in FORGED_HEADERS {
                request = request.header(name, value);
            }
        }
        match plugin.send(&client.connection, request) {
            Ok(exchange) => {
                soak.requests += 1;
                match check(&client.case, &exchange) {
                    Ok(true) => soak.allowed += 1,
                    Ok(false) => soak.denied += 1,
                    Err(wrong) => {
                        soak.wrong_count += 1;
                        if soak.wrong.len() < WRONG_KEPT {
                            soak.wrong.push(format!("request {n}: {wrong}"));
                        }
                    }
                }
            }
            Err(error @ (HarnessError::Trap { .. } | HarnessError::VmFailed { .. })) => {
                soak.trap = Some(format!("request {n}: {error}"));
                break;
            }
            Err(error) => return Err(error.into()),
        }
        // The harness keeps every log line for the test to read: drop them as Envoy would.
        plugin.take_logs();
        if next_point.peek() == Some(&(n + 1)) {
            next_point.next();
            let taken = sample(&plugin, n + 1);
            on_sample(&taken);
            soak.samples.push(taken);
        }
    }
    soak.elapsed = started.elapsed();
    Ok(soak)
}

/// The shipped sidecar's HCM: the peer is the socket address, XFCC is certgate's to handle.
fn settings(policy: String) -> PluginSettings {
    let hcm = HttpConnectionManager::default()
        .use_remote_address(true)
        .skip_xff_append(true)
        .forward_client_cert(ForwardClientCert::ForwardOnly, Default::default())
        .drop_headers_with_underscores(true);
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    PluginSettings::new("certgate")
        .configuration(policy.into_bytes())
        .http_connection_manager(hcm)
        // testkit's certificates are valid relative to the real clock.
        .start_time_ns(u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX))
}

/// Connection number `number` of a client: its own id and client port, as a new TCP connection has.
fn new_connection(tls: &Tls, number: u64) -> Connection {
    let port = 20_000 + (number % 40_000) as u16;
    Connection::tls(tls.clone())
        .source(SocketAddr::from(([127, 0, 0, 1], port)))
        .id(number)
}

fn sample(plugin: &Plugin, requests: u64) -> Sample {
    Sample {
        requests,
        bytes: plugin.memory_bytes() as u64,
    }
}

/// Whether the exchange was allowed, after checking it against the case; `Err` says what differs.
fn check(case: &Case, exchange: &Exchange) -> Result<bool, String> {
    let record = exchange
        .filter_state_fields("wasm.certgate")
        .unwrap_or_default();
    let state = |field: &str| record.get(field).cloned().unwrap_or_default();
    let (decision, reason) = (state("decision"), state("reason"));
    let status = exchange
        .response
        .as_ref()
        .map_or(0, |response| response.status);
    let expected_status = if case.decision == "allow" { 200 } else { 403 };
    if decision != case.decision || reason != case.reason || status != expected_status {
        return Err(format!(
            "{}: expected {} {} {expected_status}, got {decision:?} {reason:?} {status}",
            case.name, case.decision, case.reason
        ));
    }
    let Some(upstream) = exchange.request.upstream() else {
        return Ok(false);
    };
    let identity = upstream.headers.get_all("x-client-spiffe-id");
    let expected: Vec<&str> = case.upstream_identity.iter().map(String::as_str).collect();
    if identity != expected {
        return Err(format!(
            "{}: the upstream saw x-client-spiffe-id {identity:?}",
            case.name
        ));
    }
    let forged = upstream
        .headers
        .get_all("x-forwarded-client-cert")
        .iter()
        .any(|value| value.contains(FORGED_IDENTITY));
    if forged {
        return Err(format!("{}: a forged XFCC reached the upstream", case.name));
    }
    Ok(true)
}

impl HarnessSoak {
    /// What is wrong with the run; empty when it passed.
    pub fn problems(&self, requested: u64) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(trap) = &self.trap {
            problems.push(format!("the guest trapped: {trap}"));
        }
        if self.requests != requested {
            problems.push(format!(
                "{} of {requested} requests were decided",
                self.requests
            ));
        }
        if self.wrong_count > 0 {
            problems.push(format!(
                "{} requests got an unexpected outcome, first: {}",
                self.wrong_count,
                self.wrong.join("; ")
            ));
        }
        match growth_after_warm_up(&self.samples) {
            Some(0) => {}
            Some(growth) => problems.push(format!(
                "linear memory grew by {growth} bytes after warm-up: {:?}",
                self.samples
            )),
            None => problems.push("too few memory samples to judge growth".into()),
        }
        problems
    }

    /// The memory target, apart from [`HarnessSoak::problems`]: `Some` when the guest's
    /// linear memory went above [`MEMORY_LIMIT`] at any sample.
    pub fn memory_limit_problem(&self) -> Option<String> {
        let peak = self.samples.iter().map(|s| s.bytes).max().unwrap_or(0);
        (peak > MEMORY_LIMIT).then(|| {
            format!(
                "linear memory reached {} ({peak} bytes), above the target of {}",
                mib(peak),
                mib(MEMORY_LIMIT)
            )
        })
    }

    /// The samples and totals, for the command and for a failing test's output.
    pub fn print(&self) {
        println!("harness soak: certgate.wasm, {ROUTES} routes x {MATCHERS_PER_ROUTE} matchers, every forwarding header");
        println!(
            "  {:>10}  {:>14}  {:>12}",
            "requests", "linear memory", "bytes"
        );
        for sample in &self.samples {
            println!(
                "  {:>10}  {:>14}  {:>12}",
                sample.requests,
                mib(sample.bytes),
                sample.bytes
            );
        }
        let per_request = self.elapsed.as_secs_f64() * 1e6 / self.requests.max(1) as f64;
        println!(
            "  {} requests ({} allowed, {} denied) on {} connections in {:.1} s ({per_request:.1} us each); traps: {}; unexpected outcomes: {}",
            self.requests,
            self.allowed,
            self.denied,
            self.connections,
            self.elapsed.as_secs_f64(),
            if self.trap.is_some() { 1 } else { 0 },
            self.wrong_count
        );
    }
}
