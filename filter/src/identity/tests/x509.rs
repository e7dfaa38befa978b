//! certgate's own certificate reader against x509-parser as an oracle: the same identity from many
//! real rcgen certificates and hand-built DER, and a clear error, never a panic, for malformed DER.

use crate::identity::{canonical_email, hex, PeerIdentity};

use crate::identity::x509::CertificateError;
use crate::names::dns::canonical_name;
use crate::names::ip::canonical_ip;
use rcgen::string::{BmpString, Ia5String, PrintableString, TeletexString, UniversalString};
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue, KeyPair,
    OtherNameValue, SanType, SerialNumber,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;
use std::time::Duration;
use x509_parser::asn1_rs::{Tag, ToDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

// ---------------------------------------------------------------------------------------------
// The oracle: the identity x509-parser sees, normalised exactly as certgate documents it.

fn oracle_identity(der: &[u8]) -> Result<PeerIdentity, String> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err("trailing data".into());
    }
    let mut identity = PeerIdentity {
        subject: oracle_rfc2253(cert.subject()),
        subject_cns: cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| oracle_string(cn.attr_value()))
            .collect(),
        issuer: oracle_rfc2253(cert.issuer()),
        serial: hex(cert.raw_serial()),
        not_before: Some(cert.validity().not_before.timestamp()),
        not_after: Some(cert.validity().not_after.timestamp()),
        sha256: sha256_hex(der),
        ..PeerIdentity::default()
    };
    let sans = cert.subject_alternative_name().map_err(|e| e.to_string())?;
    for name in sans.iter().flat_map(|ext| ext.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(dns) => identity.dns.push(canonical_name(dns)),
            GeneralName::URI(uri) => identity.uris.push((*uri).to_owned()),
            GeneralName::RFC822Name(email) => identity.emails.push(canonical_email(email)),
            GeneralName::IPAddress(bytes) => identity.ips.extend(oracle_ip(bytes)),
            _ => {}
        }
    }
    Ok(identity)
}

fn oracle_rfc2253(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attribute| {
                    let oid = oracle_dotted(attribute.attr_type().as_bytes());
                    let short = SHORT_NAMES
                        .iter()
                        .find(|(long, _)| *long == oid)
                        .map_or(oid.as_str(), |(_, short)| short);
                    let value = match oracle_string(attribute.attr_value()) {
                        Some(text) => oracle_escape(&text),
                        None => format!("#{}", hex(&attribute.attr_value().to_der_vec().unwrap())),
                    };
                    format!("{short}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// Dotted OIDs the way BoringSSL prints them (x509-parser 0.18 misreads `2.x` arcs of 40 and more).
fn oracle_dotted(bytes: &[u8]) -> String {
    let mut arcs = Vec::new();
    let mut arc: u128 = 0;
    for byte in bytes {
        arc = arc << 7 | u128::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            arcs.push(arc);
            arc = 0;
        }
    }
    if arcs.is_empty() || bytes.last().is_some_and(|last| last & 0x80 != 0) {
        return "invalid".into();
    }
    let first = arcs.remove(0);
    let (a, b) = match first {
        0..40 => (0, first),
        40..80 => (1, first - 40),
        _ => (2, first - 80),
    };
    let mut dotted = format!("{a}.{b}");
    for arc in arcs {
        dotted.push_str(&format!(".{arc}"));
    }
    dotted
}

const SHORT_NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.4", "SN"),
    ("2.5.4.5", "serialNumber"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "street"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.12", "title"),
    ("2.5.4.42", "GN"),
    ("2.5.4.43", "initials"),
    ("2.5.4.44", "generationQualifier"),
    ("2.5.4.46", "dnQualifier"),
    ("2.5.4.65", "pseudonym"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("1.2.840.113549.1.9.1", "emailAddress"),
];

/// Directory strings the way BoringSSL decodes them (x509-parser itself only decodes UTF-8 types).
fn oracle_string(value: &x509_parser::asn1_rs::Any<'_>) -> Option<String> {
    let data = value.data;
    match value.tag() {
        Tag::Utf8String => String::from_utf8(data.to_vec()).ok(),
        Tag::NumericString
        | Tag::PrintableString
        | Tag::T61String
        | Tag::Ia5String
        | Tag::VisibleString => Some(data.iter().map(|&b| b as char).collect()),
        Tag::BmpString if data.len().is_multiple_of(2) => String::from_utf16(
            &data
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect::<Vec<_>>(),
        )
        .ok(),
        Tag::UniversalString if data.len().is_multiple_of(4) => data
            .chunks(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

/// RFC 2253 escaping, written independently of certgate's.
/// BoringSSL's RFC 2253 printing, written independently: specials backslashed, control bytes and the
/// UTF-8 bytes of non-ASCII characters as `\XX`.
fn oracle_escape(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    for (index, &c) in chars.iter().enumerate() {
        let first = index == 0;
        let last = index + 1 == chars.len();
        if ",+\"\\<>;".contains(c) || (first && (c == '#' || c == ' ')) || (last && c == ' ') {
            out.push('\\');
            out.push(c);
        } else if c.is_ascii_control() || !c.is_ascii() {
            let mut utf8 = [0u8; 4];
            for byte in c.encode_utf8(&mut utf8).bytes() {
                out.push_str(&format!("\\{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn oracle_ip(bytes: &[u8]) -> Option<IpAddr> {
    let ip = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).unwrap()),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).unwrap()),
        _ => return None,
    };
    Some(canonical_ip(ip))
}

fn sha256_hex(der: &[u8]) -> String {
    // The digest is not what this file tests: take certgate's through an identity it built.
    PeerIdentity::from_der(der)
        .map(|identity| identity.sha256)
        .unwrap_or_default()
}

/// certgate and the oracle agree on this certificate, which both read.
fn assert_agrees(der: &[u8]) -> PeerIdentity {
    let ours = PeerIdentity::from_der(der).unwrap_or_else(|e| panic!("certgate: {e}"));
    let oracle = oracle_identity(der).unwrap_or_else(|e| panic!("x509-parser: {e}"));
    assert_eq!(ours, oracle);
    assert_eq!(ours.sha256.len(), 64);
    ours
}

// ---------------------------------------------------------------------------------------------
// rcgen certificates.

fn key() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| KeyPair::generate().expect("key generation"))
}

fn params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
}

fn der_of(params: CertificateParams) -> Vec<u8> {
    params
        .self_signed(key())
        .expect("self-signed certificate")
        .der()
        .to_vec()
}

fn custom(dotted: &str) -> DnType {
    DnType::CustomDnType(dotted.split('.').map(|arc| arc.parse().unwrap()).collect())
}

fn ia5(text: &str) -> Ia5String {
    Ia5String::try_from(text).expect("IA5 string")
}

fn all_san_kinds() -> Vec<SanType> {
    vec![
        SanType::DnsName(ia5("API.Example.COM.")),
        SanType::DnsName(ia5("*.wild.example.com")),
        SanType::URI(ia5("spiffe://mesh.example/ns/prod/sa/api")),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        SanType::IpAddress("::ffff:192.0.2.7".parse().unwrap()),
        SanType::IpAddress("2001:db8::1".parse().unwrap()),
        SanType::Rfc822Name(ia5("Ops.Team@Example.ORG")),
        SanType::OtherName((
            vec![1, 3, 6, 1, 4, 1, 311, 20, 2, 3],
            OtherNameValue::Utf8String("upn@example".into()),
        )),
    ]
}

#[test]
fn every_san_kind_matches_the_oracle() {
    let mut p = params();
    p.distinguished_name.push(DnType::CommonName, "client");
    p.subject_alt_names = all_san_kinds();
    let identity = assert_agrees(&der_of(p));
    assert_eq!(
        identity.dns,
        ["api.example.com", "*.wild.example.com"].map(String::from)
    );
    assert_eq!(identity.uris, ["spiffe://mesh.example/ns/prod/sa/api"]);
    assert_eq!(identity.emails, ["Ops.Team@example.org"]);
    let ips: Vec<String> = identity.ips.iter().map(ToString::to_string).collect();
    assert_eq!(ips, ["10.1.2.3", "::1", "192.0.2.7", "2001:db8::1"]);
    assert_eq!(identity.subject, "CN=client");
    assert_eq!(identity.subject_cns, ["client"]);
}

#[test]
fn many_sans_keep_their_order() {
    let mut p = params();
    p.subject_alt_names = (0..300)
        .map(|i| match i % 4 {
            0 => SanType::DnsName(ia5(&format!("host{i}.example.com"))),
            1 => SanType::URI(ia5(&format!("spiffe://example/{i}"))),
            2 => SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(10, 0, (i / 256) as u8, i as u8))),
            _ => SanType::Rfc822Name(ia5(&format!("user{i}@example.com"))),
        })
        .collect();
    let identity = assert_agrees(&der_of(p));
    assert_eq!(identity.san_count(), 300);
    assert_eq!(identity.dns[1], "host4.example.com");
}

#[test]
fn subjects_with_special_characters_and_string_types_match_the_oracle() {
    let values: Vec<(DnType, DnValue)> = vec![
        (
            DnType::CountryName,
            DnValue::PrintableString(PrintableString::try_from("US").unwrap()),
        ),
        (DnType::OrganizationName, "Certgate, Inc.".into()),
        (
            DnType::OrganizationalUnitName,
            " leading and trailing ".into(),
        ),
        (
            DnType::CommonName,
            "#hash+plus\"quote\\back<lt>gt;semi=eq".into(),
        ),
        (custom("2.5.4.42"), "José Müller 東京 😀".into()),
        (
            DnType::LocalityName,
            DnValue::BmpString(BmpString::try_from("Zürich ÿ").unwrap()),
        ),
        (
            DnType::StateOrProvinceName,
            DnValue::UniversalString(UniversalString::try_from("Ω 𝄞").unwrap()),
        ),
        (
            custom("2.5.4.12"),
            DnValue::TeletexString(TeletexString::try_from("teletex").unwrap()),
        ),
        (
            custom("0.9.2342.19200300.100.1.25"),
            DnValue::Ia5String(ia5("example")),
        ),
        (
            custom("1.2.840.113549.1.9.1"),
            DnValue::Ia5String(ia5("a@b.c")),
        ),
        (
            custom("2.5.4.5"),
            DnValue::PrintableString(PrintableString::try_from("12345").unwrap()),
        ),
        (
            custom("1.3.6.1.4.1.99999.18446744073709551615"),
            "big arc".into(),
        ),
        (custom("2.999.3"), "joint arc".into()),
    ];
    let mut p = params();
    for (kind, value) in values {
        p.distinguished_name.push(kind, value);
    }
    let identity = assert_agrees(&der_of(p));
    assert_eq!(
        identity.subject,
        "2.999.3=joint arc,1.3.6.1.4.1.99999.18446744073709551615=big arc,serialNumber=12345,\
         emailAddress=a@b.c,DC=example,title=teletex,ST=\\CE\\A9 \\F0\\9D\\84\\9E,L=Z\\C3\\BCrich \\C3\\BF,\
         GN=Jos\\C3\\A9 M\\C3\\BCller \\E6\\9D\\B1\\E4\\BA\\AC \\F0\\9F\\98\\80,\
         CN=\\#hash\\+plus\\\"quote\\\\back\\<lt\\>gt\\;semi=eq,OU=\\ leading and trailing\\ ,\
         O=Certgate\\, Inc.,C=US"
    );
    assert_eq!(
        identity.subject_cns,
        ["#hash+plus\"quote\\back<lt>gt;semi=eq"]
    );
    assert_eq!(identity.issuer, identity.subject);
}

#[test]
fn a_ca_signed_certificate_names_its_issuer() {
    let mut ca = params();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::OrganizationName, "Mesh");
    ca.distinguished_name
        .push(DnType::CommonName, "Mesh Root CA");
    let ca_key = KeyPair::generate().unwrap();
    let issuer = rcgen::Issuer::new(ca, &ca_key);
    let mut leaf = params();
    leaf.distinguished_name.push(DnType::CommonName, "workload");
    leaf.subject_alt_names = all_san_kinds();
    leaf.use_authority_key_identifier_extension = true;
    leaf.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let der = leaf.signed_by(key(), &issuer).unwrap().der().to_vec();
    let identity = assert_agrees(&der);
    assert_eq!(
        (identity.subject.as_str(), identity.issuer.as_str()),
        ("CN=workload", "CN=Mesh Root CA,O=Mesh")
    );
    assert_eq!(identity.san_count(), 8);
}

#[test]
fn empty_subject_and_no_extensions() {
    let identity = assert_agrees(&der_of(params()));
    assert_eq!((identity.subject.as_str(), identity.san_count()), ("", 0));
    assert!(identity.subject_cns.is_empty());
}

#[test]
fn serials_of_every_length_are_hex_of_their_content() {
    for length in 1..=20u8 {
        for first in [0x01, 0x7f, 0x80, 0xff] {
            let mut serial: Vec<u8> = (0..length).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
            serial[0] = first;
            let mut p = params();
            p.serial_number = Some(SerialNumber::from_slice(&serial));
            let identity = assert_agrees(&der_of(p));
            let expected = if first >= 0x80 {
                format!("00{}", hex(&serial))
            } else {
                hex(&serial)
            };
            assert_eq!(identity.serial, expected);
        }
    }
}

#[test]
fn validity_in_utc_time_and_generalized_time() {
    let dates = [
        (1950, 1, 1, 0),
        (1969, 12, 31, 86_399),
        (1970, 1, 1, 0),
        (1999, 12, 31, 86_399),
        (2000, 2, 29, 45_296),
        (2024, 2, 29, 1),
        (2049, 12, 31, 86_399),
        (2050, 1, 1, 0),
        (2100, 2, 28, 86_399),
        (2400, 2, 29, 3_600),
        (9999, 12, 31, 86_399),
    ];
    for window in dates.windows(2) {
        let [(y0, m0, d0, s0), (y1, m1, d1, s1)] = [window[0], window[1]];
        let mut p = params();
        p.not_before = rcgen::date_time_ymd(y0, m0, d0) + Duration::from_secs(s0);
        p.not_after = rcgen::date_time_ymd(y1, m1, d1) + Duration::from_secs(s1);
        let identity = assert_agrees(&der_of(p));
        assert_eq!(
            identity.not_before,
            Some(rcgen::date_time_ymd(y0, m0, d0).unix_timestamp() + s0 as i64)
        );
    }
}

#[test]
fn a_second_subject_alt_name_extension_rejects_the_certificate() {
    let mut p = params();
    p.subject_alt_names = vec![SanType::DnsName(ia5("a.example"))];
    let second = der_seq(&[tlv(0x82, b"b.example")]);
    p.custom_extensions = vec![CustomExtension::from_oid_content(&[2, 5, 29, 17], second)];
    let der = der_of(p);
    assert!(oracle_identity(&der).is_err());
    assert_eq!(
        PeerIdentity::from_der(&der),
        Err(CertificateError(
            "tbsCertificate.extensions: subjectAltName appears twice (RFC 5280 4.2)".into()
        ))
    );
}

#[test]
fn pem_is_read_through_the_same_reader() {
    let mut p = params();
    p.subject_alt_names = all_san_kinds();
    let cert = p.self_signed(key()).unwrap();
    let identity = PeerIdentity::from_pem(cert.pem().as_bytes()).unwrap();
    let mut oracle = oracle_identity(cert.der()).unwrap();
    oracle.pem = Some(cert.pem().trim_end().to_owned() + "\n");
    assert_eq!(identity, oracle);
}

// ---------------------------------------------------------------------------------------------
// Hand-built DER: what rcgen cannot produce.

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let length = content.len();
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes: Vec<u8> = length
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn der_seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn der_set(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x31, &parts.concat())
}

fn oid(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u128> = dotted.split('.').map(|a| a.parse().unwrap()).collect();
    let mut content = Vec::new();
    let mut push_arc = |mut arc: u128| {
        let mut bytes = vec![(arc & 0x7f) as u8];
        arc >>= 7;
        while arc > 0 {
            bytes.push(0x80 | (arc & 0x7f) as u8);
            arc >>= 7;
        }
        content.extend(bytes.into_iter().rev());
    };
    push_arc(arcs[0] * 40 + arcs[1]);
    arcs[2..].iter().for_each(|&arc| push_arc(arc));
    tlv(0x06, &content)
}

fn attribute(oid_text: &str, value: Vec<u8>) -> Vec<u8> {
    der_seq(&[oid(oid_text), value])
}

fn utf8(text: &str) -> Vec<u8> {
    tlv(0x0c, text.as_bytes())
}

/// The parts of a certificate a test varies; the rest is fixed and well-formed.
struct Parts {
    version: Option<Vec<u8>>,
    serial: Vec<u8>,
    issuer: Vec<u8>,
    not_before: Vec<u8>,
    not_after: Vec<u8>,
    subject: Vec<u8>,
    unique_ids: Vec<u8>,
    extensions: Option<Vec<u8>>,
    trailing: Vec<u8>,
}

impl Default for Parts {
    fn default() -> Self {
        Parts {
            version: Some(tlv(0xa0, &tlv(0x02, &[2]))),
            serial: tlv(0x02, &[0x01, 0x02]),
            issuer: der_seq(&[der_set(&[attribute("2.5.4.3", utf8("issuer"))])]),
            not_before: tlv(0x17, b"240101000000Z"),
            not_after: tlv(0x18, b"20510101000000Z"),
            subject: der_seq(&[der_set(&[attribute("2.5.4.3", utf8("subject"))])]),
            unique_ids: Vec::new(),
            extensions: None,
            trailing: Vec::new(),
        }
    }
}

fn san_extension(names: &[Vec<u8>]) -> Vec<u8> {
    der_seq(&[oid("2.5.29.17"), tlv(0x04, &der_seq(names))])
}

fn extensions(list: &[Vec<u8>]) -> Option<Vec<u8>> {
    Some(tlv(0xa3, &der_seq(list)))
}

fn build(parts: Parts) -> Vec<u8> {
    let algorithm = der_seq(&[oid("1.2.840.10045.4.3.2")]);
    let spki = der_seq(&[
        der_seq(&[oid("1.2.840.10045.2.1"), oid("1.2.840.10045.3.1.7")]),
        tlv(0x03, &[[0u8, 4].as_slice(), &[7u8; 64]].concat()),
    ]);
    let tbs = der_seq(&[
        parts.version.unwrap_or_default(),
        parts.serial,
        algorithm.clone(),
        parts.issuer,
        der_seq(&[parts.not_before, parts.not_after]),
        parts.subject,
        spki,
        parts.unique_ids,
        parts.extensions.unwrap_or_default(),
    ]);
    let mut der = der_seq(&[tbs, algorithm, tlv(0x03, &[0, 0x30, 0x00])]);
    der.extend(parts.trailing);
    der
}

fn error_of(der: &[u8]) -> String {
    match PeerIdentity::from_der(der) {
        Ok(identity) => panic!("read as {identity:?}"),
        Err(CertificateError(message)) => message,
    }
}

#[test]
fn hand_built_certificate_matches_the_oracle() {
    let identity = assert_agrees(&build(Parts::default()));
    assert_eq!(
        (identity.subject.as_str(), identity.serial.as_str()),
        ("CN=subject", "0102")
    );
    assert_eq!(identity.not_before, Some(1_704_067_200));
    assert_eq!(identity.not_after, Some(2_556_144_000));
}

#[test]
fn multi_valued_rdns_and_undecodable_values() {
    let subject = der_seq(&[
        der_set(&[attribute("2.5.4.6", tlv(0x13, b"US"))]),
        der_set(&[
            attribute("2.5.4.3", utf8("alice")),
            attribute("0.9.2342.19200300.100.1.1", utf8("a,1")),
            attribute("2.5.4.11", tlv(0x02, &[0x01, 0x00])),
        ]),
        der_set(&[attribute("1.2.3.4", tlv(0x06, &[0x2a, 0x03]))]),
        der_set(&[attribute("2.5.4.3", tlv(0x0c, &[0xff, 0xfe]))]),
        der_set(&[attribute("2.5.4.3", utf8("bob"))]),
        der_set(&[attribute("2.5.4.10", tlv(0x1e, &[0xd8, 0x00]))]),
        der_set(&[attribute("2.5.4.10", tlv(0x1c, &[0x00, 0x11, 0x00, 0x00]))]),
        der_set(&[attribute("2.5.4.10", tlv(0x1a, b"visible"))]),
        der_set(&[attribute("2.5.4.10", tlv(0x12, b"123 456"))]),
    ]);
    let identity = assert_agrees(&build(Parts {
        subject,
        ..Parts::default()
    }));
    assert_eq!(
        identity.subject,
        "O=123 456,O=visible,O=#1c0400110000,O=#1e02d800,CN=bob,CN=#0c02fffe,1.2.3.4=#06022a03,\
         CN=alice+UID=a\\,1+OU=#02020100,C=US"
    );
    assert_eq!(identity.subject_cns, ["alice", "bob"]);
}

#[test]
fn general_names_certgate_does_not_match_on_are_skipped() {
    let names = [
        tlv(0xa0, &[oid("1.2.3"), tlv(0xa0, &utf8("other"))].concat()),
        tlv(
            0xa4,
            &der_seq(&[der_set(&[attribute("2.5.4.3", utf8("dir"))])]),
        ),
        tlv(0x88, &oid("1.2.3.4")[2..]),
        tlv(0x87, &[10, 0, 0, 0, 255, 0, 0, 0]),
        tlv(0x87, &[192, 0, 2, 1]),
        tlv(0x82, b"Host.Example."),
    ];
    let identity = assert_agrees(&build(Parts {
        extensions: extensions(&[san_extension(&names)]),
        ..Parts::default()
    }));
    assert_eq!(identity.dns, ["host.example"]);
    assert_eq!(identity.ips, [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))]);
    assert_eq!(identity.san_count(), 2);
}

#[test]
fn malformed_certificates_say_which_structure_failed() {
    let cases: Vec<(Parts, &str)> = vec![
        (
            Parts {
                not_after: tlv(0x02, &[1]),
                ..Parts::default()
            },
            "tbsCertificate.validity: notAfter is not a UTCTime or GeneralizedTime",
        ),
        (
            Parts {
                not_before: tlv(0x17, b"2401010000Z"),
                ..Parts::default()
            },
            "tbsCertificate.validity: notBefore is not of the form YYMMDDHHMMSSZ",
        ),
        (
            Parts {
                not_before: tlv(0x18, b"20240101000000.5Z"),
                ..Parts::default()
            },
            "tbsCertificate.validity: notBefore is not of the form YYYYMMDDHHMMSSZ",
        ),
        (
            Parts {
                not_before: tlv(0x17, b"240101000000+0100"),
                ..Parts::default()
            },
            "tbsCertificate.validity: notBefore is not of the form YYMMDDHHMMSSZ",
        ),
        (
            Parts {
                not_after: tlv(0x17, b"230229000000Z"),
                ..Parts::default()
            },
            "tbsCertificate.validity: notAfter is not a valid date and time",
        ),
        (
            Parts {
                not_after: tlv(0x18, b"20240101240000Z"),
                ..Parts::default()
            },
            "tbsCertificate.validity: notAfter is not a valid date and time",
        ),
        (
            Parts {
                serial: tlv(0x02, &[0x00, 0x01]),
                ..Parts::default()
            },
            "tbsCertificate.serialNumber: INTEGER empty or not minimally encoded (not DER)",
        ),
        (
            Parts {
                serial: tlv(0x04, &[0x01]),
                ..Parts::default()
            },
            "tbsCertificate.serialNumber: expected INTEGER, found OCTET STRING",
        ),
        (
            Parts {
                version: Some(tlv(0xa0, &tlv(0x02, &[3]))),
                ..Parts::default()
            },
            "tbsCertificate.version: not v1, v2 or v3",
        ),
        (
            Parts {
                version: None,
                extensions: extensions(&[san_extension(&[tlv(0x82, b"a")])]),
                ..Parts::default()
            },
            "tbsCertificate.extensions: present in a version 1 or 2 certificate",
        ),
        (
            Parts {
                version: None,
                unique_ids: tlv(0x81, &[0x00, 0x01]),
                ..Parts::default()
            },
            "tbsCertificate.issuerUniqueID: present in a version 1 certificate",
        ),
        (
            Parts {
                subject: der_seq(&[der_set(&[])]),
                ..Parts::default()
            },
            "tbsCertificate.subject: empty RelativeDistinguishedName",
        ),
        (
            Parts {
                issuer: der_seq(&[der_seq(&[])]),
                ..Parts::default()
            },
            "tbsCertificate.issuer: expected SET, found SEQUENCE",
        ),
        (
            Parts {
                subject: der_seq(&[der_set(&[der_seq(&[tlv(0x06, &[0x2a, 0x80]), utf8("x")])])]),
                ..Parts::default()
            },
            "tbsCertificate.subject: invalid attribute type OBJECT IDENTIFIER",
        ),
        (
            Parts {
                subject: der_seq(&[der_set(&[der_seq(&[
                    tlv(0x06, &[0x2a, 0x80, 0x01]),
                    utf8("x"),
                ])])]),
                ..Parts::default()
            },
            "tbsCertificate.subject: invalid attribute type OBJECT IDENTIFIER",
        ),
        (
            Parts {
                subject: der_seq(&[der_set(&[der_seq(&[
                    oid("2.5.4.3"),
                    vec![0x1f, 0x81, 0x00, 0x00],
                ])])]),
                ..Parts::default()
            },
            "tbsCertificate.subject: multi-byte tag (not used in certificates)",
        ),
        (
            Parts {
                subject: der_seq(&[der_set(&[der_seq(&[
                    oid("1.2.3.4.36893488147419103232"),
                    utf8("x"),
                ])])]),
                ..Parts::default()
            },
            "tbsCertificate.subject: invalid attribute type OBJECT IDENTIFIER",
        ),
        (
            Parts {
                subject: der_seq(&[der_set(&[der_seq(&[oid("2.5.4.3")])])]),
                ..Parts::default()
            },
            "tbsCertificate.subject: expected an element, found the end of the data",
        ),
        (
            Parts {
                extensions: extensions(&[san_extension(&[tlv(0x82, "hôte".as_bytes())])]),
                ..Parts::default()
            },
            "tbsCertificate.extensions.subjectAltName: dNSName is not an ASCII IA5String",
        ),
        (
            Parts {
                extensions: extensions(&[san_extension(&[tlv(0x86, &[0x80])])]),
                ..Parts::default()
            },
            "tbsCertificate.extensions.subjectAltName: uniformResourceIdentifier is not an \
             ASCII IA5String",
        ),
        (
            Parts {
                extensions: extensions(&[san_extension(&[tlv(0xa2, &tlv(0x16, b"a"))])]),
                ..Parts::default()
            },
            "tbsCertificate.extensions.subjectAltName: [2] is not a GeneralName",
        ),
        (
            Parts {
                extensions: extensions(&[san_extension(&[tlv(0x89, b"a")])]),
                ..Parts::default()
            },
            "tbsCertificate.extensions.subjectAltName: [9] is not a GeneralName",
        ),
        (
            Parts {
                extensions: extensions(&[der_seq(&[
                    oid("2.5.29.17"),
                    tlv(0x04, &[der_seq(&[tlv(0x82, b"a")]), vec![0]].concat()),
                ])]),
                ..Parts::default()
            },
            "tbsCertificate.extensions.subjectAltName: unexpected data after the last element",
        ),
        (
            Parts {
                extensions: extensions(&[
                    san_extension(&[tlv(0x82, b"a.example")]),
                    der_seq(&[oid("2.5.29.19"), tlv(0x04, &der_seq(&[]))]),
                    san_extension(&[]),
                ]),
                ..Parts::default()
            },
            "tbsCertificate.extensions: subjectAltName appears twice (RFC 5280 4.2)",
        ),
        (
            Parts {
                extensions: extensions(&[der_seq(&[oid("2.5.29.19"), tlv(0x01, &[0xff])])]),
                ..Parts::default()
            },
            "tbsCertificate.extensions: expected OCTET STRING, found the end of the data",
        ),
        (
            Parts {
                trailing: vec![0x00],
                ..Parts::default()
            },
            "certificate: unexpected data after the last element",
        ),
    ];
    for (parts, expected) in cases {
        assert_eq!(error_of(&build(parts)), expected);
    }
}

#[test]
fn malformed_framing_is_rejected() {
    let good = build(Parts::default());
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            vec![],
            "certificate: expected SEQUENCE, found the end of the data",
        ),
        (
            [&[0x30, 0x80][..], &good[2..], &[0, 0]].concat(),
            "certificate: indefinite length (not DER)",
        ),
        (
            vec![0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x00],
            "certificate: truncated: an element runs past the end of its data",
        ),
        (
            vec![0x30, 0x89, 1, 0, 0, 0, 0, 0, 0, 0, 0],
            "certificate: length too large",
        ),
        (
            vec![0x30, 0x81, 0x05, 1, 2, 3, 4, 5],
            "certificate: length not minimally encoded (not DER)",
        ),
        (
            vec![0x3f, 0x01, 0x00],
            "certificate: expected SEQUENCE, found tag 0x3f",
        ),
        (
            der_seq(&[der_seq(&[]), der_seq(&[]), tlv(0x03, &[0])]),
            "tbsCertificate.serialNumber: expected INTEGER, found the end of the data",
        ),
    ];
    for (der, expected) in cases {
        assert_eq!(error_of(&der), expected);
    }
}

// ---------------------------------------------------------------------------------------------
// Robustness: no input makes the reader panic.

fn rich_certificate() -> Vec<u8> {
    let mut p = params();
    p.distinguished_name.push(DnType::CommonName, "robust");
    p.distinguished_name.push(
        DnType::OrganizationName,
        DnValue::BmpString(BmpString::try_from("Bmp").unwrap()),
    );
    p.subject_alt_names = all_san_kinds();
    p.serial_number = Some(SerialNumber::from_slice(&[0x8f; 20]));
    der_of(p)
}

#[test]
fn every_truncation_is_an_error() {
    for der in [rich_certificate(), build(Parts::default())] {
        assert_agrees(&der);
        for length in 0..der.len() {
            assert!(
                PeerIdentity::from_der(&der[..length]).is_err(),
                "truncated at {length}"
            );
        }
    }
}

/// A small deterministic generator, so failures reproduce.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn mutated_certificates_never_panic_and_agree_when_both_read_them() {
    let der = rich_certificate();
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut both_read = 0;
    for at in 0..der.len() {
        for replacement in [
            0x00,
            0x80,
            0xff,
            der[at] ^ 0x01,
            (random.next() & 0xff) as u8,
        ] {
            let mut mutated = der.clone();
            mutated[at] = replacement;
            let ours = PeerIdentity::from_der(&mutated);
            if let (Ok(ours), Ok(oracle)) = (&ours, oracle_identity(&mutated)) {
                assert_eq!(ours, &oracle, "byte {at} set to {replacement:#04x}");
                both_read += 1;
            }
        }
    }
    assert!(both_read >= 64, "mutations of the signature still read");
}

#[test]
fn random_bytes_never_panic() {
    let mut random = XorShift(0x2545_f491_4f6c_dd1d);
    let prefixes: [&[u8]; 4] = [&[], &[0x30, 0x82], &[0x30, 0x81, 0xf0, 0x30], &[0x30, 0x84]];
    for round in 0..20_000 {
        let length = (random.next() % 300) as usize;
        let mut bytes = prefixes[round % prefixes.len()].to_vec();
        bytes.extend((0..length).map(|_| (random.next() & 0xff) as u8));
        assert!(PeerIdentity::from_der(&bytes).is_err());
    }
}
