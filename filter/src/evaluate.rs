//! One request from facts to outcome: peer trust, identity (from its sources), decision, header
//! rewrite, and what telemetry records. The glue gathers the facts and applies the outcome.

use crate::decide::access::{is_grpc, SniHostMismatch};
use crate::decide::decision::Decision;
use crate::decide::route::RequestFacts;
use crate::decide::trust;
use crate::facts::address::PeerAddress;
use crate::facts::pairs::{self, HeaderPairs};
use crate::identity::peer::Peer;
use crate::identity::sources::{self, IdentitySource, ResolvedPeer};
use crate::identity::PeerIdentity;
use crate::names::dns::{authority_host, canonical_name};
use crate::policy::Policy;
use crate::record::access::Record;
use crate::record::series;
use crate::record::series::Metric;
use crate::rewrite::forwarding::{self, RenderedIdentity, Rewrite, RewriteFacts};
use std::net::IpAddr;

/// What the host says about the connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionFacts<'a> {
    /// The connection's own certificate.
    pub certificate: Peer<&'a PeerIdentity>,
    /// The client presented a certificate (`connection.mtls`).
    pub mtls: bool,
    /// `connection.tls_version`; `None` on plaintext.
    pub tls_version: Option<&'a str>,
    /// `connection.requested_server_name`; `None` or empty without SNI.
    pub sni: Option<&'a str>,
    /// `source.address` as Envoy prints it.
    pub source_address: Option<&'a str>,
    /// `destination.address` (for `Forwarded: by=`); `None` when not fetched.
    pub local_address: Option<&'a str>,
    /// The certificate's header values, rendered once per connection (see [`RenderedIdentity`]);
    /// `None` renders them per request.
    pub rendered: Option<&'a RenderedIdentity>,
}

/// Everything certgate concluded about a request.
#[derive(Debug, Clone)]
pub struct Evaluation<'a> {
    pub(crate) route: Option<usize>,
    pub decision: Decision,
    pub(crate) peer: ResolvedPeer<'a>,
    pub(crate) source: Option<IdentitySource>,
    pub(crate) peer_address: PeerAddress,
    /// Whether the peer was trusted as a proxy: the rewrite has used it; the tests read it here.
    #[cfg(test)]
    pub(crate) peer_trusted: bool,
    pub(crate) client_address: Option<IpAddr>,
    pub(crate) sni_mismatch: bool,
    /// Days until the certificate's end, when a certificate with a known end was read.
    pub(crate) days_to_expiry: Option<i64>,
    /// Within `expiry_warning_days` of its end.
    pub(crate) expiring: bool,
    /// The header rewrite (to apply only if the request is forwarded) and the spoofed headers.
    pub rewrite: Rewrite<'a>,
}

/// Evaluates a request. `now`: Unix seconds.
pub fn evaluate<'a>(
    policy: &'a Policy,
    request: &RequestFacts<'_>,
    headers: &'a HeaderPairs<'a>,
    connection: &ConnectionFacts<'a>,
    now: i64,
) -> Evaluation<'a> {
    let peer_address = PeerAddress::from_source_address(connection.source_address);
    let socket_peer = peer_address.socket();
    let peer_trusted = trust::peer_trusted(
        &policy.trusted_proxies,
        policy.access.wildcard_certs,
        socket_peer,
        connection.certificate,
    );
    let (peer, source) = sources::resolve(
        &policy.identity_sources,
        connection.certificate,
        headers,
        peer_trusted,
        now,
    );
    let route = policy.access.select_route(request);
    let sni_mismatch = connection
        .sni
        .filter(|sni| !sni.is_empty())
        .is_some_and(|sni| authority_host(request.authority) != canonical_name(sni));
    let decision = if sni_mismatch && policy.sni_host_mismatch == SniHostMismatch::Deny {
        policy.access.deny_sni_host_mismatch(route)
    } else {
        policy.access.decide(route, peer.as_ref())
    };
    let days_to_expiry = peer
        .identity()
        .and_then(|identity| identity.not_after)
        .map(|end| series::days_to_expiry(end, now));
    let expiring =
        days_to_expiry.is_some_and(|days| days < i64::from(policy.telemetry.expiry_warning_days));
    let client_address = forwarding::client_address(
        policy.forwarding.xff.as_ref(),
        peer_trusted,
        headers,
        socket_peer.map(|peer| peer.ip),
    );
    let local = connection
        .local_address
        .and_then(crate::facts::address::SocketAddress::parse);
    let connection_identity = match connection.certificate {
        Peer::Identified(identity) => Some(identity),
        _ => None,
    };
    let rewrite = forwarding::rewrite(
        &policy.forwarding,
        &policy.identity_sources,
        headers,
        &RewriteFacts {
            peer_trusted,
            peer: socket_peer,
            local,
            client: client_address,
            tls: connection.tls_version.is_some_and(|v| !v.is_empty()),
            mtls: connection.mtls,
            authority: request.authority,
            connection_identity,
            rendered: connection.rendered,
            identity: peer.verified(),
            route: route_name(policy, route),
            verdict: decision.verdict,
        },
    );
    Evaluation {
        route,
        decision,
        peer,
        source,
        peer_address,
        #[cfg(test)]
        peer_trusted,
        client_address,
        sni_mismatch,
        days_to_expiry,
        expiring,
        rewrite,
    }
}

fn route_name(policy: &Policy, route: Option<usize>) -> Option<&str> {
    route
        .and_then(|index| policy.access.routes.get(index))
        .map(|route| route.name.as_str())
}

impl Evaluation<'_> {
    /// The route's name, if a route matched.
    pub(crate) fn route_name<'p>(&self, policy: &'p Policy) -> Option<&'p str> {
        route_name(policy, self.route)
    }

    /// The counter increments of this request. (The expiry histogram is observed once per
    /// certificate, not per request: see `record::warnings::SeenCertificates`.)
    pub fn metrics<'m>(
        &'m self,
        policy: &'m Policy,
        tls_version: Option<&str>,
    ) -> Vec<(Metric<'m>, u64)> {
        let route = self.route_name(policy);
        let mut metrics = vec![
            (
                Metric::Requests {
                    route,
                    verdict: self.decision.verdict,
                },
                1,
            ),
            (
                Metric::TlsVersion(series::tls_version_label(tls_version)),
                1,
            ),
            (Metric::IdentitySource(self.source), 1),
        ];
        // One update per spoofed header, counting its values (they are listed together).
        let mut spoofed = self.rewrite.spoofed.iter().peekable();
        while let Some(header) = spoofed.next() {
            let mut count = 1;
            while spoofed.next_if(|next| *next == header).is_some() {
                count += 1;
            }
            metrics.push((Metric::SpoofedHeader(header), count));
        }
        if self.expiring {
            metrics.push((Metric::CertExpiring { route }, 1));
        }
        if self.sni_mismatch {
            metrics.push((Metric::SniHostMismatch, 1));
        }
        metrics
    }

    /// The access record (and filter state) of this request.
    pub fn record<'r>(
        &'r self,
        policy: &'r Policy,
        connection: &ConnectionFacts<'r>,
        headers: &HeaderPairs<'r>,
    ) -> Record<'r> {
        let identity = self.peer.identity();
        Record {
            route: self.route_name(policy),
            verdict: Some(self.decision.verdict),
            identity: identity.and_then(|identity| identity.principal()),
            san_count: identity.map(|identity| identity.san_count()),
            tls_version: connection.tls_version.filter(|v| !v.is_empty()),
            sni: connection.sni.filter(|sni| !sni.is_empty()),
            days_to_expiry: self.days_to_expiry,
            identity_source: self.source,
            client_address: self.client_address,
            request_id: pairs::first_value(headers, "x-request-id"),
            grpc_status: self
                .decision
                .denied()
                .filter(|_| is_grpc(pairs::first_value(headers, "content-type")))
                .map(|reason| policy.deny_response.grpc_status_for(reason)),
        }
    }
}

#[cfg(test)]
mod tests {
    mod evaluation;
}
