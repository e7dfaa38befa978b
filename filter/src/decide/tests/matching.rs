//! Matching semantics, as a table: (matcher, certificate SAN, wildcard_certs, expected hit).
//! Every certificate is real (rcgen) and read through certgate's identity extraction.

use crate::decide::matcher::{Matcher, MatcherKind, MatcherSet};
use crate::test_support;
use crate::test_support::San::{self, Dns, Email, Ip, Uri};

use MatcherKind::{
    Dns as DNS, Email as EMAIL, Ip as IP, Sha256 as SHA, SubjectCn as CN, TrustDomain as TD,
    Uri as URI,
};

/// (kind, pattern, the certificate's SAN, wildcard_certs, expected)
const TABLE: &[(MatcherKind, &str, San<'static>, bool, bool)] = &[
    // dns: exact, case-insensitive, one trailing dot ignored
    (DNS, "api.example.com", Dns("api.example.com"), false, true),
    (DNS, "api.example.com", Dns("API.Example.COM"), false, true),
    (DNS, "API.EXAMPLE.COM", Dns("api.example.com"), false, true),
    (DNS, "api.example.com.", Dns("api.example.com"), false, true),
    (DNS, "api.example.com", Dns("api.example.com."), false, true),
    (DNS, "api.example.com", Dns("api.example.co"), false, false),
    (
        DNS,
        "api.example.com",
        Dns("xapi.example.com"),
        false,
        false,
    ),
    (
        DNS,
        "api.example.com",
        Dns("api.example.com.evil"),
        false,
        false,
    ),
    (
        DNS,
        "api.example.com",
        Dns("a.api.example.com"),
        false,
        false,
    ),
    // dns: `*.` covers exactly one label
    (DNS, "*.example.com", Dns("a.example.com"), false, true),
    (DNS, "*.example.com", Dns("A.EXAMPLE.com"), false, true),
    (DNS, "*.example.com", Dns("a.b.example.com"), false, false),
    (DNS, "*.example.com", Dns("example.com"), false, false),
    (DNS, "*.example.com", Dns("aexample.com"), false, false),
    (DNS, "*.example.com", Dns(".example.com"), false, false),
    (
        DNS,
        "*.example.com",
        Dns("a.example.com.evil.net"),
        false,
        false,
    ),
    (
        DNS,
        "*.yelb.svc.cluster.local",
        Dns("ui.yelb.svc.cluster.local"),
        false,
        true,
    ),
    // IDNA: A-labels compare like any name
    (
        DNS,
        "xn--bcher-kva.example",
        Dns("xn--bcher-kva.example"),
        false,
        true,
    ),
    (
        DNS,
        "XN--BCHER-KVA.example",
        Dns("xn--bcher-kva.example"),
        false,
        true,
    ),
    (
        DNS,
        "*.xn--bcher-kva.example",
        Dns("shop.xn--bcher-kva.example"),
        false,
        true,
    ),
    (
        DNS,
        "bucher.example",
        Dns("xn--bcher-kva.example"),
        false,
        false,
    ),
    // certificates whose own SAN is a wildcard
    (DNS, "*.svc.local", Dns("*.svc.local"), false, true),
    (DNS, "*.svc.local", Dns("*.svc.local"), true, true),
    (DNS, "orders.svc.local", Dns("*.svc.local"), false, false),
    (DNS, "orders.svc.local", Dns("*.svc.local"), true, true),
    (DNS, "a.orders.svc.local", Dns("*.svc.local"), true, false),
    (DNS, "svc.local", Dns("*.svc.local"), true, false),
    (DNS, "*.local", Dns("*.svc.local"), true, false),
    (DNS, "orders.other.local", Dns("*.svc.local"), true, false),
    (DNS, "orders.svc.local", Dns("*.SVC.local"), true, true),
    // uri: exact
    (
        URI,
        "spiffe://mesh.local/ns/ops/sa/admin",
        Uri("spiffe://mesh.local/ns/ops/sa/admin"),
        false,
        true,
    ),
    (
        URI,
        "spiffe://mesh.local/ns/ops/sa/admin",
        Uri("spiffe://mesh.local/ns/ops/sa/admin2"),
        false,
        false,
    ),
    (
        URI,
        "spiffe://mesh.local/ns/ops/sa/admin",
        Uri("spiffe://mesh.local/ns/ops/sa/Admin"),
        false,
        false,
    ),
    (
        URI,
        "https://example.com/id",
        Uri("https://example.com/id"),
        false,
        true,
    ),
    // uri: trailing `*` is a prefix
    (
        URI,
        "spiffe://mesh.local/ns/ops/sa/*",
        Uri("spiffe://mesh.local/ns/ops/sa/admin"),
        false,
        true,
    ),
    (
        URI,
        "spiffe://mesh.local/ns/ops/*",
        Uri("spiffe://mesh.local/ns/ops/sa/admin"),
        false,
        true,
    ),
    (
        URI,
        "spiffe://mesh.local/ns/ops/sa/*",
        Uri("spiffe://mesh.local/ns/ops/sa/"),
        false,
        false,
    ),
    (
        URI,
        "spiffe://mesh.local/ns/ops/sa/*",
        Uri("spiffe://mesh.local/ns/ops/sa"),
        false,
        false,
    ),
    (
        URI,
        "spiffe://mesh.local/ns/ops/sa/*",
        Uri("spiffe://mesh.local/ns/opsx/sa/admin"),
        false,
        false,
    ),
    (
        URI,
        "spiffe://mesh.local/ns/ops/*",
        Uri("spiffe://mesh.local/ns/ops/../prod/sa/x"),
        false,
        false,
    ),
    (
        URI,
        "spiffe://mesh.local/ns/ops/*",
        Uri("spiffe://mesh.local/ns/ops//sa/x"),
        false,
        false,
    ),
    (
        URI,
        "spiffe://mesh.local/ns/prod-*",
        Uri("spiffe://mesh.local/ns/prod-eu/sa/web"),
        false,
        true,
    ),
    (URI, "urn:example:*", Uri("urn:example:team"), false, true),
    // uri: `*` segment is exactly one segment
    (
        URI,
        "spiffe://td/ns/*/sa/web",
        Uri("spiffe://td/ns/prod/sa/web"),
        false,
        true,
    ),
    (
        URI,
        "spiffe://td/ns/*/sa/web",
        Uri("spiffe://td/ns/a/b/sa/web"),
        false,
        false,
    ),
    (
        URI,
        "spiffe://td/ns/*/sa/web",
        Uri("spiffe://td/ns/sa/web"),
        false,
        false,
    ),
    (
        URI,
        "spiffe://td/ns/*/sa/web",
        Uri("spiffe://td/ns/../sa/web"),
        false,
        false,
    ),
    (
        URI,
        "spiffe://td/ns/*/sa/web",
        Uri("spiffe://td/ns/prod/sa/web/extra"),
        false,
        false,
    ),
    (
        URI,
        "spiffe://td/ns/*/sa/*",
        Uri("spiffe://td/ns/prod/sa/web"),
        false,
        true,
    ),
    (
        URI,
        "spiffe://td/ns/*/sa/*",
        Uri("spiffe://td/ns/prod/sa"),
        false,
        false,
    ),
    (
        URI,
        "spiffe://td/ns/*/sa/web",
        Uri("spiffe://TD/ns/prod/sa/web"),
        false,
        false,
    ),
    // trust_domain: any valid SPIFFE ID of that domain
    (
        TD,
        "partner.example",
        Uri("spiffe://partner.example/ns/a/sa/b"),
        false,
        true,
    ),
    (
        TD,
        "partner.example",
        Uri("spiffe://partner.example"),
        false,
        true,
    ),
    (
        TD,
        "partner.example",
        Uri("spiffe://partner.example.evil/ns/a"),
        false,
        false,
    ),
    (
        TD,
        "partner.example",
        Uri("spiffe://evil/partner.example"),
        false,
        false,
    ),
    (
        TD,
        "partner.example",
        Uri("https://partner.example/ns/a"),
        false,
        false,
    ),
    (
        TD,
        "partner.example",
        Uri("spiffe://partner.example/ns/../x"),
        false,
        false,
    ),
    // ip: addresses and blocks, v4 and v6
    (IP, "10.1.0.0/16", Ip("10.1.2.3"), false, true),
    (IP, "10.1.0.0/16", Ip("10.2.0.1"), false, false),
    (IP, "10.1.2.3", Ip("10.1.2.3"), false, true),
    (IP, "10.1.2.3/32", Ip("10.1.2.4"), false, false),
    (IP, "0.0.0.0/0", Ip("192.0.2.1"), false, true),
    (IP, "0.0.0.0/0", Ip("2001:db8::1"), false, false),
    (IP, "2001:db8::/32", Ip("2001:db8:1::5"), false, true),
    (IP, "2001:db8::/32", Ip("2001:db9::5"), false, false),
    (IP, "2001:DB8::1", Ip("2001:db8:0:0:0:0:0:1"), false, true),
    (IP, "10.1.0.0/16", Ip("::ffff:10.1.2.3"), false, true),
    (IP, "::ffff:10.1.0.0/112", Ip("10.1.2.3"), false, true),
    // email: exact, domain case-insensitive
    (
        EMAIL,
        "ops@example.com",
        Email("ops@example.com"),
        false,
        true,
    ),
    (
        EMAIL,
        "ops@example.com",
        Email("ops@EXAMPLE.com"),
        false,
        true,
    ),
    (
        EMAIL,
        "ops@EXAMPLE.COM",
        Email("ops@example.com"),
        false,
        true,
    ),
    (
        EMAIL,
        "ops@example.com",
        Email("OPS@example.com"),
        false,
        false,
    ),
    (
        EMAIL,
        "ops@example.com",
        Email("ops@example.com.evil"),
        false,
        false,
    ),
    // matchers never cross SAN kinds
    (DNS, "example.com", Email("ops@example.com"), false, false),
    (
        DNS,
        "spiffe.example",
        Uri("spiffe://spiffe.example/x"),
        false,
        false,
    ),
    (IP, "10.0.0.1", Dns("10.0.0.1"), false, false),
];

fn hits(kind: MatcherKind, pattern: &str, san: San<'_>, wildcard_certs: bool) -> bool {
    let matcher = Matcher::parse(kind, pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
    let identity = test_support::identity(&[san], None);
    MatcherSet::new(vec![matcher])
        .first_hit(&identity, wildcard_certs)
        .is_some()
}

#[test]
fn san_matching_table() {
    assert!(TABLE.len() >= 60, "the table covers every rule");
    let failures: Vec<String> = TABLE
        .iter()
        .filter(|(kind, pattern, san, wildcard_certs, expected)| {
            hits(*kind, pattern, *san, *wildcard_certs) != *expected
        })
        .map(|(kind, pattern, san, wildcard_certs, expected)| {
            format!(
                "{}: {pattern:?} vs {san:?} (wildcard_certs {wildcard_certs}) should be {expected}",
                kind.key()
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn subject_cn_matches_exactly() {
    let identity = test_support::identity(&[], Some("orders"));
    let set = |cn| MatcherSet::new(vec![Matcher::parse(CN, cn).unwrap()]);
    assert_eq!(set("orders").first_hit(&identity, false), Some(0));
    assert_eq!(set("Orders").first_hit(&identity, false), None);
    assert_eq!(set("order").first_hit(&identity, false), None);
}

#[test]
fn fingerprint_pins_accept_any_case_and_colons() {
    let identity = test_support::identity(&[Dns("pinned.example")], None);
    let upper_with_colons: String = identity
        .sha256
        .to_ascii_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    for pin in [identity.sha256.clone(), upper_with_colons] {
        let set = MatcherSet::new(vec![Matcher::parse(SHA, &pin).unwrap()]);
        assert_eq!(set.first_hit(&identity, false), Some(0), "{pin}");
    }
    let other = test_support::identity(&[Dns("other.example")], None);
    let set = MatcherSet::new(vec![Matcher::parse(SHA, &identity.sha256).unwrap()]);
    assert_eq!(set.first_hit(&other, false), None);
}

#[test]
fn all_sans_are_considered_and_the_lowest_matching_rule_is_reported() {
    let identity = test_support::identity(
        &[
            Dns("first.example"),
            Dns("second.example"),
            Uri("spiffe://td/ns/a/sa/b"),
            Ip("10.9.9.9"),
        ],
        Some("cn"),
    );
    let set = MatcherSet::new(vec![
        Matcher::parse(IP, "10.9.0.0/16").unwrap(),
        Matcher::parse(DNS, "second.example").unwrap(),
    ]);
    assert_eq!(set.first_hit(&identity, false), Some(0));
    let set = MatcherSet::new(vec![
        Matcher::parse(EMAIL, "x@y.z").unwrap(),
        Matcher::parse(DNS, "second.example").unwrap(),
        Matcher::parse(URI, "spiffe://td/ns/*/sa/b").unwrap(),
    ]);
    assert_eq!(set.first_hit(&identity, false), Some(1));
}

#[test]
fn many_matchers_index_like_one() {
    let mut matchers: Vec<Matcher> = (0..5000)
        .map(|i| Matcher::parse(DNS, &format!("svc-{i}.example.com")).unwrap())
        .collect();
    matchers
        .extend((0..2000).map(|i| Matcher::parse(URI, &format!("spiffe://td/ns/n{i}/*")).unwrap()));
    matchers.extend(
        (0..1000).map(|i| Matcher::parse(IP, &format!("10.{}.{}.0/24", i / 256, i % 256)).unwrap()),
    );
    let set = MatcherSet::new(matchers);
    let hit = |sans: &[San<'_>]| set.first_hit(&test_support::identity(sans, None), false);
    assert_eq!(hit(&[Dns("svc-4321.example.com")]), Some(4321));
    assert_eq!(hit(&[Uri("spiffe://td/ns/n1500/sa/x")]), Some(6500));
    assert_eq!(hit(&[Ip("10.3.200.7")]), Some(7000 + 3 * 256 + 200));
    assert_eq!(
        hit(&[
            Dns("svc-5000.example.com"),
            Uri("spiffe://td/ns/n2000/sa/x")
        ]),
        None
    );
}
