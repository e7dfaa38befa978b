//! The host glue: the proxy-wasm root context (configuration, shared caches) and the HTTP context
//! (facts in, decision out). Everything it decides, it asks the core.

mod host;

use crate::collections::cache::LruCache;
use crate::config;
use crate::decide::access::is_grpc;
use crate::decide::decision::DenyReason;
use crate::decide::route::RequestFacts;
use crate::evaluate::{self, ConnectionFacts, Evaluation};
use crate::facts::address::PeerAddress;
use crate::facts::pairs::{self, HeaderPairs};
use crate::identity::peer::Peer;
use crate::identity::resumption::{Ledger, Scope, SharedStore, Validation};
use crate::identity::PeerIdentity;
use crate::policy::Policy;
use crate::record::access;
use crate::record::access::{RecordLevel, FILTER_STATE_KEY};
use crate::record::metrics::{Added, MetricCounts, MetricSink, METRIC_CAPACITY};
use crate::record::series::{Metric, MetricKind};
use crate::record::warnings::{Recent, SeenCertificates};
use crate::rewrite::forwarded::ForwardedMode;
use crate::rewrite::forwarding::RenderedIdentity;
use crate::rewrite::Application;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

/// How many parsed certificates the root context keeps.
const IDENTITY_CACHE_SIZE: usize = 512;
/// How many connections' facts the root context keeps (a worker's busy connections, with room).
const CONNECTION_CACHE_SIZE: usize = 1024;
/// How many connections the once-only warnings remember.
const WARNED_CACHE_SIZE: usize = 256;
/// How many certificates a worker remembers having observed (expiry histogram, expiry warning).
const SEEN_CERTIFICATES_SIZE: usize = 4096;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(CertgateRoot::default()) });
}}

/// State shared by every HTTP context of one plugin instance.
struct Shared {
    identities: RefCell<LruCache<String, Rc<PeerIdentity>>>,
    connections: RefCell<LruCache<u64, Rc<KnownConnection>>>,
    /// Whether the "matching is degraded" warning was logged already.
    degraded_warned: Cell<bool>,
    /// What requests counted since the last tick.
    metrics: RefCell<MetricCounts>,
    /// The host's clock in Unix seconds, read on each tick and for each newly parsed certificate:
    /// never per request.
    now: Cell<i64>,
    /// Connections already warned about (id and [`Warning`] in one key).
    warned_connections: RefCell<Recent>,
    /// Certificates whose expiry was observed already.
    seen_certificates: RefCell<SeenCertificates>,
    /// Whether the "source.address comes from a header" warning was logged already.
    header_address_warned: Cell<bool>,
    /// The certificates Envoy validated, for resumed sessions (facts about Envoy, kept across
    /// reconfigurations).
    ledger: RefCell<Ledger>,
}

/// What a connection is warned about once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Warning {
    Spoofing,
    SniHostMismatch,
}

impl Warning {
    fn key(self, connection_id: u64) -> u64 {
        connection_id << 1 | self as u64
    }
}

struct CertgateRoot {
    policy: Option<Rc<Policy>>,
    shared: Rc<Shared>,
}

impl Default for CertgateRoot {
    fn default() -> Self {
        let shared = Shared {
            identities: RefCell::new(LruCache::new(IDENTITY_CACHE_SIZE)),
            connections: RefCell::new(LruCache::new(CONNECTION_CACHE_SIZE)),
            degraded_warned: Cell::new(false),
            metrics: RefCell::new(MetricCounts::new(METRIC_CAPACITY)),
            now: Cell::new(0),
            warned_connections: RefCell::new(Recent::new(WARNED_CACHE_SIZE)),
            seen_certificates: RefCell::new(SeenCertificates::new(SEEN_CERTIFICATES_SIZE)),
            header_address_warned: Cell::new(false),
            ledger: RefCell::new(Ledger::default()),
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
                self.shared.read_clock();
                self.set_tick_period(Duration::from_millis(u64::from(
                    policy.telemetry.metrics_flush_ms,
                )));
                // What the caches hold was derived under the previous policy.
                *self.shared.connections.borrow_mut() = LruCache::new(CONNECTION_CACHE_SIZE);
                *self.shared.identities.borrow_mut() = LruCache::new(IDENTITY_CACHE_SIZE);
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
        self.shared.read_clock();
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
            .then(|| host::property_string(&["xds", "route_name"]))
            .flatten();
        let request = RequestFacts {
            route_name: route_name.as_deref(),
            path: pairs::first_value(&headers, ":path").unwrap_or_default(),
            authority: pairs::first_value(&headers, ":authority").unwrap_or_default(),
            method: pairs::first_value(&headers, ":method").unwrap_or_default(),
        };
        let connection_id = host::property_u64(&["connection", "id"]);
        let known = self.known_connection(&policy, connection_id);
        // Only an unsound HCM (use_remote_address: false) makes the address vary per request.
        let header_address = known
            .address_from_headers
            .then(|| host::property_string(&["source", "address"]))
            .flatten();
        let connection = ConnectionFacts {
            certificate: known.identity.as_peer(),
            mtls: !matches!(known.identity, ConnectionIdentity::NoCertificate),
            tls_version: known.tls_version.as_deref(),
            sni: known.sni.as_deref(),
            source_address: header_address
                .as_deref()
                .or(known.source_address.as_deref()),
            local_address: known.local_address.as_deref(),
            rendered: known.rendered.as_ref(),
        };
        let now = self.shared.now.get();
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

/// The peer as the connection shows it, owning what the decision borrows.
enum ConnectionIdentity {
    NoCertificate,
    NotValidated,
    Unreadable,
    Identified(Rc<PeerIdentity>),
}

impl ConnectionIdentity {
    fn as_peer(&self) -> Peer<'_> {
        match self {
            ConnectionIdentity::NoCertificate => Peer::NoCertificate,
            ConnectionIdentity::NotValidated => Peer::NotValidated,
            ConnectionIdentity::Unreadable => Peer::Unreadable,
            ConnectionIdentity::Identified(identity) => Peer::Identified(identity),
        }
    }
}

/// What certgate keeps about a connection between its requests: none of it changes while the
/// connection lives (Envoy allows no renegotiation downstream), so each is read once.
struct KnownConnection {
    /// The policy the facts were derived under (the rendering follows its forwarding options).
    policy: Rc<Policy>,
    identity: ConnectionIdentity,
    tls_version: Option<String>,
    sni: Option<String>,
    source_address: Option<String>,
    /// `source.address` has port 0: Envoy took it from X-Forwarded-For, which changes per request.
    address_from_headers: bool,
    local_address: Option<String>,
    /// The certificate's forwarding-header values.
    rendered: Option<RenderedIdentity>,
}

impl CertgateHttp {
    /// The connection's facts: from the cache when its id was seen before, else read (and kept).
    /// Without a `connection.id` nothing is kept, as two connections could not be told apart.
    fn known_connection(
        &self,
        policy: &Rc<Policy>,
        connection_id: Option<u64>,
    ) -> Rc<KnownConnection> {
        // A stream opened before a reconfiguration still runs the old policy: facts derived under
        // the other policy are not its own.
        if let Some(known) = connection_id
            .and_then(|id| self.shared.connections.borrow_mut().get(&id))
            .filter(|known| Rc::ptr_eq(&known.policy, policy))
        {
            return known;
        }
        let tls_version = host::property_string(&["connection", "tls_version"]);
        // SNI only exists on TLS connections: no hostcall for it on plaintext.
        let sni = tls_version
            .as_ref()
            .and_then(|_| host::property_string(&["connection", "requested_server_name"]));
        let source_address = host::property_string(&["source", "address"]);
        let address_from_headers = matches!(
            PeerAddress::from_source_address(source_address.as_deref()),
            PeerAddress::FromHeaders(_)
        );
        let mut listener = LazyProperty::new(&["destination", "address"]);
        let identity = self.connection_identity(policy, &mut listener);
        let local_address = (policy.forwarding.forwarded != ForwardedMode::Off)
            .then(|| listener.get().map(str::to_owned))
            .flatten();
        let rendered = match &identity {
            ConnectionIdentity::Identified(identity) => {
                Some(RenderedIdentity::new(&policy.forwarding, identity))
            }
            _ => None,
        };
        let known = Rc::new(KnownConnection {
            policy: Rc::clone(policy),
            identity,
            rendered,
            tls_version,
            sni,
            source_address,
            address_from_headers,
            local_address,
        });
        if let Some(id) = connection_id {
            self.shared
                .connections
                .borrow_mut()
                .insert(id, Rc::clone(&known));
        }
        known
    }

    /// Reads the TLS peer: presented? validated (on this connection, or recently in its scope for a
    /// resumed session)? then its identity, parsed once per certificate.
    fn connection_identity(
        &self,
        policy: &Policy,
        listener: &mut LazyProperty<'_>,
    ) -> ConnectionIdentity {
        if host::property_bool(&["connection", "mtls"]) != Some(true) {
            return ConnectionIdentity::NoCertificate;
        }
        let reported = host::property_bool(&["connection", "peer_certificate_valid"]);
        let mut digest = None;
        let mut filter_chain = LazyProperty::new(&["xds", "filter_chain_name"]);
        let validation =
            policy
                .resumption
                .classify(reported, policy.assume_presented_certs_validated, || {
                    let digest = digest.insert(peer_digest());
                    let scope = Scope {
                        local_address: listener.get().unwrap_or_default(),
                        filter_chain: filter_chain.get().unwrap_or_default(),
                    };
                    self.shared.ledger.borrow_mut().knows(
                        &HostStore,
                        &scope,
                        digest,
                        self.shared.now.get(),
                        policy.resumption.validity_secs,
                    )
                });
        if !validation.admitted() {
            return ConnectionIdentity::NotValidated;
        }
        let digest = digest.unwrap_or_else(peer_digest);
        let identity = self.identity(&digest);
        if let (Validation::Validated, ConnectionIdentity::Identified(identity)) =
            (validation, &identity)
        {
            if policy.resumption.trusts() {
                let scope = Scope {
                    local_address: listener.get().unwrap_or_default(),
                    filter_chain: filter_chain.get().unwrap_or_default(),
                };
                let recorded = self.shared.ledger.borrow_mut().record(
                    &HostStore,
                    &scope,
                    &digest,
                    identity.not_after,
                    self.shared.now.get(),
                );
                if !recorded {
                    log::debug!("certgate: the host refused shared data for certificate {digest}");
                }
            }
        }
        if validation == Validation::Resumed {
            log::debug!("certgate: certificate {digest} admitted on a resumed session: validated in this scope recently");
        }
        identity
    }

    /// The identity of the peer certificate `digest`, parsed once per certificate.
    fn identity(&self, digest: &str) -> ConnectionIdentity {
        if let Some(identity) = self.shared.identities.borrow_mut().get(digest) {
            return ConnectionIdentity::Identified(identity);
        }
        // A new certificate: its expiry is judged on a fresh clock.
        self.shared.read_clock();
        let identity = match host::property(&["connection", "peer_certificate"]) {
            Some(pem) => match PeerIdentity::from_pem(&pem) {
                Ok(identity) => identity,
                Err(error) => {
                    log::warn!("certgate: peer certificate {digest} is unreadable: {error}");
                    return ConnectionIdentity::Unreadable;
                }
            },
            None => self.degraded_identity(digest),
        };
        let identity = Rc::new(identity);
        self.shared
            .identities
            .borrow_mut()
            .insert(digest.to_owned(), Rc::clone(&identity));
        ConnectionIdentity::Identified(identity)
    }

    /// Envoy before 1.38 does not hand over the certificate: fall back to its first-SAN attributes.
    fn degraded_identity(&self, digest: &str) -> PeerIdentity {
        if !self.shared.degraded_warned.replace(true) {
            log::warn!(
                "certgate: this Envoy does not expose connection.peer_certificate (Envoy 1.38+); matching \
                 is degraded to the first URI and DNS SAN and the subject"
            );
        }
        let attribute =
            |name: &str| host::property_string(&["connection", name]).unwrap_or_default();
        PeerIdentity::from_envoy_attributes(
            &attribute("subject_peer_certificate"),
            &attribute("uri_san_peer_certificate"),
            &attribute("dns_san_peer_certificate"),
            digest,
        )
    }

    /// The once-only warnings: an unsound `source.address`, spoofed headers and SNI mismatches (once
    /// per connection). Expiring certificates are warned about in [`Self::count_metrics`].
    fn warn(
        &self,
        evaluation: &Evaluation<'_>,
        connection: &ConnectionFacts<'_>,
        connection_id: u64,
    ) {
        if let PeerAddress::FromHeaders(address) = evaluation.peer_address {
            if !self.shared.header_address_warned.replace(true) {
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
            let mut warned = self.shared.warned_connections.borrow_mut();
            if spoofed && warned.first_time(Warning::Spoofing.key(connection_id)) {
                log::warn!(
                    "certgate: connection {connection_id} from {peer} (not a trusted proxy) sent headers certgate owns; removed: {}",
                    evaluation.rewrite.spoofed.join(", ")
                );
            }
            if evaluation.sni_mismatch
                && warned.first_time(Warning::SniHostMismatch.key(connection_id))
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
    let applied = match evaluation.rewrite.headers.application(headers) {
        Application::Nothing => true,
        Application::Edit(edit) => host::edit_request_header(edit),
        Application::WholeMap(map) => host::set_request_header_pairs(&pairs::encode(&map)),
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

    /// Reads the host's clock (Unix seconds) into `now`.
    fn read_clock(&self) {
        if let Some(seconds) = proxy_wasm::hostcalls::get_current_time()
            .ok()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        {
            self.now
                .set(i64::try_from(seconds.as_secs()).unwrap_or(i64::MAX));
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

/// Envoy's SHA-256 digest of the peer certificate (lowercase hex), empty when it has none.
fn peer_digest() -> String {
    host::property_string(&["connection", "sha256_peer_certificate_digest"]).unwrap_or_default()
}

/// A string property read at most once, and only when first needed.
struct LazyProperty<'p> {
    path: &'p [&'p str],
    value: Option<Option<String>>,
}

impl<'p> LazyProperty<'p> {
    fn new(path: &'p [&'p str]) -> Self {
        LazyProperty { path, value: None }
    }

    fn get(&mut self) -> Option<&str> {
        let path = self.path;
        self.value
            .get_or_insert_with(|| host::property_string(path))
            .as_deref()
    }
}

/// The host's shared data, for the record of validated certificates.
struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        host::shared_data(key)
    }

    fn set(&self, key: &str, value: &[u8]) -> bool {
        host::set_shared_data(key, value)
    }
}
