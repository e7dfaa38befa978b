//! The whole compiled configuration, one part per stage of a request's data flow: where identities
//! come from and whom to believe (identity), the access rules and the reply to a denial (decide),
//! the forwarding headers (rewrite), and what is recorded (record). The `config` module builds it.

use crate::decide::access::{AccessPolicy, DenyResponse, SniHostMismatch};
use crate::decide::trust::TrustedProxies;
use crate::identity::resumption::Resumption;
use crate::identity::sources::IdentitySource;
use crate::record::Telemetry;
use crate::rewrite::forwarding::Forwarding;

/// The whole compiled configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The routes and their rules.
    pub access: AccessPolicy,
    pub(crate) deny_response: DenyResponse,
    pub(crate) trusted_proxies: TrustedProxies,
    pub(crate) identity_sources: Vec<IdentitySource>,
    /// On Envoys before 1.39 (no `connection.peer_certificate_valid`), treat a presented certificate
    /// as validated. Sound only when the listener requires and verifies client certificates.
    pub(crate) assume_presented_certs_validated: bool,
    /// What a certificate Envoy reports not validated on a resumed TLS session gets.
    pub(crate) resumption: Resumption,
    pub forwarding: Forwarding,
    pub telemetry: Telemetry,
    pub(crate) sni_host_mismatch: SniHostMismatch,
    /// Whether any route matches on Envoy's route name, so the glue must fetch `xds.route_name`;
    /// worked out once at configure time, read on every request.
    pub(crate) uses_route_names: bool,
}
