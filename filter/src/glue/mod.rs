//! The host glue: the proxy-wasm root context (configuration, shared caches) and the HTTP context
//! (facts in, decision out). Everything it decides, it asks the core.

mod host;

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
use crate::record::access;
use crate::record::access::{RecordLevel, FILTER_STATE_KEY};
use crate::record::metrics::{Added, MetricCounts, MetricSink, METRIC_CAPACITY};
use crate::record::series::{Metric, MetricKind};
use crate::record::warnings::SeenCertificates;
use crate::rewrite::RewriteCalls;
use crate::session::{Host, Session, Warning};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

/// How many certificates a worker remembers having observed (expiry histogram, expiry warning).
const SEEN_CERTIFICATES_SIZE: usize = 4096;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(CertgateRoot::default()) });
}}

/// State shared by every HTTP context of one plugin instance.
struct Shared {
    /// Connections, certificates, the clock and the warnings given: the logic lives in `session`.
    session: RefCell<Session>,
    /// What requests counted since the last tick.
    metrics: RefCell<MetricCounts>,
    /// Certificates whose expiry was observed already.
    seen_certificates: RefCell<SeenCertificates>,
}

struct CertgateRoot {
    policy: Option<Rc<Policy>>,
    shared: Rc<Shared>,
}

impl Default for CertgateRoot {
    fn default() -> Self {
        let shared = Shared {
            session: RefCell::new(Session::default()),
            metrics: RefCell::new(MetricCounts::new(METRIC_CAPACITY)),
            seen_certificates: RefCell::new(SeenCertificates::new(SEEN_CERTIFICATES_SIZE)),
        };
        CertgateRoot {
            policy: None,
            shared: Rc::new(shared),
        }
    }
}

impl Context for CertgateRoot {
    fn on_done(&mut self) -> bool {
        // The VM is going away: what was counted since the last tick is handed over now.
        self.shared.flush_metrics();
        true
    }
}

impl RootContext for CertgateRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        // Debug logs cost a hostcall each: emit them only when the host would print them.
        if let Ok(level) = proxy_wasm::hostcalls::get_log_level() {
            proxy_wasm::set_log_level(level);
        }
        let configuration = self.get_plugin_configuration().unwrap_or_default();
        let document = config::parse(&configuration);
        // The Wasm memory never shrinks: free each stage before the next one peaks (10,000
        // matchers stay under 4 MiB that way).
        drop(configuration);
        match document.and_then(config::compile_document) {
            Ok(policy) => {
                log::info!(
                    "certgate: configured with {} routes",
                    policy.access.routes.len()
                );
                // Each root context declares the record's type (a second declaration on the same
                // root is refused, harmlessly): without it Envoy would keep opaque bytes.
                if !policy.telemetry.filter_state.is_empty()
                    && !host::call_foreign_function(
                        "declare_property",
                        &access::filter_state_declaration(),
                    )
                {
                    log::debug!("certgate: the host refused to declare {FILTER_STATE_KEY}");
                }
                // What the previous policy counted is handed over before it is replaced.
                self.shared.flush_metrics();
                self.shared.session.borrow_mut().read_clock(&HostCalls);
                self.set_tick_period(Duration::from_millis(u64::from(
                    policy.telemetry.metrics_flush_ms,
                )));
                self.shared.session.borrow_mut().reconfigured();
                self.policy = Some(Rc::new(policy));
                true
            }
            Err(errors) => {
                for error in &errors {
                    log::error!("certgate: invalid configuration: {error}");
                }
                false
            }
        }
    }

    fn on_tick(&mut self) {
        self.shared.session.borrow_mut().read_clock(&HostCalls);
        self.shared.flush_metrics();
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(CertgateHttp {
            policy: self.policy.clone(),
            shared: Rc::clone(&self.shared),
            access_record: None,
        }))
    }
}

struct CertgateHttp {
    /// `None` only if the host creates streams for a plugin whose configuration it refused.
    policy: Option<Rc<Policy>>,
    shared: Rc<Shared>,
    /// The access record, logged at `on_log` (when the request is over).
    access_record: Option<(RecordLevel, String)>,
}

impl Context for CertgateHttp {}

impl HttpContext for CertgateHttp {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let Some(policy) = self.policy.clone() else {
            self.send_http_response(503, vec![], Some(b"certgate has no valid configuration"));
            return Action::Pause;
        };
        let raw_headers = host::request_header_pairs();
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
            .then(|| HostCalls.property_string(&["xds", "route_name"]))
            .flatten();
        let request = RequestFacts {
            route_name: route_name.as_deref(),
            path: pairs::first_value(&headers, ":path").unwrap_or_default(),
            authority: pairs::first_value(&headers, ":authority").unwrap_or_default(),
            method: pairs::first_value(&headers, ":method").unwrap_or_default(),
        };
        let connection_id = HostCalls.property_u64(&["connection", "id"]);
        let known = self
            .shared
            .session
            .borrow_mut()
            .connection(&HostCalls, &policy, connection_id);
        // Only an unsound HCM (use_remote_address: false) makes the address vary per request.
        let header_address = known
            .address_from_headers
            .then(|| HostCalls.property_string(&["source", "address"]))
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
        let now = self.shared.session.borrow().now();
        let evaluation = evaluate::evaluate(&policy, &request, &headers, &connection, now);
        log_decision(&policy, &evaluation);
        self.warn(&evaluation, &connection, connection_id.unwrap_or_default());
        self.count_metrics(&policy, &evaluation, connection.tls_version);
        let record = evaluation.record(&policy, &connection, &headers);
        if !policy.telemetry.filter_state.is_empty() {
            let state = record.filter_state(policy.telemetry.filter_state);
            if !host::set_filter_state(FILTER_STATE_KEY, &state) {
                log::debug!("certgate: the host refused filter state {FILTER_STATE_KEY}");
            }
        }
        if policy.telemetry.access_record != RecordLevel::Off {
            self.access_record = Some((policy.telemetry.access_record, record.json()));
        }
        if let Some(reason) = evaluation.decision.denied() {
            self.deny(&policy, reason, &headers);
            return Action::Pause;
        }
        apply_rewrite(&evaluation, &headers);
        Action::Continue
    }

    fn on_log(&mut self) {
        match self.access_record.take() {
            Some((RecordLevel::Debug, record)) => log::debug!("{record}"),
            Some((RecordLevel::Info, record)) => log::info!("{record}"),
            Some((RecordLevel::Warn, record)) => log::warn!("{record}"),
            Some((RecordLevel::Off, _)) | None => {}
        }
    }
}

impl CertgateHttp {
    /// The once-only warnings: an unsound `source.address`, spoofed headers and SNI mismatches (once
    /// per connection). Expiring certificates are warned about in [`Self::count_metrics`].
    fn warn(
        &self,
        evaluation: &Evaluation<'_>,
        connection: &ConnectionFacts<'_>,
        connection_id: u64,
    ) {
        if let PeerAddress::FromHeaders(address) = evaluation.peer_address {
            if self
                .shared
                .session
                .borrow_mut()
                .first_header_address_warning()
            {
                log::warn!(
                    "certgate: source.address {address} came from X-Forwarded-For, not the socket: \
                     peers are not trusted by address. Set the HTTP connection manager's \
                     use_remote_address: true and xff_num_trusted_hops: 0"
                );
            }
        }
        let spoofed = !evaluation.rewrite.spoofed.is_empty();
        if spoofed || evaluation.sni_mismatch {
            let peer = connection.source_address.unwrap_or("-");
            let mut session = self.shared.session.borrow_mut();
            if spoofed && session.first_warning(Warning::Spoofing, connection_id) {
                log::warn!(
                    "certgate: connection {connection_id} from {peer} (not a trusted proxy) sent headers certgate owns; removed: {}",
                    evaluation.rewrite.spoofed.join(", ")
                );
            }
            if evaluation.sni_mismatch
                && session.first_warning(Warning::SniHostMismatch, connection_id)
            {
                log::info!(
                    "certgate: connection {connection_id} from {peer}: SNI {:?} does not cover the request's host",
                    connection.sni.unwrap_or_default()
                );
            }
        }
    }

    /// Counts this request's metrics (handed to the host on the next tick) and observes its
    /// certificate's expiry if this worker sees the certificate for the first time.
    fn count_metrics(
        &self,
        policy: &Policy,
        evaluation: &Evaluation<'_>,
        tls_version: Option<&str>,
    ) {
        let mut counts = self.shared.metrics.borrow_mut();
        for (metric, value) in evaluation.metrics(policy, tls_version) {
            count(&mut counts, &metric, value);
        }
        let (Some(identity), Some(days)) = (evaluation.peer.identity(), evaluation.days_to_expiry)
        else {
            return;
        };
        if !self
            .shared
            .seen_certificates
            .borrow_mut()
            .first_sight(identity)
        {
            return;
        }
        count(
            &mut counts,
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

    fn deny(&self, policy: &Policy, reason: DenyReason, headers: &HeaderPairs<'_>) {
        let response = &policy.deny_response;
        let request_id = pairs::first_value(headers, "x-request-id").unwrap_or_default();
        if is_grpc(pairs::first_value(headers, "content-type")) {
            // Envoy turns this into a trailers-only gRPC answer: the status as `grpc-status`,
            // the body as `grpc-message`.
            let (grpc_status, message) = response.grpc(reason, request_id);
            let reply_headers: &[(&str, &str)] = if response.expose_reason {
                &[("x-certgate-reason", reason.as_str())]
            } else {
                &[]
            };
            host::send_local_response(
                u32::from(response.status),
                &pairs::encode(reply_headers),
                message.as_bytes(),
                Some(grpc_status),
            );
            return;
        }
        let body = response.body(reason, request_id);
        let mut reply_headers = vec![("content-type", response.content_type.as_str())];
        if response.expose_reason {
            reply_headers.push(("x-certgate-reason", reason.as_str()));
        }
        // The test build says which module refused, so a module swap is observable per response.
        #[cfg(feature = "fault-injection")]
        reply_headers.push(("x-certgate-build", "fault-injection"));
        host::send_local_response(
            u32::from(response.status),
            &pairs::encode(&reply_headers),
            body.as_bytes(),
            None,
        );
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
fn apply_rewrite(evaluation: &Evaluation<'_>, headers: &HeaderPairs<'_>) {
    let applied = match evaluation.rewrite.headers.calls(headers) {
        RewriteCalls::Nothing => true,
        RewriteCalls::Edit(edit) => host::edit_request_header(edit),
        RewriteCalls::WholeMap(map) => host::set_request_header_pairs(&pairs::encode(&map)),
    };
    if !applied {
        log::warn!("certgate: the host refused the forwarding-header rewrite");
    }
}

fn count(counts: &mut MetricCounts, metric: &Metric<'_>, value: u64) {
    if counts.add(metric, value) == Added::CapacityReached {
        log::warn!(
            "certgate: {METRIC_CAPACITY} metric series counted; {} and any newer series are not recorded",
            metric.name()
        );
    }
}

impl Shared {
    /// Hands what was counted since the last flush to the host.
    fn flush_metrics(&self) {
        let flushed = self.metrics.borrow_mut().flush(&mut HostMetrics);
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
}

/// The metric hostcalls.
struct HostMetrics;

impl MetricSink for HostMetrics {
    fn define(&mut self, kind: MetricKind, name: &str) -> Option<u32> {
        host::define_metric(kind, name)
    }

    fn increment(&mut self, id: u32, delta: u64) -> bool {
        host::update_metric(id, MetricKind::Counter, delta)
    }

    fn record(&mut self, id: u32, value: u64) -> bool {
        host::update_metric(id, MetricKind::Histogram, value)
    }
}

/// The hostcalls the session asks for.
struct HostCalls;

impl Host for HostCalls {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        host::property(path)
    }

    fn shared_data(&self, key: &str) -> Option<Vec<u8>> {
        host::shared_data(key)
    }

    fn set_shared_data(&self, key: &str, value: &[u8]) -> bool {
        host::set_shared_data(key, value)
    }

    fn now(&self) -> Option<i64> {
        let seconds = proxy_wasm::hostcalls::get_current_time()
            .ok()?
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_secs();
        Some(i64::try_from(seconds).unwrap_or(i64::MAX))
    }
}
