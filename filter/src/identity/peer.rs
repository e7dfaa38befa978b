//! What certgate knows of the peer's certificate: one state type, [`Peer`], generic over how its
//! identity is held: borrowed (`Peer<&PeerIdentity>`, what a decision reads), owned by the
//! per-connection cache (`Peer<Rc<PeerIdentity>>`), or either (`Peer<Cow<PeerIdentity>>`, what
//! an identity source resolves to: the connection's, or one parsed from a header).

use crate::identity::PeerIdentity;
use std::ops::Deref;

/// The peer's certificate, as far as certgate knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer<I> {
    NoCertificate,
    /// Presented, but Envoy did not validate its chain.
    NotValidated,
    /// Presented and validated, but not readable as a certificate.
    Unreadable,
    /// From a header, and past its validity period.
    Expired(I),
    /// From a header, and before its validity period.
    NotYetValid(I),
    Identified(I),
}

impl<I: Deref<Target = PeerIdentity>> Peer<I> {
    /// The same state, borrowing the identity.
    pub(crate) fn as_ref(&self) -> Peer<&PeerIdentity> {
        self.map(|identity| &**identity)
    }

    /// The certificate's identity, when one was read (valid or not).
    pub(crate) fn identity(&self) -> Option<&PeerIdentity> {
        match self {
            Peer::Expired(identity) | Peer::NotYetValid(identity) | Peer::Identified(identity) => {
                Some(identity)
            }
            Peer::NoCertificate | Peer::NotValidated | Peer::Unreadable => None,
        }
    }

    /// The identity certgate may vouch for (identified and in its validity period).
    pub(crate) fn verified(&self) -> Option<&PeerIdentity> {
        match self {
            Peer::Identified(identity) => Some(identity),
            _ => None,
        }
    }
}

impl<I> Peer<I> {
    /// The same state, with the identity held as `hold` makes it.
    pub(crate) fn map<'s, J>(&'s self, hold: impl FnOnce(&'s I) -> J) -> Peer<J> {
        match self {
            Peer::NoCertificate => Peer::NoCertificate,
            Peer::NotValidated => Peer::NotValidated,
            Peer::Unreadable => Peer::Unreadable,
            Peer::Expired(identity) => Peer::Expired(hold(identity)),
            Peer::NotYetValid(identity) => Peer::NotYetValid(hold(identity)),
            Peer::Identified(identity) => Peer::Identified(hold(identity)),
        }
    }
}
