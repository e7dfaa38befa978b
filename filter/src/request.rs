//! One request's headers, from the host to what is done about them, behind [`Host`] so it runs and
//! is tested natively: the request's facts (its header map, the connection's facts from the
//! session), the evaluation, and what follows from it: the warnings given once, the metrics counted
//! until the next tick, the filter state, the access record, and either the forwarding-header
//! rewrite or the local reply of a denial. [`Worker`] is what one worker's plugin instance keeps
//! for its requests, with what happens to it on a new configuration and on the tick; the glue holds
//! one and makes the hostcalls.

use crate::config;
use crate::decide::access::is_grpc;
use crate::decide::decision::DenyReason;
use crate::decide::route::RequestFacts;
use crate::evaluate::{self, ConnectionFacts, Evaluation};
use crate::facts::address::PeerAddress;
use crate::facts::pairs::{self, HeaderPairs};
use crate::identity::peer::Peer;
use crate::identity::PeerIdentity;
use crate::policy::Policy;
use crate::record::access::{self, RecordLevel, FILTER_STATE_KEY};
use crate::record::metrics::{Added, MetricCounts, MetricSink, METRIC_CAPACITY};
use crate::record::series::Metric;
use crate::record::warnings::SeenCertificates;
use crate::rewrite::RewriteCalls;
use crate::session::{Host, Session, Warning};
use std::rc::Rc;

/// How many certificates a worker remembers having observed (expiry histogram, expiry warning).
const SEEN_CERTIFICATES_SIZE: usize = 4096;

/// The body of the reply to every request of a plugin whose configuration the host refused.
pub(crate) const NO_CONFIGURATION_BODY: &str = "certgate has no valid configuration";

/// What one worker's plugin instance keeps for its requests: the session (connections,
/// certificates, the clock, the warnings given), what was counted since the last tick, and the
/// certificates whose expiry was observed already.
#[derive(Debug)]
pub(crate) struct Worker {
    session: Session,
    metrics: MetricCounts,
    seen_certificates: SeenCertificates,
}

impl Default for Worker {
    fn default() -> Self {
        Worker {
            session: Session::default(),
            metrics: MetricCounts::new(METRIC_CAPACITY),
            seen_certificates: SeenCertificates::new(SEEN_CERTIFICATES_SIZE),
        }
    }
}

/// What the glue does once the request's headers are handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestOutcome {
    /// The access record, to log when the request is over; `None` when it is off.
    pub(crate) access_record: Option<AccessLine>,
    pub(crate) response: Response,
}

/// Whether the request goes on to the upstream or is answered here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Response {
    /// Forwarded, its headers rewritten already.
    Forward,
    /// Answered locally; the request goes no further.
    Reply(LocalReply),
}

/// A local reply, as the host's `send_local_response` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalReply {
    pub(crate) status: u32,
    /// The reply's headers, pairs-encoded.
    pub(crate) headers: Vec<u8>,
    pub(crate) body: String,
    /// For a gRPC caller, the gRPC status (Envoy sends the body as `grpc-message`); `None` for HTTP.
    pub(crate) grpc_status: Option<u32>,
}

/// The access record of one request and the level it is logged at (never `off`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccessLine {
    pub(crate) level: RecordLevel,
    /// The record, one JSON object.
    pub(crate) line: String,
}

impl AccessLine {
    /// Logs the record at its level.
    pub(crate) fn log(&self) {
        let line = &self.line;
        match self.level {
            RecordLevel::Debug => log::debug!("{line}"),
            RecordLevel::Info => log::info!("{line}"),
            RecordLevel::Warn => log::warn!("{line}"),
            RecordLevel::Off => {}
        }
    }
}

impl Worker {
    /// Compiles the plugin configuration into the policy to run from now on; `None`, with every
    /// problem logged, when it is invalid (the host then refuses it). A new policy replaces the old
    /// one: what the old one counted is handed to the host first, the clock is read, and what was
    /// derived under the old policy is dropped.
    pub(crate) fn configure(
        &mut self,
        host: &impl Host,
        sink: &mut impl MetricSink,
        configuration: Vec<u8>,
    ) -> Option<Policy> {
        let document = config::parse(&configuration);
        // The Wasm memory never shrinks: free each stage before the next one peaks (10,000
        // matchers stay under 4 MiB that way).
        drop(configuration);
        let policy = match document.and_then(config::compile_document) {
            Ok(policy) => policy,
            Err(errors) => {
                for error in &errors {
                    log::error!("certgate: invalid configuration: {error}");
                }
                return None;
            }
        };
        log::info!(
            "certgate: configured with {} routes",
            policy.access.routes.len()
        );
        // Each root context declares the record's type (a second declaration on the same root is
        // refused, harmlessly): without it Envoy would keep opaque bytes.
        if !policy.telemetry.filter_state.is_empty()
            && !host.call_foreign_function("declare_property", &access::filter_state_declaration())
        {
            log::debug!("certgate: the host refused to declare {FILTER_STATE_KEY}");
        }
        self.flush_metrics(sink);
        self.session.read_clock(host);
        self.session.reconfigured();
        Some(policy)
    }

    /// The timer: the clock is read and the counts handed to the host.
    pub(crate) fn tick(&mut self, host: &impl Host, sink: &mut impl MetricSink) {
        self.session.read_clock(host);
        self.flush_metrics(sink);
    }

    /// Hands what was counted since the last flush to the host.
    pub(crate) fn flush_metrics(&mut self, sink: &mut impl MetricSink) {
        let flushed = self.metrics.flush(sink);
        if flushed.refused > 0 {
            log::debug!(
                "certgate: the host refused {} metric definitions or updates",
                flushed.refused
            );
        }
        if flushed.dropped > 0 {
            log::warn!(
                "certgate: {} expiry observations dropped since the last flush (too many new certificates)",
                flushed.dropped
            );
        }
    }

    /// Handles a request's headers under `policy` (`None`: the host refused the configuration, and
    /// every request is answered 503): sets the filter state and rewrites the forwarding headers
    /// through `host`, and says what is left to do.
    pub(crate) fn on_request_headers(
        &mut self,
        host: &impl Host,
        policy: Option<&Rc<Policy>>,
    ) -> RequestOutcome {
        let Some(policy) = policy else {
            return RequestOutcome {
                access_record: None,
                response: Response::Reply(LocalReply {
                    status: 503,
                    headers: pairs::encode::<&str, &str>(&[]),
                    body: NO_CONFIGURATION_BODY.to_owned(),
                    grpc_status: None,
                }),
            };
        };
        let raw_headers = host.request_headers();
        let headers = pairs::decode(&raw_headers).unwrap_or_else(|error| {
            log::warn!(
                "certgate: request header map unreadable ({}); treating it as empty",
                error.0
            );
            Vec::new()
        });
        #[cfg(all(feature = "fault-injection", target_arch = "wasm32"))]
        if pairs::first_value(&headers, "x-certgate-fault") == Some("trap") {
            // The test build's stand-in for a real VM failure: a wasm `unreachable` trap.
            core::arch::wasm32::unreachable();
        }
        let route_name = policy
            .uses_route_names
            .then(|| host.property_string(&["xds", "route_name"]))
            .flatten();
        let request = RequestFacts {
            route_name: route_name.as_deref(),
            path: pairs::first_value(&headers, ":path").unwrap_or_default(),
            authority: pairs::first_value(&headers, ":authority").unwrap_or_default(),
            method: pairs::first_value(&headers, ":method").unwrap_or_default(),
        };
        let connection_id = host.property_u64(&["connection", "id"]);
        let known = self.session.connection(host, policy, connection_id);
        // Only an unsound HCM (use_remote_address: false) makes the address vary per request.
        let header_address = known
            .address_from_headers
            .then(|| host.property_string(&["source", "address"]))
            .flatten();
        let connection = ConnectionFacts {
            certificate: known.peer.as_ref(),
            mtls: !matches!(known.peer, Peer::NoCertificate),
            tls_version: known.tls_version.as_deref(),
            sni: known.sni.as_deref(),
            source_address: header_address
                .as_deref()
                .or(known.source_address.as_deref()),
            local_address: known.local_address.as_deref(),
            rendered: known.rendered.as_ref(),
        };
        let evaluation =
            evaluate::evaluate(policy, &request, &headers, &connection, self.session.now());
        log_decision(policy, &evaluation);
        self.warn(&evaluation, &connection, connection_id.unwrap_or_default());
        self.count_metrics(policy, &evaluation, connection.tls_version);
        let record = evaluation.record(policy, &connection, &headers);
        if !policy.telemetry.filter_state.is_empty() {
            let state = record.filter_state(policy.telemetry.filter_state);
            if !host.set_filter_state(FILTER_STATE_KEY, &state) {
                log::debug!("certgate: the host refused filter state {FILTER_STATE_KEY}");
            }
        }
        let access_record =
            (policy.telemetry.access_record != RecordLevel::Off).then(|| AccessLine {
                level: policy.telemetry.access_record,
                line: record.json(),
            });
        let response = match evaluation.decision.denied() {
            Some(reason) => Response::Reply(deny_reply(policy, reason, &headers)),
            None => {
                apply_rewrite(host, &evaluation, &headers);
                Response::Forward
            }
        };
        RequestOutcome {
            access_record,
            response,
        }
    }

    /// The once-only warnings: an unsound `source.address`, spoofed headers and SNI mismatches (once
    /// per connection). Expiring certificates are warned about in [`Self::count_metrics`].
    fn warn(
        &mut self,
        evaluation: &Evaluation<'_>,
        connection: &ConnectionFacts<'_>,
        connection_id: u64,
    ) {
        if let PeerAddress::FromHeaders(address) = evaluation.peer_address {
            if self.session.first_header_address_warning() {
                log::warn!(
                    "certgate: source.address {address} came from X-Forwarded-For, not the socket: \
                     peers are not trusted by address. Set the HTTP connection manager's \
                     use_remote_address: true and xff_num_trusted_hops: 0"
                );
            }
        }
        let peer = connection.source_address.unwrap_or("-");
        if !evaluation.rewrite.spoofed.is_empty()
            && self.session.first_warning(Warning::Spoofing, connection_id)
        {
            log::warn!(
                "certgate: connection {connection_id} from {peer} (not a trusted proxy) sent headers certgate owns; removed: {}",
                evaluation.rewrite.spoofed.join(", ")
            );
        }
        if evaluation.sni_mismatch
            && self
                .session
                .first_warning(Warning::SniHostMismatch, connection_id)
        {
            log::info!(
                "certgate: connection {connection_id} from {peer}: SNI {:?} does not cover the request's host",
                connection.sni.unwrap_or_default()
            );
        }
    }

    /// Counts this request's metrics (handed to the host on the next tick) and observes its
    /// certificate's expiry if this worker sees the certificate for the first time.
    fn count_metrics(
        &mut self,
        policy: &Policy,
        evaluation: &Evaluation<'_>,
        tls_version: Option<&str>,
    ) {
        for (metric, value) in evaluation.metrics(policy, tls_version) {
            self.count(&metric, value);
        }
        let (Some(identity), Some(days)) = (evaluation.peer.identity(), evaluation.days_to_expiry)
        else {
            return;
        };
        if !self.seen_certificates.first_sight(identity) {
            return;
        }
        self.count(
            &Metric::PeerCertDaysToExpiry,
            u64::try_from(days.max(0)).unwrap_or_default(),
        );
        if evaluation.expiring {
            log::warn!(
                "certgate: certificate {} ({}) expires in {days} days",
                identity.sha256,
                identity.principal().unwrap_or("-"),
            );
        }
    }

    fn count(&mut self, metric: &Metric<'_>, value: u64) {
        if self.metrics.add(metric, value) == Added::CapacityReached {
            log::warn!(
                "certgate: {METRIC_CAPACITY} metric series counted; {} and any newer series are not recorded",
                metric.name()
            );
        }
    }
}

/// The reply to a denied request: for a gRPC caller a gRPC status and message, else the configured
/// HTTP status, content type and body.
fn deny_reply(policy: &Policy, reason: DenyReason, headers: &HeaderPairs<'_>) -> LocalReply {
    let response = &policy.deny_response;
    let request_id = pairs::first_value(headers, "x-request-id").unwrap_or_default();
    let mut reply_headers = Vec::with_capacity(3);
    let (body, grpc_status) = if is_grpc(pairs::first_value(headers, "content-type")) {
        // Envoy turns this into a trailers-only gRPC answer: the status as `grpc-status`, the
        // body as `grpc-message`.
        let (grpc_status, message) = response.grpc(reason, request_id);
        (message, Some(grpc_status))
    } else {
        reply_headers.push(("content-type", response.content_type.as_str()));
        (response.body(reason, request_id), None)
    };
    if response.expose_reason {
        reply_headers.push(("x-certgate-reason", reason.as_str()));
    }
    // The test build says which module refused, so a module swap is observable per response.
    #[cfg(feature = "fault-injection")]
    if grpc_status.is_none() {
        reply_headers.push(("x-certgate-build", "fault-injection"));
    }
    LocalReply {
        status: u32::from(response.status),
        headers: pairs::encode(&reply_headers),
        body,
        grpc_status,
    }
}

fn log_decision(policy: &Policy, evaluation: &Evaluation<'_>) {
    if log::log_enabled!(log::Level::Debug) {
        let principal = evaluation
            .peer
            .identity()
            .and_then(PeerIdentity::principal)
            .unwrap_or("-");
        log::debug!(
            "certgate: {} route={} reason={} identity={principal}",
            evaluation.decision.verdict.as_str(),
            evaluation.route_name(policy).unwrap_or("-"),
            evaluation.decision.reason()
        );
    }
}

/// Applies the rewrite with the fewest hostcalls: none, one edit, or the whole map at once.
fn apply_rewrite(host: &impl Host, evaluation: &Evaluation<'_>, headers: &HeaderPairs<'_>) {
    let applied = match evaluation.rewrite.headers.calls(headers) {
        RewriteCalls::Nothing => true,
        RewriteCalls::Edit(edit) => host.edit_request_header(edit),
        RewriteCalls::WholeMap(map) => host.set_request_headers(&pairs::encode(&map)),
    };
    if !applied {
        log::warn!("certgate: the host refused the forwarding-header rewrite");
    }
}
