//! Real X.509 certificates generated with rcgen, as PEM; nothing here reads them.

use rcgen::{CertificateParams, DnType, KeyPair, SanType};
use std::net::IpAddr;
use std::sync::OnceLock;

/// A SAN to put in a test certificate.
#[derive(Debug, Clone, Copy)]
pub enum San<'a> {
    Dns(&'a str),
    Uri(&'a str),
    Ip(&'a str),
    Email(&'a str),
}

fn key() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| KeyPair::generate().expect("key generation"))
}

/// The PEM of a self-signed certificate with these SANs and subject common name.
pub fn cert_pem(sans: &[San<'_>], common_name: Option<&str>) -> String {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CountryName, "US");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Certgate Tests");
    if let Some(cn) = common_name {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    params.subject_alt_names = sans
        .iter()
        .map(|san| match san {
            San::Dns(name) => SanType::DnsName((*name).try_into().expect("IA5 DNS name")),
            San::Uri(uri) => SanType::URI((*uri).try_into().expect("IA5 URI")),
            San::Ip(ip) => SanType::IpAddress(ip.parse::<IpAddr>().expect("IP address")),
            San::Email(email) => SanType::Rfc822Name((*email).try_into().expect("IA5 email")),
        })
        .collect();
    params
        .self_signed(key())
        .expect("self-signed certificate")
        .pem()
}
