//! Target `xfcc`: the X-Forwarded-Client-Cert parser on arbitrary header text, and the encoder
//! against the parser on generated elements.
//!
//! Properties: parsing any text returns elements or an error, never a panic, and every key it
//! returns is one the grammar allows; reading an identity from any element never panics. Encoding
//! generated identities (SANs and subjects holding `,;="\`, whitespace, control characters) gives a
//! header with no control character that parses back into the same elements and identities, values
//! unquoted, control characters percent-encoded.

use super::seed;
use arbitrary::{Arbitrary, Unstructured};
use certgate::encoding::percent::escape_controls;
use certgate::identity::xfcc::{self, XfccDetail};
use certgate::identity::{canonical_email, PeerIdentity};
use certgate::names::dns::canonical_name;
use certgate::names::ip::canonical_ip;
use std::net::IpAddr;

/// A generated element: the identity to describe and the details to write.
#[derive(Arbitrary, Debug)]
struct GeneratedElement {
    /// Describe the seed certificate (with its `Cert=`) instead of the generated names.
    seed_certificate: bool,
    uris: Vec<String>,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
    emails: Vec<String>,
    subject: String,
    hash: String,
    /// Indexes into [`XfccDetail::NAMES`].
    details: Vec<u8>,
}

pub fn run(data: &[u8]) {
    parse_any(&String::from_utf8_lossy(data));
    if let Ok(elements) = Vec::<GeneratedElement>::arbitrary_take_rest(Unstructured::new(data)) {
        round_trip(&elements);
    }
}

fn parse_any(header: &str) {
    let Ok(elements) = xfcc::parse(header) else {
        return;
    };
    for element in &elements {
        for (key, _) in &element.pairs {
            assert!(
                !key.is_empty() && !key.contains([',', ';', '"', '=']),
                "the parser returned the key {key:?} from {header:?}"
            );
        }
        let _ = element.identity();
    }
}

fn round_trip(generated: &[GeneratedElement]) {
    let seed_identity = match PeerIdentity::from_pem(seed::LEAF_PEM.as_bytes()) {
        Ok(identity) => identity,
        Err(why) => panic!("the seed certificate is readable: {why}"),
    };
    let mut expected = Vec::new();
    let mut encoded = Vec::new();
    for element in generated {
        let details: Vec<XfccDetail> = element
            .details
            .iter()
            .filter_map(|index| {
                XfccDetail::NAMES.get(usize::from(*index) % XfccDetail::NAMES.len())
            })
            .map(|(_, detail)| *detail)
            .collect();
        let identity = if element.seed_certificate {
            seed_identity.clone()
        } else {
            PeerIdentity {
                uris: element.uris.clone(),
                dns: element.dns.clone(),
                ips: element.ips.clone(),
                emails: element.emails.clone(),
                subject: element.subject.clone(),
                sha256: element.hash.clone(),
                ..PeerIdentity::default()
            }
        };
        let text = xfcc::encode_element(&identity, &details);
        // An element with nothing to say is not written at all.
        if text.is_empty() {
            continue;
        }
        expected.push(expected_identity(&identity, &details));
        encoded.push(text);
    }
    let header = encoded.join(",");
    assert!(
        !header.chars().any(|c| c.is_ascii_control()),
        "a control character in the header {header:?}"
    );
    let parsed = match xfcc::parse(&header) {
        Ok(parsed) => parsed,
        Err(why) => panic!("certgate's own header {header:?} does not parse: {why}"),
    };
    assert_eq!(
        parsed.len(),
        expected.len(),
        "{header:?} parsed into {parsed:?}"
    );
    for (element, expected) in parsed.iter().zip(&expected) {
        let read = element.identity().ok().map(comparable);
        assert_eq!(&read, expected, "element {element:?} of {header:?}");
    }
}

/// What reading the element back must give: the described names as they travel (control
/// characters percent-encoded) in canonical form, or the certificate itself for `Cert=`.
fn expected_identity(identity: &PeerIdentity, details: &[XfccDetail]) -> Option<PeerIdentity> {
    if identity.pem.is_some() && details.contains(&XfccDetail::Cert) {
        return Some(comparable(identity.clone()));
    }
    let written = |detail: XfccDetail, values: &[String]| -> Vec<String> {
        if details.contains(&detail) {
            values
                .iter()
                .map(|value| escape_controls(value, &[]).into_owned())
                .collect()
        } else {
            Vec::new()
        }
    };
    let subject = written(XfccDetail::Subject, std::slice::from_ref(&identity.subject))
        .into_iter()
        .find(|subject| !subject.is_empty())
        .unwrap_or_default();
    let read = PeerIdentity {
        uris: written(XfccDetail::Uri, &identity.uris),
        dns: written(XfccDetail::Dns, &identity.dns)
            .iter()
            .map(|name| canonical_name(name))
            .collect(),
        emails: written(XfccDetail::Email, &identity.emails)
            .iter()
            .map(|email| canonical_email(email))
            .collect(),
        ips: if details.contains(&XfccDetail::Ip) {
            identity.ips.iter().copied().map(canonical_ip).collect()
        } else {
            Vec::new()
        },
        subject,
        ..PeerIdentity::default()
    };
    (read.san_count() > 0 || !read.subject.is_empty()).then_some(read)
}

/// The fields an element carries, so identities read back compare with what was written.
fn comparable(identity: PeerIdentity) -> PeerIdentity {
    if identity.pem.is_some() {
        return identity;
    }
    PeerIdentity {
        uris: identity.uris,
        dns: identity.dns,
        ips: identity.ips,
        emails: identity.emails,
        subject: identity.subject,
        ..PeerIdentity::default()
    }
}
