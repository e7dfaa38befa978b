//! What certgate decided for a request, and why: allowed for an [`AllowReason`], or denied (or, in
//! audit mode, let through as it would have been denied) for a [`DenyReason`], and on which route.
//! A reason belongs to one side only, and a rule index exists only with the reasons a rule gave,
//! so no decision can say "allowed, not in the allow list".

use std::fmt;

/// Why a request is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowReason {
    /// The allow matcher at `rule` (its index in the route's `allow` list) hit.
    AllowlistMatch { rule: usize },
    /// The route has no allow list and the certificate was validated.
    ValidatedCert,
    /// No certificate, and the route does not require one.
    ClientCertOptional,
    /// No route matched and `default_action` is `allow`.
    NoRoute,
}

/// Why a request is denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// No route matched and `default_action` is `deny`.
    NoRoute,
    NoClientCert,
    CertNotValidated,
    /// A certificate was presented and validated but could not be read.
    CertUnreadable,
    /// The deny matcher at `rule` (its index in the route's `deny` list) hit.
    DeniedByRule {
        rule: usize,
    },
    NotInAllowlist,
    /// SNI named another host than `:authority`, and `sni_host_mismatch` is `deny`.
    SniHostMismatch,
    /// A certificate taken from a header is past its `notAfter`.
    CertExpired,
    /// A certificate taken from a header is before its `notBefore`.
    CertNotYetValid,
}

/// The outcome for the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow(AllowReason),
    Deny(DenyReason),
    /// Would have been denied, but the route (or the policy) is in audit mode: forwarded and recorded.
    AuditDeny(DenyReason),
}

impl Verdict {
    /// The verdict's name in metrics, records and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow(_) => "allow",
            Verdict::Deny(_) => "deny",
            Verdict::AuditDeny(_) => "audit_deny",
        }
    }

    /// The reason, in the vocabulary metrics, records and replies use.
    pub(crate) fn reason(self) -> Reason {
        match self {
            Verdict::Allow(reason) => reason.into(),
            Verdict::Deny(reason) | Verdict::AuditDeny(reason) => reason.into(),
        }
    }
}

/// Why the verdict is what it is, as one vocabulary: the names metrics, logs and headers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    AllowlistMatch,
    ValidatedCert,
    ClientCertOptional,
    NoRoute,
    NoClientCert,
    CertNotValidated,
    CertUnreadable,
    DeniedByRule,
    NotInAllowlist,
    SniHostMismatch,
    CertExpired,
    CertNotYetValid,
}

impl Reason {
    /// Every reason, for the test that each has its metric label.
    #[cfg(test)]
    pub(crate) const ALL: [Reason; 12] = [
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

impl From<AllowReason> for Reason {
    fn from(reason: AllowReason) -> Self {
        match reason {
            AllowReason::AllowlistMatch { .. } => Reason::AllowlistMatch,
            AllowReason::ValidatedCert => Reason::ValidatedCert,
            AllowReason::ClientCertOptional => Reason::ClientCertOptional,
            AllowReason::NoRoute => Reason::NoRoute,
        }
    }
}

impl From<DenyReason> for Reason {
    fn from(reason: DenyReason) -> Self {
        match reason {
            DenyReason::NoRoute => Reason::NoRoute,
            DenyReason::NoClientCert => Reason::NoClientCert,
            DenyReason::CertNotValidated => Reason::CertNotValidated,
            DenyReason::CertUnreadable => Reason::CertUnreadable,
            DenyReason::DeniedByRule { .. } => Reason::DeniedByRule,
            DenyReason::NotInAllowlist => Reason::NotInAllowlist,
            DenyReason::SniHostMismatch => Reason::SniHostMismatch,
            DenyReason::CertExpired => Reason::CertExpired,
            DenyReason::CertNotYetValid => Reason::CertNotYetValid,
        }
    }
}

/// gRPC's `UNAUTHENTICATED`: the caller has no valid credentials.
pub(crate) const GRPC_UNAUTHENTICATED: u32 = 16;
/// gRPC's `PERMISSION_DENIED`: the caller's identity may not make this call.
pub(crate) const GRPC_PERMISSION_DENIED: u32 = 7;

impl DenyReason {
    /// The gRPC status a denial for this reason answers a gRPC caller with: `UNAUTHENTICATED` when
    /// no usable certificate was presented, `PERMISSION_DENIED` when the identity was refused.
    pub(crate) fn grpc_status(self) -> u32 {
        match self {
            DenyReason::NoClientCert
            | DenyReason::CertNotValidated
            | DenyReason::CertUnreadable
            | DenyReason::CertExpired
            | DenyReason::CertNotYetValid => GRPC_UNAUTHENTICATED,
            DenyReason::NoRoute
            | DenyReason::DeniedByRule { .. }
            | DenyReason::NotInAllowlist
            | DenyReason::SniHostMismatch => GRPC_PERMISSION_DENIED,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        Reason::from(self).as_str()
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decision: the verdict and the route that matched (its index in the policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub(crate) route: Option<usize>,
}

impl Decision {
    /// Why the verdict is what it is.
    pub fn reason(&self) -> Reason {
        self.verdict.reason()
    }

    /// The reason of an enforced denial: `None` when the request goes on (allowed, or audited).
    pub(crate) fn denied(&self) -> Option<DenyReason> {
        match self.verdict {
            Verdict::Deny(reason) => Some(reason),
            Verdict::Allow(_) | Verdict::AuditDeny(_) => None,
        }
    }

    pub fn is_denied(&self) -> bool {
        self.denied().is_some()
    }
}
