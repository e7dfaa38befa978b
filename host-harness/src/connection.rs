//! The downstream connection a request arrives on: addresses, connection id and TLS session.

use crate::tls::{Certificate, Tls};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Envoy numbers connections from one process-wide counter; so does the harness, so that a filter
/// caching facts per `connection.id` never sees two different connections under one id.
fn next_connection_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A downstream connection as Envoy's listener accepted it.
///
/// Each constructor and each builder step that changes what the connection is (addresses, TLS)
/// takes a fresh connection id, as a new connection would; clones share the id, as requests on one
/// keep-alive connection do.
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
    /// Plain HTTP from `127.0.0.1:50000` to `127.0.0.1:10000`.
    pub fn plain() -> Connection {
        Connection {
            id: next_connection_id(),
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

    /// Pins the connection id (`connection.id`), e.g. to show two requests on one connection.
    pub fn id(mut self, id: u64) -> Connection {
        self.id = id;
        self
    }

    /// The client's address (Envoy's remote address).
    pub fn source(mut self, source: SocketAddr) -> Connection {
        self.source = source;
        self.id = next_connection_id();
        self
    }

    /// The listener's address (Envoy's local address).
    pub fn destination(mut self, destination: SocketAddr) -> Connection {
        self.destination = destination;
        self.id = next_connection_id();
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
