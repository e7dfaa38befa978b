//! The downstream connection a request arrives on: addresses, connection id and TLS session.

use crate::tls::{Certificate, Tls};
use std::net::SocketAddr;
use std::sync::Arc;

/// A downstream connection as Envoy's listener accepted it.
///
/// ```
/// use host_harness::Connection;
/// let plain = Connection::plain().source("203.0.113.7:41000".parse().unwrap());
/// assert!(plain.tls_session().is_none());
/// ```
#[derive(Debug, Clone)]
pub struct Connection {
    pub(crate) id: u64,
    pub(crate) source: SocketAddr,
    pub(crate) destination: SocketAddr,
    // Shared so that opening a stream per request does not copy the certificates.
    pub(crate) tls: Option<Arc<Tls>>,
}

impl Connection {
    /// Plain HTTP from `127.0.0.1:50000` to `127.0.0.1:10000`, connection id 1.
    pub fn plain() -> Connection {
        Connection {
            id: 1,
            source: SocketAddr::from(([127, 0, 0, 1], 50000)),
            destination: SocketAddr::from(([127, 0, 0, 1], 10000)),
            tls: None,
        }
    }

    /// A TLS connection with the given session (same default addresses as [`Connection::plain`]).
    pub fn tls(tls: Tls) -> Connection {
        Connection {
            tls: Some(Arc::new(tls)),
            ..Connection::plain()
        }
    }

    /// Mutual TLS 1.3 with a validated client certificate: the common case.
    pub fn mtls(peer: Certificate) -> Connection {
        Connection::tls(Tls::new().peer_certificate(peer))
    }

    pub fn id(mut self, id: u64) -> Connection {
        self.id = id;
        self
    }

    /// The client's address (Envoy's remote address).
    pub fn source(mut self, source: SocketAddr) -> Connection {
        self.source = source;
        self
    }

    /// The listener's address (Envoy's local address).
    pub fn destination(mut self, destination: SocketAddr) -> Connection {
        self.destination = destination;
        self
    }

    pub fn tls_session(&self) -> Option<&Tls> {
        self.tls.as_deref()
    }

    /// Whether the client presented a certificate (`connection.mtls`).
    pub(crate) fn mtls_presented(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.peer.is_some())
    }
}
