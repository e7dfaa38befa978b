//! What certgate knows of the peer's certificate when it decides.

use crate::identity::PeerIdentity;

/// What certgate knows of the peer's certificate when it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer<'a> {
    NoCertificate,
    /// Presented, but Envoy did not validate its chain.
    NotValidated,
    /// Presented and validated, but not readable as a certificate.
    Unreadable,
    /// From a header, and past its validity period.
    Expired(&'a PeerIdentity),
    /// From a header, and before its validity period.
    NotYetValid(&'a PeerIdentity),
    Identified(&'a PeerIdentity),
}
