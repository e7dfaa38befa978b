//! PEM: finding the first `CERTIFICATE` block of a document and decoding its base64 body.
//!
//! Envoy hands over the peer certificate as plain PEM; ALB and XFCC carry it URL-encoded. Only the
//! strict standard alphabet is accepted, with optional padding and any line breaks. The base64 is the
//! `base64` crate's: it took the `.wasm` from 425,320 to 430,168 bytes over the hand-written decoder
//! of commit 2cf6e90 (`cargo xtask build-wasm`), and it runs once per new certificate, never per
//! request. This module only finds the block and drops the line breaks.

use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::{DecodeError, Engine};

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// The first certificate block (markers included) and its DER bytes.
pub(crate) fn first_certificate(text: &str) -> Result<(&str, Vec<u8>), &'static str> {
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

/// Standard alphabet, padding optional, non-zero trailing bits refused.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes standard base64, ignoring ASCII whitespace.
pub(crate) fn decode_base64(text: &str) -> Result<Vec<u8>, &'static str> {
    let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    BASE64.decode(compact).map_err(|error| match error {
        DecodeError::InvalidByte(_, b'=') | DecodeError::InvalidPadding => {
            "base64 body has data after its padding"
        }
        DecodeError::InvalidByte(..) => "base64 body has a character outside the alphabet",
        DecodeError::InvalidLength(_) | DecodeError::InvalidLastSymbol(..) => {
            "base64 body has a truncated final group"
        }
    })
}
