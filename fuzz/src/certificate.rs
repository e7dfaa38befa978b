//! Target `certificate`: certgate's PEM and X.509 readers on arbitrary bytes, and on DER mutations
//! of the valid seed certificates.
//!
//! Properties: any bytes give an identity or an error, never a panic. An identity's digest is 64
//! lowercase hex digits, its serial hex, its subject and issuer free of control characters (they
//! go into logs and XFCC), and its validity known. When x509-parser also reads the certificate,
//! both see the same DNS, URI, email and IP SANs.

use super::seed::{self, Mutation};
use arbitrary::{Arbitrary, Unstructured};
use certgate::identity::{canonical_email, IdentityOrigin, PeerIdentity};
use certgate::names::dns::canonical_name;
use certgate::names::ip::canonical_ip;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A mutated seed: which seed certificate, and the edits to make to its DER.
#[derive(Arbitrary, Debug)]
struct MutatedSeed {
    seed: u8,
    mutations: Vec<Mutation>,
}

pub fn run(data: &[u8]) {
    if let Ok(identity) = PeerIdentity::from_pem(data) {
        check_identity(&identity);
        assert!(
            identity
                .pem
                .as_deref()
                .is_some_and(|pem| pem.starts_with("-----BEGIN CERTIFICATE-----")),
            "a PEM identity keeps its block"
        );
    }
    read_der(data);
    if let Ok(mutated) = MutatedSeed::arbitrary_take_rest(Unstructured::new(data)) {
        let base = seed::CERTIFICATES_DER
            .get(usize::from(mutated.seed) % seed::CERTIFICATES_DER.len())
            .copied()
            .unwrap_or(seed::LEAF_DER);
        read_der(&seed::mutate(base, &mutated.mutations));
    }
}

fn read_der(der: &[u8]) {
    let Ok(identity) = PeerIdentity::from_der(der) else {
        return;
    };
    check_identity(&identity);
    if let Some(oracle) = oracle_sans(der) {
        assert_eq!(
            sans(&identity),
            oracle,
            "certgate and x509-parser read different SANs"
        );
    }
}

fn check_identity(identity: &PeerIdentity) {
    assert!(
        identity.sha256.len() == 64
            && identity
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "digest {:?}",
        identity.sha256
    );
    assert!(
        identity.serial.len().is_multiple_of(2)
            && identity.serial.bytes().all(|b| b.is_ascii_hexdigit()),
        "serial {:?}",
        identity.serial
    );
    for name in [&identity.subject, &identity.issuer] {
        assert!(
            !name.chars().any(char::is_control),
            "a control character in the name {name:?}"
        );
    }
    assert!(identity.not_before.is_some() && identity.not_after.is_some());
    assert_eq!(
        identity.origin,
        IdentityOrigin::Certificate,
        "read from a certificate, not from attributes"
    );
}

/// (DNS, URI, email, IP) SANs, canonical.
type Sans = (Vec<String>, Vec<String>, Vec<String>, Vec<IpAddr>);

fn sans(identity: &PeerIdentity) -> Sans {
    (
        identity.dns.clone(),
        identity.uris.clone(),
        identity.emails.clone(),
        identity.ips.clone(),
    )
}

/// The SANs x509-parser reads, normalised as certgate documents; `None` when it cannot read them.
fn oracle_sans(der: &[u8]) -> Option<Sans> {
    let (rest, certificate) = X509Certificate::from_der(der).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let extension = certificate.subject_alternative_name().ok()?;
    let mut sans: Sans = Default::default();
    for name in extension.iter().flat_map(|ext| &ext.value.general_names) {
        match name {
            GeneralName::DNSName(dns) => sans.0.push(canonical_name(dns)),
            GeneralName::URI(uri) => sans.1.push((*uri).to_owned()),
            GeneralName::RFC822Name(email) => sans.2.push(canonical_email(email)),
            GeneralName::IPAddress(bytes) => sans.3.push(canonical_ip(match bytes.len() {
                4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(*bytes).ok()?)),
                16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(*bytes).ok()?)),
                _ => return None,
            })),
            _ => {}
        }
    }
    Some(sans)
}
