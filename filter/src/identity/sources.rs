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
    pub(crate) const NAMES: &'static [(&'static str, Self)] = &[
        ("connection", IdentitySource::Connection),
        ("xfcc", IdentitySource::Xfcc),
        ("alb", IdentitySource::Alb),
    ];

    pub(crate) fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, source)| *source == self)
            .map_or("", |(name, _)| name)
    }

    /// Whether the source reads request headers, believed only from a trusted peer.
    pub(crate) fn reads_headers(self) -> bool {
        self != IdentitySource::Connection
    }
}

/// The peer as the chosen source shows it, owning what it parsed from headers.
pub(crate) type ResolvedPeer<'a> = Peer<Cow<'a, PeerIdentity>>;

/// The first source, in order, that says anything about a certificate; `None` when none does.
pub(crate) fn resolve<'a>(
    sources: &[IdentitySource],
    connection: Peer<&'a PeerIdentity>,
    headers: &HeaderPairs<'_>,
    peer_trusted: bool,
    now: i64,
) -> (ResolvedPeer<'a>, Option<IdentitySource>) {
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
    (Peer::NoCertificate, None)
}

fn from_connection(connection: Peer<&PeerIdentity>) -> Option<ResolvedPeer<'_>> {
    match connection {
        Peer::NoCertificate => None,
        connection => Some(connection.map(|identity| Cow::Borrowed(*identity))),
    }
}

/// The right-most element of XFCC (several headers read as one list), set by the trusted peer.
fn from_xfcc<'a>(headers: &HeaderPairs<'_>, now: i64) -> Option<ResolvedPeer<'a>> {
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
fn from_alb<'a>(headers: &HeaderPairs<'_>, now: i64) -> Option<ResolvedPeer<'a>> {
    let mut leaves = headers
        .iter()
        .filter(|(key, _)| key.eq_ignore_ascii_case(alb::LEAF_HEADER.as_bytes()));
    let (_, leaf) = leaves.next()?;
    if leaves.next().is_some() {
        return Some(Peer::Unreadable);
    }
    Some(checked(alb::leaf_identity(leaf).ok(), now))
}

/// A certificate from a header, checked against its validity period (when it states one).
fn checked<'a>(identity: Option<PeerIdentity>, now: i64) -> ResolvedPeer<'a> {
    match identity {
        None => Peer::Unreadable,
        Some(identity) if identity.not_after.is_some_and(|end| end < now) => {
            Peer::Expired(Cow::Owned(identity))
        }
        Some(identity) if identity.not_before.is_some_and(|start| start > now) => {
            Peer::NotYetValid(Cow::Owned(identity))
        }
        Some(identity) => Peer::Identified(Cow::Owned(identity)),
    }
}
