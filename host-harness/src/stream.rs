//! One HTTP request through a plugin, driven through Envoy's stream callbacks: stop and continue,
//! buffering, local replies run through the response path, and what the upstream and the client
//! end up with.

use crate::abi::{DataAction, HeadersAction};
use crate::callbacks::Callback;
use crate::connection::Connection;
use crate::error::HarnessError;
use crate::exchange::{
    ClientResponse, Exchange, HttpCallResponse, LocalResponse, Request, RequestOutcome,
    UpstreamRequest, UpstreamResponse,
};
use crate::grpc::GrpcAnswer;
use crate::headers::HeaderMap;
use crate::observe::HostcallCounts;
use crate::plugin::Plugin;
use crate::properties::FILTER_STATE_PREFIX;
use crate::settings::FailurePolicy;
use crate::state::{StreamState, ROOT_CONTEXT_ID};
use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Headers,
    Body,
    Trailers,
    Done,
}

/// One HTTP request through the plugin, advanced by the test: the request path runs when the
/// stream opens; [`Stream::respond`] runs the response path; [`Stream::finish`] logs and
/// destroys the context (dropping an unfinished stream finishes it, ignoring errors).
///
/// ```
/// use host_harness::{Connection, GuestModule, Plugin, PluginSettings, Request, UpstreamResponse};
/// let module = GuestModule::from_wat("noop", r#"(module (memory (export "memory") 1)
///   (func (export "proxy_abi_version_0_2_1"))
///   (func (export "malloc") (param i32) (result i32) (i32.const 1024)))"#).unwrap();
/// let mut plugin = Plugin::new(&module, PluginSettings::new("noop")).unwrap();
/// let before = plugin.metrics();
/// let request = Request::get("/").header("x-a", "1");
/// let mut stream = plugin.stream(&Connection::plain(), request).unwrap();
/// let upstream = stream.outcome().upstream().unwrap();
/// assert_eq!(upstream.headers.get("x-a"), Some("1"));
/// assert_eq!(upstream.headers.get("x-forwarded-proto"), Some("http")); // the HCM ran
/// let response = stream.respond(UpstreamResponse::status(204)).unwrap();
/// assert_eq!((response.status, response.headers.get("server")), (204, Some("envoy")));
/// let exchange = stream.finish().unwrap();
/// assert_eq!(exchange.hostcalls.total(), 0);
/// assert!(plugin.metrics().changes_since(&before).is_empty());
/// ```
pub struct Stream<'p> {
    plugin: &'p mut Plugin,
    id: u32,
    request_body: VecDeque<Vec<u8>>,
    request_trailers: Option<HeaderMap>,
    request_stage: Stage,
    upstream_body: Vec<u8>,
    outcome: RequestOutcome,
    response_body: VecDeque<Vec<u8>>,
    response_trailers: Option<HeaderMap>,
    response_stage: Stage,
    client_body: Vec<u8>,
    response: Option<ClientResponse>,
    first_log: usize,
    finished: bool,
    /// The test clock when the request went upstream (the router's service time counts from it).
    upstream_sent_ns: u64,
    /// The VM failed before or during this stream: the failure policy answered it and the guest
    /// is not called again for it.
    vm_failed: bool,
}

impl<'p> Stream<'p> {
    /// Starts the request path of a stream whose context the plugin has just created.
    pub(crate) fn open(
        plugin: &'p mut Plugin,
        id: u32,
        body: Vec<Vec<u8>>,
        trailers: Option<HeaderMap>,
        first_log: usize,
        failed_vm: Option<FailurePolicy>,
    ) -> Result<Stream<'p>, HarnessError> {
        let mut stream = Stream {
            plugin,
            id,
            request_body: body.into(),
            request_trailers: trailers,
            request_stage: Stage::Headers,
            upstream_body: Vec::new(),
            outcome: RequestOutcome::Paused,
            response_body: VecDeque::new(),
            response_trailers: None,
            response_stage: Stage::Done,
            client_body: Vec::new(),
            response: None,
            first_log,
            finished: false,
            vm_failed: false,
            upstream_sent_ns: 0,
        };
        if let Some(policy) = failed_vm {
            stream.answer_vm_failure(policy)?;
            return Ok(stream);
        }
        let started = match stream
            .plugin
            .call(Callback::ContextCreate, &[id, ROOT_CONTEXT_ID])
        {
            Ok(_) => stream.drive_request(),
            Err(error) => Err(error),
        };
        stream.under_failure_policy(started)?;
        Ok(stream)
    }
    /// The stream's context id.
    pub fn context_id(&self) -> u32 {
        self.id
    }

    /// What became of the request so far.
    pub fn outcome(&self) -> &RequestOutcome {
        &self.outcome
    }

    /// The response the client got, once there is one.
    pub fn response(&self) -> Option<&ClientResponse> {
        self.response.as_ref()
    }

    /// The plugin, e.g. to read metrics or logs mid-stream.
    pub fn plugin(&mut self) -> &mut Plugin {
        self.plugin
    }

    /// Hostcalls this stream's context has made so far.
    pub fn hostcalls(&self) -> HostcallCounts {
        self.plugin
            .store
            .data()
            .streams
            .get(&self.id)
            .map(|stream| stream.hostcalls.clone())
            .unwrap_or_default()
    }

    /// Filter state set so far, under Envoy's keys (`wasm.<name>`).
    pub fn filter_state(&self) -> BTreeMap<String, Vec<u8>> {
        self.plugin
            .store
            .data()
            .streams
            .get(&self.id)
            .map(|stream| stream.filter_state.clone())
            .unwrap_or_default()
    }

    /// Answers an http call and resumes the stream if the guest continued it.
    pub fn respond_http_call(
        &mut self,
        token: u32,
        response: HttpCallResponse,
    ) -> Result<(), HarnessError> {
        let resumed = match self.plugin.respond_http_call(token, response) {
            Ok(()) => self.resume(),
            Err(error) => Err(error),
        };
        self.under_failure_policy(resumed)
    }

    /// Answers a gRPC call or stream ([`Plugin::answer_grpc`]) and resumes the stream if the
    /// guest continued it.
    pub fn answer_grpc(&mut self, token: u32, answer: GrpcAnswer) -> Result<(), HarnessError> {
        let resumed = match self.plugin.answer_grpc(token, answer) {
            Ok(()) => self.resume(),
            Err(error) => Err(error),
        };
        self.under_failure_policy(resumed)
    }

    /// Fails an http call and resumes the stream if the guest continued it.
    pub fn fail_http_call(&mut self, token: u32) -> Result<(), HarnessError> {
        let resumed = match self.plugin.fail_http_call(token) {
            Ok(()) => self.resume(),
            Err(error) => Err(error),
        };
        self.under_failure_policy(resumed)
    }

    /// Moves the test clock (ticks, http call timeouts) and resumes the stream if the guest
    /// continued it meanwhile.
    pub fn advance_time(&mut self, by: Duration) -> Result<(), HarnessError> {
        let resumed = match self.plugin.advance_time(by) {
            Ok(()) => self.resume(),
            Err(error) => Err(error),
        };
        self.under_failure_policy(resumed)
    }

    /// Runs the response path with the upstream's `response`; returns what the client gets.
    pub fn respond(&mut self, response: UpstreamResponse) -> Result<&ClientResponse, HarnessError> {
        if !self.outcome.is_continued() {
            return Err(HarnessError::usage(format!(
                "respond() needs a request that went upstream; it is {:?}",
                self.outcome
            )));
        }
        let status = parse_status(&response.headers);
        let mut headers = response.headers;
        // The router's header, there before the filter's response callbacks run.
        if self.plugin.store.data().settings.hcm.router_headers() {
            let service_ms = self.plugin.now_ns().saturating_sub(self.upstream_sent_ns) / 1_000_000;
            headers.set_owned("x-envoy-upstream-service-time", service_ms.to_string());
        }
        let stream = self.plugin.stream_state(self.id)?;
        stream.response_headers = Some(headers);
        stream.response_code = Some(status);
        stream.response_code_details = Some(Cow::Borrowed("via_upstream"));
        self.response_body = response.body.into();
        self.response_trailers = response.trailers;
        self.response_stage = Stage::Headers;
        if self.vm_failed {
            // Only FAIL_OPEN lets a request of a failed VM through: the response passes as well.
            self.pass_response_through()?;
        } else {
            let driven = self.drive_response(false);
            self.under_failure_policy(driven)?;
        }
        self.response
            .as_ref()
            .ok_or_else(|| HarnessError::usage("the response path produced no response"))
    }

    /// `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`; returns what the request left behind.
    pub fn finish(mut self) -> Result<Exchange, HarnessError> {
        self.finished = true;
        let id = self.id;
        let stream = self.plugin.stream_state(id)?;
        stream.live = Default::default();
        if !self.vm_failed {
            stream.access_log_phase = true;
            let mut ended = self.plugin.call(Callback::Log, &[id]).map(drop);
            if let Ok(stream) = self.plugin.stream_state(id) {
                stream.access_log_phase = false;
            }
            for callback in [Callback::Done, Callback::Delete] {
                if ended.is_ok() {
                    ended = self.plugin.call(callback, &[id]).map(drop);
                }
            }
            // The client has its answer: a failure now only fails the VM for later requests.
            if let Err(error) = ended {
                if self.failure_policy().is_none() || !error.is_vm_failure() {
                    return Err(error);
                }
            }
        }
        let state = self.plugin.store.data_mut();
        let (filter_state, hostcalls) = state
            .streams
            .remove(&id)
            .map(|stream| (stream.filter_state, stream.hostcalls))
            .unwrap_or_default();
        let filter_state_structs = filter_state
            .keys()
            .filter(|key| {
                let name = key.strip_prefix(FILTER_STATE_PREFIX).unwrap_or(key);
                state
                    .roots
                    .values()
                    .any(|root| root.declared.get(name).is_some_and(|d| d.is_struct))
            })
            .cloned()
            .collect();
        let logs = state
            .logs
            .get(self.first_log..)
            .unwrap_or_default()
            .iter()
            .filter(|record| record.context_id == id)
            .cloned()
            .collect();
        Ok(Exchange {
            request: std::mem::replace(&mut self.outcome, RequestOutcome::Paused),
            response: self.response.take(),
            filter_state,
            filter_state_structs,
            hostcalls,
            logs,
        })
    }

    /// The settings' failure policy, if the test set one.
    fn failure_policy(&self) -> Option<FailurePolicy> {
        self.plugin.store.data().settings.failure_policy
    }

    /// Passes `result` on, unless it is the VM failing under a failure policy: then the client
    /// gets what Envoy answers, and the stream goes on without the guest.
    fn under_failure_policy(
        &mut self,
        result: Result<(), HarnessError>,
    ) -> Result<(), HarnessError> {
        match (result, self.failure_policy()) {
            (Err(error), Some(policy)) if error.is_vm_failure() && !self.vm_failed => {
                self.answer_own_trap(policy)
            }
            (result, _) => result,
        }
    }

    /// Envoy's answer to the stream whose own callback failed the VM: as to any stream of a
    /// failed VM, except that under FAIL_OPEN a request still on its way gets the `503` too
    /// (measured on Envoy 1.40: only later requests pass without the filter).
    fn answer_own_trap(&mut self, policy: FailurePolicy) -> Result<(), HarnessError> {
        if policy == FailurePolicy::FailOpen && !self.outcome.is_continued() {
            self.vm_failed = true;
            return self.fail_stream_reply();
        }
        self.answer_vm_failure(policy)
    }

    /// What Envoy does with a stream of a failed VM: under FAIL_OPEN the request (or the
    /// response, if it is on its way back) continues as it stands without the filter;
    /// otherwise the client gets Envoy's `wasm_fail_stream` reply.
    fn answer_vm_failure(&mut self, policy: FailurePolicy) -> Result<(), HarnessError> {
        self.vm_failed = true;
        if policy != FailurePolicy::FailOpen {
            return self.fail_stream_reply();
        }
        if self.outcome.is_continued() {
            return self.pass_response_through();
        }
        if let RequestOutcome::LocalResponse(_) = self.outcome {
            return self.fail_stream_reply();
        }
        let stream = self.plugin.stream_state(self.id)?;
        stream.live = Default::default();
        let mut body = std::mem::take(&mut self.upstream_body);
        body.append(&mut stream.request_body);
        body.extend(self.request_body.drain(..).flatten());
        if let Some(trailers) = self.request_trailers.take() {
            stream.request_trailers = Some(trailers);
        }
        self.request_stage = Stage::Done;
        self.go_upstream(body)
    }

    /// Hands the request to the router: it adds its headers to the request map and the
    /// upstream receives the headers, `body` and the trailers as the filter left them.
    fn go_upstream(&mut self, body: Vec<u8>) -> Result<(), HarnessError> {
        let now_ns = self.plugin.now_ns();
        // The HCM settings are a few flags: copied, not the whole settings.
        let hcm = self.plugin.store.data().settings.hcm;
        let stream = self.plugin.stream_state(self.id)?;
        hcm.route_upstream(&mut stream.request_headers);
        self.outcome = RequestOutcome::Continued(UpstreamRequest {
            headers: stream.request_headers.clone(),
            body,
            trailers: stream.request_trailers.clone(),
        });
        self.upstream_sent_ns = now_ns;
        Ok(())
    }

    /// The response as the upstream sent it (and as far as the guest had let it through), with
    /// no more guest callbacks.
    fn pass_response_through(&mut self) -> Result<(), HarnessError> {
        let stream = self.plugin.stream_state(self.id)?;
        stream.live = Default::default();
        let mut body = std::mem::take(&mut self.client_body);
        body.append(&mut stream.response_body);
        body.extend(self.response_body.drain(..).flatten());
        let headers = encode_response_headers(stream);
        let trailers = self
            .response_trailers
            .take()
            .or(stream.response_trailers.clone());
        self.response_stage = Stage::Done;
        self.response = Some(ClientResponse {
            status: parse_status(&headers),
            headers,
            body,
            trailers,
            local: false,
            paused: false,
            reset: false,
        });
        Ok(())
    }

    /// Envoy's reply for a stream whose VM failed (the Wasm filter's `failStream`, and the
    /// filter standing in for a failed VM's): 503 with details `wasm_fail_stream`, for a gRPC
    /// request a trailers-only `200` with `grpc-status: 14` and `connection: close`. It goes
    /// straight to the client: the failed VM runs no response callbacks. Once the response
    /// headers went out, a reply is too late: the stream is reset instead, and a response the
    /// client already has in full stays as it is.
    fn fail_stream_reply(&mut self) -> Result<(), HarnessError> {
        if self.response_headers_sent() {
            if self
                .response
                .as_ref()
                .is_some_and(|response| !response.paused)
            {
                return Ok(());
            }
            return self.reset_after_headers("wasm_fail_stream");
        }
        let local = LocalResponse {
            status: 503,
            headers: HeaderMap::new(),
            body: Vec::new(),
            grpc_status: Some(14),
            details: "wasm_fail_stream".to_string(),
        };
        let stream = self.plugin.stream_state(self.id)?;
        let grpc = is_grpc(&stream.request_headers);
        let (mut headers, body) = local_reply(&local, grpc);
        if grpc {
            headers.set("connection", "close");
        }
        stream.live = Default::default();
        stream.response_code = Some(parse_status(&headers));
        stream.response_code_details = Some(Cow::Borrowed("wasm_fail_stream"));
        if !self.outcome.is_continued() {
            self.outcome = RequestOutcome::LocalResponse(local);
        }
        self.request_stage = Stage::Done;
        self.response_stage = Stage::Done;
        self.response = Some(direct_local_reply(headers, body));
        Ok(())
    }

    /// Continues whichever side the guest resumed with `proxy_continue_stream`.
    fn resume(&mut self) -> Result<(), HarnessError> {
        let id = self.id;
        let Some(stream) = self.plugin.store.data_mut().streams.get_mut(&id) else {
            return Ok(());
        };
        if stream.local_response.is_some() {
            return self.drive_request();
        }
        if self.outcome == RequestOutcome::Paused && std::mem::take(&mut stream.continue_request) {
            self.advance_request()?;
            self.drive_request()?;
        }
        let stream = self.plugin.stream_state(id)?;
        if self.response.as_ref().is_some_and(|r| r.paused)
            && std::mem::take(&mut stream.continue_response)
        {
            self.advance_response()?;
            self.drive_response(false)?;
        }
        Ok(())
    }

    /// Lets the stopped request stage pass (what Envoy's `continueDecoding` does).
    fn advance_request(&mut self) -> Result<(), HarnessError> {
        let stream = self.plugin.stream_state(self.id)?;
        match self.request_stage {
            Stage::Headers => {
                stream.live.request_headers = false;
                self.request_stage = Stage::Body;
            }
            Stage::Body => {
                stream.live.request_body = false;
                self.upstream_body.append(&mut stream.request_body);
                if self.request_body.is_empty() {
                    self.request_stage = Stage::Trailers;
                }
            }
            Stage::Trailers => {
                stream.live.request_trailers = false;
                self.request_stage = Stage::Done;
            }
            Stage::Done => {}
        }
        Ok(())
    }

    fn advance_response(&mut self) -> Result<(), HarnessError> {
        let stream = self.plugin.stream_state(self.id)?;
        match self.response_stage {
            Stage::Headers => {
                stream.live.response_headers = false;
                self.response_stage = Stage::Body;
            }
            Stage::Body => {
                stream.live.response_body = false;
                self.client_body.append(&mut stream.response_body);
                if self.response_body.is_empty() {
                    self.response_stage = Stage::Trailers;
                }
            }
            Stage::Trailers => {
                stream.live.response_trailers = false;
                self.response_stage = Stage::Done;
            }
            Stage::Done => {}
        }
        Ok(())
    }

    /// Runs request callbacks until the request goes upstream, is answered, or stops.
    fn drive_request(&mut self) -> Result<(), HarnessError> {
        let id = self.id;
        loop {
            if self.take_local_response()? {
                return Ok(());
            }
            let more_body = !self.request_body.is_empty();
            let has_trailers = self.request_trailers.is_some();
            let stream = self.plugin.stream_state(id)?;
            if stream.closed {
                self.outcome = RequestOutcome::Reset;
                return Ok(());
            }
            let proceed = match self.request_stage {
                Stage::Headers => {
                    stream.live.request_headers = true;
                    stream.end_of_stream = !more_body && !has_trailers;
                    let args = [
                        id,
                        stream.request_headers.len() as u32,
                        u32::from(stream.end_of_stream),
                    ];
                    let action = self.plugin.call(Callback::RequestHeaders, &args)?;
                    HeadersAction::from_code(action.unwrap_or(0)) == HeadersAction::Continue
                }
                Stage::Body if more_body => {
                    let chunk = self.request_body.pop_front().unwrap_or_default();
                    let buffering = !stream.request_body.is_empty();
                    stream.request_body_bytes += chunk.len() as u64;
                    stream.request_body.extend_from_slice(&chunk);
                    stream.live.request_body = true;
                    stream.end_of_stream = self.request_body.is_empty() && !has_trailers;
                    let eos = stream.end_of_stream;
                    let args = [id, stream.request_body.len() as u32, u32::from(eos)];
                    let action = self.plugin.call(Callback::RequestBody, &args)?;
                    let go = DataAction::from_code(action.unwrap_or(0)) == DataAction::Continue;
                    // A stopped chunk is buffered, and so is one continuing a buffered body.
                    if (!go || buffering) && self.buffered_past_limit(false)? {
                        // Envoy's decoder buffer overflowed: it answers 413 itself.
                        self.plugin.stream_state(id)?.local_response = Some(LocalResponse {
                            status: 413,
                            headers: HeaderMap::new(),
                            body: b"Payload Too Large".to_vec(),
                            grpc_status: None,
                            details: "request_payload_too_large".to_string(),
                        });
                        continue;
                    }
                    // A stopped chunk short of the end keeps buffering: the next chunk arrives.
                    if !go && !eos && !self.take_continue_request()? {
                        continue;
                    }
                    go
                }
                Stage::Body => {
                    self.request_stage = Stage::Trailers;
                    continue;
                }
                Stage::Trailers => match self.request_trailers.take() {
                    Some(trailers) => {
                        let count = trailers.len() as u32;
                        stream.request_trailers = Some(trailers);
                        stream.live.request_trailers = true;
                        let action = self.plugin.call(Callback::RequestTrailers, &[id, count])?;
                        action.unwrap_or(0) == 0
                    }
                    None => {
                        self.request_stage = Stage::Done;
                        continue;
                    }
                },
                Stage::Done => {
                    let stream = self.plugin.stream_state(id)?;
                    stream.live.request_headers = false;
                    // Data still buffered by a stopped body callback flows once the stream does.
                    self.upstream_body.append(&mut stream.request_body);
                    let body = std::mem::take(&mut self.upstream_body);
                    self.go_upstream(body)?;
                    return Ok(());
                }
            };
            if self.take_local_response()? {
                return Ok(());
            }
            if proceed || self.take_continue_request()? {
                self.advance_request()?;
            } else {
                self.outcome = if self.plugin.stream_state(id)?.closed {
                    RequestOutcome::Reset
                } else {
                    RequestOutcome::Paused
                };
                return Ok(());
            }
        }
    }

    fn take_continue_request(&mut self) -> Result<bool, HarnessError> {
        Ok(std::mem::take(
            &mut self.plugin.stream_state(self.id)?.continue_request,
        ))
    }

    /// If the guest sent a local response, records it and runs it through the filter's
    /// response callbacks, as Envoy encodes a local reply through the filter chain.
    fn take_local_response(&mut self) -> Result<bool, HarnessError> {
        let stream = self.plugin.stream_state(self.id)?;
        let Some(local) = stream.local_response.take() else {
            return Ok(false);
        };
        let (headers, mut body) = local_reply(&local, is_grpc(&stream.request_headers));
        // Envoy answers HEAD with the reply's headers (content length included) and no body.
        if stream
            .request_headers
            .get(":method")
            .is_some_and(|method| method.eq_ignore_ascii_case("HEAD"))
        {
            body.clear();
        }
        if self.outcome.is_continued() {
            // Sent during the response path: the client gets it instead of the upstream's.
            self.response = Some(direct_local_reply(headers, body));
            self.response_stage = Stage::Done;
            return Ok(true);
        }
        stream.live = Default::default();
        stream.response_code = Some(parse_status(&headers));
        stream.response_code_details = Some(Cow::Owned(local.details.clone()));
        stream.response_headers = Some(headers);
        self.outcome = RequestOutcome::LocalResponse(local);
        self.request_stage = Stage::Done;
        self.response_body = if body.is_empty() {
            VecDeque::new()
        } else {
            VecDeque::from([body])
        };
        self.response_trailers = None;
        self.response_stage = Stage::Headers;
        self.drive_response(true)?;
        Ok(true)
    }

    /// Whether the body a filter is buffering (`StopIterationAndBuffer`) on one side has grown
    /// past the settings' buffer limit, Envoy's watermark (strictly above; 0: no limit).
    fn buffered_past_limit(&mut self, response: bool) -> Result<bool, HarnessError> {
        let limit = self.plugin.store.data().settings.buffer_limit_bytes;
        let stream = self.plugin.stream_state(self.id)?;
        let buffered = if response {
            stream.response_body.len()
        } else {
            stream.request_body.len()
        };
        Ok(limit != 0 && buffered > limit)
    }

    /// Whether the response headers have gone out to the client: the filter let them pass (the
    /// body or trailers are on their way), or the whole response has.
    fn response_headers_sent(&self) -> bool {
        matches!(self.response_stage, Stage::Body | Stage::Trailers)
            || self
                .response
                .as_ref()
                .is_some_and(|response| !response.paused)
    }

    /// Envoy's answer to a local reply once the response headers went out (`sendLocalReply`'s
    /// last branch): it records `details` and resets the stream, so the client keeps the
    /// headers and whatever body had passed, and nothing more.
    fn reset_after_headers(&mut self, details: &'static str) -> Result<(), HarnessError> {
        let stream = self.plugin.stream_state(self.id)?;
        stream.live = Default::default();
        stream.response_body.clear();
        stream.response_code_details = Some(Cow::Borrowed(details));
        let headers = encode_response_headers(stream);
        self.response_body.clear();
        self.response_trailers = None;
        self.response_stage = Stage::Done;
        self.response = Some(ClientResponse {
            status: parse_status(&headers),
            headers,
            body: std::mem::take(&mut self.client_body),
            trailers: None,
            local: false,
            paused: false,
            reset: true,
        });
        Ok(())
    }

    /// Runs response callbacks until the response reaches the client or stops.
    fn drive_response(&mut self, local: bool) -> Result<(), HarnessError> {
        let id = self.id;
        loop {
            let more_body = !self.response_body.is_empty();
            let has_trailers = self.response_trailers.is_some();
            let stream = self.plugin.stream_state(id)?;
            let proceed = match self.response_stage {
                Stage::Headers => {
                    stream.live.response_headers = true;
                    stream.end_of_stream = !more_body && !has_trailers;
                    let count = stream.response_headers.as_ref().map_or(0, HeaderMap::len);
                    let args = [id, count as u32, u32::from(stream.end_of_stream)];
                    let action = self.plugin.call(Callback::ResponseHeaders, &args)?;
                    HeadersAction::from_code(action.unwrap_or(0)) == HeadersAction::Continue
                }
                Stage::Body if more_body => {
                    let chunk = self.response_body.pop_front().unwrap_or_default();
                    let buffering = !stream.response_body.is_empty();
                    stream.response_body.extend_from_slice(&chunk);
                    stream.live.response_body = true;
                    stream.end_of_stream = self.response_body.is_empty() && !has_trailers;
                    let eos = stream.end_of_stream;
                    let args = [id, stream.response_body.len() as u32, u32::from(eos)];
                    let action = self.plugin.call(Callback::ResponseBody, &args)?;
                    let go = DataAction::from_code(action.unwrap_or(0)) == DataAction::Continue;
                    if (!go || buffering) && self.buffered_past_limit(true)? {
                        self.reset_after_headers("response_payload_too_large")?;
                        return Ok(());
                    }
                    if !go && !eos {
                        continue;
                    }
                    go
                }
                Stage::Body => {
                    self.response_stage = Stage::Trailers;
                    continue;
                }
                Stage::Trailers => match self.response_trailers.take() {
                    Some(trailers) => {
                        let count = trailers.len() as u32;
                        stream.response_trailers = Some(trailers);
                        stream.live.response_trailers = true;
                        let action = self.plugin.call(Callback::ResponseTrailers, &[id, count])?;
                        action.unwrap_or(0) == 0
                    }
                    None => {
                        self.response_stage = Stage::Done;
                        continue;
                    }
                },
                Stage::Done => {
                    let stream = self.plugin.stream_state(id)?;
                    stream.live.response_headers = false;
                    self.client_body.append(&mut stream.response_body);
                    let headers = encode_response_headers(stream);
                    self.response = Some(ClientResponse {
                        status: parse_status(&headers),
                        headers,
                        body: std::mem::take(&mut self.client_body),
                        trailers: stream.response_trailers.clone(),
                        local,
                        paused: false,
                        reset: false,
                    });
                    return Ok(());
                }
            };
            if !local && self.take_local_response()? {
                return Ok(());
            }
            let resumed = std::mem::take(&mut self.plugin.stream_state(id)?.continue_response);
            if proceed || resumed {
                self.advance_response()?;
            } else {
                let stream = self.plugin.stream_state(id)?;
                self.response = Some(ClientResponse {
                    status: stream.response_code.unwrap_or(0),
                    headers: HeaderMap::new(),
                    body: Vec::new(),
                    trailers: None,
                    local,
                    paused: true,
                    reset: false,
                });
                return Ok(());
            }
        }
    }
}

/// Requests through a plugin: each opens a stream (a new HTTP context) and runs it.
impl Plugin {
    /// Opens an HTTP stream for `request` on `connection` and runs the request path.
    pub fn stream(
        &mut self,
        connection: &Connection,
        request: Request,
    ) -> Result<Stream<'_>, HarnessError> {
        request.route.metadata.check("route metadata")?;
        request.dynamic_metadata.check("dynamic metadata")?;
        self.enter_worker(connection);
        // A failed VM is reloaded here under FAIL_RELOAD, or answers by its policy.
        let failed_vm = self.failed_vm_policy()?;
        if !self.configured().accepted {
            return Err(HarnessError::usage(
                "the plugin rejected its configuration; Envoy would not have started it",
            ));
        }
        let id = self.new_context_id();
        // Clones share the TLS session: opening a stream copies no certificate.
        let connection = connection.clone();
        let mut headers = request.headers;
        let state = self.store.data_mut();
        let first_log = state.logs.len();
        let hcm = state.settings.hcm;
        let source = hcm.apply(&mut headers, &connection, &mut || state.new_request_id());
        let mut stream = StreamState::new(connection, source, request.route, state.now_ns, headers);
        stream.dynamic_metadata = request.dynamic_metadata;
        state.streams.insert(id, stream);
        Stream::open(
            self,
            id,
            request.body,
            request.trailers,
            first_log,
            failed_vm,
        )
    }

    /// One complete exchange: the request path, a `200` from the upstream if the request went
    /// through, then `proxy_on_log`, `proxy_on_done` and `proxy_on_delete`.
    pub fn send(
        &mut self,
        connection: &Connection,
        request: Request,
    ) -> Result<Exchange, HarnessError> {
        self.exchange(connection, request, UpstreamResponse::ok())
    }

    /// Like [`Plugin::send`] with the upstream answering `response`.
    pub fn exchange(
        &mut self,
        connection: &Connection,
        request: Request,
        response: UpstreamResponse,
    ) -> Result<Exchange, HarnessError> {
        let mut stream = self.stream(connection, request)?;
        if stream.outcome().is_continued() {
            stream.respond(response)?;
        }
        stream.finish()
    }
}

impl Drop for Stream<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let id = self.id;
        for callback in [Callback::Log, Callback::Done, Callback::Delete] {
            if self.plugin.call(callback, &[id]).is_err() {
                break;
            }
        }
        self.plugin.store.data_mut().streams.remove(&id);
    }
}

/// The response headers as Envoy's HCM encodes them to the client. Its default
/// `server_header_transformation` (OVERWRITE) sets `server` on the stream's own map, the one the
/// filter reads, so `proxy_on_log` sees it too; setting it there before the client's copy also
/// spares a copy of every header.
fn encode_response_headers(stream: &mut StreamState) -> HeaderMap {
    let headers = stream.response_headers.get_or_insert_default();
    headers.set("server", "envoy");
    headers.clone()
}

/// A local reply that goes to the client without passing the filter's response callbacks.
fn direct_local_reply(mut headers: HeaderMap, body: Vec<u8>) -> ClientResponse {
    // Envoy's default server_header_transformation (OVERWRITE).
    headers.set("server", "envoy");
    ClientResponse {
        status: parse_status(&headers),
        headers,
        body,
        trailers: None,
        local: true,
        paused: false,
        reset: false,
    }
}

/// Whether a request is a gRPC call, which Envoy's local replies answer the gRPC way.
fn is_grpc(request_headers: &HeaderMap) -> bool {
    request_headers
        .get("content-type")
        .is_some_and(|content_type| content_type.starts_with("application/grpc"))
}

fn parse_status(headers: &HeaderMap) -> u32 {
    headers
        .get(":status")
        .and_then(|status| status.parse().ok())
        .unwrap_or(0)
}

/// The response Envoy's `sendLocalReply` builds (`prepareLocalReply`): the status, the guest's
/// extra headers, then content length and a `text/plain` default type for a body (both removed
/// for an empty one). A gRPC request gets a trailers-only `200` with `grpc-status` (the guest's,
/// else mapped from the HTTP status) and the body as percent-encoded `grpc-message`.
fn local_reply(local: &LocalResponse, grpc_request: bool) -> (HeaderMap, Vec<u8>) {
    let mut headers = HeaderMap::new();
    headers.add_owned(":status", local.status.to_string());
    for (key, value) in local.headers.iter() {
        headers.add(key, value);
    }
    if grpc_request {
        headers.set(":status", "200");
        headers.set("content-type", "application/grpc");
        if !headers.contains("grpc-status") {
            let status = local
                .grpc_status
                .unwrap_or_else(|| grpc_status_for_http(local.status));
            headers.set_owned("grpc-status", status.to_string());
        }
        if !local.body.is_empty() {
            headers.set_owned("grpc-message", grpc_percent_encode(&local.body));
        }
        return (headers, Vec::new());
    }
    if local.body.is_empty() {
        headers.remove("content-length");
        headers.remove("content-type");
    } else {
        headers.set_owned("content-length", local.body.len().to_string());
        if !headers.contains("content-type") {
            headers.set("content-type", "text/plain");
        }
    }
    (headers, local.body.clone())
}

/// Envoy's `Grpc::Utility::httpToGrpcStatus`.
fn grpc_status_for_http(status: u32) -> u32 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

/// gRPC's percent-encoding of `grpc-message`: bytes outside printable ASCII, and `%`.
fn grpc_percent_encode(message: &[u8]) -> String {
    message
        .iter()
        .map(|&byte| match byte {
            b' '..=b'~' if byte != b'%' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
