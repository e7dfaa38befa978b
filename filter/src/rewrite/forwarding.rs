//! The forwarding headers certgate writes for allowed requests (XFF, XFP, X-Forwarded-Host/Port,
//! `Forwarded`, XFCC, `Client-Cert`, identity headers), and the anti-spoofing that goes with them:
//! every header certgate sets is removed first, every duplicate and every spelling. Lists that are
//! appended to (XFF, `Forwarded: append`, XFCC `append_forward`) keep what arrived, as Envoy does;
//! only a trusted peer's entries are believed (`trusted_hops`), and only a trusted peer's
//! X-Forwarded-Proto/Host survive. A removal of a header an untrusted peer sent is a spoof.

use crate::decide::decision::Verdict;
use crate::encoding::percent;
use crate::facts::address::SocketAddress;
use crate::facts::pairs::HeaderPairs;
use crate::identity::sources::IdentitySource;
use crate::identity::xfcc::{self, XfccAction, XfccDetail, XfccMode};
use crate::identity::{alb, PeerIdentity};
use crate::names::ip::{canonical_ip, ip_text};
use crate::rewrite::forwarded::{self, ForwardedMode};
use crate::rewrite::{is_spelling_of, HeaderRewrite};
use std::fmt::Write as _;
use std::net::IpAddr;

pub(crate) const X_FORWARDED_FOR: &str = "x-forwarded-for";
pub(crate) const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
pub(crate) const X_FORWARDED_HOST: &str = "x-forwarded-host";
pub(crate) const X_FORWARDED_PORT: &str = "x-forwarded-port";
pub(crate) const FORWARDED: &str = "forwarded";
pub(crate) const CLIENT_CERT: &str = "client-cert";
pub(crate) const CLIENT_CERT_CHAIN: &str = "client-cert-chain";

/// Header names an `identity_headers` entry may not take: other options own them.
pub(crate) const RESERVED_HEADERS: [&str; 8] = [
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    X_FORWARDED_PORT,
    FORWARDED,
    xfcc::HEADER,
    CLIENT_CERT,
    CLIENT_CERT_CHAIN,
];

/// The compiled `forwarding` block. The default touches no header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarding {
    pub(crate) xff: Option<Xff>,
    pub(crate) x_forwarded_proto: bool,
    pub(crate) x_forwarded_host: bool,
    pub(crate) forwarded: ForwardedMode,
    pub(crate) xfcc: Option<XfccForwarding>,
    pub(crate) client_cert: bool,
    pub(crate) identity_headers: Vec<IdentityHeader>,
}

/// `forwarding.xff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Xff {
    /// Append the peer's address (and own the header: an untrusted peer's value is removed).
    pub(crate) append: bool,
    /// How many right-most entries (the trusted peer's included) are believed when certgate reports
    /// the client address.
    pub(crate) trusted_hops: u32,
}

/// `forwarding.xfcc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct XfccForwarding {
    pub(crate) mode: XfccMode,
    pub(crate) details: Vec<XfccDetail>,
}

/// One `identity_headers` entry: a lowercase header name and the field it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdentityHeader {
    pub(crate) name: String,
    pub(crate) field: IdentityField,
}

/// What an identity header carries. Several SANs are comma-joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdentityField {
    Uri,
    Dns,
    Ip,
    Email,
    Subject,
    SubjectCn,
    Sha256,
    Route,
    Decision,
}

impl IdentityField {
    /// The configuration names, the one source of truth for reading and writing them.
    pub(crate) const NAMES: &'static [(&'static str, Self)] = &[
        ("uri", IdentityField::Uri),
        ("dns", IdentityField::Dns),
        ("ip", IdentityField::Ip),
        ("email", IdentityField::Email),
        ("subject", IdentityField::Subject),
        ("subject_cn", IdentityField::SubjectCn),
        ("sha256", IdentityField::Sha256),
        ("route", IdentityField::Route),
        ("decision", IdentityField::Decision),
    ];
}

/// What the rewrite knows of the request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RewriteFacts<'a> {
    pub(crate) peer_trusted: bool,
    /// The socket peer.
    pub(crate) peer: Option<SocketAddress>,
    /// This listener's address (`by=`).
    pub(crate) local: Option<SocketAddress>,
    /// The client address (see [`client_address`]).
    pub(crate) client: Option<IpAddr>,
    /// The connection is TLS.
    pub(crate) tls: bool,
    /// The client presented a certificate on this connection (Envoy's "mTLS" for XFCC modes).
    pub(crate) mtls: bool,
    pub(crate) authority: &'a str,
    /// The connection's own verified certificate (what XFCC describes).
    pub(crate) connection_identity: Option<&'a PeerIdentity>,
    /// `connection_identity`'s header values, rendered once for the connection; `None` renders
    /// them here.
    pub(crate) rendered: Option<&'a RenderedIdentity>,
    /// The identity certgate decided on (what `Client-Cert` and identity headers carry).
    pub(crate) identity: Option<&'a PeerIdentity>,
    pub(crate) route: Option<&'a str>,
    pub(crate) verdict: Verdict,
}

/// The rewrite and the headers an untrusted peer sent that certgate owns (one entry per value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite<'a> {
    pub headers: HeaderRewrite<'a>,
    pub(crate) spoofed: Vec<&'a str>,
}

/// The client address: the peer, or with `trusted_hops` and a trusted peer, the XFF entry that many
/// hops to the left of the peer (falling back to the peer when XFF is shorter, as Envoy does).
pub(crate) fn client_address(
    xff: Option<&Xff>,
    peer_trusted: bool,
    headers: &HeaderPairs<'_>,
    peer: Option<IpAddr>,
) -> Option<IpAddr> {
    let peer = peer?;
    let hops = match xff {
        Some(xff) if peer_trusted => usize::try_from(xff.trusted_hops).unwrap_or(usize::MAX),
        _ => 0,
    };
    if hops == 0 {
        return Some(peer);
    }
    let entries: Vec<&[u8]> = values(headers, X_FORWARDED_FOR)
        .flat_map(|value| value.split(|b| *b == b','))
        .collect();
    let from_right = hops - 1;
    let entry = entries
        .len()
        .checked_sub(1 + from_right)
        .and_then(|index| entries.get(index));
    Some(
        entry
            .and_then(|entry| parse_xff_entry(entry))
            .unwrap_or(peer),
    )
}

/// An XFF entry: an address, optionally with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_xff_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim();
    text.parse::<IpAddr>()
        .ok()
        .map(canonical_ip)
        .or_else(|| SocketAddress::parse(text).map(|address| address.ip))
}

/// The values of one header (exact name, any case), in order.
fn values<'h>(headers: &'h HeaderPairs<'_>, name: &'h str) -> impl Iterator<Item = &'h [u8]> + 'h {
    headers
        .iter()
        .filter(move |(key, _)| key.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, value)| *value)
}

/// Builds the rewrite for an allowed request (and the spoofing record for any request).
pub(crate) fn rewrite<'h>(
    forwarding: &'h Forwarding,
    sources: &[IdentitySource],
    headers: &'h HeaderPairs<'h>,
    facts: &RewriteFacts<'_>,
) -> Rewrite<'h> {
    let mut builder = Builder {
        headers,
        facts,
        rewrite: Rewrite::default(),
        removed: Vec::new(),
    };
    let proto = if facts.tls { "https" } else { "http" };
    // Identity headers the peer may not send: a spoofing attempt whatever the forwarding options.
    if !facts.peer_trusted {
        if sources.contains(&IdentitySource::Xfcc) {
            builder.remove_owned(xfcc::HEADER);
        }
        if sources.contains(&IdentitySource::Alb) {
            for name in alb::HEADERS {
                builder.remove_owned(name);
            }
        }
    }
    if forwarding.xff.is_some_and(|xff| xff.append) {
        if let Some(peer) = facts.peer {
            builder.extend(X_FORWARDED_FOR, ip_text(peer.ip).into_bytes());
        }
    }
    if forwarding.x_forwarded_proto {
        builder.keep_trusted_or_set(X_FORWARDED_PROTO, proto.as_bytes().to_vec());
    }
    if forwarding.x_forwarded_host {
        let (host, port) = authority_parts(facts.authority, facts.tls);
        let trusted_has_host =
            facts.peer_trusted && values(headers, X_FORWARDED_HOST).next().is_some();
        if !trusted_has_host {
            builder.replace(X_FORWARDED_HOST, host.as_bytes().to_vec());
            builder.replace(X_FORWARDED_PORT, port.into_bytes());
        }
    }
    match forwarding.forwarded {
        ForwardedMode::Off => {}
        ForwardedMode::Append => {
            let peer = facts.peer.map(|peer| peer.ip);
            let element = forwarded::element(peer, facts.local, proto, facts.authority);
            builder.extend(FORWARDED, element.into_bytes());
        }
        ForwardedMode::Set => {
            let element = forwarded::element(facts.client, facts.local, proto, facts.authority);
            builder.replace(FORWARDED, element.into_bytes());
        }
    }
    // The connection's certificate as the glue rendered it once for the connection (rendered here
    // when it did not); Client-Cert and identity headers describe the decided identity, which is
    // rendered here when it came from a header instead of the connection.
    let (mut own_rendering, mut decided_rendering) = (None, None);
    let connection = match (facts.connection_identity, facts.rendered) {
        (Some(_), Some(rendered)) => Some(rendered),
        (Some(identity), None) => {
            Some(&*own_rendering.insert(RenderedIdentity::new(forwarding, identity)))
        }
        (None, _) => None,
    };
    let decided = match facts.identity {
        Some(identity)
            if facts
                .connection_identity
                .is_some_and(|own| std::ptr::eq(own, identity)) =>
        {
            connection
        }
        Some(identity) => {
            Some(&*decided_rendering.insert(RenderedIdentity::render(forwarding, identity, false)))
        }
        None => None,
    };
    if let Some(config) = &forwarding.xfcc {
        let element = connection
            .and_then(|rendered| rendered.xfcc_element.clone())
            .filter(|element| !element.is_empty());
        match (config.mode.action(facts.mtls), element) {
            (XfccAction::Keep, _) => {}
            (XfccAction::Append, Some(element)) => {
                builder.extend(xfcc::HEADER, element.into_bytes())
            }
            (XfccAction::Set, Some(element)) => builder.replace(xfcc::HEADER, element.into_bytes()),
            (XfccAction::Remove | XfccAction::Append | XfccAction::Set, _) => {
                builder.remove_owned(xfcc::HEADER)
            }
        }
    }
    if forwarding.client_cert {
        builder.remove_owned(CLIENT_CERT_CHAIN);
        match decided.and_then(|rendered| rendered.client_cert.clone()) {
            Some(value) => builder.replace(CLIENT_CERT, value.into_bytes()),
            None => builder.remove_owned(CLIENT_CERT),
        }
    }
    for (index, header) in forwarding.identity_headers.iter().enumerate() {
        let value = match header.field {
            IdentityField::Route => facts.route.map(str::to_owned),
            IdentityField::Decision => Some(facts.verdict.as_str().to_owned()),
            _ => {
                decided.and_then(|rendered| rendered.identity_headers.get(index).cloned().flatten())
            }
        };
        match value {
            Some(value) => builder.replace(&header.name, value.into_bytes()),
            None => builder.remove_owned(&header.name),
        }
    }
    builder.rewrite
}

/// The rewrite under construction: it borrows the names it sets from the configuration and the
/// names it removes from the request (`'a`).
struct Builder<'f, 'a> {
    headers: &'a HeaderPairs<'a>,
    facts: &'f RewriteFacts<'f>,
    rewrite: Rewrite<'a>,
    /// Owned names already removed (each arrival is counted once).
    removed: Vec<&'a str>,
}

impl<'a> Builder<'_, 'a> {
    /// Removes every spelling of an owned header; from an untrusted peer, each value is a spoof.
    fn remove_owned(&mut self, owned: &'a str) {
        self.remove_arrivals(owned, !self.facts.peer_trusted);
    }

    /// Removes every spelling of an owned header once, counting each value as spoofed or not.
    fn remove_arrivals(&mut self, owned: &'a str, spoofed: bool) {
        if self.removed.contains(&owned) {
            return;
        }
        self.removed.push(owned);
        for (key, _) in self.headers.iter() {
            if is_spelling_of(key, owned) {
                self.rewrite.headers.remove(key);
                if spoofed {
                    self.rewrite.spoofed.push(owned);
                }
            }
        }
    }

    /// Sets an owned header after removing what arrived; a lone identical value is left alone.
    fn replace(&mut self, owned: &'a str, value: Vec<u8>) {
        let mut arrived = self
            .headers
            .iter()
            .filter(|(key, _)| is_spelling_of(key, owned));
        if let (Some((key, existing)), None) = (arrived.next(), arrived.next()) {
            if *existing == value.as_slice() && key.eq_ignore_ascii_case(owned.as_bytes()) {
                return;
            }
        }
        self.remove_owned(owned);
        self.rewrite.headers.set(owned, value);
    }

    /// The values that arrived (joined, as one list) followed by certgate's, as Envoy appends to
    /// X-Forwarded-For: an untrusted peer's entries stay, they are just never believed. Values
    /// already removed as spoofed are not kept.
    fn extend(&mut self, owned: &'a str, value: Vec<u8>) {
        let mut joined: Vec<u8> = Vec::new();
        if !self.removed.contains(&owned) {
            for existing in values(self.headers, owned) {
                joined.extend_from_slice(existing);
                joined.extend_from_slice(b", ");
            }
        }
        joined.extend_from_slice(&value);
        self.remove_arrivals(owned, false);
        self.rewrite.headers.set(owned, joined);
    }

    /// A trusted peer's value stays; otherwise certgate's replaces whatever arrived.
    fn keep_trusted_or_set(&mut self, owned: &'a str, value: Vec<u8>) {
        if self.facts.peer_trusted && values(self.headers, owned).next().is_some() {
            return;
        }
        self.replace(owned, value);
    }
}

/// `:authority` as X-Forwarded-Host, and its port (or the scheme's default) as X-Forwarded-Port.
fn authority_parts(authority: &str, tls: bool) -> (&str, String) {
    let default_port = if tls { "443" } else { "80" };
    let port = match authority.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']')) =>
        {
            port
        }
        _ => default_port,
    };
    (authority, port.to_owned())
}

/// RFC 9440 `Client-Cert`: the DER certificate as a structured-field byte sequence (`:base64:`).
/// The identity's PEM is one certificate block whose body is that base64 already, in lines:
/// copying the lines between the markers is all it takes.
fn client_cert_value(identity: &PeerIdentity) -> Option<String> {
    let pem = identity.pem.as_deref()?;
    let mut value = String::with_capacity(pem.len());
    value.push(':');
    for line in pem.lines().map(str::trim) {
        if !line.starts_with("-----") {
            value.push_str(line);
        }
    }
    value.push(':');
    (value.len() > 2).then_some(value)
}

/// The header values that depend only on a certificate and the forwarding options (XFCC's
/// element, `Client-Cert`, the certificate's identity headers). A connection keeps its certificate,
/// so the glue renders them once per connection rather than once per request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderedIdentity {
    xfcc_element: Option<String>,
    client_cert: Option<String>,
    /// One per `identity_headers` entry (`None` for route and decision, which vary per request).
    identity_headers: Vec<Option<String>>,
}

impl RenderedIdentity {
    /// Everything the forwarding options take from the connection's certificate.
    pub fn new(forwarding: &Forwarding, identity: &PeerIdentity) -> Self {
        Self::render(forwarding, identity, true)
    }

    /// The values for `identity`; XFCC's element only `with_xfcc` (XFCC describes the connection's
    /// certificate, never one a header vouched for).
    fn render(forwarding: &Forwarding, identity: &PeerIdentity, with_xfcc: bool) -> Self {
        RenderedIdentity {
            xfcc_element: forwarding
                .xfcc
                .as_ref()
                .filter(|_| with_xfcc)
                .map(|config| xfcc::encode_element(identity, &config.details)),
            client_cert: forwarding
                .client_cert
                .then(|| client_cert_value(identity))
                .flatten(),
            identity_headers: forwarding
                .identity_headers
                .iter()
                .map(|header| certificate_value(header.field, identity))
                .collect(),
        }
    }
}

/// An identity header's value from the certificate, `None` when it has nothing to say (and for
/// route and decision, which are not the certificate's).
fn certificate_value(field: IdentityField, identity: &PeerIdentity) -> Option<String> {
    match field {
        IdentityField::Uri => comma_list(&identity.uris),
        IdentityField::Dns => comma_list(&identity.dns),
        IdentityField::Ip => comma_list(&identity.ips),
        IdentityField::Email => comma_list(&identity.emails),
        IdentityField::SubjectCn => comma_list(&identity.subject_cns),
        IdentityField::Subject => (!identity.subject.is_empty())
            .then(|| percent::escape_controls(&identity.subject, &[]).into_owned()),
        IdentityField::Sha256 => (!identity.sha256.is_empty()).then(|| identity.sha256.clone()),
        IdentityField::Route | IdentityField::Decision => None,
    }
}

/// Items joined by `,`, each with its control characters and commas escaped so that it stays one
/// item; `None` for no items.
fn comma_list<T: std::fmt::Display>(items: &[T]) -> Option<String> {
    let mut joined = String::new();
    let mut item_text = String::new();
    for (index, item) in items.iter().enumerate() {
        item_text.clear();
        let _ = write!(item_text, "{item}");
        if index > 0 {
            joined.push(',');
        }
        joined.push_str(&percent::escape_controls(&item_text, b","));
    }
    (!joined.is_empty()).then_some(joined)
}
