//! A strict reader of DER (X.690 Distinguished Encoding Rules) elements: single-byte tags, definite
//! and minimally encoded lengths, every length checked against the bytes actually present. It knows
//! nothing of X.509; `x509` gives the elements their meaning.

use std::fmt;

pub(crate) const BOOLEAN: u8 = 0x01;
pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const BIT_STRING: u8 = 0x03;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const OBJECT_IDENTIFIER: u8 = 0x06;
pub(crate) const UTF8_STRING: u8 = 0x0c;
pub(crate) const NUMERIC_STRING: u8 = 0x12;
pub(crate) const PRINTABLE_STRING: u8 = 0x13;
pub(crate) const TELETEX_STRING: u8 = 0x14;
pub(crate) const IA5_STRING: u8 = 0x16;
pub(crate) const UTC_TIME: u8 = 0x17;
pub(crate) const GENERALIZED_TIME: u8 = 0x18;
pub(crate) const VISIBLE_STRING: u8 = 0x1a;
pub(crate) const UNIVERSAL_STRING: u8 = 0x1c;
pub(crate) const BMP_STRING: u8 = 0x1e;
pub(crate) const SEQUENCE: u8 = 0x30;
pub(crate) const SET: u8 = 0x31;

/// The tag of a constructed context-specific element, `[number]` (EXPLICIT tagging, or IMPLICIT of a
/// constructed type).
pub(crate) const fn context_constructed(number: u8) -> u8 {
    0xa0 | number
}

/// The tag of a primitive context-specific element, `[number] IMPLICIT` of a primitive type.
pub(crate) const fn context_primitive(number: u8) -> u8 {
    0x80 | number
}

/// Why bytes are not the DER expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DerError {
    /// An element's header or content runs past the end of the data that encloses it.
    Truncated,
    IndefiniteLength,
    NonMinimalLength,
    /// A length of more than four bytes: larger than any input certgate accepts.
    LengthTooLarge,
    HighTagNumber,
    UnexpectedTag {
        expected: u8,
        found: u8,
    },
    /// The data ended where an element was required (`None`: any element).
    Missing {
        expected: Option<u8>,
    },
    TrailingData,
    NonMinimalInteger,
}

impl fmt::Display for DerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DerError::Truncated => {
                f.write_str("truncated: an element runs past the end of its data")
            }
            DerError::IndefiniteLength => f.write_str("indefinite length (not DER)"),
            DerError::NonMinimalLength => f.write_str("length not minimally encoded (not DER)"),
            DerError::LengthTooLarge => f.write_str("length too large"),
            DerError::HighTagNumber => f.write_str("multi-byte tag (not used in certificates)"),
            DerError::UnexpectedTag { expected, found } => write!(
                f,
                "expected {}, found {}",
                TagName(*expected),
                TagName(*found)
            ),
            DerError::Missing {
                expected: Some(expected),
            } => write!(
                f,
                "expected {}, found the end of the data",
                TagName(*expected)
            ),
            DerError::Missing { expected: None } => {
                f.write_str("expected an element, found the end of the data")
            }
            DerError::TrailingData => f.write_str("unexpected data after the last element"),
            DerError::NonMinimalInteger => {
                f.write_str("INTEGER empty or not minimally encoded (not DER)")
            }
        }
    }
}

/// A tag the way error messages print it.
pub(crate) struct TagName(pub u8);

impl fmt::Display for TagName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            BOOLEAN => "BOOLEAN",
            INTEGER => "INTEGER",
            BIT_STRING => "BIT STRING",
            OCTET_STRING => "OCTET STRING",
            OBJECT_IDENTIFIER => "OBJECT IDENTIFIER",
            UTF8_STRING => "UTF8String",
            PRINTABLE_STRING => "PrintableString",
            IA5_STRING => "IA5String",
            UTC_TIME => "UTCTime",
            GENERALIZED_TIME => "GeneralizedTime",
            SEQUENCE => "SEQUENCE",
            SET => "SET",
            tag if tag & 0xc0 == 0x80 => return write!(f, "[{}]", tag & 0x1f),
            tag => return write!(f, "tag 0x{tag:02x}"),
        };
        f.write_str(name)
    }
}

/// One element: its tag, its content octets and its whole encoding (header included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Element<'a> {
    pub(crate) tag: u8,
    pub(crate) content: &'a [u8],
    pub(crate) encoded: &'a [u8],
}

impl<'a> Element<'a> {
    /// A reader over the elements this (constructed) element contains.
    pub(crate) fn contents(&self) -> Reader<'a> {
        Reader::new(self.content)
    }

    /// The content of an INTEGER, checked to be DER: non-empty, no redundant leading byte.
    pub(crate) fn integer_bytes(&self) -> Result<&'a [u8], DerError> {
        match self.content {
            [] => Err(DerError::NonMinimalInteger),
            [0x00, next, ..] if *next < 0x80 => Err(DerError::NonMinimalInteger),
            [0xff, next, ..] if *next >= 0x80 => Err(DerError::NonMinimalInteger),
            content => Ok(content),
        }
    }
}

/// Reads consecutive elements from a byte slice; every read either consumes one whole element or
/// fails, leaving nothing half-read to misinterpret.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Reader { rest: input }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next element, whatever its tag.
    pub(crate) fn read_any(&mut self) -> Result<Element<'a>, DerError> {
        let (&tag, after_tag) = self
            .rest
            .split_first()
            .ok_or(DerError::Missing { expected: None })?;
        if tag & 0x1f == 0x1f {
            return Err(DerError::HighTagNumber);
        }
        let (length, after_length) = split_length(after_tag)?;
        let header_length = self.rest.len() - after_length.len();
        let content = after_length.get(..length).ok_or(DerError::Truncated)?;
        let encoded = self
            .rest
            .get(..header_length + length)
            .ok_or(DerError::Truncated)?;
        self.rest = after_length.get(length..).ok_or(DerError::Truncated)?;
        Ok(Element {
            tag,
            content,
            encoded,
        })
    }

    /// The next element, which must have this tag.
    pub(crate) fn read(&mut self, tag: u8) -> Result<Element<'a>, DerError> {
        match self.peek_tag() {
            None => Err(DerError::Missing {
                expected: Some(tag),
            }),
            Some(found) if found != tag => Err(DerError::UnexpectedTag {
                expected: tag,
                found,
            }),
            Some(_) => self.read_any(),
        }
    }

    /// The next element if it has this tag (an OPTIONAL or DEFAULT field), else nothing is read.
    pub(crate) fn read_optional(&mut self, tag: u8) -> Result<Option<Element<'a>>, DerError> {
        if self.peek_tag() == Some(tag) {
            self.read(tag).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A reader over the contents of the next element, which must have this tag.
    pub(crate) fn read_nested(&mut self, tag: u8) -> Result<Reader<'a>, DerError> {
        self.read(tag).map(|element| element.contents())
    }

    /// Checks that every element was read.
    pub(crate) fn finish(&self) -> Result<(), DerError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DerError::TrailingData)
        }
    }
}

/// Splits a DER length off the front of `input`.
fn split_length(input: &[u8]) -> Result<(usize, &[u8]), DerError> {
    let (&first, rest) = input.split_first().ok_or(DerError::Truncated)?;
    match first {
        0x00..=0x7f => Ok((usize::from(first), rest)),
        0x80 => Err(DerError::IndefiniteLength),
        0x81..=0x84 => {
            let count = usize::from(first & 0x7f);
            let bytes = rest.get(..count).ok_or(DerError::Truncated)?;
            let length = bytes
                .iter()
                .fold(0u32, |length, &byte| (length << 8) | u32::from(byte));
            if bytes.first() == Some(&0) || length < 0x80 {
                return Err(DerError::NonMinimalLength);
            }
            let length = usize::try_from(length).map_err(|_| DerError::LengthTooLarge)?;
            Ok((length, rest.get(count..).ok_or(DerError::Truncated)?))
        }
        _ => Err(DerError::LengthTooLarge),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_one(bytes: &[u8]) -> Result<Element<'_>, DerError> {
        let mut reader = Reader::new(bytes);
        let element = reader.read_any()?;
        reader.finish()?;
        Ok(element)
    }

    #[test]
    fn reads_short_and_long_lengths() {
        let element = read_one(&[0x04, 0x02, 0xaa, 0xbb]).unwrap();
        assert_eq!(
            (element.tag, element.content),
            (OCTET_STRING, &[0xaa, 0xbb][..])
        );
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([7u8; 0x80]);
        let element = read_one(&long).unwrap();
        assert_eq!((element.content.len(), element.encoded.len()), (0x80, 0x83));
        let mut longer = vec![0x04, 0x82, 0x01, 0x00];
        longer.extend([7u8; 0x100]);
        assert_eq!(read_one(&longer).unwrap().content.len(), 0x100);
    }

    #[test]
    fn rejects_what_der_forbids() {
        let cases: &[(&[u8], DerError)] = &[
            (&[0x30, 0x80, 0x00, 0x00], DerError::IndefiniteLength),
            (&[0x04, 0x81, 0x01, 0x00], DerError::NonMinimalLength),
            (&[0x04, 0x82, 0x00, 0x80], DerError::NonMinimalLength),
            (
                &[0x04, 0x85, 0x01, 0x00, 0x00, 0x00, 0x00],
                DerError::LengthTooLarge,
            ),
            (&[0x04, 0xff], DerError::LengthTooLarge),
            (&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff], DerError::Truncated),
            (&[0x04, 0x83, 0x01, 0x00], DerError::Truncated),
            (&[0x04, 0x03, 0x01], DerError::Truncated),
            (&[0x04], DerError::Truncated),
            (&[0x1f, 0x81, 0x00, 0x00], DerError::HighTagNumber),
            (&[0x05, 0x00, 0x00], DerError::TrailingData),
            (&[], DerError::Missing { expected: None }),
        ];
        for (bytes, expected) in cases {
            assert_eq!(read_one(bytes), Err(*expected), "{bytes:02x?}");
        }
    }

    #[test]
    fn checks_tags_of_required_and_optional_elements() {
        let mut reader = Reader::new(&[0x02, 0x01, 0x05]);
        assert_eq!(reader.read_optional(SEQUENCE), Ok(None));
        assert_eq!(
            reader.read(SEQUENCE),
            Err(DerError::UnexpectedTag {
                expected: SEQUENCE,
                found: INTEGER
            })
        );
        assert_eq!(reader.read(INTEGER).unwrap().content, &[0x05]);
        assert_eq!(
            reader.read(INTEGER),
            Err(DerError::Missing {
                expected: Some(INTEGER)
            })
        );
        assert_eq!(
            DerError::UnexpectedTag {
                expected: context_constructed(3),
                found: BIT_STRING
            }
            .to_string(),
            "expected [3], found BIT STRING"
        );
    }

    #[test]
    fn integers_must_be_minimal() {
        let integer = |content: &'static [u8]| Element {
            tag: INTEGER,
            content,
            encoded: content,
        };
        assert_eq!(
            integer(&[0x00, 0x80]).integer_bytes(),
            Ok(&[0x00, 0x80][..])
        );
        assert_eq!(
            integer(&[0xff, 0x7f]).integer_bytes(),
            Ok(&[0xff, 0x7f][..])
        );
        for bad in [&[][..], &[0x00, 0x7f], &[0xff, 0x80]] {
            assert_eq!(
                integer(bad).integer_bytes(),
                Err(DerError::NonMinimalInteger)
            );
        }
    }
}
