//! Properties of the native core, checked on generated inputs rather than hand-picked rows: deny
//! rules win, audit never denies, an extra allow matcher never turns an allow into a deny, the indexed
//! matcher sets agree with matching one pattern at a time, a DNS wildcard covers exactly one label,
//! CIDR containment agrees with integer arithmetic, XFCC elements round-trip whatever their values
//! hold, and a header rewrite never leaves a client-sent copy of a header certgate owns. Readers of
//! untrusted bytes (pairs, percent-encoding, configuration, certificates) answer without panicking.

use crate::config;
use crate::decide::decision::{AllowReason, DenyReason, Verdict};
use crate::decide::matcher::{Matcher, MatcherKind};
use crate::decide::route::RequestFacts;
use crate::encoding::json::json_string;
use crate::encoding::percent;
use crate::evaluate::{evaluate, ConnectionFacts, Evaluation};
use crate::facts::pairs;
use crate::identity::peer::Peer;
use crate::identity::xfcc::{self, XfccDetail, XfccMode, HEADER as XFCC};
use crate::identity::{canonical_email, PeerIdentity};
use crate::names::dns::{canonical_name, DnsPattern};
use crate::names::ip::{canonical_ip, IpNet};
use crate::names::uri::{SpiffeId, UriPattern};
use crate::policy::Policy;
use crate::rewrite::forwarding::{RenderedIdentity, CLIENT_CERT, CLIENT_CERT_CHAIN};
use crate::rewrite::{is_spelling_of, HeaderEdit, RewriteCalls};
use crate::test_support;
use crate::test_support::San;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

/// `cases` generated inputs per property, or `PROPTEST_CASES` of them when set (a deeper run).
fn cases(cases: u32) -> ProptestConfig {
    if std::env::var_os("PROPTEST_CASES").is_some() {
        ProptestConfig::default()
    } else {
        ProptestConfig::with_cases(cases)
    }
}

/// 2026-01-01T00:00:00Z
const NOW: i64 = 1_767_225_600;

// Small pools, so that generated identities and matchers hit each other often.
const DNS_SANS: &[&str] = &[
    "a.svc.local",
    "B.svc.local.",
    "svc.local",
    "x.a.svc.local",
    "*.svc.local",
    "c.other.test",
];
const URI_SANS: &[&str] = &[
    "spiffe://mesh.local/ns/a/sa/web",
    "spiffe://mesh.local/ns/b/sa/api",
    "spiffe://mesh.local/ns/../sa/web",
    "spiffe://partner.example/x",
    "https://example.com/a",
];
const IP_SANS: &[&str] = &[
    "10.1.2.3",
    "10.200.0.1",
    "192.168.0.1",
    "2001:db8::1",
    "::ffff:10.1.2.3",
];
const EMAIL_SANS: &[&str] = &["ops@example.com", "ops@EXAMPLE.com", "Ops@example.com"];
const COMMON_NAMES: &[&str] = &["orders", "admin", "Orders"];
const DIGESTS: &[&str] = &[
    "67a6c4d8a8fbc3b8d5b4d3e7f3c2a1b09d8e7f6a5b4c3d2e1f0a9b8c7d6edf38",
    "0000000000000000000000000000000000000000000000000000000000000001",
];
const MATCHERS: &[(&str, &str)] = &[
    ("dns", "a.svc.local"),
    ("dns", "b.svc.local"),
    ("dns", "*.svc.local"),
    ("dns", "*.a.svc.local"),
    ("dns", "svc.local"),
    ("dns", "c.other.test"),
    ("uri", "spiffe://mesh.local/ns/a/sa/web"),
    ("uri", "spiffe://mesh.local/ns/*"),
    ("uri", "spiffe://mesh.local/ns/*/sa/web"),
    ("uri", "https://example.com/*"),
    ("trust_domain", "mesh.local"),
    ("trust_domain", "partner.example"),
    ("ip", "10.1.0.0/16"),
    ("ip", "10.0.0.0/8"),
    ("ip", "192.168.0.1"),
    ("ip", "::ffff:10.1.2.0/120"),
    ("ip", "2001:db8::/32"),
    ("email", "ops@example.com"),
    ("email", "Ops@Example.com"),
    ("subject_cn", "orders"),
    ("subject_cn", "admin"),
    ("sha256", DIGESTS[0]),
    (
        "sha256",
        "00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:01",
    ),
];

type MatcherSpec = (&'static str, &'static str);

fn policy(document: &Value) -> Policy {
    config::compile(document.to_string().as_bytes())
        .unwrap_or_else(|errors| panic!("{document}: {errors:?}"))
}

fn matcher_json(list: &[MatcherSpec]) -> Value {
    Value::Array(
        list.iter()
            .map(|(kind, value)| json!({*kind: *value}))
            .collect(),
    )
}

fn identity() -> impl Strategy<Value = PeerIdentity> {
    (
        subsequence(DNS_SANS, 0..=3),
        subsequence(URI_SANS, 0..=2),
        subsequence(IP_SANS, 0..=2),
        subsequence(EMAIL_SANS, 0..=2),
        subsequence(COMMON_NAMES, 0..=1),
        select(DIGESTS),
    )
        .prop_map(|(dns, uris, ips, emails, cns, digest)| PeerIdentity {
            dns: dns.into_iter().map(canonical_name).collect(),
            uris: uris.into_iter().map(str::to_owned).collect(),
            ips: ips
                .into_iter()
                .map(|ip| canonical_ip(ip.parse().unwrap()))
                .collect(),
            emails: emails.into_iter().map(canonical_email).collect(),
            subject: cns.first().map(|cn| format!("CN={cn}")).unwrap_or_default(),
            subject_cns: cns.into_iter().map(str::to_owned).collect(),
            sha256: digest.to_owned(),
            not_before: Some(NOW - 86_400),
            not_after: Some(NOW + 86_400),
            ..PeerIdentity::default()
        })
}

fn matchers(size: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<MatcherSpec>> {
    prop::collection::vec(select(MATCHERS), size)
}

/// Whether one matcher hits the identity, judged on its own with the per-pattern primitives, not
/// through the indexed [`crate::decide::matcher::MatcherSet`].
fn hits_alone(spec: MatcherSpec, identity: &PeerIdentity, wildcard_certs: bool) -> bool {
    let kind = match spec.0 {
        "dns" => MatcherKind::Dns,
        "uri" => MatcherKind::Uri,
        "trust_domain" => MatcherKind::TrustDomain,
        "ip" => MatcherKind::Ip,
        "email" => MatcherKind::Email,
        "subject_cn" => MatcherKind::SubjectCn,
        _ => MatcherKind::Sha256,
    };
    match Matcher::parse(kind, spec.1).unwrap() {
        Matcher::Dns(pattern) => identity
            .dns
            .iter()
            .any(|name| dns_hits(&pattern, name, wildcard_certs)),
        Matcher::Uri(pattern) => identity.uris.iter().any(|uri| pattern.matches(uri)),
        Matcher::TrustDomain(domain) => identity
            .uris
            .iter()
            .any(|uri| SpiffeId::parse(uri).is_some_and(|id| id.trust_domain == domain)),
        Matcher::Ip(net) => identity.ips.iter().any(|ip| net.contains(*ip)),
        Matcher::Email(email) => identity.emails.contains(&email),
        Matcher::SubjectCn(cn) => identity.subject_cns.contains(&cn),
        Matcher::Sha256(digest) => identity.sha256 == digest,
    }
}

/// A certificate DNS SAN against a pattern: a wildcard SAN hits its identical pattern, and the
/// exact names it covers only with `wildcard_certs`.
fn dns_hits(pattern: &DnsPattern, name: &str, wildcard_certs: bool) -> bool {
    match (name.strip_prefix("*."), pattern) {
        (Some(covered), DnsPattern::Wildcard(parent)) => covered == parent,
        (Some(covered), DnsPattern::Exact(exact)) => {
            wildcard_certs && exact.split_once('.').map(|(_, parent)| parent) == Some(covered)
        }
        (None, DnsPattern::Exact(exact)) => exact == name,
        (None, DnsPattern::Wildcard(parent)) => one_label_under(name, parent),
    }
}

/// `name` is exactly one non-empty label followed by `.parent`.
fn one_label_under(name: &str, parent: &str) -> bool {
    name.strip_suffix(parent)
        .and_then(|head| head.strip_suffix('.'))
        .is_some_and(|label| !label.is_empty() && !label.contains('.') && label != "*")
}

fn first_hit(list: &[MatcherSpec], identity: &PeerIdentity, wildcard_certs: bool) -> Option<usize> {
    list.iter()
        .position(|spec| hits_alone(*spec, identity, wildcard_certs))
}

proptest! {
    #![proptest_config(cases(512))]

    /// Deny rules first, then the allow list, with the lowest index reported: the indexed sets
    /// agree with judging each matcher alone.
    #[test]
    fn decisions_are_deny_first_then_allow(
        identity in identity(),
        allow in prop::option::of(matchers(1..=6)),
        deny in matchers(0..=6),
        wildcard_certs in any::<bool>(),
    ) {
        let mut route = json!({"name": "r", "deny": matcher_json(&deny)});
        if let Some(allow) = &allow {
            route["allow"] = matcher_json(allow);
        }
        let policy = policy(&json!({"wildcard_certs": wildcard_certs, "routes": [route]}));
        let decision = policy.access.decide(Some(0), Peer::Identified(&identity));
        let expected = match (first_hit(&deny, &identity, wildcard_certs), &allow) {
            (Some(rule), _) => Verdict::Deny(DenyReason::DeniedByRule { rule }),
            (None, None) => Verdict::Allow(AllowReason::ValidatedCert),
            (None, Some(allow)) => match first_hit(allow, &identity, wildcard_certs) {
                Some(rule) => Verdict::Allow(AllowReason::AllowlistMatch { rule }),
                None => Verdict::Deny(DenyReason::NotInAllowlist),
            },
        };
        prop_assert_eq!(decision.verdict, expected);
    }

    /// A deny matcher that hits denies, whatever the allow list holds (even a matcher that hits).
    #[test]
    fn deny_rules_take_precedence_over_any_allow_list(
        identity in identity(),
        allow in matchers(0..=5),
        deny in matchers(0..=5),
        deny_at in any::<prop::sample::Index>(),
        allow_at in any::<prop::sample::Index>(),
    ) {
        let own_digest = ("sha256", DIGESTS.iter().find(|d| **d == identity.sha256).copied().unwrap());
        let mut deny = deny;
        deny.insert(deny_at.index(deny.len() + 1), own_digest);
        let mut allow = allow;
        allow.insert(allow_at.index(allow.len() + 1), own_digest);
        let policy = policy(&json!({"routes": [
            {"name": "r", "allow": matcher_json(&allow), "deny": matcher_json(&deny)}
        ]}));
        let decision = policy.access.decide(Some(0), Peer::Identified(&identity));
        prop_assert!(matches!(decision.verdict, Verdict::Deny(DenyReason::DeniedByRule { .. })), "{:?}", decision);
    }
}

/// A route of a generated policy: its match conditions and lists.
#[derive(Debug, Clone)]
struct RouteSpec {
    route_name: Option<&'static str>,
    path_prefix: Option<&'static str>,
    hosts: Option<&'static str>,
    methods: Option<&'static str>,
    require_client_cert: bool,
    allow: Option<Vec<MatcherSpec>>,
    deny: Vec<MatcherSpec>,
}

fn route_spec() -> impl Strategy<Value = RouteSpec> {
    (
        prop::option::of(select(&["admin", "api"][..])),
        prop::option::of(select(&["/admin", "/api/", "/"][..])),
        prop::option::of(select(&["api.example.com", "*.example.com"][..])),
        prop::option::of(select(&["GET", "POST"][..])),
        any::<bool>(),
        prop::option::of(matchers(1..=4)),
        matchers(0..=3),
    )
        .prop_map(
            |(route_name, path_prefix, hosts, methods, require_client_cert, allow, deny)| {
                RouteSpec {
                    route_name,
                    path_prefix,
                    hosts,
                    methods,
                    require_client_cert,
                    allow,
                    deny,
                }
            },
        )
}

impl RouteSpec {
    fn json(&self, index: usize, mode: Option<&str>) -> Value {
        let mut conditions = serde_json::Map::new();
        if let Some(name) = self.route_name {
            conditions.insert("route_name".into(), json!(name));
        }
        if let Some(prefix) = self.path_prefix {
            conditions.insert("path_prefix".into(), json!(prefix));
        }
        if let Some(host) = self.hosts {
            conditions.insert("hosts".into(), json!([host]));
        }
        if let Some(method) = self.methods {
            conditions.insert("methods".into(), json!([method]));
        }
        let mut route = json!({
            "name": format!("r{index}"),
            "match": conditions,
            "require_client_cert": self.require_client_cert,
            "deny": matcher_json(&self.deny),
        });
        if let Some(allow) = &self.allow {
            route["allow"] = matcher_json(allow);
        }
        if let Some(mode) = mode {
            route["mode"] = json!(mode);
        }
        route
    }
}

/// A request and what the connection says, owned, so a strategy can produce it.
#[derive(Debug, Clone)]
struct Facts {
    route_name: Option<&'static str>,
    path: &'static str,
    authority: &'static str,
    method: &'static str,
    sni: Option<&'static str>,
    /// 0: no certificate, 1: not validated, 2: unreadable, 3: identified.
    peer: u8,
    identity: PeerIdentity,
}

fn facts() -> impl Strategy<Value = Facts> {
    (
        prop::option::of(select(&["admin", "api", "other"][..])),
        select(&["/", "/admin", "/admin/x?y=1", "/api/v1", "/healthz"][..]),
        select(
            &[
                "api.example.com",
                "API.example.com:8443",
                "x.example.com",
                "[::1]:80",
                "",
            ][..],
        ),
        select(&["GET", "post", "DELETE"][..]),
        prop::option::of(select(&["api.example.com", "other.test", ""][..])),
        0u8..4,
        identity(),
    )
        .prop_map(
            |(route_name, path, authority, method, sni, peer, identity)| Facts {
                route_name,
                path,
                authority,
                method,
                sni,
                peer,
                identity,
            },
        )
}

impl Facts {
    fn evaluate<'a>(&'a self, policy: &'a Policy) -> Evaluation<'a> {
        let request = RequestFacts {
            route_name: self.route_name,
            path: self.path,
            authority: self.authority,
            method: self.method,
        };
        let certificate = match self.peer {
            0 => Peer::NoCertificate,
            1 => Peer::NotValidated,
            2 => Peer::Unreadable,
            _ => Peer::Identified(&self.identity),
        };
        let connection = ConnectionFacts {
            certificate,
            mtls: self.peer != 0,
            tls_version: Some("TLSv1.3"),
            sni: self.sni,
            source_address: Some("203.0.113.9:41000"),
            local_address: None,
            rendered: None,
        };
        const NO_HEADERS: &Vec<(&[u8], &[u8])> = &Vec::new();
        evaluate(policy, &request, NO_HEADERS, &connection, NOW)
    }
}

fn routed_policy(
    mode: &str,
    route_mode: Option<&str>,
    routes: &[RouteSpec],
    default_allow: bool,
    sni_deny: bool,
) -> Policy {
    policy(&json!({
        "mode": mode,
        "default_action": if default_allow { "allow" } else { "deny" },
        "sni_host_mismatch": if sni_deny { "deny" } else { "log" },
        "routes": routes.iter().enumerate().map(|(index, route)| route.json(index, route_mode)).collect::<Vec<_>>(),
    }))
}

proptest! {
    #![proptest_config(cases(512))]

    /// Audit mode (the policy's, inherited or restated by every route) never denies: it decides
    /// exactly as enforce mode would, with each deny recorded as `audit_deny` and its reason kept.
    #[test]
    fn audit_never_denies_and_records_what_enforce_would_deny(
        routes in prop::collection::vec(route_spec(), 0..4),
        restated in any::<bool>(),
        default_allow in any::<bool>(),
        sni_deny in any::<bool>(),
        facts in facts(),
    ) {
        let audit = routed_policy("audit", restated.then_some("audit"), &routes, default_allow, sni_deny);
        let enforce = routed_policy("enforce", restated.then_some("enforce"), &routes, default_allow, sni_deny);
        let audited = facts.evaluate(&audit).decision;
        let enforced = facts.evaluate(&enforce).decision;
        prop_assert!(!audited.is_denied(), "{:?}", audited);
        let expected = match enforced.verdict {
            Verdict::Deny(reason) => Verdict::AuditDeny(reason),
            verdict => verdict,
        };
        prop_assert_eq!(audited.verdict, expected);
        prop_assert_eq!(audited.route, enforced.route);
    }

    /// One more matcher in an existing allow list, anywhere in it, never turns an allow into a deny.
    #[test]
    fn an_added_allow_matcher_never_turns_an_allow_into_a_deny(
        routes in prop::collection::vec(route_spec(), 1..4),
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        added in select(MATCHERS),
        mode in select(&["enforce", "audit"][..]),
        facts in facts(),
    ) {
        let before = routed_policy(mode, None, &routes, false, false);
        let mut widened = routes.clone();
        let route = &mut widened[which.index(routes.len())];
        // Absent, `allow` admits any validated certificate: adding a first matcher narrows it.
        if let Some(allow) = &mut route.allow {
            allow.insert(at.index(allow.len() + 1), added);
        }
        let after = routed_policy(mode, None, &widened, false, false);
        let (before, after) = (facts.evaluate(&before).decision, facts.evaluate(&after).decision);
        if matches!(before.verdict, Verdict::Allow(_)) {
            prop_assert!(matches!(after.verdict, Verdict::Allow(_)), "{:?} then {:?}", before, after);
        }
        if mode == "audit" {
            prop_assert!(!after.is_denied(), "{:?}", after);
        }
    }
}

fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9]([a-z0-9-]{0,4}[a-z0-9])?",
        1 => Just("*".to_owned()),
        1 => Just(String::new()),
    ]
}

proptest! {
    #![proptest_config(cases(1024))]

    /// `*.parent` matches a name made of exactly one non-empty label and `parent`, nothing else:
    /// not the parent itself, not two labels, not a name that only ends with the parent's text.
    #[test]
    fn a_dns_wildcard_covers_exactly_one_label(
        parent in prop::collection::vec("[a-z0-9]{1,4}", 1..4),
        head in prop::collection::vec(label(), 0..4),
        glued in any::<bool>(),
    ) {
        let parent = parent.join(".");
        let pattern = DnsPattern::parse(&format!("*.{parent}")).unwrap();
        let separator = if glued { "" } else { "." };
        let name = if head.is_empty() {
            parent.clone()
        } else {
            format!("{}{separator}{parent}", head.join("."))
        };
        let expected = one_label_under(&name, &parent);
        prop_assert_eq!(pattern.matches_name(&name), expected, "{} against *.{}", name, parent);
        let identity = PeerIdentity { dns: vec![name.clone()], ..PeerIdentity::default() };
        let set_policy = policy(&json!({"routes": [{"name": "r", "allow": [{"dns": format!("*.{parent}")}]}]}));
        let allowed = matches!(set_policy.access.decide(Some(0), Peer::Identified(&identity)).verdict, Verdict::Allow(_));
        // A certificate's own wildcard SAN hits only the identical pattern.
        prop_assert_eq!(allowed, expected || name == format!("*.{parent}"));
        let host_policy = policy(&json!({"default_action": "deny", "routes": [
            {"name": "r", "match": {"hosts": [format!("*.{parent}")]}, "require_client_cert": false}
        ]}));
        let authority = format!("{}:8443", name.to_ascii_uppercase());
        let request = RequestFacts { authority: &authority, path: "/", method: "GET", route_name: None };
        prop_assert_eq!(host_policy.access.select_route(&request).is_some(), expected);
    }

    /// IPv4 blocks agree with `u32` prefix arithmetic, IPv6 blocks with `u128`, an IPv4-mapped IPv6
    /// address is its IPv4 address, and a block with host bits set is refused.
    #[test]
    fn cidr_containment_agrees_with_integer_arithmetic(
        base in any::<u32>(),
        prefix in 0u8..=32,
        probe in any::<u32>(),
        near in any::<bool>(),
        base6 in any::<u128>(),
        prefix6 in 0u8..=128,
        probe6 in any::<u128>(),
    ) {
        let mask4 = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        // Half the probes share the block's leading bits, so both outcomes are exercised.
        let probe = if near { (base & mask4) | (probe & !mask4) } else { probe };
        let net = IpNet::parse(&format!("{}/{prefix}", Ipv4Addr::from(base & mask4))).unwrap();
        let inside = probe & mask4 == base & mask4;
        prop_assert_eq!(net.contains(IpAddr::V4(Ipv4Addr::from(probe))), inside);
        prop_assert_eq!(net.contains(IpAddr::V6(Ipv4Addr::from(probe).to_ipv6_mapped())), inside);
        prop_assert_eq!(
            IpNet::parse(&format!("{}/{prefix}", Ipv4Addr::from(base))).is_ok(),
            base & !mask4 == 0
        );
        let mask6 = u128::MAX.checked_shl(128 - u32::from(prefix6)).unwrap_or(0);
        let probe6 = if near { (base6 & mask6) | (probe6 & !mask6) } else { probe6 };
        let network6 = Ipv6Addr::from(base6 & mask6);
        if network6.to_ipv4_mapped().is_none() {
            let net6 = IpNet::parse(&format!("{network6}/{prefix6}")).unwrap();
            let probe_ip = Ipv6Addr::from(probe6);
            // A mapped probe is an IPv4 address and never inside a (non-mapped) IPv6 block.
            let inside6 = probe6 & mask6 == base6 & mask6 && probe_ip.to_ipv4_mapped().is_none();
            prop_assert_eq!(net6.contains(IpAddr::V6(probe_ip)), inside6);
            prop_assert_eq!(net6.contains(IpAddr::V4(Ipv4Addr::from(probe))), false);
        }
    }
}

/// Text as hostile as an XFCC value can be without control characters: every separator, quote
/// and escape of the format, whitespace at the ends, and non-ASCII.
fn xfcc_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9 ,;=\"\\\\:/.@*%+-]{0,16}",
        "[ \u{2003}]?\\PC{0,12}[ \u{2003}]?",
        Just("a\",DNS=forged.example".to_owned()),
        Just("x;URI=spiffe://evil/sa;Subject=\"CN=root\"".to_owned()),
    ]
}

fn xfcc_identity() -> impl Strategy<Value = PeerIdentity> {
    (
        prop::collection::vec(xfcc_text(), 0..3),
        prop::collection::vec(xfcc_text(), 0..3),
        prop::collection::vec(any::<IpAddr>(), 0..3),
        prop::collection::vec(xfcc_text(), 0..3),
        xfcc_text(),
        "[0-9a-f]{64}",
    )
        .prop_filter(
            "an element names something",
            |(uris, dns, ips, emails, subject, _)| {
                !(uris.is_empty()
                    && dns.is_empty()
                    && ips.is_empty()
                    && emails.is_empty()
                    && subject.is_empty())
            },
        )
        .prop_map(|(uris, dns, ips, emails, subject, sha256)| PeerIdentity {
            uris,
            // One trailing dot is dropped per reading: start from a name already read.
            dns: dns
                .iter()
                .map(|name| canonical_name(name.trim_end_matches('.')))
                .collect(),
            ips: ips.into_iter().map(canonical_ip).collect(),
            emails: emails.iter().map(|email| canonical_email(email)).collect(),
            subject,
            sha256,
            ..PeerIdentity::default()
        })
}

const XFCC_DETAILS: [XfccDetail; 6] = [
    XfccDetail::Hash,
    XfccDetail::Subject,
    XfccDetail::Uri,
    XfccDetail::Dns,
    XfccDetail::Ip,
    XfccDetail::Email,
];

proptest! {
    #![proptest_config(cases(1024))]

    /// Elements certgate encodes parse back to the same identities, one element per hop, whatever
    /// separators, quotes and escapes their SANs and subjects hold.
    #[test]
    fn xfcc_elements_round_trip(hops in prop::collection::vec(xfcc_identity(), 1..4)) {
        let header = hops
            .iter()
            .map(|identity| xfcc::encode_element(identity, &XFCC_DETAILS))
            .collect::<Vec<_>>()
            .join(",");
        let elements = xfcc::parse(&header).map_err(|why| TestCaseError::fail(format!("{header}: {why}")))?;
        prop_assert_eq!(elements.len(), hops.len(), "{}", header);
        for (element, sent) in elements.iter().zip(&hops) {
            let read = element.identity().map_err(|why| TestCaseError::fail(format!("{header}: {why}")))?;
            prop_assert_eq!(
                (&read.uris, &read.dns, &read.ips, &read.emails, &read.subject, &read.sha256),
                (&sent.uris, &sent.dns, &sent.ips, &sent.emails, &sent.subject, &sent.sha256),
                "{}", header
            );
        }
    }

    /// Any text at all, control characters included, stays inside its own pair of one element and
    /// of one header line.
    #[test]
    fn xfcc_values_never_forge_pairs_elements_or_lines(uris in prop::collection::vec(any::<String>(), 1..4), subject in any::<String>()) {
        let identity = PeerIdentity { uris: uris.clone(), subject: subject.clone(), ..PeerIdentity::default() };
        let element = xfcc::encode_element(&identity, &XFCC_DETAILS);
        prop_assert!(!element.chars().any(|c| c.is_ascii_control()), "{:?}", element);
        let elements = xfcc::parse(&element).map_err(|why| TestCaseError::fail(format!("{element}: {why}")))?;
        prop_assert_eq!(elements.len(), 1);
        let expected_pairs = uris.len() + usize::from(!subject.is_empty());
        prop_assert_eq!(elements[0].pairs.len(), expected_pairs, "{}", element);
        prop_assert_eq!(elements[0].values("URI").count(), uris.len());
    }
}

/// A certificate certgate read itself, PEM included (what `Client-Cert` and XFCC `Cert=` carry).
fn connection_identity() -> &'static PeerIdentity {
    static IDENTITY: OnceLock<PeerIdentity> = OnceLock::new();
    IDENTITY.get_or_init(|| {
        test_support::identity(
            &[
                San::Uri("spiffe://mesh.local/ns/a/sa/web"),
                San::Dns("web.mesh.local"),
            ],
            Some("web"),
        )
    })
}

const IDENTITY_HEADERS: &[(&str, &str)] = &[
    ("x-client-uri", "uri"),
    ("x-client-dns", "dns"),
    ("x-client-subject", "subject"),
    ("x-client-cn", "subject_cn"),
    ("x-client-sha", "sha256"),
    ("x-client-route", "route"),
    ("x-client-decision", "decision"),
];
const ALB_HEADERS: &[&str] = &[
    "x-amzn-mtls-clientcert-leaf",
    "x-amzn-mtls-clientcert",
    "x-amzn-mtls-clientcert-subject",
];
/// What every client-sent value of an owned header carries, so a survivor can be recognised.
const MARK: &str = "spoof";

/// The `forwarding` block and identity sources of a generated policy.
#[derive(Debug, Clone)]
struct ForwardingSpec {
    xff_append: bool,
    trusted_hops: u32,
    proto: bool,
    host: bool,
    forwarded: &'static str,
    xfcc: Option<&'static str>,
    client_cert: bool,
    identity_headers: Vec<(&'static str, &'static str)>,
    sources: Vec<&'static str>,
}

fn forwarding_spec() -> impl Strategy<Value = ForwardingSpec> {
    (
        (any::<bool>(), 0u32..3, any::<bool>(), any::<bool>()),
        select(&["off", "append", "set"][..]),
        prop::option::of(select(
            XfccMode::NAMES
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>(),
        )),
        any::<bool>(),
        subsequence(IDENTITY_HEADERS, 0..=IDENTITY_HEADERS.len()),
        prop::sample::subsequence(&["connection", "xfcc", "alb"][..], 1..=3).prop_shuffle(),
    )
        .prop_map(
            |(
                (xff_append, trusted_hops, proto, host),
                forwarded,
                xfcc,
                client_cert,
                identity_headers,
                sources,
            )| {
                ForwardingSpec {
                    xff_append,
                    trusted_hops,
                    proto,
                    host,
                    forwarded,
                    xfcc,
                    client_cert,
                    identity_headers,
                    sources,
                }
            },
        )
}

impl ForwardingSpec {
    fn policy(&self) -> Policy {
        let mut forwarding = json!({
            "xff": {"append": self.xff_append, "trusted_hops": self.trusted_hops},
            "x_forwarded_proto": self.proto,
            "x_forwarded_host": self.host,
            "forwarded": self.forwarded,
            "client_cert": self.client_cert,
            "identity_headers": self.identity_headers.iter().map(|(name, field)| ((*name).to_owned(), json!(field))).collect::<serde_json::Map<_, _>>(),
        });
        if let Some(mode) = self.xfcc {
            forwarding["xfcc"] =
                json!({"mode": mode, "details": ["hash", "cert", "subject", "uri", "dns"]});
        }
        policy(&json!({
            "default_action": "allow",
            "routes": [{"name": "open", "require_client_cert": false}],
            "trusted_proxies": {"cidrs": ["10.0.0.0/8"]},
            "identity_sources": self.sources,
            "forwarding": forwarding,
        }))
    }
}

/// Whether a header's value is certgate's alone (`Set`) or a list certgate appends to (`Append`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ownership {
    Set,
    Append,
}

/// The headers certgate owns for this request: every spelling a client sent of these is removed,
/// and at most one value (certgate's) is left.
fn owned_headers(
    spec: &ForwardingSpec,
    trusted: bool,
    mtls: bool,
    sent: &[(String, String)],
) -> Vec<(String, Ownership)> {
    let sent_exact = |name: &str| sent.iter().any(|(key, _)| key.eq_ignore_ascii_case(name));
    let mut owned: Vec<(String, Ownership)> = spec
        .identity_headers
        .iter()
        .map(|(name, _)| ((*name).to_owned(), Ownership::Set))
        .collect();
    let mut own = |name: &str, ownership| owned.push((name.to_owned(), ownership));
    if spec.client_cert {
        own(CLIENT_CERT, Ownership::Set);
        own(CLIENT_CERT_CHAIN, Ownership::Set);
    }
    if spec.xff_append {
        own("x-forwarded-for", Ownership::Append);
    }
    // A trusted peer's own X-Forwarded-Proto and -Host are kept as they came.
    if spec.proto && !(trusted && sent_exact("x-forwarded-proto")) {
        own("x-forwarded-proto", Ownership::Set);
    }
    if spec.host && !(trusted && sent_exact("x-forwarded-host")) {
        own("x-forwarded-host", Ownership::Set);
        own("x-forwarded-port", Ownership::Set);
    }
    match spec.forwarded {
        "append" => own("forwarded", Ownership::Append),
        "set" => own("forwarded", Ownership::Set),
        _ => {}
    }
    let xfcc_spoofed = !trusted && spec.sources.contains(&"xfcc");
    let xfcc_mode = spec.xfcc.map(|mode| mode_named(mode).action(mtls));
    match xfcc_mode {
        _ if xfcc_spoofed => own(XFCC, Ownership::Set),
        Some(xfcc::XfccAction::Keep) | None => {}
        Some(xfcc::XfccAction::Append) => own(XFCC, Ownership::Append),
        Some(_) => own(XFCC, Ownership::Set),
    }
    if !trusted && spec.sources.contains(&"alb") {
        for name in ALB_HEADERS {
            own(name, Ownership::Set);
        }
    }
    owned
}

fn mode_named(name: &str) -> XfccMode {
    XfccMode::NAMES
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, mode)| *mode)
        .unwrap()
}

/// A name a client may send for `owned`: any letter case, `_` for any `-`.
fn spelling(owned: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec((any::<bool>(), any::<bool>()), owned.len()).prop_map(move |flips| {
        owned
            .chars()
            .zip(flips)
            .map(|(c, (upper, underscore))| match c {
                '-' if underscore => '_',
                c if upper => c.to_ascii_uppercase(),
                c => c,
            })
            .collect()
    })
}

/// A client's header: an owned name in some spelling with a marked value, or an ordinary header.
fn client_header() -> impl Strategy<Value = (String, String)> {
    let owned_names: Vec<&'static str> = IDENTITY_HEADERS
        .iter()
        .map(|(name, _)| *name)
        .chain(ALB_HEADERS.iter().copied())
        .chain([
            CLIENT_CERT,
            CLIENT_CERT_CHAIN,
            XFCC,
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-forwarded-port",
            "forwarded",
        ])
        .collect();
    prop_oneof![
        4 => (select(owned_names).prop_flat_map(spelling), "[ -~]{0,12}")
            .prop_map(|(name, value)| (name, format!("{MARK}{value}"))),
        1 => Just((XFCC.to_owned(), format!("By=spiffe://edge;URI=spiffe://mesh.local/{MARK}"))),
        1 => ("x-app|user-agent", "[ -~]{0,8}").prop_map(|(name, value)| (name, value)),
    ]
}

/// The request map after a rewrite as the glue applies it: one edit as Envoy performs it (a
/// replace changes the first value only), or the whole map.
fn after_rewrite(evaluation: &Evaluation<'_>, sent: &[(&[u8], &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let sent_map: Vec<(&[u8], &[u8])> = sent.to_vec();
    let mut map: Vec<(Vec<u8>, Vec<u8>)> =
        sent.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
    match evaluation.rewrite.headers.calls(&sent_map) {
        RewriteCalls::Nothing => map,
        RewriteCalls::WholeMap(whole) => whole
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect(),
        RewriteCalls::Edit(HeaderEdit::Remove(name)) => {
            map.retain(|(key, _)| !key.eq_ignore_ascii_case(name));
            map
        }
        RewriteCalls::Edit(HeaderEdit::Replace(name, value)) => {
            match map
                .iter_mut()
                .find(|(key, _)| key.eq_ignore_ascii_case(name.as_bytes()))
            {
                Some(entry) => *entry = (name.as_bytes().to_vec(), value.to_vec()),
                None => map.push((name.as_bytes().to_vec(), value.to_vec())),
            }
            map
        }
        RewriteCalls::Edit(HeaderEdit::Add(name, value)) => {
            map.push((name.as_bytes().to_vec(), value.to_vec()));
            map
        }
    }
}

proptest! {
    #![proptest_config(cases(1024))]

    /// After the rewrite, a header certgate owns is there at most once, under its own lowercase
    /// name: no duplicate, no other letter case, no `_` spelling survives. From a peer that is not a
    /// trusted proxy, no client-sent value survives in it either (a list certgate appends to keeps
    /// the client's entries in front, as Envoy does, and ends with certgate's own).
    #[test]
    fn rewrites_never_leave_a_client_sent_owned_header(
        spec in forwarding_spec(),
        trusted in any::<bool>(),
        with_certificate in any::<bool>(),
        sent in prop::collection::vec(client_header(), 0..8),
    ) {
        let policy = spec.policy();
        let identity = connection_identity();
        let certificate = if with_certificate { Peer::Identified(identity) } else { Peer::NoCertificate };
        let source = if trusted { "10.1.2.3:443" } else { "203.0.113.9:41000" };
        let connection = ConnectionFacts {
            certificate,
            mtls: with_certificate,
            tls_version: Some("TLSv1.3"),
            sni: None,
            source_address: Some(source),
            local_address: Some("10.9.9.9:8443"),
            rendered: None,
        };
        let request = RequestFacts { route_name: None, path: "/x", authority: "api.example.com", method: "GET" };
        let headers: Vec<(&[u8], &[u8])> = sent.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())).collect();
        let evaluation = evaluate(&policy, &request, &headers, &connection, NOW);
        let result = after_rewrite(&evaluation, &headers);
        for (owned, ownership) in owned_headers(&spec, trusted, with_certificate, &sent) {
            let left: Vec<&(Vec<u8>, Vec<u8>)> = result.iter().filter(|(key, _)| is_spelling_of(key, &owned)).collect();
            prop_assert!(left.len() <= 1, "{} left {} times: {:?}", owned, left.len(), result);
            let Some((key, value)) = left.first() else { continue };
            prop_assert_eq!(key.as_slice(), owned.as_bytes(), "{} left spelled {:?}", owned, String::from_utf8_lossy(key));
            let value = String::from_utf8_lossy(value);
            if trusted {
                continue;
            }
            let certgates_part = match ownership {
                Ownership::Set => &value[..],
                Ownership::Append => value.rsplit(',').next().unwrap_or_default(),
            };
            prop_assert!(!certgates_part.contains(MARK), "{}: {:?} from an untrusted peer survived", owned, value);
        }
    }
}

proptest! {
    #![proptest_config(cases(1024))]

    /// The header values the glue renders once per connection give the same rewrite as rendering
    /// them for each request, whatever the options, the peer and what it sent.
    #[test]
    fn values_rendered_per_connection_rewrite_as_rendered_per_request(
        spec in forwarding_spec(),
        trusted in any::<bool>(),
        sent in prop::collection::vec(client_header(), 0..8),
    ) {
        let policy = spec.policy();
        let identity = connection_identity();
        let rendered = RenderedIdentity::new(&policy.forwarding, identity);
        let source = if trusted { "10.1.2.3:443" } else { "203.0.113.9:41000" };
        let connection = |rendered| ConnectionFacts {
            certificate: Peer::Identified(identity),
            mtls: true,
            tls_version: Some("TLSv1.3"),
            sni: None,
            source_address: Some(source),
            local_address: Some("10.9.9.9:8443"),
            rendered,
        };
        let request = RequestFacts { route_name: None, path: "/x", authority: "api.example.com", method: "GET" };
        let headers: Vec<(&[u8], &[u8])> = sent.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())).collect();
        let per_request = evaluate(&policy, &request, &headers, &connection(None), NOW);
        let per_connection = evaluate(&policy, &request, &headers, &connection(Some(&rendered)), NOW);
        prop_assert_eq!(per_connection.rewrite, per_request.rewrite);
    }
}

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn header_pairs_round_trip(map in prop::collection::vec((prop::collection::vec(1u8..=255, 0..12), prop::collection::vec(1u8..=255, 0..24)), 0..12)) {
        let encoded = pairs::encode(&map);
        let decoded = pairs::decode(&encoded).unwrap();
        let decoded: Vec<(Vec<u8>, Vec<u8>)> = decoded.into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        prop_assert_eq!(decoded, map);
    }

    /// A host buffer is never trusted: any bytes decode or are refused, never read out of bounds.
    #[test]
    fn header_pairs_decode_any_bytes_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = pairs::decode(&bytes);
    }

    #[test]
    fn percent_encoding_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let encoded = percent::encode(&bytes);
        prop_assert!(encoded.bytes().all(|b| b.is_ascii_graphic()));
        prop_assert_eq!(percent::decode(encoded.as_bytes()).unwrap(), bytes);
    }

    /// Every text becomes a JSON string literal that reads back as the same text.
    #[test]
    fn json_strings_read_back(text in any::<String>()) {
        let literal = json_string(&text);
        prop_assert_eq!(serde_json::from_str::<String>(&literal).unwrap(), text);
    }

    /// The configuration reader answers any bytes with a policy or a list of errors.
    #[test]
    fn configuration_of_any_bytes_compiles_or_is_refused(bytes in prop::collection::vec(any::<u8>(), 0..96)) {
        if let Err(errors) = config::compile(&bytes) {
            prop_assert!(!errors.is_empty());
        }
    }

    /// Mutated certificates (flipped bytes, cut short) are read or refused, never a panic, and a
    /// certificate read is one that names what it found.
    #[test]
    fn mutated_certificates_are_read_or_refused(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut der = certificate_der().to_vec();
        for (at, byte) in flips {
            let at = at.index(der.len());
            der[at] ^= byte;
        }
        if truncate {
            der.truncate(cut.index(der.len()));
        }
        if let Ok(identity) = PeerIdentity::from_der(&der) {
            prop_assert_eq!(identity.sha256.len(), 64);
        }
    }
}

fn certificate_der() -> &'static [u8] {
    static DER: OnceLock<Vec<u8>> = OnceLock::new();
    DER.get_or_init(|| {
        let pem = test_support::cert_pem(
            &[
                San::Dns("web.mesh.local"),
                San::Uri("spiffe://mesh.local/ns/a/sa/web"),
                San::Ip("10.1.2.3"),
                San::Email("ops@example.com"),
            ],
            Some("web"),
        );
        let body: String = pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        crate::encoding::pem::decode_base64(&body).unwrap()
    })
}

#[test]
fn uri_patterns_used_by_the_generators_parse() {
    // The generators lean on these being valid; a typo would silently shrink the search space.
    for (kind, value) in MATCHERS {
        assert!(
            config::compile(
                json!({"routes": [{"name": "r", "allow": [{*kind: *value}]}]})
                    .to_string()
                    .as_bytes()
            )
            .is_ok(),
            "{kind} {value}"
        );
    }
    assert!(UriPattern::parse("spiffe://mesh.local/ns/*/sa/web").is_ok());
}
