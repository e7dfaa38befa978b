//! The downstream peer's socket address, as Envoy prints `source.address` (`10.0.0.1:51234`,
//! `[2001:db8::1]:51234`), and the one way to tell it from an address Envoy took from a header.
//!
//! Envoy sets `source.address` from X-Forwarded-For when the HTTP connection manager has
//! `use_remote_address: false` (or trusted hops). Such an address has no port (Envoy writes port 0),
//! while a TCP peer always has one: port 0 therefore means "not the socket peer", and certgate never
//! trusts it.

use crate::names::ip::canonical_ip;
use std::fmt;
use std::net::IpAddr;

/// An IP address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketAddress {
    pub ip: IpAddr,
    pub port: u16,
}

/// What `source.address` says about the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerAddress {
    /// The TCP peer of the connection.
    Socket(SocketAddress),
    /// An address Envoy derived from request headers (port 0): the HCM settings are unsound for
    /// address-based trust, and the real peer is unknown.
    FromHeaders(IpAddr),
    Unknown,
}

impl SocketAddress {
    /// Parses `ip:port` or `[ipv6]:port`; IPv4-mapped IPv6 becomes IPv4.
    pub fn parse(text: &str) -> Option<Self> {
        let (ip, port) = if let Some(rest) = text.strip_prefix('[') {
            let (ip, after) = rest.split_once(']')?;
            (ip, after.strip_prefix(':')?)
        } else {
            text.rsplit_once(':')?
        };
        Some(SocketAddress {
            ip: canonical_ip(ip.parse().ok()?),
            port: port.parse().ok()?,
        })
    }
}

impl fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.port),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

impl PeerAddress {
    /// Classifies Envoy's `source.address` (absent: `None`).
    pub(crate) fn from_source_address(text: Option<&str>) -> Self {
        match text.and_then(SocketAddress::parse) {
            Some(address) if address.port == 0 => PeerAddress::FromHeaders(address.ip),
            Some(address) => PeerAddress::Socket(address),
            None => PeerAddress::Unknown,
        }
    }

    /// The socket peer, when known.
    pub(crate) fn socket(self) -> Option<SocketAddress> {
        match self {
            PeerAddress::Socket(address) => Some(address),
            _ => None,
        }
    }
}
