//! The access rules, compiled, and the decision they make for a request and its peer; what a denial
//! answers.

use crate::decide::decision::{AllowReason, Decision, DenyReason, Verdict, GRPC_UNAUTHENTICATED};
use crate::decide::matcher::MatcherSet;
use crate::decide::route::{RequestFacts, RouteMatch};
use crate::encoding::json::json_string;
use crate::identity::peer::Peer;
use crate::identity::PeerIdentity;

/// `enforce` denies; `audit` records what it would have denied and lets it through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Mode {
    #[default]
    Enforce,
    Audit,
}

impl Mode {
    /// The configuration names, the one source of truth for reading and writing them.
    pub(crate) const NAMES: &'static [(&'static str, Self)] =
        &[("enforce", Mode::Enforce), ("audit", Mode::Audit)];
}

/// What happens to a request that no route matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum DefaultAction {
    Allow,
    #[default]
    Deny,
}

impl DefaultAction {
    /// The configuration names, the one source of truth for reading and writing them.
    pub(crate) const NAMES: &'static [(&'static str, Self)] = &[
        ("allow", DefaultAction::Allow),
        ("deny", DefaultAction::Deny),
    ];
}

/// What a request whose SNI names another host than its `:authority` gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum SniHostMismatch {
    /// Counted and logged, then decided as usual.
    #[default]
    Log,
    /// Denied with reason `sni_host_mismatch`.
    Deny,
}

impl SniHostMismatch {
    /// The configuration names, the one source of truth for reading and writing them.
    pub(crate) const NAMES: &'static [(&'static str, Self)] = &[
        ("log", SniHostMismatch::Log),
        ("deny", SniHostMismatch::Deny),
    ];
}

/// The local reply of a denied request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DenyResponse {
    pub(crate) status: u16,
    /// A fixed body; `None` for the default JSON body.
    pub(crate) body: Option<String>,
    pub(crate) content_type: String,
    pub(crate) expose_reason: bool,
    /// A fixed gRPC status for gRPC callers; `None` chooses it per reason.
    pub(crate) grpc_status: Option<u32>,
    /// A fixed `grpc-message`; `None` for the default one.
    pub(crate) grpc_message: Option<String>,
}

impl DenyResponse {
    /// The body to send: the configured one, or `{"error":"forbidden","request_id":…}` with the
    /// reason added when `expose_reason` is set.
    pub(crate) fn body(&self, reason: DenyReason, request_id: &str) -> String {
        if let Some(body) = &self.body {
            return body.clone();
        }
        let request_id = json_string(request_id);
        if self.expose_reason {
            format!(r#"{{"error":"forbidden","reason":"{reason}","request_id":{request_id}}}"#)
        } else {
            format!(r#"{{"error":"forbidden","request_id":{request_id}}}"#)
        }
    }

    /// The gRPC status a denial for `reason` answers a gRPC caller with.
    pub(crate) fn grpc_status_for(&self, reason: DenyReason) -> u32 {
        self.grpc_status.unwrap_or_else(|| reason.grpc_status())
    }

    /// What a gRPC caller is answered: the gRPC status (configured, or per reason) and the
    /// `grpc-message` (configured, or the status's name, the reason when `expose_reason` is set,
    /// and the request id).
    pub(crate) fn grpc(&self, reason: DenyReason, request_id: &str) -> (u32, String) {
        let status = self.grpc_status_for(reason);
        if let Some(message) = &self.grpc_message {
            return (status, message.clone());
        }
        let what = if reason.grpc_status() == GRPC_UNAUTHENTICATED {
            "unauthenticated"
        } else {
            "permission denied"
        };
        let message = if self.expose_reason {
            format!("certgate: {what}: {reason} (request {request_id})")
        } else {
            format!("certgate: {what} (request {request_id})")
        };
        (status, message)
    }
}

/// Whether a request is a gRPC call (`content-type: application/grpc`, or `application/grpc+…`), which
/// Envoy answers with a gRPC status rather than an HTTP error.
pub(crate) fn is_grpc(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|value| {
        let value = value.trim_start();
        value
            .get(..16)
            .is_some_and(|head| head.eq_ignore_ascii_case("application/grpc"))
            && matches!(value.as_bytes().get(16), None | Some(b'+' | b';'))
    })
}

/// One route of the policy, compiled.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) name: String,
    pub(crate) route_match: RouteMatch,
    pub(crate) require_client_cert: bool,
    /// `None`: any validated certificate is admitted.
    pub(crate) allow: Option<MatcherSet>,
    pub(crate) deny: MatcherSet,
    pub(crate) mode: Mode,
}

/// The access rules: the routes in order, what a request no route matches gets, and how a route's
/// rules read a certificate.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    pub(crate) mode: Mode,
    pub(crate) default_action: DefaultAction,
    pub(crate) routes: Vec<Route>,
    pub(crate) wildcard_certs: bool,
}

impl AccessPolicy {
    /// The index of the first route whose `match` fits the request.
    pub fn select_route(&self, request: &RequestFacts<'_>) -> Option<usize> {
        let path = request.path_only();
        self.routes
            .iter()
            .position(|route| route.route_match.matches(request, path))
    }

    /// Decides for a request on a route (from [`AccessPolicy::select_route`]) with what is known of its peer.
    pub fn decide(&self, route: Option<usize>, peer: Peer<&PeerIdentity>) -> Decision {
        let Some(selected) = route.and_then(|index| self.routes.get(index)) else {
            let judgement = match self.default_action {
                DefaultAction::Allow => Ok(AllowReason::NoRoute),
                DefaultAction::Deny => Err(DenyReason::NoRoute),
            };
            return decision(judgement, self.mode, None);
        };
        let judgement = match peer {
            Peer::NoCertificate if selected.require_client_cert => Err(DenyReason::NoClientCert),
            Peer::NoCertificate => Ok(AllowReason::ClientCertOptional),
            Peer::NotValidated => Err(DenyReason::CertNotValidated),
            Peer::Unreadable => Err(DenyReason::CertUnreadable),
            Peer::Expired(_) => Err(DenyReason::CertExpired),
            Peer::NotYetValid(_) => Err(DenyReason::CertNotYetValid),
            Peer::Identified(identity) => selected.judge(identity, self.wildcard_certs),
        };
        decision(judgement, selected.mode, route)
    }

    /// The denial of a request whose SNI does not cover its `:authority` (audited in audit mode).
    pub(crate) fn deny_sni_host_mismatch(&self, route: Option<usize>) -> Decision {
        let mode = route
            .and_then(|index| self.routes.get(index))
            .map_or(self.mode, |route| route.mode);
        decision(Err(DenyReason::SniHostMismatch), mode, route)
    }
}

impl Route {
    /// Deny rules first, then the allow list.
    fn judge(
        &self,
        identity: &PeerIdentity,
        wildcard_certs: bool,
    ) -> Result<AllowReason, DenyReason> {
        if let Some(rule) = self.deny.first_hit(identity, wildcard_certs) {
            return Err(DenyReason::DeniedByRule { rule });
        }
        match &self.allow {
            None => Ok(AllowReason::ValidatedCert),
            Some(allow) => match allow.first_hit(identity, wildcard_certs) {
                Some(rule) => Ok(AllowReason::AllowlistMatch { rule }),
                None => Err(DenyReason::NotInAllowlist),
            },
        }
    }
}

/// The decision for a judgement on a route (or the policy) in `mode`.
fn decision(
    judgement: Result<AllowReason, DenyReason>,
    mode: Mode,
    route: Option<usize>,
) -> Decision {
    let verdict = match (judgement, mode) {
        (Ok(reason), _) => Verdict::Allow(reason),
        (Err(reason), Mode::Enforce) => Verdict::Deny(reason),
        (Err(reason), Mode::Audit) => Verdict::AuditDeny(reason),
    };
    Decision { verdict, route }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types() {
        for grpc in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC;x=1",
        ] {
            assert!(is_grpc(Some(grpc)), "{grpc}");
        }
        for other in [
            "application/grpc-web",
            "application/json",
            "application/grp",
            "",
        ] {
            assert!(!is_grpc(Some(other)), "{other}");
        }
        assert!(!is_grpc(None));
    }

    #[test]
    fn grpc_status_per_reason() {
        use crate::decide::decision::GRPC_PERMISSION_DENIED;
        let expected = [
            (DenyReason::NoClientCert, GRPC_UNAUTHENTICATED),
            (DenyReason::CertNotValidated, GRPC_UNAUTHENTICATED),
            (DenyReason::CertUnreadable, GRPC_UNAUTHENTICATED),
            (DenyReason::CertExpired, GRPC_UNAUTHENTICATED),
            (DenyReason::CertNotYetValid, GRPC_UNAUTHENTICATED),
            (DenyReason::NoRoute, GRPC_PERMISSION_DENIED),
            (DenyReason::DeniedByRule { rule: 0 }, GRPC_PERMISSION_DENIED),
            (DenyReason::NotInAllowlist, GRPC_PERMISSION_DENIED),
            (DenyReason::SniHostMismatch, GRPC_PERMISSION_DENIED),
        ];
        for (reason, status) in expected {
            assert_eq!(reason.grpc_status(), status, "{reason}");
        }
    }
}
