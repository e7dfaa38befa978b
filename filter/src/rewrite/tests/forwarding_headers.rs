//! Every header transformation as a table: XFCC encoding and parsing (hostile values included),
//! RFC 7239 nodes, the ALB's URL-encoded leaf, percent-encoding, and the hostcall plan of a rewrite.

use crate::encoding::percent;
use crate::facts::pairs;
use crate::identity::xfcc::{self, XfccAction, XfccDetail, XfccMode};
use crate::identity::{alb, IdentityOrigin, PeerIdentity};
use crate::rewrite::{forwarded, is_spelling_of, HeaderEdit, HeaderRewrite, RewriteCalls};
use crate::test_support;
use crate::test_support::San::{Dns, Email, Ip, Uri};
use std::net::IpAddr;

fn all_details() -> Vec<XfccDetail> {
    XfccDetail::NAMES
        .iter()
        .map(|(_, detail)| *detail)
        .collect()
}
fn attributes(subject: &str, uris: &[&str], dns: &[&str]) -> PeerIdentity {
    let mut identity = PeerIdentity::from_envoy_attributes(subject, "", "", "ab12");
    identity.uris = uris.iter().map(|u| (*u).to_owned()).collect();
    identity.dns = dns.iter().map(|d| (*d).to_owned()).collect();
    identity
}

#[test]
fn xfcc_elements_round_trip_even_with_hostile_values() {
    let rows: Vec<(PeerIdentity, &str)> = vec![
        (
            attributes(
                "CN=client,O=Org",
                &["spiffe://td/ns/a/sa/b"],
                &["a.example"],
            ),
            r#"Hash=ab12;Subject="CN=client,O=Org";URI=spiffe://td/ns/a/sa/b;DNS=a.example"#,
        ),
        // `,;=` in a SAN would forge a pair or an element if written raw, as Envoy does
        (
            attributes("", &["spiffe://td/x,URI=spiffe://td/admin"], &[]),
            r#"Hash=ab12;URI="spiffe://td/x,URI=spiffe://td/admin""#,
        ),
        (
            attributes("", &["urn:a;DNS=evil"], &[]),
            r#"Hash=ab12;URI="urn:a;DNS=evil""#,
        ),
        (
            attributes(r#"CN=quote" and \ back"#, &[], &[]),
            r#"Hash=ab12;Subject="CN=quote\" and \\ back""#,
        ),
        // CR/LF can never reach the header line: percent-encoded
        (
            attributes("", &["urn:a\r\nx-admin: yes"], &[]),
            r#"Hash=ab12;URI="urn:a%0D%0Ax-admin: yes""#,
        ),
    ];
    for (identity, expected) in rows {
        let element = xfcc::encode_element(&identity, &all_details());
        assert_eq!(element, expected);
        let parsed = xfcc::parse(&element).unwrap();
        assert_eq!(parsed.len(), 1, "{element}");
        let back = parsed[0].identity().unwrap();
        let expected_uris: Vec<String> = identity
            .uris
            .iter()
            .map(|u| u.replace('\r', "%0D").replace('\n', "%0A"))
            .collect();
        assert_eq!(back.uris, expected_uris, "{element}");
        assert_eq!(back.dns, identity.dns);
        assert_eq!(back.subject, identity.subject);
        assert_eq!(back.sha256, "ab12");
        assert_eq!(back.origin, IdentityOrigin::XfccDetails);
    }
}

#[test]
fn xfcc_with_a_certificate_round_trips_through_cert() {
    let pem = test_support::cert_pem(
        &[
            Uri("spiffe://td/sa/web"),
            Dns("web.example"),
            Ip("10.0.0.7"),
            Email("ops@example.com"),
        ],
        Some("web, inc"),
    );
    let identity = PeerIdentity::from_pem(pem.as_bytes()).unwrap();
    // same SANs, another signature: the helper's certificates are read the same way
    let twin = test_support::identity(&[Uri("spiffe://td/sa/web")], Some("web, inc"));
    assert_eq!(
        (&twin.uris, &twin.subject),
        (&identity.uris, &identity.subject)
    );
    let element = xfcc::encode_element(&identity, &all_details());
    assert!(element.starts_with(&format!(
        "Hash={};Cert=\"-----BEGIN%20CERTIFICATE-----%0A",
        identity.sha256
    )));
    assert!(element
        .contains(";URI=spiffe://td/sa/web;DNS=web.example;IP=10.0.0.7;Email=ops@example.com"));
    assert!(
        element.contains(r#";Subject="CN=web\\, inc,O=Certgate Tests,C=US";"#),
        "{element}"
    );
    let parsed = xfcc::parse(&element).unwrap();
    let back = parsed[0].identity().unwrap();
    assert_eq!(back.sha256, identity.sha256);
    assert_eq!(back.uris, identity.uris);
    assert_eq!(back.ips, identity.ips);
    assert_eq!(back.emails, identity.emails);
    assert!(back.pem.is_some());
    assert_eq!(back.origin, IdentityOrigin::Certificate);
}

#[test]
fn xfcc_parsing_reads_envoy_output_and_refuses_malformed_headers() {
    // Envoy's own format (unquoted URI/DNS, several hops), the right-most element is the nearest hop
    let envoy = r#"By=spiffe://td/gw;Hash=aa;Subject="C=US,CN=a";URI=spiffe://td/a;DNS=a.example;DNS=b.example, Hash=bb;URI=spiffe://td/b"#;
    let elements = xfcc::parse(envoy).unwrap();
    assert_eq!(elements.len(), 2);
    let first = elements[0].identity().unwrap();
    assert_eq!(first.dns, ["a.example", "b.example"]);
    assert_eq!(first.subject_cns, ["a"]);
    let last = elements[1].identity().unwrap();
    assert_eq!(
        (last.uris.as_slice(), last.sha256.as_str()),
        (&["spiffe://td/b".to_owned()][..], "bb")
    );
    assert_eq!(
        elements[0].values("uri").collect::<Vec<_>>(),
        ["spiffe://td/a"]
    );
    assert!(xfcc::parse("   ").unwrap().is_empty());

    for (malformed, why) in [
        ("Hash", "no '='"),
        ("URI=\"spiffe://td/a", "not closed"),
        ("URI=\"a\"b", "after a value"),
        ("=x", "is not a key"),
        ("Hash=aa,,Hash=bb", "is not a key"),
    ] {
        let error = xfcc::parse(malformed).unwrap_err();
        assert!(error.contains(why), "{malformed}: {error}");
    }
    for (element, why) in [
        ("Hash=aa", "names no Cert"),
        ("Cert=\"%ZZ\"", "not URL-encoded"),
        ("Cert=\"abc\"", "Cert"),
        ("IP=ten", "is not an address"),
        ("Cert=\"a\";Cert=\"b\"", "more than one Cert"),
    ] {
        let error = xfcc::parse(element).unwrap()[0].identity().unwrap_err();
        assert!(error.contains(why), "{element}: {error}");
    }
}

#[test]
fn xfcc_modes_follow_envoy() {
    use XfccAction::*;
    use XfccMode::*;
    for (mode, with_cert, without_cert) in [
        (Sanitize, Remove, Remove),
        (ForwardOnly, Keep, Remove),
        (AppendForward, Append, Remove),
        (SanitizeSet, Set, Remove),
        (AlwaysForwardOnly, Keep, Keep),
    ] {
        assert_eq!(mode.action(true), with_cert, "{mode:?}");
        assert_eq!(mode.action(false), without_cert, "{mode:?}");
    }
}

#[test]
fn forwarded_nodes_are_quoted_and_bracketed_as_rfc_7239_requires() {
    let ip = |text: &str| text.parse::<IpAddr>().unwrap();
    let socket = |text: &str| crate::facts::address::SocketAddress::parse(text).unwrap();
    for (client, expected) in [
        ("192.0.2.43", "for=192.0.2.43;proto=http"),
        (
            "2001:db8:cafe::17",
            r#"for="[2001:db8:cafe::17]";proto=http"#,
        ),
    ] {
        assert_eq!(
            forwarded::element(Some(ip(client)), None, "http", ""),
            expected
        );
    }
    for (local, expected) in [
        ("192.0.2.43:4711", r#"by="192.0.2.43:4711";proto=http"#),
        (
            "[2001:db8:cafe::17]:4711",
            r#"by="[2001:db8:cafe::17]:4711";proto=http"#,
        ),
    ] {
        assert_eq!(
            forwarded::element(None, Some(socket(local)), "http", ""),
            expected
        );
    }
    for (value, expected) in [
        ("https", "https"),
        ("example.com", "example.com"),
        ("example.com:8443", r#""example.com:8443""#),
        (r#"a"b\c"#, r#""a\"b\\c""#),
        ("a\r\nb", r#""ab""#),
        ("", r#""""#),
    ] {
        let element = forwarded::element(None, None, value, "");
        assert_eq!(element, format!("proto={expected}"), "{value:?}");
    }
    assert_eq!(
        forwarded::element(
            Some(ip("2001:db8::1")),
            Some(socket("[::1]:8443")),
            "https",
            "api.example.com:8443"
        ),
        r#"for="[2001:db8::1]";by="[::1]:8443";proto=https;host="api.example.com:8443""#
    );
    assert_eq!(forwarded::element(None, None, "http", ""), "proto=http");
}

/// The IPv4 text written without the formatting machinery is `Display`'s, digit for digit.
#[test]
fn ipv4_text_matches_display_for_every_octet() {
    for octet in 0..=255u8 {
        let address = IpAddr::from([octet, 255 - octet, octet / 2, 100 + octet % 10]);
        assert_eq!(crate::names::ip::ip_text(address), address.to_string());
    }
    let v6: IpAddr = "2001:db8::ff00:42:8329".parse().unwrap();
    assert_eq!(crate::names::ip::ip_text(v6), v6.to_string());
}

#[test]
fn alb_leaf_is_url_decoded_with_plus_equals_and_slash_left_alone() {
    let pem = test_support::cert_pem(&[Dns("client.example")], Some("client"));
    // ALB's encoding: newlines and spaces escaped, base64's `+`, `/` and `=` left as they are
    let alb_encoded = pem.replace(' ', "%20").replace('\n', "%0A");
    assert!(alb_encoded.contains('+') || alb_encoded.contains('/') || alb_encoded.contains('='));
    let identity = alb::leaf_identity(alb_encoded.as_bytes()).unwrap();
    assert_eq!(identity.dns, ["client.example"]);
    // fully escaped (Envoy style) reads the same
    let strict = percent::encode(pem.as_bytes());
    assert!(!strict.contains('+'));
    assert_eq!(
        alb::leaf_identity(strict.as_bytes()).unwrap().sha256,
        identity.sha256
    );
    // a `+` turned into a space (form decoding) would break the certificate: certgate never does that
    assert!(alb::leaf_identity(b"-----BEGIN%20CERTIFICATE-----%0AAB%2").is_err());
    assert!(alb::leaf_identity(b"not a certificate").is_err());
}

#[test]
fn percent_encoding_table() {
    for (input, encoded) in [
        ("abc-._~", "abc-._~"),
        ("a b\n", "a%20b%0A"),
        ("+/=", "%2B%2F%3D"),
        ("é", "%C3%A9"),
    ] {
        assert_eq!(percent::encode(input.as_bytes()), encoded);
        assert_eq!(
            percent::decode(encoded.as_bytes()).unwrap(),
            input.as_bytes()
        );
    }
    assert_eq!(percent::decode(b"a+b=/").unwrap(), b"a+b=/");
    assert_eq!(percent::decode(b"%2b%2F").unwrap(), b"+/");
    for bad in [&b"%"[..], b"%2", b"%G0"] {
        assert!(percent::decode(bad).is_err(), "{bad:?}");
    }
    assert_eq!(percent::escape_controls("a\r\nb\tc", &[]), "a%0D%0Ab%09c");
    assert_eq!(percent::escape_controls("a,b", b","), "a%2Cb");
    assert!(matches!(
        percent::escape_controls("plain", b","),
        std::borrow::Cow::Borrowed(_)
    ));
}

#[test]
fn header_name_spellings() {
    for (received, owned, expected) in [
        ("x-client-dns", "x-client-dns", true),
        ("X-Client-DNS", "x-client-dns", true),
        ("x_client_dns", "x-client-dns", true),
        ("X_CLIENT-dns", "x-client-dns", true),
        ("x-client-dn", "x-client-dns", false),
        ("x-client-dnss", "x-client-dns", false),
        ("x.client.dns", "x-client-dns", false),
    ] {
        assert_eq!(
            is_spelling_of(received.as_bytes(), owned),
            expected,
            "{received}"
        );
    }
}

#[test]
fn a_rewrite_takes_at_most_one_hostcall() {
    let headers = [
        (&b":authority"[..], &b"h"[..]),
        (b"x-forwarded-for", b"1.1.1.1"),
        (b"X-Forwarded-For", b"2.2.2.2"),
        (b"x-client-dns", b"forged"),
        (b"accept", b"*/*"),
    ];
    let headers: Vec<(&[u8], &[u8])> = headers.to_vec();

    let empty = HeaderRewrite::default();
    assert_eq!(empty.calls(&headers), RewriteCalls::Nothing);

    let mut one = HeaderRewrite::default();
    one.remove(b"x-client-dns");
    assert_eq!(
        one.calls(&headers),
        RewriteCalls::Edit(HeaderEdit::Remove(b"x-client-dns"))
    );

    // duplicates: Envoy's replace only overwrites the first one, so it takes remove + add...
    let mut duplicated = HeaderRewrite::default();
    duplicated.remove(b"x-forwarded-for");
    duplicated.remove(b"X-Forwarded-For");
    duplicated.set("x-forwarded-for", b"9.9.9.9".to_vec());
    assert_eq!(
        duplicated.edits(&headers),
        [
            HeaderEdit::Remove(b"x-forwarded-for"),
            HeaderEdit::Add("x-forwarded-for", b"9.9.9.9")
        ]
    );
    // ...so it goes out as one whole map instead
    let RewriteCalls::WholeMap(map) = duplicated.calls(&headers) else {
        panic!("expected the whole map");
    };
    assert_eq!(
        map,
        [
            (&b":authority"[..], &b"h"[..]),
            (b"x-client-dns", b"forged"),
            (b"accept", b"*/*"),
            (b"x-forwarded-for", b"9.9.9.9"),
        ]
    );
    let decoded = pairs::encode(&map);
    assert_eq!(pairs::decode(&decoded).unwrap(), map);

    let mut single = HeaderRewrite::default();
    single.set("accept", b"text/plain".to_vec());
    assert_eq!(
        single.edits(&headers),
        [HeaderEdit::Replace("accept", b"text/plain")]
    );
    let mut new = HeaderRewrite::default();
    new.set("x-new", b"1".to_vec());
    assert_eq!(new.edits(&headers), [HeaderEdit::Add("x-new", b"1")]);
}
