//! The differential suite on third-party guests: the proxy-wasm-rust-sdk examples vendored in
//! `third_party/` and the AssemblyScript guest of `tests/guests/`, each played scenario by scenario
//! (`tests/guests/scenarios/<guest>.yaml`, the declarative runner's format) through the host
//! harness (the runner's own engine) and through real Envoy (`tests/guests/envoy.yaml`, a scripted
//! upstream and call backend answering what the scenario says). Each side must meet the
//! scenario's expectations and the two must agree on what the client received (status, headers,
//! body), what the upstream received and the HTTP and gRPC calls the guest sent (a scripted gRPC
//! service over HTTP/2 answers the gRPC calls in Envoy).
//!
//! Where the harness is known to differ from Envoy, the difference is a [`KnownLimit`], named in
//! `docs/harness.md`: headers only one side adds are left out of the comparison by the limit's
//! name ([`IGNORED_HEADERS`]), and a scenario that shows a limit is listed with it in
//! [`GUESTS`]. Such a scenario is still played and its differences printed; if it stops
//! differing, the test fails until the mark is removed.

use anyhow::{bail, Context, Result};
use pwh::{
    Outcome, ReceivedRequest, ReceivedResponse, Scenario, ScenarioFile, SentGrpcCall, SentHttpCall,
    WireBytes,
};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::{Client, EchoServer, ScriptedAnswer, ScriptedGrpcAnswer, ScriptedGrpcBackend};

/// A difference between the harness and Envoy, documented in `docs/harness.md`.
#[derive(Clone, Copy, Debug)]
struct KnownLimit {
    name: &'static str,
    reason: &'static str,
}

const ROUTER_HEADERS: KnownLimit = KnownLimit {
    name: "router headers",
    reason:
        "Envoy's router and async client add x-envoy-* headers and `date`; the harness does not",
};
const CODEC_FRAMING: KnownLimit = KnownLimit {
    name: "codec framing",
    reason: "content-length / transfer-encoding, and the HTTP/1 `connection: close` of an answer \
             sent before the request was read to its end, are each side's codec's, not the guest's",
};
const REQUEST_ID: KnownLimit = KnownLimit {
    name: "request id",
    reason: "Envoy generates a random x-request-id, the harness a deterministic one",
};
const GRPC_CLIENT_HEADERS: KnownLimit = KnownLimit {
    name: "gRPC client headers",
    reason: "Envoy's gRPC client adds the protocol's and its router's headers to a call's metadata; the harness records the metadata the guest gave",
};

/// The headers Envoy's gRPC client adds to every call, left out of the metadata the service
/// received before it is compared, with the limit that excuses each.
const GRPC_ADDED_HEADERS: [(&str, KnownLimit); 5] = [
    ("content-type", GRPC_CLIENT_HEADERS),
    ("te", GRPC_CLIENT_HEADERS),
    ("grpc-timeout", GRPC_CLIENT_HEADERS),
    ("x-envoy-internal", ROUTER_HEADERS),
    ("x-envoy-expected-rq-timeout-ms", ROUTER_HEADERS),
];

/// Headers compared by presence only or not at all, with the limit that excuses each.
/// `(where, header, limit)`; `where` is "response", "upstream" or "call".
const IGNORED_HEADERS: [(&str, &str, KnownLimit); 9] = [
    ("response", "date", ROUTER_HEADERS),
    ("response", "x-envoy-upstream-service-time", ROUTER_HEADERS),
    ("response", "content-length", CODEC_FRAMING),
    ("response", "transfer-encoding", CODEC_FRAMING),
    ("response", "connection", CODEC_FRAMING),
    ("upstream", "content-length", CODEC_FRAMING),
    ("upstream", "x-request-id", REQUEST_ID),
    ("call", "x-envoy-internal", ROUTER_HEADERS),
    ("call", "x-envoy-expected-rq-timeout-ms", ROUTER_HEADERS),
];

/// A guest, how it is built, and the scenarios that show a known limit. A guest played under
/// other plugin settings (a failure policy, a buffer limit, workers) has a file of its own.
struct Guest {
    /// The scenario file's stem in `tests/guests/scenarios/`.
    name: &'static str,
    wasm: fn() -> Result<PathBuf>,
    /// One `http_filters` item in front of the guest (flow style), or none.
    filters_before: Option<&'static str>,
    limits: &'static [(&'static str, KnownLimit)],
}

fn sdk(name: &str) -> Result<PathBuf> {
    testkit::sdk_example(name)
}

/// The Lua filter of the SDK's envoy_filter_metadata example, which sets the metadata it reads.
const METADATA_LUA: &str = r#"- {"name": "envoy.filters.http.lua", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua", "default_source_code": {"inline_string": "function envoy_on_request(request_handle)\n  local data = request_handle:headers():get(\"x-custom-metadata\")\n  if data then\n    request_handle:streamInfo():dynamicMetadata():set(\"envoy.filters.http.lua\", \"uppercased-custom-metadata\", string.upper(data))\n  end\nend\n"}}}"#;

const GUESTS: [Guest; 13] = [
    Guest {
        name: "hello_world",
        wasm: || sdk("hello_world"),
        filters_before: None,
        limits: &[],
    },
    Guest {
        name: "hello_world_workers",
        wasm: || sdk("hello_world"),
        filters_before: None,
        limits: &[],
    },
    Guest {
        name: "http_headers",
        wasm: || sdk("http_headers"),
        filters_before: None,
        limits: &[],
    },
    Guest {
        name: "http_body",
        wasm: || sdk("http_body"),
        filters_before: None,
        limits: &[],
    },
    Guest {
        name: "http_body_large_buffer",
        wasm: || sdk("http_body"),
        filters_before: None,
        limits: &[],
    },
    Guest {
        name: "http_config",
        wasm: || sdk("http_config"),
        filters_before: None,
        limits: &[],
    },
    Guest {
        name: "http_auth_random",
        wasm: || sdk("http_auth_random"),
        filters_before: None,
        limits: &[],
    },
    Guest {
        name: "envoy_filter_metadata",
        wasm: || sdk("envoy_filter_metadata"),
        filters_before: Some(METADATA_LUA),
        limits: &[],
    },
    Guest {
        name: "grpc_auth_random",
        wasm: || sdk("grpc_auth_random"),
        filters_before: None,
        limits: &[],
    },
    Guest {
        name: "assemblyscript_probe",
        wasm: testkit::assemblyscript_probe,
        filters_before: None,
        limits: &[],
    },
    Guest {
        name: "assemblyscript_probe_fail_closed",
        wasm: testkit::assemblyscript_probe,
        filters_before: None,
        limits: &[],
    },
    Guest {
        name: "assemblyscript_probe_fail_open",
        wasm: testkit::assemblyscript_probe,
        filters_before: None,
        limits: &[],
    },
    Guest {
        name: "assemblyscript_probe_fail_reload",
        wasm: testkit::assemblyscript_probe,
        filters_before: None,
        limits: &[],
    },
];

/// How long Envoy may take to log a line a scenario expects (after its time advance).
const LOG_WAIT: Duration = Duration::from_secs(15);

#[test]
fn third_party_guests_behave_the_same_in_the_harness_and_in_envoy() {
    let started = Instant::now();
    let threads: Vec<_> = GUESTS
        .iter()
        .map(|guest| {
            std::thread::Builder::new()
                .name(guest.name.into())
                .spawn(move || (guest.name, run_guest(guest)))
                .expect("a thread per guest")
        })
        .collect();
    let mut text = String::new();
    let (mut failed, mut scenarios, mut limited) = (0, 0, 0);
    for thread in threads {
        let (name, result) = thread.join().expect("a guest thread panicked");
        match result {
            Err(error) => {
                failed += 1;
                let _ = writeln!(text, "\n{name}: {error:#}");
            }
            Ok(reports) => {
                for report in reports {
                    scenarios += 1;
                    let limits: Vec<String> = report
                        .limits
                        .iter()
                        .map(|limit| format!("{:?} ({})", limit.name, limit.reason))
                        .collect();
                    match (limits.is_empty(), report.diffs.is_empty()) {
                        (false, false) => {
                            limited += 1;
                            let _ = writeln!(
                                text,
                                "\n{name} / {}: KNOWN LIMITS {}\n  {}",
                                report.scenario,
                                limits.join(", "),
                                report.diffs.join("\n  ")
                            );
                        }
                        (false, true) => {
                            failed += 1;
                            let _ = writeln!(
                                text,
                                "\n{name} / {}: FAILED: marked with the known limits {} but both sides agree and meet the expectations: remove the marks",
                                report.scenario, limits.join(", ")
                            );
                        }
                        (true, false) => {
                            failed += 1;
                            let _ = writeln!(
                                text,
                                "\n{name} / {}: FAILED\n  {}",
                                report.scenario,
                                report.diffs.join("\n  ")
                            );
                        }
                        (true, true) => {}
                    }
                }
            }
        }
    }
    eprintln!(
        "guest differential: {} guests, {scenarios} scenarios, {failed} failed, {limited} known limits, {:.1?}{text}",
        GUESTS.len(),
        started.elapsed()
    );
    assert_eq!(failed, 0, "{failed} failures: see the report above");
}

/// What became of one scenario on both sides.
struct Report {
    scenario: String,
    /// The known limits the scenario is marked with.
    limits: Vec<KnownLimit>,
    /// Missed expectations of each side and differences between them.
    diffs: Vec<String>,
}

fn scenario_file(guest: &Guest) -> Result<ScenarioFile> {
    let path = testkit::envoy::workspace_root()
        .join("tests/guests/scenarios")
        .join(format!("{}.yaml", guest.name));
    Ok(ScenarioFile::load(&path)?)
}

fn run_guest(guest: &Guest) -> Result<Vec<Report>> {
    let file = scenario_file(guest)?;
    let wasm = (guest.wasm)()?;
    for (scenario, _) in guest.limits {
        if !file.scenarios.iter().any(|s| s.name == *scenario) {
            bail!("a known limit names the scenario {scenario:?}, which the file does not have");
        }
    }
    let module = host_harness::GuestModule::load(&wasm)?;
    let mut plugin = pwh::start_plugin(&module, &file.plugin)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut envoy = runtime.block_on(EnvoySide::start(guest, &file, &wasm))?;
    let mut first_log = 0;
    let mut reports = Vec::new();
    for scenario in &file.scenarios {
        let on_harness = pwh::play(&mut plugin, scenario, first_log, file.plugin.log_level);
        first_log = plugin.logs().len();
        let on_envoy = runtime
            .block_on(envoy.play(scenario))
            .with_context(|| format!("{}: envoy", scenario.name))?;
        let mut diffs: Vec<String> = pwh::check(&scenario.expect, &on_envoy)
            .into_iter()
            .map(|miss| format!("envoy: {miss}"))
            .collect();
        diffs.extend(
            pwh::check(&scenario.expect, &on_harness)
                .into_iter()
                .map(|miss| format!("harness: {miss}")),
        );
        diffs.extend(between(&on_harness, &on_envoy));
        reports.push(Report {
            scenario: scenario.name.clone(),
            limits: guest
                .limits
                .iter()
                .filter(|(name, _)| *name == scenario.name)
                .map(|(_, limit)| *limit)
                .collect(),
            diffs,
        });
    }
    Ok(reports)
}

/// The guest in Envoy, with its scripted upstream and call backend.
struct EnvoySide {
    envoy: testkit::Envoy,
    client: Client,
    upstream: EchoServer,
    call_backend: EchoServer,
    call_cluster: String,
    grpc_backend: ScriptedGrpcBackend,
    /// Bytes of Envoy's log read by earlier scenarios.
    log_offset: usize,
}

impl EnvoySide {
    async fn start(guest: &Guest, file: &ScenarioFile, wasm: &Path) -> Result<EnvoySide> {
        let upstream = EchoServer::scripted()?;
        let call_backend = EchoServer::scripted()?;
        let grpc_backend = ScriptedGrpcBackend::start()?;
        let plugin = &file.plugin;
        let call_cluster = plugin
            .clusters
            .first()
            .cloned()
            .unwrap_or_else(|| "no_calls".into());
        let grpc_cluster = plugin
            .grpc_clusters
            .first()
            .cloned()
            .unwrap_or_else(|| "no_grpc_calls".into());
        let configuration = String::from_utf8_lossy(&plugin.configuration_bytes()).into_owned();
        let backoff_ms = plugin
            .reload_backoff_ms
            .unwrap_or(pwh::DEFAULT_RELOAD_BACKOFF_MS);
        let envoy = testkit::envoy("envoy.yaml")
            .template_dir(&testkit::envoy::workspace_root().join("tests/guests"))
            .var("GUEST_WASM", wasm.display())
            // The builder's own `.wasm` variable, so it does not look for certgate.wasm.
            .wasm(wasm)
            .var("PLUGIN_NAME", &plugin.name)
            .var("ROOT_ID", &plugin.root_id)
            .var("VM_ID", &plugin.vm_id)
            .var("PLUGIN_CONFIG", serde_json::Value::String(configuration))
            .var(
                "FILTERS_BEFORE",
                guest
                    .filters_before
                    .unwrap_or("# no filter before the guest"),
            )
            .upstream_port(upstream.port())
            .var("CALL_CLUSTER", &call_cluster)
            .var("CALL_PORT", call_backend.port())
            .var(
                "FAILURE_POLICY",
                plugin
                    .failure_policy
                    .unwrap_or(pwh::FailurePolicyName::FailClosed)
                    .envoy_name(),
            )
            .var(
                "RELOAD_BACKOFF",
                format!("{}.{:03}s", backoff_ms / 1000, backoff_ms % 1000),
            )
            .var(
                "BUFFER_LIMIT_BYTES",
                plugin
                    .buffer_limit_bytes
                    .unwrap_or(host_harness::DEFAULT_BUFFER_LIMIT_BYTES),
            )
            .concurrency(plugin.concurrency.unwrap_or(1))
            .var("GRPC_CLUSTER", &grpc_cluster)
            .var("GRPC_PORT", grpc_backend.port())
            .start()
            .await?;
        let client = Client::plain(envoy.listener("ingress")?);
        Ok(EnvoySide {
            envoy,
            client,
            upstream,
            call_backend,
            call_cluster,
            grpc_backend,
            log_offset: 0,
        })
    }

    async fn play(&mut self, scenario: &Scenario) -> Result<Outcome> {
        let mut outcome = Outcome::default();
        self.upstream.set_answer(&scripted(&scenario.upstream))?;
        // Envoy's client sees one backend: the first answer serves every call of the scenario.
        if let Some(answer) = scenario.http_calls.first() {
            self.call_backend.set_answer(&scripted(answer))?;
        }
        // The same for gRPC calls; without an answer the service holds each call open.
        self.grpc_backend
            .set_answer(scenario.grpc_calls.first().map(scripted_grpc));
        if let Some(request) = &scenario.request {
            let mut wire = testkit::Request::new(&request.method, &request.path)
                .header("host", &request.authority);
            for (name, value) in &request.headers.0 {
                wire = wire.header(name, value);
            }
            if !request.body.is_empty() {
                wire = wire.body(request.body.as_bytes().to_vec());
            }
            let (response, reset) = self.client.send_until_cut(&wire).await?;
            outcome.response = Some(ReceivedResponse {
                status: response.status,
                headers: std::iter::once((":status".to_owned(), response.status.to_string()))
                    .chain(
                        response
                            .headers
                            .iter()
                            .map(|(name, value)| (name.to_ascii_lowercase(), value.clone())),
                    )
                    .collect(),
                body: response.body_text(),
                reset,
            });
        }
        outcome.upstream = self
            .upstream
            .take_received()
            .pop()
            .map(|received| ReceivedRequest {
                headers: as_guest_saw(&received),
                body: received.body,
            });
        outcome.http_calls = self
            .call_backend
            .take_received()
            .into_iter()
            .map(|received| SentHttpCall {
                cluster: self.call_cluster.clone(),
                headers: as_guest_saw(&received),
                body: received.body,
            })
            .collect();
        outcome.grpc_calls = self
            .grpc_backend
            .take_received()
            .into_iter()
            .map(|received| SentGrpcCall {
                cluster: received.authority,
                service: received.service,
                method: received.method,
                message: WireBytes(received.message),
                initial_metadata: received
                    .headers
                    .into_iter()
                    .filter(|(name, _)| !GRPC_ADDED_HEADERS.iter().any(|(added, _)| added == name))
                    .collect(),
            })
            .collect();
        let expect = &scenario.expect;
        if scenario.advance_ms > 0 && expect.logs.is_empty() && expect.log_counts.is_empty() {
            tokio::time::sleep(Duration::from_millis(scenario.advance_ms)).await;
        }
        outcome.logs = self
            .guest_logs(expect, Duration::from_millis(scenario.advance_ms))
            .await;
        Ok(outcome)
    }

    /// The guest's log lines since the last scenario, once each of the expected texts is among
    /// them as often as expected (waiting at most `advance` plus [`LOG_WAIT`], as Envoy writes its
    /// log asynchronously).
    async fn guest_logs(&mut self, expect: &pwh::Expectation, advance: Duration) -> Vec<String> {
        let deadline = Instant::now() + advance + LOG_WAIT;
        loop {
            let log = self.envoy.log();
            let lines: Vec<String> = log
                .get(self.log_offset..)
                .unwrap_or_default()
                .lines()
                .filter_map(guest_log_line)
                .collect();
            let seen = |text: &str| lines.iter().filter(|line| line.contains(text)).count();
            let complete = expect.logs.iter().all(|text| seen(text) > 0)
                && expect
                    .log_counts
                    .iter()
                    .all(|(text, count)| seen(text) >= *count);
            if complete || Instant::now() > deadline {
                self.log_offset = log.len();
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `level: message` of a line Envoy logged for the guest (`[..][info][wasm] [..] wasm log
/// <plugin> <root> <vm>: message`).
fn guest_log_line(line: &str) -> Option<String> {
    let (_, rest) = line.split_once("wasm log ")?;
    let (_, message) = rest.split_once(": ")?;
    let level = ["trace", "debug", "info", "warning", "error", "critical"]
        .into_iter()
        .find(|level| line.contains(&format!("[{level}]")))?;
    Some(format!("{level}: {message}"))
}

/// The headers of a request as the guest saw them: the request line and `host` as pseudo-headers,
/// then the other headers.
fn as_guest_saw(received: &testkit::EchoedRequest) -> Vec<(String, String)> {
    let pseudo = [
        (":authority", received.header("host").unwrap_or_default()),
        (":path", received.path.as_str()),
        (":method", received.method.as_str()),
    ]
    .map(|(name, value)| (name.to_owned(), value.to_owned()));
    let regular = received
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
        .filter(|(name, _)| name != "host");
    pseudo.into_iter().chain(regular).collect()
}

fn scripted(answer: &pwh::HttpAnswer) -> ScriptedAnswer {
    ScriptedAnswer {
        status: answer.status,
        headers: answer.headers.0.clone(),
        body: answer.body.as_bytes().to_vec(),
    }
}

fn scripted_grpc(answer: &pwh::GrpcCallAnswer) -> ScriptedGrpcAnswer {
    ScriptedGrpcAnswer {
        status: answer.status,
        status_message: answer.status_message.clone(),
        message: answer.message.as_ref().map(|message| message.0.clone()),
        initial_metadata: answer.initial_metadata.0.clone(),
        trailing_metadata: answer.trailing_metadata.0.clone(),
    }
}

/// Differences between what the harness and Envoy delivered, after leaving out the headers of
/// [`IGNORED_HEADERS`] and the pseudo-headers the HTTP/1 wire does not carry (`:scheme`). Bodies
/// are compared whole and shown abbreviated.
fn between(harness: &Outcome, envoy: &Outcome) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut differ = |what: &str, shown: &dyn Fn(&Outcome, bool) -> String| {
        if shown(harness, true) != shown(envoy, true) {
            diffs.push(format!(
                "harness vs envoy: {what}:\n    harness {}\n    envoy   {}",
                shown(harness, false),
                shown(envoy, false)
            ));
        }
    };
    differ("client response", &|outcome, whole| {
        let response = outcome.response.as_ref().map(|response| {
            (
                response.status,
                comparable("response", &response.headers),
                Shown(&response.body, whole),
            )
        });
        format!("{response:?}")
    });
    differ("upstream request", &|outcome, whole| {
        let upstream = outcome.upstream.as_ref().map(|upstream| {
            (
                comparable("upstream", &upstream.headers),
                Shown(&upstream.body, whole),
            )
        });
        format!("{upstream:?}")
    });
    differ("http calls", &|outcome, whole| {
        let calls: Vec<_> = outcome
            .http_calls
            .iter()
            .map(|call| {
                (
                    &call.cluster,
                    comparable("call", &call.headers),
                    Shown(&call.body, whole),
                )
            })
            .collect();
        format!("{calls:?}")
    });
    differ("gRPC calls", &|outcome, _| {
        format!("{:?}", outcome.grpc_calls)
    });
    diffs
}

/// A body as a difference shows it: whole when compared or short, else its size and its start.
struct Shown<'a>(&'a str, bool);

impl std::fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const START: usize = 64;
        let Shown(body, whole) = *self;
        match body.char_indices().nth(START) {
            Some((end, _)) if !whole => {
                write!(f, "<{} bytes starting {:?}>", body.len(), &body[..end])
            }
            _ => write!(f, "{body:?}"),
        }
    }
}

/// `headers` without `:scheme` and the ignored headers of `place`, pseudo-headers first in name
/// order (the HTTP/1 wire does not keep theirs); a header compared by presence keeps its name with
/// the value `<any>`.
fn comparable(place: &str, headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut pseudo: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| name.starts_with(':') && name != ":scheme")
        .cloned()
        .collect();
    pseudo.sort();
    let regular = headers
        .iter()
        .filter(|(name, _)| !name.starts_with(':'))
        .filter(|(name, _)| name != ":scheme")
        .filter_map(|(name, value)| {
            let ignored = IGNORED_HEADERS
                .iter()
                .find(|(at, header, _)| *at == place && header == name);
            match ignored {
                Some((_, _, limit)) if limit.name == REQUEST_ID.name => {
                    Some((name.clone(), "<any>".to_owned()))
                }
                Some(_) => None,
                None => Some((name.clone(), value.clone())),
            }
        });
    pseudo.into_iter().chain(regular).collect()
}
