//! Hostile client certificates: huge SAN lists, names at and over DNS's limits, every directory
//! string encoding, IDNA A-labels and raw U-labels, empty subjects, IP-only and email-only SANs,
//! duplicates, control bytes, negative and huge serials, validity at the ends of time.
//!
//! rcgen writes what it can. What it refuses to write (a non-ASCII dNSName, a TeletexString with a
//! Latin-1 byte, a negative serial, control bytes) is made by one recipe, [`patch`]: rcgen writes a
//! placeholder of the same length, and the placeholder's bytes are replaced in the DER. The lengths
//! do not change, so the DER stays well-formed; only the signature no longer verifies, which
//! neither certgate (the TLS stack verified it) nor the harness checks.

use host_harness::Certificate;
use rcgen::string::{BmpString, Ia5String, PrintableString, TeletexString, UniversalString};
use rcgen::{
    date_time_ymd, CertificateParams, DistinguishedName, DnType, DnValue, KeyPair, SanType,
    SerialNumber,
};
use std::net::IpAddr;
use std::sync::OnceLock;

/// The DNS SAN a route allows, placed last in [`bulk_sans`].
pub const NEEDLE: &str = "needle.bulk.example";
/// The DNS SAN a route denies, placed in the middle of [`bulk_sans`].
pub const BANNED: &str = "banned.bulk.example";
/// A 63-character label: the longest DNS allows.
pub const LABEL_63: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// A certificate with a name saying what is hostile about it.
#[derive(Debug, Clone)]
pub struct Hostile {
    pub name: &'static str,
    pub der: Vec<u8>,
}

impl Hostile {
    /// The certificate as the harness presents it (and its PEM, as `connection.peer_certificate`).
    pub fn certificate(&self) -> Certificate {
        Certificate::from_der(&self.der)
            .unwrap_or_else(|error| panic!("{}: the harness cannot read it: {error}", self.name))
    }
}

fn key() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| KeyPair::generate().expect("a key pair"))
}

/// Parameters valid from 2020 to 2040 with the given SANs and no subject.
pub fn params(sans: Vec<SanType>) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = sans;
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2040, 1, 1);
    params
}

/// A self-signed certificate: the harness presents it as validated, as Envoy would after checking
/// its chain, so who signed it does not matter here.
pub fn build(name: &'static str, params: CertificateParams) -> Hostile {
    let der = params
        .self_signed(key())
        .unwrap_or_else(|error| panic!("{name}: rcgen refused: {error}"))
        .der()
        .to_vec();
    Hostile { name, der }
}

/// The recipe for what rcgen will not write: replaces every occurrence of `placeholder` in the DER
/// (a self-signed certificate's issuer repeats its subject) with `replacement`, which has the same
/// length, so every enclosing length stays right.
pub fn patch(mut hostile: Hostile, placeholder: &[u8], replacement: &[u8]) -> Hostile {
    assert_eq!(
        placeholder.len(),
        replacement.len(),
        "{}: a patch keeps lengths",
        hostile.name
    );
    let found: Vec<usize> = hostile
        .der
        .windows(placeholder.len())
        .enumerate()
        .filter(|(_, window)| *window == placeholder)
        .map(|(at, _)| at)
        .collect();
    assert!(
        !found.is_empty(),
        "{}: the placeholder is in the DER",
        hostile.name
    );
    for at in found {
        hostile.der[at..at + placeholder.len()].copy_from_slice(replacement);
    }
    hostile
}

pub fn dns(name: &str) -> SanType {
    SanType::DnsName(Ia5String::try_from(name).expect("an ASCII DNS name"))
}

pub fn uri(uri: &str) -> SanType {
    SanType::URI(Ia5String::try_from(uri).expect("an ASCII URI"))
}

pub fn email(email: &str) -> SanType {
    SanType::Rfc822Name(Ia5String::try_from(email).expect("an ASCII email"))
}

pub fn ip(ip: &str) -> SanType {
    SanType::IpAddress(ip.parse::<IpAddr>().expect("an IP address"))
}

/// `count` DNS SANs under `bulk.example`: [`BANNED`] in the middle, [`NEEDLE`] last.
pub fn bulk_sans(count: usize) -> Vec<SanType> {
    (0..count)
        .map(|index| match index {
            _ if index + 1 == count => dns(NEEDLE),
            _ if index == count / 2 => dns(BANNED),
            _ => dns(&format!("host-{index}.bulk.example")),
        })
        .collect()
}

/// A certificate with `count` DNS SANs (see [`bulk_sans`]).
pub fn many_sans(name: &'static str, count: usize) -> Hostile {
    build(name, params(bulk_sans(count)))
}

/// A certificate whose subject is one common name, encoded as `value` says.
pub fn common_name(name: &'static str, value: DnValue) -> Hostile {
    let mut params = params(vec![]);
    params.distinguished_name.push(DnType::CommonName, value);
    build(name, params)
}

pub fn printable(text: &str) -> DnValue {
    DnValue::PrintableString(PrintableString::try_from(text).expect("a PrintableString"))
}

pub fn bmp(text: &str) -> DnValue {
    DnValue::BmpString(BmpString::try_from(text).expect("a BMPString"))
}

pub fn universal(text: &str) -> DnValue {
    DnValue::UniversalString(UniversalString::try_from(text).expect("a UniversalString"))
}

/// A TeletexString holding `text` with its `?` replaced by the Latin-1 byte `latin1` (rcgen writes
/// only printable ASCII into a TeletexString).
pub fn teletex_latin1(name: &'static str, text: &str, latin1: u8) -> Hostile {
    let teletex = TeletexString::try_from(text).expect("a TeletexString");
    let hostile = common_name(name, DnValue::TeletexString(teletex));
    let replaced: Vec<u8> = text
        .bytes()
        .map(|byte| if byte == b'?' { latin1 } else { byte })
        .collect();
    patch(hostile, text.as_bytes(), &replaced)
}

/// A certificate whose one SAN is a DNS SAN of arbitrary bytes (a raw UTF-8 U-label, control
/// bytes): rcgen writes an ASCII placeholder of the same length, then the bytes are patched in.
pub fn raw_dns(name: &'static str, bytes: &[u8]) -> Hostile {
    let placeholder: String = (0..bytes.len())
        .map(|index| char::from(b'a' + (index % 26) as u8))
        .collect();
    let placeholder = format!("q{}", &placeholder[1..]);
    // The only SAN, so it is the principal the access record names.
    let hostile = build(name, params(vec![dns(&placeholder)]));
    patch(hostile, placeholder.as_bytes(), bytes)
}

/// A certificate whose serialNumber INTEGER has these content octets (sign byte included): rcgen
/// writes serials as positive, so a placeholder serial is patched.
pub fn serial(name: &'static str, octets: &[u8]) -> Hostile {
    // A positive placeholder of the same length, unlikely to occur elsewhere in the DER.
    let mut placeholder: Vec<u8> = (0..octets.len()).map(|index| 0x5a ^ index as u8).collect();
    placeholder[0] = 0x3c;
    let mut params = params(vec![dns("serial.example")]);
    params.serial_number = Some(SerialNumber::from_slice(&placeholder));
    patch(build(name, params), &placeholder, octets)
}

/// A certificate valid from `not_before` to `not_after`, each `(year, month, day)`.
pub fn validity(
    name: &'static str,
    not_before: (i32, u8, u8),
    not_after: (i32, u8, u8),
) -> Hostile {
    let mut params = params(vec![dns("validity.example")]);
    params.not_before = date_time_ymd(not_before.0, not_before.1, not_before.2);
    params.not_after = date_time_ymd(not_after.0, not_after.1, not_after.2);
    build(name, params)
}
