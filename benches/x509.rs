//! Per-new-connection cost of reading the peer certificate, certgate's own reader beside two
//! well-kept parsers (`x509-parser`, RustCrypto `x509-cert` + `der`), in one run. Each reader does
//! what certgate does once per new connection: parse the DER, take the SANs by type, the subject
//! common names and the validity bounds, and hash the DER with SHA-256. `own_identity` adds the
//! rest of `PeerIdentity::from_der` (RFC 2253 subject and issuer, canonical names), the full cost
//! certgate pays.
//!
//! Two certificates, both issued by rcgen with a P-256 key: a typical mesh leaf (CN, one SPIFFE URI,
//! two DNS names) and a large leaf with 1,000 DNS SANs.
//!
//! Run with `cargo bench --bench x509`. Before measuring, each reader's extraction is checked to
//! agree with the others on both certificates.

use certgate::identity::x509::{self, GeneralName};
use certgate::identity::PeerIdentity;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sha2::{Digest, Sha256};
use std::hint::black_box;
use std::net::IpAddr;
use testkit::certs::{CertSpec, TestCa};

/// What certgate takes from a certificate, owned so every reader builds the same thing.
#[derive(Debug, Default, PartialEq, Eq)]
struct Extracted {
    dns: Vec<String>,
    uris: Vec<String>,
    emails: Vec<String>,
    ips: Vec<IpAddr>,
    common_names: Vec<String>,
    not_before: i64,
    not_after: i64,
    sha256: [u8; 32],
}

fn sha256(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

fn own(der: &[u8]) -> Extracted {
    let cert = x509::parse_certificate(der).expect("own reader");
    let mut out = Extracted {
        common_names: cert.subject.common_names().map(str::to_owned).collect(),
        not_before: cert.not_before,
        not_after: cert.not_after,
        sha256: sha256(der),
        ..Extracted::default()
    };
    for name in cert.subject_alt_names {
        match name {
            GeneralName::Dns(dns) => out.dns.push(dns.to_owned()),
            GeneralName::Uri(uri) => out.uris.push(uri.to_owned()),
            GeneralName::Email(email) => out.emails.push(email.to_owned()),
            GeneralName::Ip(ip) => out.ips.push(ip),
        }
    }
    out
}

fn with_x509_parser(der: &[u8]) -> Extracted {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (rest, cert) = X509Certificate::from_der(der).expect("x509-parser");
    assert!(rest.is_empty(), "trailing data");
    let mut out = Extracted {
        common_names: cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
            .collect(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        sha256: sha256(der),
        ..Extracted::default()
    };
    let sans = cert.subject_alternative_name().expect("subjectAltName");
    for name in sans.iter().flat_map(|ext| ext.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(dns) => out.dns.push((*dns).to_owned()),
            GeneralName::URI(uri) => out.uris.push((*uri).to_owned()),
            GeneralName::RFC822Name(email) => out.emails.push((*email).to_owned()),
            GeneralName::IPAddress(bytes) => out.ips.extend(ip(bytes)),
            _ => {}
        }
    }
    out
}

fn with_x509_cert(der: &[u8]) -> Extracted {
    use der::Decode;
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::Certificate;
    const COMMON_NAME: der::asn1::ObjectIdentifier =
        der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
    const SUBJECT_ALT_NAME: der::asn1::ObjectIdentifier =
        der::asn1::ObjectIdentifier::new_unwrap("2.5.29.17");
    let cert = Certificate::from_der(der).expect("x509-cert");
    let tbs = &cert.tbs_certificate;
    let mut out = Extracted {
        common_names: tbs
            .subject
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .filter(|attribute| attribute.oid == COMMON_NAME)
            .filter_map(|attribute| {
                attribute
                    .value
                    .decode_as::<String>()
                    .or_else(|_| {
                        attribute
                            .value
                            .decode_as::<der::asn1::PrintableStringRef<'_>>()
                            .map(|text| text.to_string())
                    })
                    .ok()
            })
            .collect(),
        not_before: secs(tbs.validity.not_before.to_unix_duration()),
        not_after: secs(tbs.validity.not_after.to_unix_duration()),
        sha256: sha256(der),
        ..Extracted::default()
    };
    let extensions = tbs.extensions.iter().flatten();
    for extension in extensions.filter(|extension| extension.extn_id == SUBJECT_ALT_NAME) {
        let sans = SubjectAltName::from_der(extension.extn_value.as_bytes()).expect("SAN");
        for name in sans.0 {
            match name {
                GeneralName::DnsName(dns) => out.dns.push(dns.to_string()),
                GeneralName::UniformResourceIdentifier(uri) => out.uris.push(uri.to_string()),
                GeneralName::Rfc822Name(email) => out.emails.push(email.to_string()),
                GeneralName::IpAddress(bytes) => out.ips.extend(ip(bytes.as_bytes())),
                _ => {}
            }
        }
    }
    out
}

fn secs(since_epoch: std::time::Duration) -> i64 {
    i64::try_from(since_epoch.as_secs()).expect("validity before 2^63 s")
}

fn ip(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(<[u8; 4]>::try_from(bytes).ok()?.into()),
        16 => Some(<[u8; 16]>::try_from(bytes).ok()?.into()),
        _ => None,
    }
}

fn certificates() -> Vec<(&'static str, Vec<u8>)> {
    let ca = TestCa::new("bench-ca").expect("CA");
    let mesh = CertSpec::client()
        .cn("orders")
        .org("certgate")
        .uri("spiffe://cluster.local/ns/shop/sa/orders")
        .dns("orders.shop.svc.cluster.local")
        .dns("orders.shop.svc");
    let large = (0..1_000).fold(CertSpec::client().cn("bulk"), |spec, index| {
        spec.dns(&format!("host-{index}.bulk.svc.cluster.local"))
    });
    vec![
        ("mesh_leaf", ca.issue(&mesh).expect("mesh leaf").der),
        ("san_1000_leaf", ca.issue(&large).expect("large leaf").der),
    ]
}

fn parse(c: &mut Criterion) {
    let certificates = certificates();
    for (label, der) in &certificates {
        let expected = own(der);
        assert_eq!(with_x509_parser(der), expected, "x509-parser on {label}");
        assert_eq!(with_x509_cert(der), expected, "x509-cert on {label}");
    }
    let mut group = c.benchmark_group("x509_per_connection");
    for (label, der) in &certificates {
        group.bench_with_input(BenchmarkId::new("own", label), der, |b, der| {
            b.iter(|| own(black_box(der)))
        });
        group.bench_with_input(BenchmarkId::new("x509_parser", label), der, |b, der| {
            b.iter(|| with_x509_parser(black_box(der)))
        });
        group.bench_with_input(BenchmarkId::new("x509_cert", label), der, |b, der| {
            b.iter(|| with_x509_cert(black_box(der)))
        });
        group.bench_with_input(BenchmarkId::new("own_identity", label), der, |b, der| {
            b.iter(|| PeerIdentity::from_der(black_box(der)).expect("identity"))
        });
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
