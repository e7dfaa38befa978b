//! Target `san_pattern`: matcher patterns compiled and matched against arbitrary names.
//!
//! The input is text, one item a line: `<kind> <pattern>` lines (kinds as in the configuration:
//! `dns`, `uri`, `trust_domain`, `ip`, `email`, `subject_cn`, `sha256`) up to a `--` line, then
//! `<kind> <name>` lines for the certificate (`dns`, `uri`, `ip`, `email`, `cn`, `sha256`); a
//! `wildcard_certs` line turns that option on. Other lines are ignored.
//!
//! Properties: compiling any pattern succeeds or explains itself, never panics; a compiled pattern
//! prints as text that compiles back to itself; the indexed [`MatcherSet`] reports exactly the
//! first matcher that a plain scan of the documented rules finds.

use certgate::decide::matcher::{Matcher, MatcherKind, MatcherSet};
use certgate::identity::{canonical_email, PeerIdentity};
use certgate::names::dns::{self, canonical_name, DnsPattern};
use certgate::names::ip::canonical_ip;
use certgate::names::uri::{SpiffeId, UriPattern};
use std::net::IpAddr;

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut matchers = Vec::new();
    let mut identity = PeerIdentity::default();
    let mut wildcard_certs = false;
    let mut in_names = false;
    for line in text.lines() {
        if line == "--" {
            in_names = true;
            continue;
        }
        if line == "wildcard_certs" {
            wildcard_certs = true;
            continue;
        }
        let (kind, value) = line.split_once(' ').unwrap_or((line, ""));
        if in_names {
            add_name(&mut identity, kind, value);
        } else if let Some(kind) = MatcherKind::ALL.into_iter().find(|k| k.key() == kind) {
            if let Ok(matcher) = Matcher::parse(kind, value) {
                check_reprint(kind, &matcher);
                matchers.push(matcher);
            }
        }
    }
    let expected = matchers
        .iter()
        .position(|matcher| hits(matcher, &identity, wildcard_certs));
    let set = MatcherSet::new(matchers);
    assert_eq!(
        set.first_hit(&identity, wildcard_certs),
        expected,
        "the index disagrees with a scan for {identity:?} (wildcard_certs {wildcard_certs})"
    );
}

/// Adds a certificate name as certgate's reader would hold it (canonical forms).
fn add_name(identity: &mut PeerIdentity, kind: &str, value: &str) {
    match kind {
        "dns" => identity.dns.push(canonical_name(value)),
        "uri" => identity.uris.push(value.to_owned()),
        "email" => identity.emails.push(canonical_email(value)),
        "cn" => identity.subject_cns.push(value.to_owned()),
        "sha256" => identity.sha256 = value.to_ascii_lowercase(),
        "ip" => identity
            .ips
            .extend(value.parse::<IpAddr>().ok().map(canonical_ip)),
        _ => {}
    }
}

/// A compiled pattern's text form compiles back to the same pattern.
fn check_reprint(kind: MatcherKind, matcher: &Matcher) {
    let text = match matcher {
        Matcher::Dns(pattern) => pattern.to_string(),
        Matcher::Uri(pattern) => pattern.to_string(),
        Matcher::Ip(net) => net.to_string(),
        Matcher::TrustDomain(text)
        | Matcher::Email(text)
        | Matcher::SubjectCn(text)
        | Matcher::Sha256(text) => text.clone(),
    };
    assert_eq!(
        Matcher::parse(kind, &text).as_ref(),
        Ok(matcher),
        "{matcher:?} prints as {text:?}, which compiles to something else"
    );
}

/// The documented rules, one matcher at a time.
fn hits(matcher: &Matcher, identity: &PeerIdentity, wildcard_certs: bool) -> bool {
    match matcher {
        Matcher::Dns(pattern) => identity.dns.iter().any(|name| {
            match (dns::wildcard_parent(name), pattern) {
                // A wildcard certificate hits an identical pattern, and with `wildcard_certs` every
                // exact name it covers.
                (Some(covered), DnsPattern::Wildcard(parent)) => parent == covered,
                (Some(covered), DnsPattern::Exact(exact)) => {
                    wildcard_certs && dns::parent_of(exact) == Some(covered)
                }
                (None, pattern) => pattern.matches_name(name),
            }
        }),
        Matcher::Uri(pattern) => identity.uris.iter().any(|uri| {
            let hit = pattern.matches(uri);
            if hit {
                check_uri_hit(pattern, uri);
            }
            hit
        }),
        Matcher::TrustDomain(domain) => identity
            .uris
            .iter()
            .any(|uri| SpiffeId::parse(uri).is_some_and(|id| id.trust_domain == domain.as_str())),
        Matcher::Ip(net) => identity.ips.iter().any(|ip| net.contains(*ip)),
        Matcher::Email(email) => identity.emails.contains(email),
        Matcher::SubjectCn(cn) => identity.subject_cns.contains(cn),
        Matcher::Sha256(digest) => identity.sha256 == *digest,
    }
}

/// What any URI hit implies: a prefix hit starts with the prefix and has more after it, and
/// anything looser than exact on a `spiffe://` pattern only hits a well-formed SPIFFE ID.
fn check_uri_hit(pattern: &UriPattern, uri: &str) {
    match pattern {
        UriPattern::Exact(exact) => assert_eq!(exact, uri),
        UriPattern::Prefix(prefix) => {
            assert!(uri.len() > prefix.len() && uri.starts_with(prefix.as_str()));
            if prefix.starts_with("spiffe://") {
                assert!(SpiffeId::parse(uri).is_some(), "{uri:?} hit {pattern}");
            }
        }
        UriPattern::Segments { .. } => {
            assert!(SpiffeId::parse(uri).is_some(), "{uri:?} hit {pattern}")
        }
    }
}
