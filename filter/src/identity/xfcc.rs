//! X-Forwarded-Client-Cert (XFCC): Envoy's forwarding modes, the element certgate writes for a
//! client certificate, and the parser that reads a trusted proxy's element back into an identity.
//!
//! Format: elements separated by `,` (one per hop, the nearest hop right-most), each a `;`-separated
//! list of `Key=value` pairs: `Hash=<hex>;Cert="<url-encoded PEM>";Subject="CN=a,O=b";URI=<uri>;DNS=<n>`.
//! Envoy writes `URI`/`DNS` values raw, so a SAN holding `,;="` forges pairs or elements downstream;
//! certgate quotes any value that holds them (backslash-escaping `"` and `\`) and percent-encodes
//! control characters, so no value can end a pair, an element or the header line.

use crate::encoding::percent;
use crate::identity::{canonical_email, IdentityOrigin, PeerIdentity};
use crate::names::dns::canonical_name;
use crate::names::ip::{canonical_ip, ip_text};
use std::net::IpAddr;

/// The header's name, as certgate matches it (lowercase).
pub(crate) const HEADER: &str = "x-forwarded-client-cert";

/// Envoy's `forward_client_cert_details` modes, with Envoy's semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum XfccMode {
    /// Never forward: remove the header.
    Sanitize,
    /// Forward the incoming header only on an mTLS connection.
    ForwardOnly,
    /// On an mTLS connection, append the client's element to the incoming header.
    AppendForward,
    /// On an mTLS connection, replace the header with the client's element.
    SanitizeSet,
    /// Forward the incoming header whatever the connection.
    AlwaysForwardOnly,
}

impl XfccMode {
    /// The configuration names, the one source of truth for reading and writing them. Their order is
    /// the order of the pairs in an element: Envoy's order, then the details Envoy lacks.
    pub(crate) const NAMES: &'static [(&'static str, Self)] = &[
        ("sanitize", XfccMode::Sanitize),
        ("forward_only", XfccMode::ForwardOnly),
        ("append_forward", XfccMode::AppendForward),
        ("sanitize_set", XfccMode::SanitizeSet),
        ("always_forward_only", XfccMode::AlwaysForwardOnly),
    ];
}

/// What becomes of the incoming XFCC header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum XfccAction {
    Remove,
    Keep,
    Append,
    Set,
}

impl XfccMode {
    /// The action for a connection on which the client did (`mtls`) or did not present a certificate.
    pub(crate) fn action(self, mtls: bool) -> XfccAction {
        match (self, mtls) {
            (XfccMode::AlwaysForwardOnly, _) => XfccAction::Keep,
            (XfccMode::Sanitize, _) | (_, false) => XfccAction::Remove,
            (XfccMode::ForwardOnly, true) => XfccAction::Keep,
            (XfccMode::AppendForward, true) => XfccAction::Append,
            (XfccMode::SanitizeSet, true) => XfccAction::Set,
        }
    }
}

/// A field of the client's element. `ip` and `email` are certgate's additions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XfccDetail {
    Hash,
    Cert,
    /// The chain as certgate knows it: Envoy hands over the leaf only, so this is the leaf's PEM.
    Chain,
    Subject,
    Uri,
    Dns,
    Ip,
    Email,
}

impl XfccDetail {
    /// The configuration names, the one source of truth for reading and writing them. Their order is
    /// the order of the pairs in an element: Envoy's order, then the details Envoy lacks.
    pub const NAMES: &'static [(&'static str, Self)] = &[
        ("hash", XfccDetail::Hash),
        ("cert", XfccDetail::Cert),
        ("chain", XfccDetail::Chain),
        ("subject", XfccDetail::Subject),
        ("uri", XfccDetail::Uri),
        ("dns", XfccDetail::Dns),
        ("ip", XfccDetail::Ip),
        ("email", XfccDetail::Email),
    ];
}

/// The element that describes a client certificate, with the requested details.
pub fn encode_element(identity: &PeerIdentity, details: &[XfccDetail]) -> String {
    let mut element = String::new();
    for detail in XfccDetail::NAMES
        .iter()
        .map(|(_, detail)| *detail)
        .filter(|detail| details.contains(detail))
    {
        match detail {
            XfccDetail::Hash if !identity.sha256.is_empty() => {
                push_pair(&mut element, "Hash", &identity.sha256, false)
            }
            XfccDetail::Cert | XfccDetail::Chain => {
                if let Some(pem) = &identity.pem {
                    let key = if detail == XfccDetail::Cert {
                        "Cert"
                    } else {
                        "Chain"
                    };
                    push_pair(&mut element, key, &percent::encode(pem.as_bytes()), true);
                }
            }
            XfccDetail::Subject if !identity.subject.is_empty() => {
                push_pair(&mut element, "Subject", &identity.subject, true)
            }
            XfccDetail::Uri => {
                for uri in &identity.uris {
                    push_pair(&mut element, "URI", uri, false);
                }
            }
            XfccDetail::Dns => {
                for name in &identity.dns {
                    push_pair(&mut element, "DNS", name, false);
                }
            }
            XfccDetail::Ip => {
                for ip in &identity.ips {
                    push_pair(&mut element, "IP", &ip_text(*ip), false);
                }
            }
            XfccDetail::Email => {
                for email in &identity.emails {
                    push_pair(&mut element, "Email", email, false);
                }
            }
            XfccDetail::Hash | XfccDetail::Subject => {}
        }
    }
    element
}

fn push_pair(element: &mut String, key: &str, value: &str, always_quote: bool) {
    if !element.is_empty() {
        element.push(';');
    }
    element.push_str(key);
    element.push('=');
    let value = percent::escape_controls(value, &[]);
    let needs_quotes = always_quote
        || value.is_empty()
        || value
            .chars()
            .any(|c| matches!(c, ',' | ';' | '=' | '"' | '\\') || c.is_whitespace());
    if !needs_quotes {
        element.push_str(&value);
        return;
    }
    element.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            element.push('\\');
        }
        element.push(c);
    }
    element.push('"');
}

/// One element: its pairs in order, values unquoted and unescaped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XfccElement {
    pub pairs: Vec<(String, String)>,
}

impl XfccElement {
    /// The values of a key (keys compare case-insensitively).
    pub(crate) fn values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// The identity the element describes: its `Cert` when present, else its `URI`, `DNS`, `IP`,
    /// `Email`, `Subject` and `Hash`.
    pub fn identity(&self) -> Result<PeerIdentity, String> {
        let mut certs = self.values("Cert");
        if let Some(cert) = certs.next() {
            if certs.next().is_some() {
                return Err("the element has more than one Cert".into());
            }
            let pem = percent::decode(cert.as_bytes())
                .map_err(|why| format!("its Cert is not URL-encoded: {why}"))?;
            return PeerIdentity::from_pem(&pem).map_err(|why| format!("its Cert: {why}"));
        }
        let subject = self.values("Subject").next().unwrap_or_default();
        let hash = self.values("Hash").next().unwrap_or_default();
        let mut identity = PeerIdentity::from_envoy_attributes(subject, "", "", hash);
        identity.uris = self.values("URI").map(str::to_owned).collect();
        identity.dns = self.values("DNS").map(canonical_name).collect();
        identity.emails = self.values("Email").map(canonical_email).collect();
        identity.ips = self
            .values("IP")
            .map(|ip| {
                ip.parse::<IpAddr>()
                    .map(canonical_ip)
                    .map_err(|_| format!("its IP {ip:?} is not an address"))
            })
            .collect::<Result<_, _>>()?;
        identity.pem = None;
        identity.origin = IdentityOrigin::XfccDetails;
        if identity.san_count() == 0 && subject.is_empty() {
            return Err("the element names no Cert, URI, DNS, IP, Email or Subject".into());
        }
        Ok(identity)
    }
}

/// Parses a whole header value (several headers joined with `,` are one value) into its elements.
pub fn parse(value: &str) -> Result<Vec<XfccElement>, String> {
    let mut elements = Vec::new();
    let mut element = XfccElement::default();
    let mut rest = value.trim_start();
    if rest.is_empty() {
        return Ok(elements);
    }
    loop {
        let (key, after_key) = rest
            .split_once('=')
            .ok_or_else(|| format!("a pair has no '=' in {rest:?}"))?;
        let key = key.trim();
        if key.is_empty() || key.contains([',', ';', '"']) {
            return Err(format!("{key:?} is not a key"));
        }
        let after_key = after_key.trim_start();
        let (value, after_value) = match after_key.strip_prefix('"') {
            Some(quoted) => read_quoted(quoted)?,
            None => {
                let end = after_key.find([';', ',']).unwrap_or(after_key.len());
                let (bare, after) = after_key.split_at(end);
                (bare.trim_end().to_owned(), after)
            }
        };
        element.pairs.push((key.to_owned(), value));
        let after_value = after_value.trim_start();
        let mut chars = after_value.chars();
        match chars.next() {
            None => {
                elements.push(element);
                return Ok(elements);
            }
            Some(';') => {}
            Some(',') => elements.push(std::mem::take(&mut element)),
            Some(other) => return Err(format!("unexpected {other:?} after a value")),
        }
        rest = chars.as_str().trim_start();
    }
}

/// Reads a quoted string whose opening quote is consumed: the unescaped value and what follows.
fn read_quoted(text: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, text.get(at + 1..).unwrap_or_default())),
            '\\' => match chars.next() {
                Some((_, escaped)) => value.push(escaped),
                None => break,
            },
            c => value.push(c),
        }
    }
    Err("a quoted value is not closed".into())
}
