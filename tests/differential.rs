//! The differential check: every scenario of `tests/scenarios/` (decisions, forwarding and the
//! spoofing attacks) played through the host harness and through real Envoy with the
//! same certificates. Each side's outcome (status, certgate's decision, the headers the upstream
//! received, the local reply, certgate's counter deltas) must equal the scenario's expectation,
//! and the two sides must equal each other. A failure prints the scenario and a readable diff.
//!
//! Groups (one file, one Envoy) run in parallel; the scenarios of a group run one after another so
//! that counter deltas belong to one request. `DIFF_PRINT_ACTUAL=1` prints each outcome in the
//! corpus's `expect` form (check every line by hand before copying it into a scenario).

#[path = "support/mod.rs"]
mod support;

#[path = "differential/envoy_side.rs"]
mod envoy_side;
#[path = "differential/harness_side.rs"]
mod harness_side;
#[path = "differential/outcome.rs"]
mod outcome;
#[path = "differential/profile.rs"]
mod profile;
#[path = "differential/scenario.rs"]
mod scenario;

use anyhow::{Context, Result};
use envoy_side::EnvoySide;
use envoy_side::Protocol;
use harness_side::HarnessSide;
use outcome::{against_expectation, as_expectation_json, between, Materials, Outcome};
use scenario::{CertDescription, Group, Status};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use testkit::{IssuedCert, Pki};

/// What became of one scenario.
struct Report {
    name: String,
    /// Differences that fail the test.
    failures: Vec<String>,
    /// A known filter bug that still shows (reported, not failed).
    known_bug: Option<(String, Vec<String>)>,
    actual: Option<String>,
    /// The scenario was also played over HTTP/2.
    over_h2: bool,
}

#[test]
fn harness_and_envoy_agree_on_every_scenario() {
    let groups = scenario::load_corpus().unwrap_or_else(|error| panic!("{error:#}"));
    let count: usize = groups.iter().map(|group| group.scenarios.len()).sum();
    assert!(
        count > 0,
        "no scenarios in {}",
        scenario::corpus_dir().display()
    );
    // The module compiles once; doing it before the threads start keeps them from racing for it.
    support::certgate();
    let started = std::time::Instant::now();
    let threads: Vec<_> = groups
        .into_iter()
        .map(|group| {
            std::thread::Builder::new()
                .name(group.file.clone())
                .spawn(move || {
                    let file = group.file.clone();
                    let reports = run_group(&group).with_context(|| format!("group {file}"));
                    (file, reports)
                })
                .expect("a thread per group")
        })
        .collect();
    let mut text = String::new();
    let mut failed = 0;
    let mut known = 0;
    let mut over_h2 = 0;
    for thread in threads {
        let (file, reports) = thread.join().expect("a group thread panicked");
        let reports = match reports {
            Ok(reports) => reports,
            Err(error) => {
                failed += 1;
                let _ = writeln!(text, "\n{file}: {error:#}");
                continue;
            }
        };
        for report in reports {
            over_h2 += usize::from(report.over_h2);
            if let Some(actual) = &report.actual {
                let _ = writeln!(text, "\n{file} / {}: actual expect = {actual}", report.name);
            }
            if let Some((bug, diffs)) = &report.known_bug {
                known += 1;
                let _ = writeln!(
                    text,
                    "\n{file} / {}: KNOWN FILTER BUG ({bug})\n  {}",
                    report.name,
                    diffs.join("\n  ")
                );
            }
            if !report.failures.is_empty() {
                failed += 1;
                let _ = writeln!(
                    text,
                    "\n{file} / {}: FAILED\n  {}",
                    report.name,
                    report.failures.join("\n  ")
                );
            }
        }
    }
    eprintln!(
        "differential: {count} scenarios ({over_h2} also over h2), {failed} failed, {known} known filter bugs, {:.1?}{text}",
        started.elapsed()
    );
    assert_eq!(failed, 0, "{failed} scenarios failed: see the report above");
}

/// Plays every scenario of a group on both sides.
fn run_group(group: &Group) -> Result<Vec<Report>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let pki = Pki::new()?;
    let server_pem =
        std::fs::read_to_string(pki.dir.path().join(testkit::certs::SERVER_CERT_FILE))?;
    let sign = |description: &CertDescription| {
        let ca = if description.trusted_issuer {
            &pki.mesh_ca
        } else {
            &pki.untrusted_ca
        };
        ca.issue(&description.spec)
    };
    let group_certs: BTreeMap<&str, IssuedCert> = group
        .certs
        .iter()
        .map(|(name, description)| Ok((name.as_str(), sign(description)?)))
        .collect::<Result<_>>()?;
    let mut plugin_config =
        group.plugin_config_with(|name| group_certs.get(name).map(IssuedCert::sha256_hex))?;
    // Counts reach Envoy's /stats on certgate's tick: the shortest one keeps the suite quick.
    plugin_config["telemetry"]["metrics_flush_ms"] = serde_json::json!(100);
    let mut envoy = runtime.block_on(EnvoySide::start(group, &plugin_config, &pki))?;
    let mut harness = HarnessSide::start(group, &plugin_config, &server_pem)?;
    let print_actual = std::env::var_os("DIFF_PRINT_ACTUAL").is_some();
    let issue = |description: &CertDescription| -> Result<IssuedCert> {
        match &description.group_cert {
            Some(name) => group_certs
                .get(name.as_str())
                .cloned()
                .with_context(|| format!("no group certificate {name:?}")),
            None => sign(description),
        }
    };
    let mut reports = Vec::new();
    for scenario in &group.scenarios {
        let materials = Materials::issue(scenario, issue)
            .with_context(|| format!("{}: issuing certificates", scenario.name))?;
        let on_envoy = runtime
            .block_on(envoy.play(scenario, &materials, &pki, Protocol::Http1))
            .with_context(|| format!("{}: envoy", scenario.name))?;
        // The same request over HTTP/2 must come out the same: decision, upstream headers, reply
        // and counts. Requests HTTP/2 cannot carry (codec cases, connection headers) and refused
        // handshakes are HTTP/1.1 only.
        let over_h2 = if h2_expressible(scenario) && on_envoy.status != Status::TlsRejected {
            Some(
                runtime
                    .block_on(envoy.play(scenario, &materials, &pki, Protocol::Http2))
                    .with_context(|| format!("{}: envoy over h2", scenario.name))?,
            )
        } else {
            None
        };
        let on_harness = match scenario.envoy_only {
            Some(_) => None,
            None => Some(
                harness
                    .play(scenario, &materials)
                    .with_context(|| format!("{}: harness", scenario.name))?,
            ),
        };
        let mut report = judge(scenario, &on_envoy, on_harness.as_ref(), print_actual);
        if let Some(over_h2) = &over_h2 {
            report.over_h2 = true;
            report.failures.extend(
                between(("h2", over_h2), ("http/1.1", &on_envoy))
                    .into_iter()
                    .map(|diff| format!("h2 vs http/1.1: {diff}")),
            );
        }
        reports.push(report);
    }
    Ok(reports)
}

/// Checks both outcomes against the expectation and against each other. A known filter bug
/// excuses differences from the expectation, never differences between the sides.
fn judge(
    scenario: &scenario::Scenario,
    envoy: &Outcome,
    harness: Option<&Outcome>,
    print_actual: bool,
) -> Report {
    let mut expectation_diffs: Vec<String> = against_expectation(envoy, &scenario.expect)
        .into_iter()
        .map(|diff| format!("envoy vs expected: {diff}"))
        .collect();
    let mut side_diffs = Vec::new();
    if let Some(harness) = harness {
        expectation_diffs.extend(
            against_expectation(harness, &scenario.expect)
                .into_iter()
                .map(|diff| format!("harness vs expected: {diff}")),
        );
        side_diffs.extend(
            between(("harness", harness), ("envoy", envoy))
                .into_iter()
                .map(|diff| format!("harness vs envoy: {diff}")),
        );
    }
    let actual = print_actual.then(|| {
        let mut text = format!("envoy {}", as_expectation_json(envoy));
        if let Some(harness) = harness {
            let _ = write!(text, "\n  harness {}", as_expectation_json(harness));
        }
        text
    });
    let (mut failures, known_bug) = match &scenario.filter_bug {
        Some(bug) if expectation_diffs.is_empty() => (
            vec![format!(
                "marked as the filter bug {bug:?} but behaves as expected: remove the mark"
            )],
            None,
        ),
        Some(bug) => (Vec::new(), Some((bug.clone(), expectation_diffs))),
        None => (expectation_diffs, None),
    };
    failures.extend(side_diffs);
    Report {
        name: scenario.name.clone(),
        failures,
        known_bug,
        actual,
        over_h2: false,
    }
}

/// Whether HTTP/2 can carry the scenario's request: header names HTTP/2 forbids (connection-specific
/// ones), or values its codec refuses (control bytes), keep a scenario HTTP/1.1 only, as do
/// scenarios about Envoy's HTTP/1 codec itself.
fn h2_expressible(scenario: &scenario::Scenario) -> bool {
    const CONNECTION_SPECIFIC: [&str; 6] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
    ];
    scenario.envoy_only.is_none()
        && scenario.request.headers.iter().all(|(name, value)| {
            let name = name.trim().to_ascii_lowercase();
            !CONNECTION_SPECIFIC.contains(&name.as_str())
                && !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_graphic())
                && value
                    .bytes()
                    .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
        })
}
