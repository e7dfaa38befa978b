//! Where the peer's identity comes from: the TLS connection, or a trusted proxy's XFCC element or
//! ALB leaf header, tried in the configured order. Headers count only from a trusted peer (by its
//! socket address or its own verified certificate); from anyone else they are a spoofing attempt,
//! never an identity. Certificates taken from headers are checked for their validity period.

use crate::facts::pairs::HeaderPairs;
use crate::identity::peer::Peer;
use crate::identity::{alb, xfcc, PeerIdentity};
use std::borrow::Cow;

/// Where a peer's identity may come from, tried in the configured order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentitySource {
    /// The certificate of the TLS connection Envoy terminated.
    Connection,
    /// The right-most XFCC element, set by a trusted proxy.
    Xfcc,
    /// The leaf certificate a trusted AWS ALB (mTLS verify mode) passes in a header.
    Alb,
}

impl IdentitySource {
    /// The configuration names, the one source of truth for reading and writing them.
    pub const NAMES: &'static [(&'static str, Self)] = &[
        ("connection", IdentitySource::Connection),
        ("xfcc", IdentitySource::Xfcc),
        ("alb", IdentitySource::Alb),
    ];

    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, source)| *source == self)
            .map_or("", |(name, _)| name)
    }

    /// Whether the source reads request headers, believed only from a trusted peer.
    pub fn reads_headers(self) -> bool {
        self != IdentitySource::Connection
    }
}

/// The peer as the chosen source shows it, owning what it parsed from headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerState<'a> {
    NoCertificate,
    NotValidated,
    Unreadable,
    Expired(Cow<'a, PeerIdentity>),
    NotYetValid(Cow<'a, PeerIdentity>),
    Identified(Cow<'a, PeerIdentity>),
}

impl PeerState<'_> {
    /// What the decision sees.
    pub fn as_peer(&self) -> Peer<'_> {
        match self {
            PeerState::NoCertificate => Peer::NoCertificate,
            PeerState::NotValidated => Peer::NotValidated,
            PeerState::Unreadable => Peer::Unreadable,
            PeerState::Expired(identity) => Peer::Expired(identity),
            PeerState::NotYetValid(identity) => Peer::NotYetValid(identity),
            PeerState::Identified(identity) => Peer::Identified(identity),
        }
    }

    /// The certificate's identity, when one was read (valid or not).
    pub fn identity(&self) -> Option<&PeerIdentity> {
        match self {
            PeerState::Expired(identity)
            | PeerState::NotYetValid(identity)
            | PeerState::Identified(identity) => Some(identity),
            _ => None,
        }
    }

    /// The identity certgate may vouch for (identified and in its validity period).
    pub fn verified(&self) -> Option<&PeerIdentity> {
        match self {
            PeerState::Identified(identity) => Some(identity),
            _ => None,
        }
    }
}

/// The first source, in order, that says anything about a certificate; `None` when none does.
pub fn resolve<'a>(
    sources: &[IdentitySource],
    connection: Peer<'a>,
    headers: &HeaderPairs<'_>,
    peer_trusted: bool,
    now: i64,
) -> (PeerState<'a>, Option<IdentitySource>) {
    for source in sources {
        let state = match source {
            IdentitySource::Connection => from_connection(connection),
            IdentitySource::Xfcc if peer_trusted => from_xfcc(headers, now),
            IdentitySource::Alb if peer_trusted => from_alb(headers, now),
            IdentitySource::Xfcc | IdentitySource::Alb => None,
        };
        if let Some(state) = state {
            return (state, Some(*source));
        }
    }
    (PeerState::NoCertificate, None)
}

fn from_connection(connection: Peer<'_>) -> Option<PeerState<'_>> {
    Some(match connection {
        Peer::NoCertificate => return None,
        Peer::NotValidated => PeerState::NotValidated,
        Peer::Unreadable => PeerState::Unreadable,
        Peer::Expired(identity) => PeerState::Expired(Cow::Borrowed(identity)),
        Peer::NotYetValid(identity) => PeerState::NotYetValid(Cow::Borrowed(identity)),
        Peer::Identified(identity) => PeerState::Identified(Cow::Borrowed(identity)),
    })
}

/// The right-most element of XFCC (several headers read as one list), set by the trusted peer.
fn from_xfcc<'a>(headers: &HeaderPairs<'_>, now: i64) -> Option<PeerState<'a>> {
    let values: Vec<&[u8]> = headers
        .iter()
        .filter(|(key, _)| key.eq_ignore_ascii_case(xfcc::HEADER.as_bytes()))
        .map(|(_, value)| *value)
        .collect();
    if values.is_empty() {
        return None;
    }
    let identity = std::str::from_utf8(&values.join(&b","[..]))
        .map_err(|_| "the header is not UTF-8".to_owned())
        .and_then(xfcc::parse)
        .and_then(|elements| {
            elements
                .last()
                .ok_or_else(|| "the header is empty".to_owned())
                .and_then(xfcc::XfccElement::identity)
        })
        .ok();
    Some(checked(identity, now))
}

/// The ALB's leaf header; two of them are ambiguous, so unreadable.
fn from_alb<'a>(headers: &HeaderPairs<'_>, now: i64) -> Option<PeerState<'a>> {
    let mut leaves = headers
        .iter()
        .filter(|(key, _)| key.eq_ignore_ascii_case(alb::LEAF_HEADER.as_bytes()));
    let (_, leaf) = leaves.next()?;
    if leaves.next().is_some() {
        return Some(PeerState::Unreadable);
    }
    Some(checked(alb::leaf_identity(leaf).ok(), now))
}

/// A certificate from a header, checked against its validity period (when it states one).
fn checked<'a>(identity: Option<PeerIdentity>, now: i64) -> PeerState<'a> {
    match identity {
        None => PeerState::Unreadable,
        Some(identity) if identity.not_after.is_some_and(|end| end < now) => {
            PeerState::Expired(Cow::Owned(identity))
        }
        Some(identity) if identity.not_before.is_some_and(|start| start > now) => {
            PeerState::NotYetValid(Cow::Owned(identity))
        }
        Some(identity) => PeerState::Identified(Cow::Owned(identity)),
    }
}
