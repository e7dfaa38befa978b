//! The TLS side of a downstream connection: a peer certificate parsed once into the facts Envoy
//! exposes (RFC 2253 subject, first URI/DNS SAN, SHA-256 digest, PEM), and the session settings
//! (version, SNI, validation) that feed the `connection.*` properties and XFCC.

use crate::error::HarnessError;
use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

/// An X.509 certificate with the facts Envoy derives from it, computed once.
///
/// ```
/// use host_harness::Certificate;
/// let key = rcgen::KeyPair::generate().unwrap();
/// let params = rcgen::CertificateParams::new(vec!["svc.example.org".to_string()]).unwrap();
/// let pem = params.self_signed(&key).unwrap().pem();
/// let certificate = Certificate::from_pem(&pem).unwrap();
/// assert_eq!(certificate.dns_sans(), ["svc.example.org"]);
/// assert!(certificate.uri_sans().is_empty());
/// assert_eq!(certificate.sha256_digest().len(), 64);
/// assert!(certificate.pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    der: Vec<u8>,
    subject: String,
    uri_sans: Vec<String>,
    dns_sans: Vec<String>,
    sha256: String,
}

impl Certificate {
    /// Parses the first `CERTIFICATE` block of a PEM text.
    pub fn from_pem(pem: &str) -> Result<Certificate, HarnessError> {
        Certificate::chain_from_pem(pem)?
            .into_iter()
            .next()
            .ok_or_else(|| HarnessError::certificate("the PEM text holds no CERTIFICATE block"))
    }

    /// Parses every `CERTIFICATE` block of a PEM text, in order (a chain file).
    pub fn chain_from_pem(pem: &str) -> Result<Vec<Certificate>, HarnessError> {
        let mut certificates = Vec::new();
        for (index, block) in Pem::iter_from_buffer(pem.as_bytes()).enumerate() {
            let block = block.map_err(|error| {
                HarnessError::certificate(format!("PEM block {index} is unreadable: {error}"))
            })?;
            if block.label == "CERTIFICATE" {
                certificates.push(Certificate::from_der(&block.contents)?);
            }
        }
        Ok(certificates)
    }

    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Certificate, HarnessError> {
        let (_, parsed) = X509Certificate::from_der(der)
            .map_err(|error| HarnessError::certificate(format!("invalid DER: {error}")))?;
        let mut uri_sans = Vec::new();
        let mut dns_sans = Vec::new();
        let san = parsed.subject_alternative_name().map_err(|error| {
            HarnessError::certificate(format!("invalid SAN extension: {error}"))
        })?;
        if let Some(san) = san {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(uri) => uri_sans.push(uri.to_string()),
                    GeneralName::DNSName(dns) => dns_sans.push(dns.to_string()),
                    _ => {}
                }
            }
        }
        Ok(Certificate {
            der: der.to_vec(),
            subject: rfc2253_name(parsed.subject()),
            uri_sans,
            dns_sans,
            sha256: hex(&Sha256::digest(der)),
        })
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The PEM text as BoringSSL writes it (`PEM_write_bio_X509`): 64-column base64, trailing
    /// newline. This is what `connection.peer_certificate` returns.
    pub fn pem(&self) -> String {
        let body = base64(&self.der);
        let mut pem = String::with_capacity(body.len() + body.len() / 64 + 60);
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        pem
    }

    /// The subject in Envoy's format: RFC 2253 order (last RDN first), e.g.
    /// `C=US,O=Spike Org,CN=client-one` for a certificate whose DN was written CN, O, C.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Every URI SAN, in certificate order (Envoy's property shows only the first).
    pub fn uri_sans(&self) -> &[String] {
        &self.uri_sans
    }

    /// Every DNS SAN, in certificate order (Envoy's property shows only the first).
    pub fn dns_sans(&self) -> &[String] {
        &self.dns_sans
    }

    /// Lowercase hex SHA-256 of the DER, as `connection.sha256_peer_certificate_digest`.
    pub fn sha256_digest(&self) -> &str {
        &self.sha256
    }

    /// The PEM, percent-encoded as Envoy puts it in XFCC `Cert="..."`.
    pub(crate) fn url_encoded_pem(&self) -> String {
        percent_encode(&self.pem())
    }
}

/// TLS protocol versions, named as `connection.tls_version` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        }
    }
}

/// A downstream TLS session: what the handshake negotiated and what the client presented.
///
/// ```
/// use host_harness::{Tls, TlsVersion};
/// let tls = Tls::new().version(TlsVersion::Tls12).sni("api.example.com");
/// assert!(tls.peer_certificate_ref().is_none());
/// ```
#[derive(Debug, Clone)]
pub struct Tls {
    pub(crate) version: TlsVersion,
    pub(crate) sni: Option<String>,
    pub(crate) peer: Option<Certificate>,
    pub(crate) peer_chain: Vec<Certificate>,
    pub(crate) peer_validated: bool,
    pub(crate) local: Option<Certificate>,
}

impl Default for Tls {
    fn default() -> Tls {
        Tls::new()
    }
}

impl Tls {
    /// TLS 1.3, no SNI recorded, no client certificate.
    pub fn new() -> Tls {
        Tls {
            version: TlsVersion::Tls13,
            sni: None,
            peer: None,
            peer_chain: Vec::new(),
            peer_validated: false,
            local: None,
        }
    }

    pub fn version(mut self, version: TlsVersion) -> Tls {
        self.version = version;
        self
    }

    /// The SNI the client sent. Envoy only records it when the `tls_inspector` listener filter
    /// runs; without one, leave it unset and `connection.requested_server_name` is empty.
    pub fn sni(mut self, sni: impl Into<String>) -> Tls {
        self.sni = Some(sni.into());
        self
    }

    /// The client certificate, validated against the trust chain (`peer_certificate_valid` 1).
    pub fn peer_certificate(mut self, certificate: Certificate) -> Tls {
        self.peer = Some(certificate);
        self.peer_validated = true;
        self
    }

    /// Intermediates the client sent after its leaf (they appear in XFCC `Chain=`).
    pub fn peer_chain(mut self, chain: Vec<Certificate>) -> Tls {
        self.peer_chain = chain;
        self
    }

    /// Whether Envoy validated the presented chain; `false` models
    /// `trust_chain_verification: ACCEPT_UNTRUSTED` letting an untrusted client through.
    pub fn validated(mut self, validated: bool) -> Tls {
        self.peer_validated = validated;
        self
    }

    /// Envoy's own server certificate (its URI SANs become XFCC `By=`).
    pub fn local_certificate(mut self, certificate: Certificate) -> Tls {
        self.local = Some(certificate);
        self
    }

    pub fn peer_certificate_ref(&self) -> Option<&Certificate> {
        self.peer.as_ref()
    }
}

fn oid_short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.17" => "postalCode",
        "2.5.4.42" => "GN",
        "2.5.4.43" => "initials",
        "2.5.4.46" => "dnQualifier",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return None,
    })
}

/// Prints a name as BoringSSL's `X509_NAME_print_ex(.., XN_FLAG_RFC2253)`, which Envoy uses:
/// RDNs in reverse order joined by `,`, multi-valued RDNs joined by `+`, RFC 2253 escapes, bytes
/// above 0x7f and control bytes as `\XX`, unknown attribute types as `OID=#<DER hex>`.
fn rfc2253_name(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|attribute| {
                    let oid = attribute.attr_type().to_id_string();
                    match oid_short_name(&oid) {
                        Some(short) => {
                            format!("{short}={}", escape_rfc2253(&attribute_bytes(attribute)))
                        }
                        None => format!("{oid}=#{}", hex(attribute.attr_value().as_bytes())),
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// The attribute's text as UTF-8 bytes: BMPString is decoded from UTF-16, other string types
/// are taken as they are.
fn attribute_bytes(attribute: &AttributeTypeAndValue<'_>) -> Vec<u8> {
    let value = attribute.attr_value();
    if value.tag() == x509_parser::asn1_rs::Tag::BmpString {
        let units: Vec<u16> = value
            .data
            .chunks(2)
            .map(|pair| u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]))
            .collect();
        return String::from_utf16_lossy(&units).into_bytes();
    }
    value.data.to_vec()
}

fn escape_rfc2253(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.len().saturating_sub(1);
    for (index, &byte) in value.iter().enumerate() {
        match byte {
            b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';' => {
                out.push('\\');
                out.push(byte as char);
            }
            b'#' if index == 0 => out.push_str("\\#"),
            b' ' if index == 0 || index == last => out.push_str("\\ "),
            0x00..=0x1f | 0x7f..=0xff => out.push_str(&format!("\\{byte:02X}")),
            _ => out.push(byte as char),
        }
    }
    out
}

/// Lowercase hex, as Envoy's `Hex::encode`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

/// Appends `bytes` in lowercase hex.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 15)] as char);
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, uppercase hex, as Envoy's
/// `PercentEncoding::urlEncode`.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (position, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if position <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads_like_pem() {
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
    }

    #[test]
    fn rfc2253_escapes_specials_and_high_bytes() {
        assert_eq!(escape_rfc2253(b"a,b"), "a\\,b");
        assert_eq!(escape_rfc2253(b" x "), "\\ x\\ ");
        assert_eq!(escape_rfc2253("é".as_bytes()), "\\C3\\A9");
        assert_eq!(escape_rfc2253(b"#1"), "\\#1");
    }

    #[test]
    fn percent_encoding_keeps_unreserved_only() {
        assert_eq!(percent_encode("a b\n+/=-"), "a%20b%0A%2B%2F%3D-");
    }
}
