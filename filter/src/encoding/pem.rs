//! PEM: finding the first `CERTIFICATE` block of a document and decoding its base64 body.
//!
//! Envoy hands over the peer certificate as plain PEM; ALB and XFCC carry it URL-encoded. Only the
//! strict standard alphabet is accepted, with optional padding and any line breaks.

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// The first certificate block (markers included) and its DER bytes.
pub fn first_certificate(text: &str) -> Result<(&str, Vec<u8>), &'static str> {
    let start = text
        .find(BEGIN)
        .ok_or("no -----BEGIN CERTIFICATE----- line")?;
    let body_start = start + BEGIN.len();
    let body_len = text
        .get(body_start..)
        .and_then(|rest| rest.find(END))
        .ok_or("no -----END CERTIFICATE----- line")?;
    let body = text
        .get(body_start..body_start + body_len)
        .unwrap_or_default();
    let block = text
        .get(start..body_start + body_len + END.len())
        .unwrap_or_default();
    Ok((block, decode_base64(body)?))
}

/// Decodes standard base64, ignoring ASCII whitespace.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut accumulator: u32 = 0;
    let mut bits = 0;
    let mut padding = 0;
    for byte in text.bytes().filter(|b| !b.is_ascii_whitespace()) {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            _ => return Err("base64 body has a character outside the alphabet"),
        };
        if padding > 0 {
            return Err("base64 body has data after its padding");
        }
        accumulator = (accumulator << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((accumulator >> bits) as u8);
            accumulator &= (1 << bits) - 1;
        }
    }
    if padding > 2 || bits >= 6 {
        return Err("base64 body has a truncated final group");
    }
    Ok(out)
}
