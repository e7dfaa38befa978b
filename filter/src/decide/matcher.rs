//! Matchers (one SAN-or-certificate pattern each) and the indexed set that answers "does this
//! identity hit any of them" in time that does not grow with the number of exact names.
//!
//! Exact DNS names, URIs, emails, subject CNs and fingerprints are hashed; DNS wildcards are hashed by
//! their parent; URI prefixes and IP blocks are hashed per distinct length. Only SPIFFE patterns with
//! inner `*` segments are scanned.

use crate::identity::{canonical_email, PeerIdentity};
use crate::names::dns::{self, DnsPattern};
use crate::names::ip::{IpNet, IpNetIndex};
use crate::names::uri::{is_trust_domain, SpiffeId, UriPattern};
use rustc_hash::FxHashMap;
use std::fmt;

/// One entry of an `allow` or `deny` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    Dns(DnsPattern),
    Uri(UriPattern),
    TrustDomain(String),
    Ip(IpNet),
    Email(String),
    SubjectCn(String),
    Sha256(String),
}

/// The configuration's spelling of a matcher: its key and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatcherKind {
    Dns,
    Uri,
    TrustDomain,
    Ip,
    Email,
    SubjectCn,
    Sha256,
}

impl MatcherKind {
    /// Every kind, in the order the configuration reference lists them.
    pub const ALL: [MatcherKind; 7] = [
        MatcherKind::Dns,
        MatcherKind::Uri,
        MatcherKind::TrustDomain,
        MatcherKind::Ip,
        MatcherKind::Email,
        MatcherKind::SubjectCn,
        MatcherKind::Sha256,
    ];

    pub fn key(self) -> &'static str {
        match self {
            MatcherKind::Dns => "dns",
            MatcherKind::Uri => "uri",
            MatcherKind::TrustDomain => "trust_domain",
            MatcherKind::Ip => "ip",
            MatcherKind::Email => "email",
            MatcherKind::SubjectCn => "subject_cn",
            MatcherKind::Sha256 => "sha256",
        }
    }
}

impl Matcher {
    /// Compiles `{"<kind>": "<value>"}`, saying what is wrong with the value when it is invalid.
    pub fn parse(kind: MatcherKind, value: &str) -> Result<Self, String> {
        let invalid = |why: String| format!("{value:?} is not a valid pattern: {why}");
        match kind {
            MatcherKind::Dns => DnsPattern::parse(value).map(Matcher::Dns).map_err(&invalid),
            MatcherKind::Uri => UriPattern::parse(value).map(Matcher::Uri).map_err(&invalid),
            MatcherKind::TrustDomain if is_trust_domain(value) => Ok(Matcher::TrustDomain(value.to_owned())),
            MatcherKind::TrustDomain => Err(invalid(
                "a SPIFFE trust domain is lowercase letters, digits, '.', '-' and '_' (no scheme, no path)".into(),
            )),
            MatcherKind::Ip => IpNet::parse(value).map(Matcher::Ip).map_err(&invalid),
            MatcherKind::Email => parse_email(value).map(Matcher::Email).map_err(&invalid),
            MatcherKind::SubjectCn if value.is_empty() => Err(invalid("is empty".into())),
            MatcherKind::SubjectCn => Ok(Matcher::SubjectCn(value.to_owned())),
            MatcherKind::Sha256 => parse_sha256(value).map(Matcher::Sha256).map_err(&invalid),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Dns(pattern) => write!(f, "dns {pattern}"),
            Matcher::Uri(pattern) => write!(f, "uri {pattern}"),
            Matcher::TrustDomain(domain) => write!(f, "trust_domain {domain}"),
            Matcher::Ip(net) => write!(f, "ip {net}"),
            Matcher::Email(email) => write!(f, "email {email}"),
            Matcher::SubjectCn(cn) => write!(f, "subject_cn {cn}"),
            Matcher::Sha256(digest) => write!(f, "sha256 {digest}"),
        }
    }
}

fn parse_email(value: &str) -> Result<String, String> {
    match value.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            DnsPattern::parse(domain).and_then(|pattern| match pattern {
                DnsPattern::Exact(_) => Ok(canonical_email(value)),
                DnsPattern::Wildcard(_) => {
                    Err("has a wildcard domain; email matchers are exact".into())
                }
            })
        }
        _ => Err("is not of the form local@domain".into()),
    }
}

fn parse_sha256(value: &str) -> Result<String, String> {
    let digits: String = value
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if digits.len() != 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "a SHA-256 fingerprint is 64 hex digits (colons allowed), this has {}",
            digits.len()
        ));
    }
    Ok(digits)
}

/// Hashes every string of one kind to the lowest index of a matcher that names it.
#[derive(Debug, Clone, Default)]
struct ExactIndex(FxHashMap<String, usize>);

impl ExactIndex {
    fn insert(&mut self, key: &str, index: usize) {
        self.0.entry(key.to_owned()).or_insert(index);
    }
    fn get(&self, key: &str) -> Option<usize> {
        if self.0.is_empty() {
            return None;
        }
        self.0.get(key).copied()
    }
}

/// Prefixes hashed per distinct length: one lookup per length, however many prefixes.
#[derive(Debug, Clone, Default)]
struct PrefixIndex {
    lengths: Vec<usize>,
    prefixes: ExactIndex,
}

impl PrefixIndex {
    fn insert(&mut self, prefix: &str, index: usize) {
        self.prefixes.insert(prefix, index);
        if !self.lengths.contains(&prefix.len()) {
            self.lengths.push(prefix.len());
            self.lengths.sort_unstable();
        }
    }
    fn lookup(&self, text: &str) -> Option<usize> {
        self.lengths
            .iter()
            .take_while(|len| **len < text.len())
            .filter_map(|len| {
                text.get(..*len)
                    .and_then(|prefix| self.prefixes.get(prefix))
            })
            .min()
    }
}

/// An allow or deny list compiled for lookup.
#[derive(Debug, Clone, Default)]
pub struct MatcherSet {
    matchers: Vec<Matcher>,
    dns_exact: ExactIndex,
    /// Parent names of exact DNS entries: what a certificate's wildcard SAN may cover.
    dns_exact_parents: ExactIndex,
    dns_wildcard_parents: ExactIndex,
    uri_exact: ExactIndex,
    uri_prefix: PrefixIndex,
    /// Prefix patterns that require the SAN to be a well-formed SPIFFE ID.
    uri_spiffe_prefix: PrefixIndex,
    uri_segmented: Vec<usize>,
    trust_domains: ExactIndex,
    ips: IpNetIndex<usize>,
    emails: ExactIndex,
    subject_cns: ExactIndex,
    sha256: ExactIndex,
}

impl MatcherSet {
    pub fn new(matchers: Vec<Matcher>) -> Self {
        let mut set = MatcherSet::default();
        for (index, matcher) in matchers.iter().enumerate() {
            match matcher {
                Matcher::Dns(DnsPattern::Exact(name)) => {
                    set.dns_exact.insert(name, index);
                    if let Some(parent) = dns::parent_of(name) {
                        set.dns_exact_parents.insert(parent, index);
                    }
                }
                Matcher::Dns(DnsPattern::Wildcard(parent)) => {
                    set.dns_wildcard_parents.insert(parent, index)
                }
                Matcher::Uri(UriPattern::Exact(uri)) => set.uri_exact.insert(uri, index),
                Matcher::Uri(UriPattern::Prefix(prefix)) if prefix.starts_with("spiffe://") => {
                    set.uri_spiffe_prefix.insert(prefix, index)
                }
                Matcher::Uri(UriPattern::Prefix(prefix)) => set.uri_prefix.insert(prefix, index),
                Matcher::Uri(UriPattern::Segments { .. }) => set.uri_segmented.push(index),
                Matcher::TrustDomain(domain) => set.trust_domains.insert(domain, index),
                Matcher::Ip(net) => set.ips.insert(*net, index),
                Matcher::Email(email) => set.emails.insert(email, index),
                Matcher::SubjectCn(cn) => set.subject_cns.insert(cn, index),
                Matcher::Sha256(digest) => set.sha256.insert(digest, index),
            }
        }
        set.matchers = matchers;
        set
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.matchers.is_empty()
    }

    /// The lowest index of a matcher the identity hits. With `wildcard_certs`, a certificate's own
    /// wildcard DNS SAN also hits every exact name it covers.
    pub fn first_hit(&self, identity: &PeerIdentity, wildcard_certs: bool) -> Option<usize> {
        let dns = identity
            .dns
            .iter()
            .filter_map(|name| self.dns_hit(name, wildcard_certs));
        let uris = identity.uris.iter().filter_map(|uri| self.uri_hit(uri));
        let ips = identity.ips.iter().filter_map(|ip| self.ips.lookup(*ip));
        let emails = identity
            .emails
            .iter()
            .filter_map(|email| self.emails.get(email));
        let cns = identity
            .subject_cns
            .iter()
            .filter_map(|cn| self.subject_cns.get(cn));
        let digest = self.sha256.get(&identity.sha256);
        dns.chain(uris)
            .chain(ips)
            .chain(emails)
            .chain(cns)
            .chain(digest)
            .min()
    }

    fn dns_hit(&self, name: &str, wildcard_certs: bool) -> Option<usize> {
        if let Some(covered) = dns::wildcard_parent(name) {
            // A wildcard certificate: identical wildcard patterns always, covered names only when allowed.
            let identical = self.dns_wildcard_parents.get(covered);
            let covers = wildcard_certs
                .then(|| self.dns_exact_parents.get(covered))
                .flatten();
            return identical.into_iter().chain(covers).min();
        }
        let exact = self.dns_exact.get(name);
        let wildcard =
            dns::parent_of(name).and_then(|parent| self.dns_wildcard_parents.get(parent));
        exact.into_iter().chain(wildcard).min()
    }

    fn uri_hit(&self, uri: &str) -> Option<usize> {
        let exact = self.uri_exact.get(uri);
        let prefix = self.uri_prefix.lookup(uri);
        let spiffe = SpiffeId::parse(uri);
        let spiffe_prefix = spiffe.and_then(|_| self.uri_spiffe_prefix.lookup(uri));
        let domain = spiffe.and_then(|id| self.trust_domains.get(id.trust_domain));
        let segmented = self.uri_segmented.iter().copied().find(
            |index| matches!(self.matchers.get(*index), Some(Matcher::Uri(p)) if p.matches(uri)),
        );
        [exact, prefix, spiffe_prefix, domain, segmented]
            .into_iter()
            .flatten()
            .min()
    }
}
