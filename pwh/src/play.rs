//! Plays a scenario through the harness: the request on a plain connection, the scripted answers
//! to the guest's HTTP and gRPC calls, the upstream's answer, the time advance, then the
//! access-log phase.

use crate::grpc;
use crate::outcome::{Outcome, ReceivedRequest, ReceivedResponse, SentHttpCall};
use crate::scenario::{
    FailurePolicyName, HttpAnswer, LogLevelName, PluginSpec, RequestSpec, Scenario,
    DEFAULT_RELOAD_BACKOFF_MS,
};
use host_harness::{
    Connection, DispatchedHttpCall, FailurePolicy, GuestModule, HarnessError, HeaderMap,
    HttpCallResponse, LogLevel, Plugin, PluginSettings, Request, UpstreamResponse,
};
use std::time::Duration;

/// Starts `module` as `spec` says; the guest's `on_configure` answer is in
/// [`Plugin::configured`].
pub fn start_plugin(module: &GuestModule, spec: &PluginSpec) -> Result<Plugin, HarnessError> {
    let mut settings = PluginSettings::new(spec.name.as_str())
        .root_id(spec.root_id.as_str())
        .vm_id(spec.vm_id.as_str())
        .configuration(spec.configuration_bytes())
        .log_level(level_of(spec.log_level));
    for cluster in spec.clusters.iter().chain(&spec.grpc_clusters) {
        settings = settings.cluster(cluster.as_str());
    }
    if let Some(policy) = spec.failure_policy {
        let backoff = spec.reload_backoff_ms.unwrap_or(DEFAULT_RELOAD_BACKOFF_MS);
        settings = settings.failure_policy(match policy {
            FailurePolicyName::FailClosed => FailurePolicy::FailClosed,
            FailurePolicyName::FailOpen => FailurePolicy::FailOpen,
            FailurePolicyName::FailReload => FailurePolicy::FailReload {
                backoff: Duration::from_millis(backoff),
            },
        });
    }
    if let Some(bytes) = spec.buffer_limit_bytes {
        settings = settings.per_connection_buffer_limit_bytes(bytes);
    }
    if let Some(workers) = spec.concurrency {
        settings = settings.concurrency(workers);
    }
    Plugin::new(module, settings)
}

/// Plays `scenario` on `plugin`; a harness error (a trap, a failed VM) ends the scenario and is
/// the outcome's `error`. The outcome's logs are the plugin's from index `first_log` on (0 for the
/// first scenario, so that it shows what the guest logged while starting).
/// Lines below `min_level` are left out, as Envoy's log level leaves them out.
pub fn play(
    plugin: &mut Plugin,
    scenario: &Scenario,
    first_log: usize,
    min_level: LogLevelName,
) -> Outcome {
    let mut outcome = Outcome::default();
    if let Err(error) = play_steps(plugin, scenario, &mut outcome) {
        outcome.error = Some(error.to_string());
    }
    let lowest = level_of(min_level);
    outcome.logs = plugin.logs()[first_log.min(plugin.logs().len())..]
        .iter()
        .filter(|record| record.level >= lowest)
        .map(|record| format!("{}: {}", level_name(record.level), record.message))
        .collect();
    outcome
}

fn play_steps(
    plugin: &mut Plugin,
    scenario: &Scenario,
    outcome: &mut Outcome,
) -> Result<(), HarnessError> {
    let advance = Duration::from_millis(scenario.advance_ms);
    let mut answers = scenario.http_calls.iter();
    let mut grpc_answers = scenario.grpc_calls.iter();
    let earlier_grpc = grpc::open_tokens(plugin);
    let Some(request) = &scenario.request else {
        if !advance.is_zero() {
            plugin.advance_time(advance)?;
        }
        while let Some((call, answer)) = next_call(plugin.http_calls(), &mut answers) {
            outcome.http_calls.push(sent(&call));
            plugin.respond_http_call(call.token, call_response(answer))?;
        }
        return grpc::answer_calls(plugin, &earlier_grpc, &mut grpc_answers, outcome);
    };
    let mut stream = plugin.stream(&Connection::plain(), harness_request(request))?;
    while let Some((call, answer)) = next_call(stream.plugin().http_calls(), &mut answers) {
        outcome.http_calls.push(sent(&call));
        stream.respond_http_call(call.token, call_response(answer))?;
    }
    // Calls left unanswered are still recorded: the guest sent them.
    outcome
        .http_calls
        .extend(stream.plugin().http_calls().iter().map(sent));
    grpc::answer_calls(&mut stream, &earlier_grpc, &mut grpc_answers, outcome)?;
    if !advance.is_zero() {
        stream.advance_time(advance)?;
    }
    if let Some(upstream) = stream.outcome().upstream() {
        outcome.upstream = Some(ReceivedRequest {
            headers: pairs(&upstream.headers),
            body: String::from_utf8_lossy(&upstream.body).into_owned(),
        });
        stream.respond(upstream_response(&scenario.upstream))?;
    }
    outcome.response = stream.response().map(|response| ReceivedResponse {
        status: u16::try_from(response.status).unwrap_or(u16::MAX),
        headers: pairs(&response.headers),
        body: String::from_utf8_lossy(&response.body).into_owned(),
        reset: response.reset,
    });
    stream.finish()?;
    Ok(())
}

/// The oldest pending call, paired with the next scripted answer, while there is one of each.
fn next_call<'a>(
    mut pending: Vec<DispatchedHttpCall>,
    answers: &mut impl Iterator<Item = &'a HttpAnswer>,
) -> Option<(DispatchedHttpCall, &'a HttpAnswer)> {
    pending.sort_by_key(|call| call.token);
    let call = pending.into_iter().next()?;
    answers.next().map(|answer| (call, answer))
}

/// How much of a body one body callback gets. Envoy hands a filter a body in the parts its codec
/// read, so a guest that buffers a large body sees it arrive in parts and Envoy's buffer limit
/// trips while they add up; parts of 64 KiB give the harness the same course.
const BODY_CHUNK_BYTES: usize = 64 * 1024;

/// The request as an HTTP/1 client sends it: a body is framed by a `content-length` after the
/// scenario's headers, unless they frame it themselves.
fn harness_request(spec: &RequestSpec) -> Request {
    let mut request = Request::new(&spec.method, &spec.path).authority(&spec.authority);
    for (name, value) in &spec.headers.0 {
        request = request.header(name, value);
    }
    let framed = spec.headers.0.iter().any(|(name, _)| {
        name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
    });
    if !spec.body.is_empty() && !framed {
        request = request.header("content-length", &spec.body.len().to_string());
    }
    for chunk in spec.body.as_bytes().chunks(BODY_CHUNK_BYTES) {
        request = request.body_chunk(chunk.to_vec());
    }
    for (namespace, fields) in &spec.dynamic_metadata {
        request = request.dynamic_metadata(namespace, fields.clone().into());
    }
    for (namespace, fields) in &spec.route_metadata {
        request = request.route_metadata(namespace, fields.clone().into());
    }
    request
}

fn upstream_response(answer: &HttpAnswer) -> UpstreamResponse {
    let mut response = UpstreamResponse::status(u32::from(answer.status));
    for (name, value) in &answer.headers.0 {
        response = response.header(name, value);
    }
    for chunk in answer.body.as_bytes().chunks(BODY_CHUNK_BYTES) {
        response = response.body_chunk(chunk.to_vec());
    }
    response
}

fn call_response(answer: &HttpAnswer) -> HttpCallResponse {
    let mut response = HttpCallResponse::status(u32::from(answer.status));
    for (name, value) in &answer.headers.0 {
        response = response.header(name, value);
    }
    response.body(answer.body.as_bytes().to_vec())
}

fn sent(call: &DispatchedHttpCall) -> SentHttpCall {
    SentHttpCall {
        cluster: call.cluster.clone(),
        headers: pairs(&call.headers),
        body: String::from_utf8_lossy(&call.body).into_owned(),
    }
}

fn pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

fn level_of(name: LogLevelName) -> LogLevel {
    match name {
        LogLevelName::Trace => LogLevel::Trace,
        LogLevelName::Debug => LogLevel::Debug,
        LogLevelName::Info => LogLevel::Info,
        LogLevelName::Warning => LogLevel::Warn,
        LogLevelName::Error => LogLevel::Error,
        LogLevelName::Critical => LogLevel::Critical,
    }
}

/// Envoy's name of a log level, as its log prints it.
fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warning",
        LogLevel::Error => "error",
        LogLevel::Critical => "critical",
    }
}
