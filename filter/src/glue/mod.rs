//! The host glue: the proxy-wasm root context (configuration, shared caches) and the HTTP context
//! (facts in, decision out). Everything it decides, it asks the core.

mod host;

use crate::core::cache::LruCache;
use crate::core::config;
use crate::core::decision::Decision;
use crate::core::identity::PeerIdentity;
use crate::core::pairs::{self, HeaderPairs};
use crate::core::policy::{Peer, Policy};
use crate::core::route::RequestFacts;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// How many parsed certificates the root context keeps.
const IDENTITY_CACHE_SIZE: usize = 512;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(CertgateRoot::default()) });
}}

/// State shared by every HTTP context of one plugin instance.
struct Shared {
    identities: RefCell<LruCache<String, Rc<PeerIdentity>>>,
    /// Whether the "matching is degraded" warning was logged already.
    degraded_warned: Cell<bool>,
}

struct CertgateRoot {
    policy: Option<Rc<Policy>>,
    shared: Rc<Shared>,
}

impl Default for CertgateRoot {
    fn default() -> Self {
        let shared = Shared {
            identities: RefCell::new(LruCache::new(IDENTITY_CACHE_SIZE)),
            degraded_warned: Cell::new(false),
        };
        CertgateRoot {
            policy: None,
            shared: Rc::new(shared),
        }
    }
}

impl Context for CertgateRoot {}

impl RootContext for CertgateRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        // Debug logs cost a hostcall each: emit them only when the host would print them.
        if let Ok(level) = proxy_wasm::hostcalls::get_log_level() {
            proxy_wasm::set_log_level(level);
        }
        let configuration = self.get_plugin_configuration().unwrap_or_default();
        match config::compile(&configuration) {
            Ok(policy) => {
                log::info!("certgate: configured with {} routes", policy.routes.len());
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

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(CertgateHttp {
            policy: self.policy.clone(),
            shared: Rc::clone(&self.shared),
        }))
    }
}

struct CertgateHttp {
    /// `None` only if the host creates streams for a plugin whose configuration it refused.
    policy: Option<Rc<Policy>>,
    shared: Rc<Shared>,
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
        let route_name = policy
            .uses_route_names()
            .then(|| host::property_string(&["xds", "route_name"]))
            .flatten();
        let request = RequestFacts {
            route_name: route_name.as_deref(),
            path: pairs::first_value(&headers, ":path").unwrap_or_default(),
            authority: pairs::first_value(&headers, ":authority").unwrap_or_default(),
            method: pairs::first_value(&headers, ":method").unwrap_or_default(),
        };
        let route = policy.select_route(&request);
        let identity = self.connection_identity(&policy);
        let decision = policy.decide(route, identity.as_peer());
        log_decision(&policy, &decision, &identity);
        if decision.is_denied() {
            self.deny(&policy, &decision, &headers);
            return Action::Pause;
        }
        Action::Continue
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

impl CertgateHttp {
    /// Reads the TLS peer: presented? validated? then its identity, parsed once per certificate.
    fn connection_identity(&self, policy: &Policy) -> ConnectionIdentity {
        if host::property_bool(&["connection", "mtls"]) != Some(true) {
            return ConnectionIdentity::NoCertificate;
        }
        match host::property_bool(&["connection", "peer_certificate_valid"]) {
            Some(true) => {}
            None if policy.assume_presented_certs_validated => {}
            Some(false) | None => return ConnectionIdentity::NotValidated,
        }
        let digest = host::property_string(&["connection", "sha256_peer_certificate_digest"])
            .unwrap_or_default();
        if let Some(identity) = self.shared.identities.borrow_mut().get(digest.as_str()) {
            return ConnectionIdentity::Identified(identity);
        }
        let identity = match host::property(&["connection", "peer_certificate"]) {
            Some(pem) => match PeerIdentity::from_pem(&pem) {
                Ok(identity) => identity,
                Err(error) => {
                    log::warn!("certgate: peer certificate {digest} is unreadable: {error}");
                    return ConnectionIdentity::Unreadable;
                }
            },
            None => self.degraded_identity(&digest),
        };
        let identity = Rc::new(identity);
        self.shared
            .identities
            .borrow_mut()
            .insert(digest, Rc::clone(&identity));
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

    fn deny(&self, policy: &Policy, decision: &Decision, headers: &HeaderPairs<'_>) {
        let response = &policy.deny_response;
        let request_id = pairs::first_value(headers, "x-request-id").unwrap_or_default();
        let body = response.body(decision.reason, request_id);
        let mut reply_headers = vec![("content-type", response.content_type.as_str())];
        if response.expose_reason {
            reply_headers.push(("x-certgate-reason", decision.reason.as_str()));
        }
        self.send_http_response(
            u32::from(response.status),
            reply_headers,
            Some(body.as_bytes()),
        );
    }
}

fn log_decision(policy: &Policy, decision: &Decision, identity: &ConnectionIdentity) {
    if log::log_enabled!(log::Level::Debug) {
        let route = decision
            .route
            .and_then(|index| policy.routes.get(index))
            .map_or("-", |r| r.name.as_str());
        let principal = match identity {
            ConnectionIdentity::Identified(identity) => identity.principal().unwrap_or("-"),
            _ => "-",
        };
        log::debug!(
            "certgate: {} route={route} reason={} identity={principal}",
            decision.verdict.as_str(),
            decision.reason
        );
    }
}
