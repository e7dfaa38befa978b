//! The Envoy soak and reload: the shipped `envoy/sidecar.yaml` with certgate's config served by ECDS
//! from a file ([`testkit::ecds`]), driven by a few keep-alive mTLS clients (one connection per
//! identity, allowed and denied ones, half the requests with forged identity headers), while:
//!
//! - every tenth of the run, Envoy's heap (`/memory`) and certgate's own decision counters are
//!   sampled;
//! - at 40 % a valid config is swapped in that admits one more identity on `/admin`: Envoy must
//!   count the reload, and that identity's `/admin` requests turn from 403 to 200;
//! - at 70 % an invalid config is swapped in: Envoy must refuse it (`config_fail`) while the
//!   previous config goes on deciding.
//!
//! Every response must be the one the policy in force prescribes (200 or 403). A request in flight
//! while a swap is taking effect may get either policy's answer; once a probe request has seen the
//! new decision, every request sent after it must get the new policy's answer. A request without a
//! response (reset, closed, timed out after 10 s) is a failure, so a swap that drains or stalls a
//! keep-alive connection fails the run.

use super::{growth_after_warm_up, mib, sample_points, Sample};
use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::ecds::{self, ConfigUpdates, Swap};
use testkit::pki::ENVOY_SERVER_NAME;
use testkit::{CertSpec, Client, EchoServer, Envoy, Pki, Request, San};

const OPS_ADMIN: &str = "spiffe://mesh.local/ns/ops/sa/admin";
const SHOP_ORDERS: &str = "spiffe://mesh.local/ns/shop/sa/orders";
const WEB_YELB: &str = "web.yelb.svc.cluster.local";
const LEGACY_YELB: &str = "legacy.yelb.svc.cluster.local";

/// What a forging client adds: an identity header, an XFCC and an address of its choice.
const FORGED_IDENTITY: &str = "spiffe://mesh.local/ns/forged/sa/intruder";
const FORGED_HEADERS: [(&str, &str); 3] = [
    ("x-client-spiffe-id", FORGED_IDENTITY),
    (
        "x-forwarded-client-cert",
        "URI=spiffe://mesh.local/ns/forged/sa/intruder",
    ),
    ("x-forwarded-for", "10.66.66.66"),
];

/// The paths every client alternates between: the sidecar's `admin` and `app` routes.
const PATHS: [&str; 2] = ["/admin/users", "/orders/7"];

/// How long certgate's last counts may take to reach Envoy (its tick is one second).
const COUNTS_DEADLINE: Duration = Duration::from_secs(5);
/// Envoy's heap may move with buffers and stats; after warm-up it may not grow by more than this.
pub const HEAP_GROWTH_LIMIT: u64 = 2 * 1024 * 1024;

/// The whole process, V8 and the Wasm VMs included (a reload adds a root context, and V8 collects
/// garbage when it likes): after warm-up it may not grow by more than this.
pub const RESIDENT_GROWTH_LIMIT: u64 = 8 * 1024 * 1024;

/// When the swaps happen, in hundredths of the run.
const VALID_SWAP_AT: u64 = 40;
const INVALID_SWAP_AT: u64 = 70;

/// The run may take this long plus this much per request (a machine shared with other builds).
const RUN_TIMEOUT_BASE: Duration = Duration::from_secs(60);
const RUN_TIMEOUT_PER_REQUEST: Duration = Duration::from_millis(5);

/// How long the probe may wait for the new decision after Envoy counted the reload.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The policies of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
    /// `admin` for the ops service accounts; `app` for the orders service and yelb services but the
    /// legacy one.
    Initial,
    /// The same, and the orders service on `admin` too.
    Widened,
}

impl Policy {
    /// The sidecar's shipped policy (`envoy/sidecar-policy.json`), widened on `admin` if asked.
    fn json(self) -> Value {
        let mut policy = testkit::envoy::shipped_policy("sidecar-policy.json")
            .unwrap_or_else(|error| panic!("{error:#}"));
        if self == Policy::Widened {
            match policy["routes"][0]["allow"].as_array_mut() {
                Some(admin) => admin.push(json!({"uri": SHOP_ORDERS})),
                None => panic!("the shipped sidecar policy's first route has an allowlist"),
            }
        }
        policy
    }

    /// The status `caller` gets on `path` under this policy.
    fn status(self, caller: &Caller, path: &str) -> u16 {
        let admitted = match (&caller.san, path.starts_with("/admin")) {
            (San::Uri(uri), true) => {
                uri.starts_with("spiffe://mesh.local/ns/ops/sa/")
                    || (self == Policy::Widened && uri == SHOP_ORDERS)
            }
            (San::Uri(uri), false) => uri == SHOP_ORDERS,
            (San::Dns(name), false) => {
                name.ends_with(".yelb.svc.cluster.local") && name != LEGACY_YELB
            }
            _ => false,
        };
        if admitted {
            200
        } else {
            403
        }
    }
}

/// A DNS pattern certgate refuses (a wildcard inside a label).
const INVALID_PATTERN: &str = "a*.yelb.svc.cluster.local";

/// A config certgate refuses.
fn invalid_policy() -> Value {
    json!({"routes": [{"name": "admin", "match": {"route_name": "admin"},
                       "allow": [{"dns": INVALID_PATTERN}]}]})
}

/// Where the run is, as the clients see it. The stages only move forward, so a request that
/// started in stage `a` and ended in stage `b` may have met the policies of every stage in `a..=b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
enum Stage {
    Initial = 0,
    /// The valid config is written; Envoy may or may not apply it yet.
    Swapping = 1,
    /// A probe has seen the new decision: every later request gets it.
    Widened = 2,
    /// The invalid config is written; Envoy must refuse it.
    RefusingInvalid = 3,
    /// Envoy refused it.
    AfterInvalid = 4,
}

impl Stage {
    const ALL: [Stage; 5] = [
        Stage::Initial,
        Stage::Swapping,
        Stage::Widened,
        Stage::RefusingInvalid,
        Stage::AfterInvalid,
    ];

    fn from_u8(value: u8) -> Stage {
        Stage::ALL[usize::from(value).min(Stage::ALL.len() - 1)]
    }

    fn policies(self) -> &'static [Policy] {
        match self {
            Stage::Initial => &[Policy::Initial],
            Stage::Swapping => &[Policy::Initial, Policy::Widened],
            _ => &[Policy::Widened],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Stage::Initial => "initial config",
            Stage::Swapping => "valid swap in flight",
            Stage::Widened => "new config",
            Stage::RefusingInvalid => "invalid swap in flight",
            Stage::AfterInvalid => "invalid refused",
        }
    }
}

/// A client identity: the one SAN of its certificate.
#[derive(Clone, Debug)]
struct Caller {
    name: &'static str,
    san: San,
}

fn callers() -> Vec<Caller> {
    vec![
        Caller {
            name: "ops admin",
            san: San::Uri(OPS_ADMIN.into()),
        },
        Caller {
            name: "shop orders",
            san: San::Uri(SHOP_ORDERS.into()),
        },
        Caller {
            name: "web yelb",
            san: San::Dns(WEB_YELB.into()),
        },
        Caller {
            name: "legacy yelb",
            san: San::Dns(LEGACY_YELB.into()),
        },
    ]
}

/// Responses of one stage.
#[derive(Clone, Debug, Default)]
pub struct StageTally {
    pub responses: u64,
    pub ok: u64,
    pub forbidden: u64,
    pub max_latency: Duration,
}

/// What every client saw, shared by the client tasks.
#[derive(Debug, Default)]
struct Tally {
    /// By the stage a request started in.
    stages: BTreeMap<Stage, StageTally>,
    /// Requests without a response, and the first few errors.
    failures: u64,
    /// Responses other than the policy prescribes, or forged headers at the upstream (first few).
    wrong: Vec<String>,
    wrong_count: u64,
    connections: u64,
}

const KEPT: usize = 10;

impl Tally {
    fn wrong(&mut self, what: String) {
        self.wrong_count += 1;
        if self.wrong.len() < KEPT {
            self.wrong.push(what);
        }
    }
}

/// State the clients and the controller share.
struct Shared {
    stage: AtomicU8,
    responses: AtomicU64,
    stop: AtomicBool,
    tally: Mutex<Tally>,
}

impl Shared {
    fn stage(&self) -> Stage {
        Stage::from_u8(self.stage.load(Ordering::SeqCst))
    }

    fn set_stage(&self, stage: Stage) {
        self.stage.store(stage as u8, Ordering::SeqCst);
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Envoy's figures at one point of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvoySample {
    pub requests: u64,
    /// tcmalloc's bytes in use by the application (`/memory` `allocated`).
    pub allocated: u64,
    /// tcmalloc's heap (`/memory` `heap_size`).
    pub heap_size: u64,
    /// The whole process, V8's Wasm memory included (`VmRSS`).
    pub resident: u64,
    /// The decisions certgate counted (`certgate_requests_total`, all labels).
    pub certgate_decisions: u64,
    /// The denials among them.
    pub certgate_denials: u64,
}

/// Reads one figure of a sample.
type Figure = fn(&EnvoySample) -> u64;

/// One config swap and what came of it.
#[derive(Clone, Debug)]
pub struct SwapRecord {
    pub what: &'static str,
    pub at_requests: u64,
    pub outcome: Swap,
    /// The `version_info` written.
    pub version: u64,
    /// From the rename of the file until Envoy counted the update.
    pub counted_after: Duration,
    /// From the rename until a probe saw the new decision (valid swaps only).
    pub effective_after: Option<Duration>,
}

/// What an Envoy soak measured.
#[derive(Debug)]
pub struct EnvoySoak {
    pub requests: u64,
    pub samples: Vec<EnvoySample>,
    pub swaps: Vec<SwapRecord>,
    /// By the stage a request started in, in the order of the run.
    pub stages: Vec<(&'static str, StageTally)>,
    pub failures: u64,
    pub wrong: Vec<String>,
    pub wrong_count: u64,
    pub connections: u64,
    pub probes: u64,
    pub upstream_served: u64,
    /// Envoy's ECDS stats over the run (counts exclude the first load from the file).
    pub updates: ConfigUpdates,
    /// certgate's error about the invalid config, as Envoy logged it.
    pub refusal_logged: bool,
    /// Envoy's log lines at warning and above.
    pub log_notices: Vec<String>,
    /// Envoy's `extension_config_discovery.*` stats at the end.
    pub ecds_stats: Vec<String>,
    pub elapsed: Duration,
}

/// Runs at least `requests` requests through Envoy (the run ends at the first sample point after
/// both swaps are done); `on_sample` sees each sample as it is taken.
pub async fn run(requests: u64, mut on_sample: impl FnMut(&EnvoySample)) -> Result<EnvoySoak> {
    let wasm = testkit::certgate_wasm()?;
    let pki = Pki::new()?;
    let upstream = EchoServer::plain()?;
    let (builder, mut filter_config) =
        ecds::certgate_from_file("sidecar.yaml", &wasm, &Policy::Initial.json())?;
    let envoy = builder
        .cert_dir(&pki.dir)
        .upstream_port(upstream.port())
        // 200,000 JSON lines would only fill the disk; certgate's counters are the record here.
        .var("ACCESS_LOG", "/dev/null")
        .start()
        .await
        .context("starting the ECDS sidecar")?;
    let listener = envoy.listener("ingress")?;
    let mut clients = Vec::new();
    for caller in callers() {
        let cert = pki.client_cert(&CertSpec::client().san(caller.san.clone()))?;
        clients.push((caller, Client::tls(listener, pki.client_tls(Some(&cert))?)));
    }
    let shared = Arc::new(Shared {
        stage: AtomicU8::new(Stage::Initial as u8),
        responses: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        tally: Mutex::new(Tally::default()),
    });

    // Loading the first config from the file may count as an update already.
    let updates_at_start = ConfigUpdates::of(&envoy).await?;
    let mut samples = vec![sample(&envoy, 0).await?];
    on_sample(&samples[0]);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (caller, client) in &clients {
        let (caller, client, shared) = (caller.clone(), client.clone(), shared.clone());
        tasks.spawn(async move { drive(caller, client, shared).await });
    }

    let shop_orders = clients
        .iter()
        .find(|(caller, _)| caller.name == "shop orders")
        .map(|(_, client)| client.clone())
        .context("the shop orders client")?;
    let controlled = control(
        requests,
        &envoy,
        &mut filter_config,
        &shared,
        &shop_orders,
        &mut samples,
        &mut on_sample,
    )
    .await;
    shared.stop.store(true, Ordering::SeqCst);
    while tasks.join_next().await.is_some() {}
    let (swaps, probes) = controlled?;
    let elapsed = started.elapsed();

    // Every request has its answer now; certgate hands the last of its counts to Envoy on its
    // next tick, after which the counters are exact.
    let answered = shared.responses.load(Ordering::SeqCst) + probes;
    let counted = |scrape: &testkit::Prometheus| {
        scrape.value("certgate_requests_total", &[]) == Some(answered as f64)
    };
    // A shortfall is reported by the checks below, with the counts.
    let _ = envoy.wait_for_prometheus(COUNTS_DEADLINE, counted).await;
    let last = sample(&envoy, shared.responses.load(Ordering::SeqCst)).await?;
    on_sample(&last);
    samples.push(last);
    let updates_now = ConfigUpdates::of(&envoy).await?;
    let updates = ConfigUpdates {
        accepted: updates_now
            .accepted
            .saturating_sub(updates_at_start.accepted),
        rejected: updates_now
            .rejected
            .saturating_sub(updates_at_start.rejected),
        reloads: updates_now.reloads.saturating_sub(updates_at_start.reloads),
        failures: updates_now
            .failures
            .saturating_sub(updates_at_start.failures),
        version: updates_now.version,
    };
    let log = envoy.log();
    let refusal_logged = log
        .lines()
        .any(|line| line.contains("invalid configuration") && line.contains(INVALID_PATTERN));
    // certgate's spoofing warnings (one per connection) are expected: keep the rest.
    let log_notices: Vec<String> = log
        .lines()
        .filter(|line| {
            line.contains("[error]")
                || line.contains("[critical]")
                || (line.contains("[warning][config]"))
        })
        .map(str::to_owned)
        .collect();
    let ecds_stats: Vec<String> = envoy
        .stats()
        .await?
        .lines
        .into_iter()
        .filter(|(name, _)| name.starts_with("extension_config_discovery."))
        .map(|(name, value)| format!("{name}: {value}"))
        .collect();
    let tally = std::mem::take(&mut *shared.tally());
    Ok(EnvoySoak {
        requests: shared.responses.load(Ordering::SeqCst),
        samples,
        swaps,
        stages: tally
            .stages
            .into_iter()
            .map(|(stage, counts)| (stage.name(), counts))
            .collect(),
        failures: tally.failures,
        wrong: tally.wrong,
        wrong_count: tally.wrong_count,
        connections: tally.connections,
        probes,
        upstream_served: upstream.requests_served() as u64,
        updates,
        refusal_logged,
        log_notices,
        ecds_stats,
        elapsed,
    })
}

/// One client: one keep-alive connection (a new one only after a failure), alternating paths,
/// forging headers on every other request, until told to stop.
async fn drive(caller: Caller, client: Client, shared: Arc<Shared>) {
    let mut connection = None;
    let mut n: u64 = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        n += 1;
        let path = PATHS[(n % 2) as usize];
        let mut request = Request::get(path, ENVOY_SERVER_NAME);
        let forging = n % 4 < 2;
        if forging {
            for (name, value) in FORGED_HEADERS {
                request = request.header(name, value);
            }
        }
        let open = match connection.as_mut() {
            Some(open) => open,
            None => match client.connect().await {
                Ok(open) => {
                    shared.tally().connections += 1;
                    connection.insert(open)
                }
                Err(error) => {
                    shared
                        .tally()
                        .wrong(format!("{}: connect: {error:#}", caller.name));
                    shared.tally().failures += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let first = shared.stage();
        let sent = Instant::now();
        let result = open.send(&request).await;
        let latency = sent.elapsed();
        let last = shared.stage();
        let mut tally = shared.tally();
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                tally.failures += 1;
                tally.wrong(format!("{} {path}: no response: {error:#}", caller.name));
                connection = None;
                continue;
            }
        };
        shared.responses.fetch_add(1, Ordering::SeqCst);
        let stage = tally.stages.entry(first).or_default();
        stage.responses += 1;
        stage.max_latency = stage.max_latency.max(latency);
        match response.status {
            200 => stage.ok += 1,
            403 => stage.forbidden += 1,
            _ => {}
        }
        let allowed: Vec<u16> = Stage::ALL
            .iter()
            .filter(|stage| (first..=last).contains(stage))
            .flat_map(|stage| stage.policies())
            .map(|policy| policy.status(&caller, path))
            .collect();
        if !allowed.contains(&response.status) {
            tally.wrong(format!(
                "{} {path} ({} .. {}): status {}, expected one of {allowed:?}: {}",
                caller.name,
                first.name(),
                last.name(),
                response.status,
                response.body_text()
            ));
        } else if response.status == 200 && contains(&response.body, FORGED_IDENTITY.as_bytes()) {
            tally.wrong(format!(
                "{} {path}: a forged identity reached the upstream",
                caller.name
            ));
        }
        if response
            .header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"))
        {
            connection = None;
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Until `requests` responses have come and both swaps are done: samples at every tenth of the run
/// but the last (taken once the clients have stopped), and swaps the configs at their points.
/// Returns the swaps and how many probe requests were sent.
async fn control(
    requests: u64,
    envoy: &Envoy,
    filter_config: &mut ecds::FilterConfigFile,
    shared: &Shared,
    probe_client: &Client,
    samples: &mut Vec<EnvoySample>,
    on_sample: &mut impl FnMut(&EnvoySample),
) -> Result<(Vec<SwapRecord>, u64)> {
    let mut swaps = Vec::new();
    let mut probes = 0;
    let mut points = sample_points(requests);
    points.pop();
    let mut points = points.into_iter().peekable();
    let mut valid_swap = Some(requests * VALID_SWAP_AT / 100);
    let mut invalid_swap = Some(requests * INVALID_SWAP_AT / 100);
    let deadline = Instant::now() + RUN_TIMEOUT_BASE + RUN_TIMEOUT_PER_REQUEST * requests as u32;
    loop {
        let done = shared.responses.load(Ordering::SeqCst);
        if let Some(at) = valid_swap.filter(|&at| done >= at) {
            valid_swap = None;
            swaps.push(
                swap_valid(envoy, filter_config, shared, probe_client, &mut probes, at).await?,
            );
        } else if let Some(at) = invalid_swap.filter(|&at| done >= at && valid_swap.is_none()) {
            invalid_swap = None;
            swaps.push(swap_invalid(envoy, filter_config, shared, at).await?);
        } else if points.next_if(|&point| done >= point).is_some() {
            let taken = sample(envoy, done).await?;
            on_sample(&taken);
            samples.push(taken);
        } else if done >= requests && valid_swap.is_none() && invalid_swap.is_none() {
            return Ok((swaps, probes));
        } else if Instant::now() > deadline {
            bail!("the run did not finish in time: {done} responses of {requests}");
        } else {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn swap_valid(
    envoy: &Envoy,
    filter_config: &mut ecds::FilterConfigFile,
    shared: &Shared,
    probe_client: &Client,
    probes: &mut u64,
    done: u64,
) -> Result<SwapRecord> {
    shared.set_stage(Stage::Swapping);
    let renamed = Instant::now();
    let outcome = filter_config.swap(envoy, &Policy::Widened.json()).await?;
    let counted_after = renamed.elapsed();
    ensure!(
        outcome == Swap::Accepted,
        "envoy refused the valid config:\n{}",
        envoy.log_tail(20)
    );
    // The probe's own connection: the shop orders identity on `/admin`, denied before the swap.
    let mut probe = probe_client.connect().await?;
    shared.tally().connections += 1;
    let request = Request::get(PATHS[0], ENVOY_SERVER_NAME);
    loop {
        *probes += 1;
        let status = probe.send(&request).await?.status;
        if status == 200 {
            break;
        }
        ensure!(status == 403, "the probe got status {status}");
        ensure!(
            renamed.elapsed() < PROBE_TIMEOUT,
            "the new config was counted but never decided within {PROBE_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let effective_after = renamed.elapsed();
    shared.set_stage(Stage::Widened);
    Ok(SwapRecord {
        what: "valid: orders service admitted on /admin",
        at_requests: done,
        outcome,
        version: filter_config.version(),
        counted_after,
        effective_after: Some(effective_after),
    })
}

async fn swap_invalid(
    envoy: &Envoy,
    filter_config: &mut ecds::FilterConfigFile,
    shared: &Shared,
    done: u64,
) -> Result<SwapRecord> {
    shared.set_stage(Stage::RefusingInvalid);
    let renamed = Instant::now();
    let outcome = filter_config.swap(envoy, &invalid_policy()).await?;
    let counted_after = renamed.elapsed();
    shared.set_stage(Stage::AfterInvalid);
    Ok(SwapRecord {
        what: "invalid: a*.yelb.svc.cluster.local",
        at_requests: done,
        outcome,
        version: filter_config.version(),
        counted_after,
        effective_after: None,
    })
}

/// Envoy's heap and certgate's counters now.
async fn sample(envoy: &Envoy, requests: u64) -> Result<EnvoySample> {
    let memory: Value = serde_json::from_str(&envoy.admin_get("/memory").await?)
        .context("admin /memory is not JSON")?;
    // Protobuf's JSON writes 64-bit integers as strings.
    let field = |name: &str| -> Result<u64> {
        let value = &memory[name];
        value
            .as_u64()
            .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
            .with_context(|| format!("admin /memory has no {name}: {memory}"))
    };
    let scrape = envoy.prometheus().await?;
    let count = |labels: &[(&str, &str)]| {
        scrape
            .value("certgate_requests_total", labels)
            .unwrap_or(0.0) as u64
    };
    Ok(EnvoySample {
        requests,
        allocated: field("allocated")?,
        heap_size: field("heap_size")?,
        resident: envoy.resident_memory_bytes()?,
        certgate_decisions: count(&[]),
        certgate_denials: count(&[("decision", "deny")]),
    })
}

impl EnvoySoak {
    /// What is wrong with the run; empty when it passed.
    pub fn problems(&self, requested: u64) -> Vec<String> {
        let mut problems = Vec::new();
        if self.requests < requested {
            problems.push(format!(
                "{} of {requested} requests answered",
                self.requests
            ));
        }
        if self.failures > 0 {
            problems.push(format!("{} requests got no response", self.failures));
        }
        if self.wrong_count > 0 {
            problems.push(format!(
                "{} unexpected outcomes, first: {}",
                self.wrong_count,
                self.wrong.join("; ")
            ));
        }
        if self.connections != 4 + 1 {
            problems.push(format!(
                "{} connections were opened, not one per client and one probe: Envoy closed some",
                self.connections
            ));
        }
        let outcomes: Vec<(&str, Swap)> = self.swaps.iter().map(|s| (s.what, s.outcome)).collect();
        if outcomes.len() != 2 || outcomes[0].1 != Swap::Accepted || outcomes[1].1 != Swap::Rejected
        {
            problems.push(format!(
                "expected the valid swap accepted, then the invalid one rejected: {outcomes:?}"
            ));
        }
        let valid_version = self.swaps.first().map(|swap| swap.version.to_string());
        if self.updates.accepted != 1
            || self.updates.rejected != 1
            || self.updates.failures != 1
            || Some(&self.updates.version) != valid_version.as_ref()
        {
            problems.push(format!(
                "envoy's ECDS stats over the run: {:?}; expected one update accepted, one refused \
                 (one config_fail), and the valid swap's version {valid_version:?} serving",
                self.updates
            ));
        }
        if !self.refusal_logged {
            problems.push(
                "envoy's log does not show certgate's reason for refusing the invalid config"
                    .into(),
            );
        }
        let new_config: u64 = self
            .stages
            .iter()
            .filter(|(name, _)| [Stage::Widened.name(), Stage::AfterInvalid.name()].contains(name))
            .map(|(_, tally)| tally.responses)
            .sum();
        if new_config == 0 {
            problems.push("no request ran under the new config".into());
        }
        if let Some(last) = self.samples.last() {
            let answered = self.requests + self.probes;
            if last.certgate_decisions != answered {
                problems.push(format!(
                    "certgate counted {} decisions for {answered} answered requests",
                    last.certgate_decisions
                ));
            }
            let forbidden: u64 = self.stages.iter().map(|(_, s)| s.forbidden).sum();
            let allowed: u64 = self.stages.iter().map(|(_, s)| s.ok).sum();
            // Probe answers are 403 until the last one.
            let probe_denials = self.probes.saturating_sub(1);
            if last.certgate_denials != forbidden + probe_denials {
                problems.push(format!(
                    "certgate counted {} denials, the clients got {} 403s (+{probe_denials} probes)",
                    last.certgate_denials, forbidden
                ));
            }
            if self.upstream_served != allowed + 1 {
                problems.push(format!(
                    "the upstream served {} requests, the clients and the probe got {} 200s",
                    self.upstream_served,
                    allowed + 1
                ));
            }
        }
        let figures: [(&str, Figure, u64); 2] = [
            ("heap (allocated)", |s| s.allocated, HEAP_GROWTH_LIMIT),
            ("resident memory", |s| s.resident, RESIDENT_GROWTH_LIMIT),
        ];
        for (figure, value, limit) in figures {
            let samples: Vec<Sample> = self
                .samples
                .iter()
                .map(|s| Sample {
                    requests: s.requests,
                    bytes: value(s),
                })
                .collect();
            match growth_after_warm_up(&samples) {
                Some(growth) if growth <= limit => {}
                Some(growth) => problems.push(format!(
                    "envoy's {figure} grew by {} after warm-up (limit {})",
                    mib(growth),
                    mib(limit)
                )),
                None => problems.push("too few memory samples to judge growth".into()),
            }
        }
        problems
    }

    pub fn print(&self) {
        println!(
            "envoy soak: envoy/sidecar.yaml, certgate's config by ECDS, 4 keep-alive mTLS clients"
        );
        println!(
            "  {:>8}  {:>12}  {:>12}  {:>12}  {:>19}  {:>17}",
            "requests", "allocated", "heap", "resident", "certgate decisions", "certgate denials"
        );
        for sample in &self.samples {
            println!(
                "  {:>8}  {:>12}  {:>12}  {:>12}  {:>19}  {:>17}",
                sample.requests,
                mib(sample.allocated),
                mib(sample.heap_size),
                mib(sample.resident),
                sample.certgate_decisions,
                sample.certgate_denials
            );
        }
        for swap in &self.swaps {
            println!(
                "  swap at {} requests, {}: {:?}, counted by envoy after {:.0} ms{}",
                swap.at_requests,
                swap.what,
                swap.outcome,
                swap.counted_after.as_secs_f64() * 1e3,
                swap.effective_after.map_or(String::new(), |after| format!(
                    ", new decision seen after {:.0} ms",
                    after.as_secs_f64() * 1e3
                ))
            );
        }
        for stat in &self.ecds_stats {
            println!("  {stat}");
        }
        for line in &self.log_notices {
            println!("  envoy: {line}");
        }
        for (stage, tally) in &self.stages {
            println!(
                "  {stage:<24} {:>8} responses ({} x 200, {} x 403), slowest {:.1} ms",
                tally.responses,
                tally.ok,
                tally.forbidden,
                tally.max_latency.as_secs_f64() * 1e3
            );
        }
        println!(
            "  {} responses in {:.1} s ({:.0}/s) on {} connections, {} probes; no response: {}; unexpected: {}; ECDS {:?}",
            self.requests,
            self.elapsed.as_secs_f64(),
            self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9),
            self.connections,
            self.probes,
            self.failures,
            self.wrong_count,
            self.updates
        );
    }
}
