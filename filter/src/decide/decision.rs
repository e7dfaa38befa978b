//! What certgate decided for a request, and why: the verdict, its reason, the route, the rule.

use std::fmt;

/// The outcome for the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    /// Would have been denied, but the route (or the policy) is in audit mode: forwarded and recorded.
    AuditDeny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::AuditDeny => "audit_deny",
        }
    }
}

/// Why the verdict is what it is. The names are the public vocabulary of metrics, logs and headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// An allow matcher hit.
    AllowlistMatch,
    /// The route has no allow list and the certificate was validated.
    ValidatedCert,
    /// No certificate, and the route does not require one.
    ClientCertOptional,
    /// No route matched; `default_action` decided.
    NoRoute,
    NoClientCert,
    CertNotValidated,
    /// A certificate was presented and validated but could not be read.
    CertUnreadable,
    DeniedByRule,
    NotInAllowlist,
    /// SNI named another host than `:authority`, and `sni_host_mismatch` is `deny`.
    SniHostMismatch,
    /// A certificate taken from a header is past its `notAfter`.
    CertExpired,
    /// A certificate taken from a header is before its `notBefore`.
    CertNotYetValid,
}

impl Reason {
    pub const ALL: [Reason; 12] = [
        Reason::AllowlistMatch,
        Reason::ValidatedCert,
        Reason::ClientCertOptional,
        Reason::NoRoute,
        Reason::NoClientCert,
        Reason::CertNotValidated,
        Reason::CertUnreadable,
        Reason::DeniedByRule,
        Reason::NotInAllowlist,
        Reason::SniHostMismatch,
        Reason::CertExpired,
        Reason::CertNotYetValid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::AllowlistMatch => "allowlist_match",
            Reason::ValidatedCert => "validated_cert",
            Reason::ClientCertOptional => "client_cert_optional",
            Reason::NoRoute => "no_route",
            Reason::NoClientCert => "no_client_cert",
            Reason::CertNotValidated => "cert_not_validated",
            Reason::CertUnreadable => "cert_unreadable",
            Reason::DeniedByRule => "denied_by_rule",
            Reason::NotInAllowlist => "not_in_allowlist",
            Reason::SniHostMismatch => "sni_host_mismatch",
            Reason::CertExpired => "cert_expired",
            Reason::CertNotYetValid => "cert_not_yet_valid",
        }
    }
}

/// gRPC's `UNAUTHENTICATED`: the caller has no valid credentials.
pub const GRPC_UNAUTHENTICATED: u32 = 16;
/// gRPC's `PERMISSION_DENIED`: the caller's identity may not make this call.
pub const GRPC_PERMISSION_DENIED: u32 = 7;

impl Reason {
    /// The gRPC status a denial for this reason answers a gRPC caller with: `UNAUTHENTICATED` when
    /// no usable certificate was presented, `PERMISSION_DENIED` when the identity was refused.
    pub fn grpc_status(self) -> u32 {
        match self {
            Reason::NoClientCert
            | Reason::CertNotValidated
            | Reason::CertUnreadable
            | Reason::CertExpired
            | Reason::CertNotYetValid => GRPC_UNAUTHENTICATED,
            Reason::AllowlistMatch
            | Reason::ValidatedCert
            | Reason::ClientCertOptional
            | Reason::NoRoute
            | Reason::DeniedByRule
            | Reason::NotInAllowlist
            | Reason::SniHostMismatch => GRPC_PERMISSION_DENIED,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which list a matcher that decided belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleList {
    Allow,
    Deny,
}

/// The matcher that decided: its list and its index there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleHit {
    pub list: RuleList,
    pub index: usize,
}

/// A decision: verdict, reason, the route that matched (its index in the policy), the rule that hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: Reason,
    pub route: Option<usize>,
    pub rule: Option<RuleHit>,
}

impl Decision {
    pub fn is_denied(&self) -> bool {
        self.verdict == Verdict::Deny
    }
}
