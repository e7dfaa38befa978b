//! What a plugin instance remembers between requests, behind a small [`Host`] trait so it runs and
//! is tested natively: each connection's facts (read once per connection, not per request), each
//! certificate's identity (parsed once per certificate), the certificates Envoy validated (for
//! resumed sessions), the host's clock, and which warnings were given already.
//!
//! A connection's facts never change while it lives (Envoy allows no renegotiation downstream);
//! what was derived under one policy is dropped when another replaces it. On Envoys that do not
//! hand over the certificate, the identity falls back to Envoy's first-SAN attributes.

use crate::collections::cache::TwoGenerationCache;
use crate::facts::address::PeerAddress;
use crate::identity::peer::Peer;
use crate::identity::resumption::{Ledger, Scope, SharedStore, Validation};
use crate::identity::PeerIdentity;
use crate::policy::Policy;
use crate::record::warnings::WarnOnce;
use crate::rewrite::forwarded::ForwardedMode;
use crate::rewrite::forwarding::RenderedIdentity;
use crate::rewrite::HeaderEdit;
use std::rc::Rc;

/// How many parsed certificates a session keeps.
const IDENTITY_CACHE_SIZE: usize = 512;
/// How many connections' facts a session keeps (a worker's busy connections, with room).
const CONNECTION_CACHE_SIZE: usize = 1024;
/// How many connections the once-only warnings remember.
const WARNED_CACHE_SIZE: usize = 256;

/// What the session and the request path ask of the host: properties, shared data, the clock, the
/// request's header map, the writes a request makes, and foreign functions.
pub(crate) trait Host {
    /// A property's value; `None` when absent.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// A shared-data value (shared by every VM of the plugin); `None` when absent or refused.
    fn shared_data(&self, key: &str) -> Option<Vec<u8>>;
    /// Writes a shared-data value; `false` when refused.
    fn set_shared_data(&self, key: &str, value: &[u8]) -> bool;
    /// The host's clock in Unix seconds; `None` when unreadable.
    fn now(&self) -> Option<i64>;
    /// The whole request header map, pairs-encoded; empty when unreadable.
    fn request_headers(&self) -> Vec<u8>;
    /// Replaces the whole request header map with a pairs-encoded one; `false` when refused.
    fn set_request_headers(&self, encoded: &[u8]) -> bool;
    /// Applies one edit to the request headers; `false` when refused.
    fn edit_request_header(&self, edit: HeaderEdit<'_>) -> bool;
    /// Sets filter state `name` (Envoy stores it as `wasm.<name>`); `false` when refused.
    fn set_filter_state(&self, name: &str, value: &[u8]) -> bool;
    /// Calls the host's foreign function `name` (its results are dropped); `false` when refused.
    fn call_foreign_function(&self, name: &str, arguments: &[u8]) -> bool;

    /// A one-byte boolean property.
    fn property_bool(&self, path: &[&str]) -> Option<bool> {
        self.property(path)
            .map(|value| value.first().is_some_and(|byte| *byte != 0))
    }

    /// An integer property (8 bytes, little-endian), such as `connection.id`.
    fn property_u64(&self, path: &[&str]) -> Option<u64> {
        self.property(path)
            .and_then(|value| value.get(..8).and_then(|bytes| bytes.try_into().ok()))
            .map(u64::from_le_bytes)
    }

    /// A string property (lossy for the rare non-UTF-8 byte).
    fn property_string(&self, path: &[&str]) -> Option<String> {
        self.property(path)
            .map(|value| String::from_utf8_lossy(&value).into_owned())
    }
}

/// What certgate keeps about a connection between its requests, each fact read once.
#[derive(Debug)]
pub(crate) struct KnownConnection {
    /// The policy the facts were derived under (the rendering follows its forwarding options).
    pub(crate) policy: Rc<Policy>,
    /// The peer's certificate, its identity shared with the certificate cache.
    pub(crate) peer: Peer<Rc<PeerIdentity>>,
    pub(crate) tls_version: Option<String>,
    pub(crate) sni: Option<String>,
    pub(crate) source_address: Option<String>,
    /// `source.address` has port 0: Envoy took it from X-Forwarded-For, which changes per request.
    pub(crate) address_from_headers: bool,
    pub(crate) local_address: Option<String>,
    /// The certificate's forwarding-header values.
    pub(crate) rendered: Option<RenderedIdentity>,
}

/// What a connection is warned about once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Warning {
    Spoofing,
    SniHostMismatch,
}

impl Warning {
    fn key(self, connection_id: u64) -> u64 {
        connection_id << 1 | self as u64
    }
}

/// The memory of one plugin instance, shared by its streams.
#[derive(Debug)]
pub(crate) struct Session {
    identities: TwoGenerationCache<String, Rc<PeerIdentity>>,
    connections: TwoGenerationCache<u64, Rc<KnownConnection>>,
    /// Connections already warned about (id and [`Warning`] in one key).
    warned_connections: WarnOnce,
    /// Whether the "identities come from Envoy's attributes" warning was given already.
    attributes_warned: bool,
    /// Whether the "source.address comes from a header" warning was given already.
    header_address_warned: bool,
    /// The certificates Envoy validated, for resumed sessions (facts about Envoy, kept across
    /// reconfigurations).
    ledger: Ledger,
    /// The host's clock in Unix seconds, read on each tick and for each newly parsed certificate:
    /// never per request.
    now: i64,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            identities: TwoGenerationCache::new(IDENTITY_CACHE_SIZE),
            connections: TwoGenerationCache::new(CONNECTION_CACHE_SIZE),
            warned_connections: WarnOnce::new(WARNED_CACHE_SIZE),
            attributes_warned: false,
            header_address_warned: false,
            ledger: Ledger::default(),
            now: 0,
        }
    }
}

impl Session {
    /// A new policy replaces the old one: what the caches hold was derived under the old one.
    pub(crate) fn reconfigured(&mut self) {
        self.connections = TwoGenerationCache::new(CONNECTION_CACHE_SIZE);
        self.identities = TwoGenerationCache::new(IDENTITY_CACHE_SIZE);
    }

    /// Reads the host's clock; the last reading stays when the host gives none.
    pub(crate) fn read_clock(&mut self, host: &impl Host) {
        if let Some(now) = host.now() {
            self.now = now;
        }
    }

    /// The host's clock as last read, in Unix seconds.
    pub(crate) fn now(&self) -> i64 {
        self.now
    }

    /// Whether `warning` is given for the first time on this connection (it is given from now on).
    pub(crate) fn first_warning(&mut self, warning: Warning, connection_id: u64) -> bool {
        self.warned_connections
            .first_time(warning.key(connection_id))
    }

    /// Whether the "source.address comes from a header" warning is given for the first time.
    pub(crate) fn first_header_address_warning(&mut self) -> bool {
        !std::mem::replace(&mut self.header_address_warned, true)
    }

    /// The connection's facts: from the cache when its id was seen before under this policy, else
    /// read (and kept). Without a `connection.id` nothing is kept, as two connections could not be
    /// told apart.
    pub(crate) fn connection(
        &mut self,
        host: &impl Host,
        policy: &Rc<Policy>,
        connection_id: Option<u64>,
    ) -> Rc<KnownConnection> {
        // A stream opened before a reconfiguration still runs the old policy: facts derived under
        // the other policy are not its own.
        if let Some(known) = connection_id
            .and_then(|id| self.connections.get(&id))
            .filter(|known| Rc::ptr_eq(&known.policy, policy))
        {
            return known;
        }
        let tls_version = host.property_string(&["connection", "tls_version"]);
        // SNI only exists on TLS connections: no hostcall for it on plaintext.
        let sni = tls_version
            .as_ref()
            .and_then(|_| host.property_string(&["connection", "requested_server_name"]));
        let source_address = host.property_string(&["source", "address"]);
        let address_from_headers = matches!(
            PeerAddress::from_source_address(source_address.as_deref()),
            PeerAddress::FromHeaders(_)
        );
        let mut listener = LazyProperty::new(&["destination", "address"]);
        let peer = self.connection_peer(host, policy, &mut listener);
        let local_address = (policy.forwarding.forwarded != ForwardedMode::Off)
            .then(|| listener.get(host).map(str::to_owned))
            .flatten();
        let rendered = peer
            .verified()
            .map(|identity| RenderedIdentity::new(&policy.forwarding, identity));
        let known = Rc::new(KnownConnection {
            policy: Rc::clone(policy),
            peer,
            rendered,
            tls_version,
            sni,
            source_address,
            address_from_headers,
            local_address,
        });
        if let Some(id) = connection_id {
            self.connections.insert(id, Rc::clone(&known));
        }
        known
    }

    /// Reads the TLS peer: presented? validated (on this connection, or recently in its scope for a
    /// resumed session)? then its identity, parsed once per certificate.
    fn connection_peer<H: Host>(
        &mut self,
        host: &H,
        policy: &Policy,
        listener: &mut LazyProperty<'_>,
    ) -> Peer<Rc<PeerIdentity>> {
        if host.property_bool(&["connection", "mtls"]) != Some(true) {
            return Peer::NoCertificate;
        }
        let reported = host.property_bool(&["connection", "peer_certificate_valid"]);
        let mut digest = None;
        let mut filter_chain = LazyProperty::new(&["xds", "filter_chain_name"]);
        let now = self.now;
        let ledger = &mut self.ledger;
        let validation =
            policy
                .resumption
                .classify(reported, policy.assume_presented_certs_validated, || {
                    let digest = digest.insert(peer_digest(host));
                    let scope = Scope {
                        local_address: listener.get(host).unwrap_or_default(),
                        filter_chain: filter_chain.get(host).unwrap_or_default(),
                    };
                    ledger.knows(
                        &Store(host),
                        &scope,
                        digest,
                        now,
                        policy.resumption.validity_secs,
                    )
                });
        if !validation.admitted() {
            return Peer::NotValidated;
        }
        let digest = digest.unwrap_or_else(|| peer_digest(host));
        let identity = self.identity(host, &digest);
        if let (Validation::Validated, Peer::Identified(identity)) = (validation, &identity) {
            if policy.resumption.trusts() {
                let scope = Scope {
                    local_address: listener.get(host).unwrap_or_default(),
                    filter_chain: filter_chain.get(host).unwrap_or_default(),
                };
                let recorded =
                    self.ledger
                        .record(&Store(host), &scope, &digest, identity.not_after, self.now);
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
    fn identity(&mut self, host: &impl Host, digest: &str) -> Peer<Rc<PeerIdentity>> {
        if let Some(identity) = self.identities.get(digest) {
            return Peer::Identified(identity);
        }
        // A new certificate: its expiry is judged on a fresh clock.
        self.read_clock(host);
        let identity = match host.property(&["connection", "peer_certificate"]) {
            Some(pem) => match PeerIdentity::from_pem(&pem) {
                Ok(identity) => identity,
                Err(error) => {
                    log::warn!("certgate: peer certificate {digest} is unreadable: {error}");
                    return Peer::Unreadable;
                }
            },
            None => self.identity_from_attributes(host, digest),
        };
        let identity = Rc::new(identity);
        self.identities
            .insert(digest.to_owned(), Rc::clone(&identity));
        Peer::Identified(identity)
    }

    /// Envoy before 1.38 does not hand over the certificate: fall back to its first-SAN attributes.
    fn identity_from_attributes(&mut self, host: &impl Host, digest: &str) -> PeerIdentity {
        if !std::mem::replace(&mut self.attributes_warned, true) {
            log::warn!(
                "certgate: this Envoy does not expose connection.peer_certificate (Envoy 1.38+); matching \
                 is degraded to the first URI and DNS SAN and the subject"
            );
        }
        let attribute = |name: &str| {
            host.property_string(&["connection", name])
                .unwrap_or_default()
        };
        PeerIdentity::from_envoy_attributes(
            &attribute("subject_peer_certificate"),
            &attribute("uri_san_peer_certificate"),
            &attribute("dns_san_peer_certificate"),
            digest,
        )
    }
}

/// Envoy's SHA-256 digest of the peer certificate (lowercase hex), empty when it has none.
fn peer_digest(host: &impl Host) -> String {
    host.property_string(&["connection", "sha256_peer_certificate_digest"])
        .unwrap_or_default()
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

    fn get(&mut self, host: &impl Host) -> Option<&str> {
        let path = self.path;
        self.value
            .get_or_insert_with(|| host.property_string(path))
            .as_deref()
    }
}

/// The host's shared data, for the record of validated certificates.
struct Store<'h, H>(&'h H);

impl<H: Host> SharedStore for Store<'_, H> {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.0.shared_data(key)
    }

    fn set(&self, key: &str, value: &[u8]) -> bool {
        self.0.set_shared_data(key, value)
    }
}
