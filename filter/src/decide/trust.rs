//! Which peers are trusted proxies, whose forwarding headers and forwarded identities certgate
//! believes: by their socket address, or by their connection's own verified certificate.

use crate::decide::matcher::MatcherSet;
use crate::facts::address::SocketAddress;
use crate::identity::peer::Peer;
use crate::identity::PeerIdentity;
use crate::names::ip::IpNet;

/// Peers whose forwarding headers and forwarded identities certgate believes.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies {
    pub(crate) cidrs: Vec<IpNet>,
    pub(crate) identities: MatcherSet,
}

/// Whether the peer is a trusted proxy: by its socket address, or by its connection's own verified
/// certificate.
pub(crate) fn peer_trusted(
    trusted: &TrustedProxies,
    wildcard_certs: bool,
    peer: Option<SocketAddress>,
    connection: Peer<&PeerIdentity>,
) -> bool {
    let by_address =
        peer.is_some_and(|peer| trusted.cidrs.iter().any(|cidr| cidr.contains(peer.ip)));
    let by_certificate = match connection {
        Peer::Identified(identity) => trusted
            .identities
            .first_hit(identity, wildcard_certs)
            .is_some(),
        _ => false,
    };
    by_address || by_certificate
}
