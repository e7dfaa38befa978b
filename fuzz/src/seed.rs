//! The valid certificates the targets start from (the committed `seeds/certificate/` files, made
//! with openssl), and the byte-level mutations that turn one into a hostile variant.

use arbitrary::Arbitrary;

/// A client certificate with every SAN kind certgate reads (DNS, wildcard DNS, SPIFFE URI, email,
/// IPv4, IPv6) and a subject with a multi-valued RDN and characters RFC 2253 escapes.
pub const LEAF_PEM: &str = include_str!("../seeds/certificate/leaf.pem");
pub const LEAF_DER: &[u8] = include_bytes!("../seeds/certificate/leaf.der");

/// Every seed certificate, DER: the leaf above, one with an empty subject and no extension, and
/// one with a UTF-8 subject, an IDNA A-label and a URI with a query.
pub const CERTIFICATES_DER: [&[u8]; 3] = [
    LEAF_DER,
    include_bytes!("../seeds/certificate/minimal.der"),
    include_bytes!("../seeds/certificate/utf8.der"),
];

/// One edit of a DER buffer. Offsets wrap around the buffer's length, so every edit applies.
#[derive(Arbitrary, Debug, Clone)]
pub enum Mutation {
    Flip {
        at: u16,
        mask: u8,
    },
    Set {
        at: u16,
        byte: u8,
    },
    Insert {
        at: u16,
        bytes: Vec<u8>,
    },
    Remove {
        at: u16,
        len: u8,
    },
    /// Copies a run of bytes elsewhere: repeats a TLV, or grafts one into another.
    Copy {
        from: u16,
        len: u8,
        to: u16,
    },
    Truncate {
        at: u16,
    },
}

/// The seed with the mutations applied in order.
pub fn mutate(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut der = seed.to_vec();
    for mutation in mutations {
        let wrap = |at: u16, len: usize| usize::from(at) % len.max(1);
        match mutation {
            Mutation::Flip { at, mask } => {
                let at = wrap(*at, der.len());
                if let Some(byte) = der.get_mut(at) {
                    *byte ^= mask;
                }
            }
            Mutation::Set { at, byte } => {
                let at = wrap(*at, der.len());
                if let Some(slot) = der.get_mut(at) {
                    *slot = *byte;
                }
            }
            Mutation::Insert { at, bytes } => {
                let at = wrap(*at, der.len() + 1);
                der.splice(at..at, bytes.iter().copied());
            }
            Mutation::Remove { at, len } => {
                let at = wrap(*at, der.len());
                let end = (at + usize::from(*len)).min(der.len());
                der.drain(at..end);
            }
            Mutation::Copy { from, len, to } => {
                let from = wrap(*from, der.len());
                let end = (from + usize::from(*len)).min(der.len());
                let run = der.get(from..end).unwrap_or_default().to_vec();
                let to = wrap(*to, der.len() + 1);
                der.splice(to..to, run);
            }
            Mutation::Truncate { at } => {
                let at = wrap(*at, der.len() + 1);
                der.truncate(at);
            }
        }
    }
    der
}
