//! The peer's identity: everything certgate matches on, read from an X.509 certificate (or, on Envoys
//! too old to hand over the certificate, from the few attributes they do expose).

pub mod alb;
pub mod peer;
pub(crate) mod resumption;
pub mod sources;
pub mod x509;
pub mod xfcc;

use crate::encoding::pem;
use crate::names::dns::canonical_name;
use crate::names::ip::canonical_ip;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::net::IpAddr;
use x509::{AttributeValue, CertificateError, GeneralName, Name};

/// A certificate's identity, normalised for matching.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// DNS SANs, canonical (lowercase, no trailing dot).
    pub dns: Vec<String>,
    pub uris: Vec<String>,
    /// IP SANs, IPv4-mapped IPv6 turned into IPv4.
    pub ips: Vec<IpAddr>,
    /// Email SANs with their domain lowercased.
    pub emails: Vec<String>,
    /// The subject as Envoy prints it (RFC 2253: last RDN first, comma-separated).
    pub subject: String,
    pub subject_cns: Vec<String>,
    pub issuer: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Validity bounds, seconds since the Unix epoch; `None` when unknown (identity from attributes).
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub sha256: String,
    /// The certificate itself, PEM, when known (for XFCC `Cert=` and `Client-Cert`).
    pub pem: Option<String>,
    /// What the identity was read from.
    pub origin: IdentityOrigin,
}

/// What an identity was read from: the certificate itself, or a description of it that lacks some
/// of its names and everything but its names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IdentityOrigin {
    /// The certificate: every SAN, the subject, issuer, serial, validity and digest.
    #[default]
    Certificate,
    /// The attributes of an Envoy that does not hand over the certificate (before 1.38): the first
    /// URI and DNS SAN, the subject and the digest. Matching on anything else is degraded.
    EnvoyAttributes,
    /// The names an XFCC element lists without its `Cert`: its SANs, subject and hash, as the
    /// proxy that set it chose to describe the certificate.
    XfccDetails,
}

impl PeerIdentity {
    /// Reads the first certificate of a PEM document.
    pub fn from_pem(pem: &[u8]) -> Result<Self, CertificateError> {
        let text =
            std::str::from_utf8(pem).map_err(|_| CertificateError("PEM is not text".into()))?;
        let (block, der) =
            pem::first_certificate(text).map_err(|why| CertificateError(why.into()))?;
        let mut identity = Self::from_der(&der)?;
        identity.pem = Some(block.to_owned() + "\n");
        Ok(identity)
    }

    /// Reads a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertificateError> {
        let cert = x509::parse_certificate(der)?;
        let mut identity = PeerIdentity {
            subject: rfc2253(&cert.subject),
            subject_cns: cert.subject.common_names().map(str::to_owned).collect(),
            issuer: rfc2253(&cert.issuer),
            serial: hex(cert.serial),
            not_before: Some(cert.not_before),
            not_after: Some(cert.not_after),
            sha256: hex(&Sha256::digest(der)),
            ..PeerIdentity::default()
        };
        for name in cert.subject_alt_names {
            match name {
                GeneralName::Dns(dns) => identity.dns.push(canonical_name(dns)),
                GeneralName::Uri(uri) => identity.uris.push(uri.to_owned()),
                GeneralName::Email(email) => identity.emails.push(canonical_email(email)),
                GeneralName::Ip(ip) => identity.ips.push(canonical_ip(ip)),
            }
        }
        Ok(identity)
    }

    /// The degraded identity of an Envoy without `connection.peer_certificate`: its first URI and DNS
    /// SANs, its subject (Envoy's format) and its digest.
    pub(crate) fn from_envoy_attributes(
        subject: &str,
        first_uri: &str,
        first_dns: &str,
        sha256: &str,
    ) -> Self {
        PeerIdentity {
            dns: nonempty(first_dns)
                .map(canonical_name)
                .into_iter()
                .collect(),
            uris: nonempty(first_uri).map(str::to_owned).into_iter().collect(),
            subject_cns: common_names(subject),
            subject: subject.to_owned(),
            sha256: sha256.to_ascii_lowercase(),
            origin: IdentityOrigin::EnvoyAttributes,
            ..PeerIdentity::default()
        }
    }

    /// The one name that stands for this peer in logs: first URI SAN, else first DNS SAN, else subject CN.
    pub(crate) fn principal(&self) -> Option<&str> {
        self.uris
            .first()
            .or_else(|| self.dns.first())
            .or_else(|| self.subject_cns.first())
            .map(String::as_str)
    }

    pub fn san_count(&self) -> usize {
        self.dns.len() + self.uris.len() + self.ips.len() + self.emails.len()
    }
}

/// An email address with its domain lowercased (the local part is case-sensitive).
pub fn canonical_email(email: &str) -> String {
    match email.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
        None => email.to_owned(),
    }
}

fn nonempty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

/// Lowercase hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// The `CN=` values of an RFC 2253 subject string.
fn common_names(subject: &str) -> Vec<String> {
    split_rdns(subject)
        .into_iter()
        .filter_map(|rdn| rdn.strip_prefix("CN=").map(unescape_rdn_value))
        .collect()
}

/// Splits an RFC 2253 string at its unescaped commas.
fn split_rdns(subject: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (at, c) in subject.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            ',' if !escaped => {
                parts.push(subject.get(start..at).unwrap_or_default());
                start = at + 1;
            }
            _ => escaped = false,
        }
    }
    parts.push(subject.get(start..).unwrap_or_default());
    parts
}

/// Undoes [`escape_rdn_value`]: `\,` and friends, and `\XX` hex bytes (then read as UTF-8).
fn unescape_rdn_value(value: &str) -> String {
    let mut bytes = Vec::with_capacity(value.len());
    let mut rest = value.as_bytes();
    while let Some((&byte, after)) = rest.split_first() {
        rest = after;
        if byte != b'\\' {
            bytes.push(byte);
            continue;
        }
        let hex_pair = rest
            .get(..2)
            .and_then(|pair| std::str::from_utf8(pair).ok());
        match hex_pair.and_then(|pair| u8::from_str_radix(pair, 16).ok()) {
            Some(decoded) => {
                bytes.push(decoded);
                rest = rest.get(2..).unwrap_or_default();
            }
            None => {
                if let Some((&escaped, after)) = rest.split_first() {
                    bytes.push(escaped);
                    rest = after;
                }
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A distinguished name the way Envoy prints it (OpenSSL/BoringSSL `XN_FLAG_RFC2253`): RDNs in
/// reverse order, comma-separated, short attribute names, special characters backslash-escaped,
/// values that are not strings as `#` and the hex of their DER.
pub(crate) fn rfc2253(name: &Name<'_>) -> String {
    let mut out = String::new();
    for rdn in name.rdns.iter().rev() {
        for (index, attribute) in rdn.attributes.iter().enumerate() {
            if !out.is_empty() {
                out.push(if index == 0 { ',' } else { '+' });
            }
            out.push_str(attribute_short_name(&attribute.oid).unwrap_or(&attribute.oid));
            out.push('=');
            match &attribute.value {
                AttributeValue::Text(value) => escape_rdn_value(value, &mut out),
                AttributeValue::Undecoded(der) => {
                    out.push('#');
                    out.push_str(&hex(der));
                }
            }
        }
    }
    out
}

/// The short names BoringSSL prints for subject attributes; others print as dotted OIDs, as there.
fn attribute_short_name(oid: &str) -> Option<&'static str> {
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
        "2.5.4.13" => "description",
        "2.5.4.15" => "businessCategory",
        "2.5.4.17" => "postalCode",
        "2.5.4.41" => "name",
        "2.5.4.42" => "GN",
        "2.5.4.43" => "initials",
        "2.5.4.44" => "generationQualifier",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.65" => "pseudonym",
        "2.5.4.97" => "organizationIdentifier",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return None,
    })
}

/// RFC 2253 escapes as BoringSSL's `ASN1_STRFLGS_RFC2253` prints them: special characters with a
/// backslash, and every control byte and every byte of a non-ASCII character (in UTF-8) as `\XX`.
fn escape_rdn_value(value: &str, out: &mut String) {
    let last = value.len().saturating_sub(1);
    for (index, byte) in value.bytes().enumerate() {
        match byte {
            b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';' => {
                out.push('\\');
                out.push(char::from(byte));
            }
            b'#' if index == 0 => out.push_str("\\#"),
            b' ' if index == 0 || index == last => out.push_str("\\ "),
            0x00..=0x1f | 0x7f..=0xff => {
                let _ = write!(out, "\\{byte:02X}");
            }
            _ => out.push(char::from(byte)),
        }
    }
}

#[cfg(test)]
mod tests {
    mod x509;
}
