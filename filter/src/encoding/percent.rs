//! Percent-encoding as forwarding headers use it: certificates URL-encoded into XFCC `Cert=`, the
//! ALB's URL-encoded leaf, and the control characters no header value may carry.
//!
//! Decoding only turns `%XX` into a byte and leaves everything else as written: the AWS ALB leaves
//! `+`, `=` and `/` unescaped in its PEM, and a `+` there is base64, never a space.
//!
//! Why not the `percent-encoding` crate (2.3): its decoder passes a malformed escape (`%`, `%G1`)
//! through as written, where certgate refuses the header value (a forwarded certificate that does
//! not decode is unreadable, never half-read); and its encoder always escapes non-ASCII bytes, where
//! [`escape_controls`] must leave a UTF-8 subject readable and escape only what could forge a line
//! or a list item. Only [`encode`] would match it, and ten lines are not worth a second code path.

use std::borrow::Cow;

/// Percent-encodes every byte but the RFC 3986 unreserved ones (`A-Z a-z 0-9 - . _ ~`), the way Envoy
/// URL-encodes the PEM it puts in XFCC.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3 / 2);
    for byte in bytes {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(byte) {
            out.push(char::from(*byte));
        } else {
            push_escaped(*byte, &mut out);
        }
    }
    out
}

/// Decodes `%XX` escapes; any other byte stands for itself.
pub fn decode(text: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((&byte, after)) = rest.split_first() {
        if byte == b'%' {
            let (high, low) = match after {
                [high, low, ..] => (hex_value(*high), hex_value(*low)),
                _ => (None, None),
            };
            let (Some(high), Some(low)) = (high, low) else {
                return Err("a '%' is not followed by two hex digits");
            };
            out.push(high << 4 | low);
            rest = after.get(2..).unwrap_or_default();
        } else {
            out.push(byte);
            rest = after;
        }
    }
    Ok(out)
}

/// The text with its control characters (and the `extra` ASCII characters) percent-encoded, so that
/// it can be a header value, or an item of a comma-separated one, without forging another line or
/// item.
pub fn escape_controls<'a>(text: &'a str, extra: &[u8]) -> Cow<'a, str> {
    let needs = |byte: u8| byte.is_ascii_control() || extra.contains(&byte);
    // Every byte to escape is ASCII, and ASCII bytes never occur inside a multi-byte character:
    // the text is scanned and split by bytes, without decoding it.
    if !text.bytes().any(needs) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut plain_from = 0;
    for (index, byte) in text.bytes().enumerate() {
        if needs(byte) {
            out.push_str(text.get(plain_from..index).unwrap_or_default());
            push_escaped(byte, &mut out);
            plain_from = index + 1;
        }
    }
    out.push_str(text.get(plain_from..).unwrap_or_default());
    Cow::Owned(out)
}

fn push_escaped(byte: u8, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    for nibble in [byte >> 4, byte & 0x0f] {
        out.push(char::from(
            HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
        ));
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}
