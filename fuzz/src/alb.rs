//! Target `alb`: decoding the AWS ALB's `X-Amzn-Mtls-Clientcert-Leaf` header from arbitrary bytes.
//!
//! Properties: any value gives an identity or an error, never a panic, and an identity carries its
//! certificate (PEM and SHA-256). Percent-decoding undoes both the ALB's encoding (which leaves
//! `+`, `=`, `/` bare) and certgate's own, for any bytes; and when the input is a readable PEM
//! certificate, the header the ALB would send for it gives exactly that certificate's identity.

use certgate::encoding::percent;
use certgate::identity::{alb, PeerIdentity};

pub fn run(data: &[u8]) {
    if let Ok(identity) = alb::leaf_identity(data) {
        assert!(identity.pem.is_some(), "an ALB identity keeps its PEM");
        assert_eq!(identity.sha256.len(), 64, "a SHA-256 in hex");
    }
    let alb_value = alb_encode(data);
    assert_eq!(
        percent::decode(alb_value.as_bytes()).as_deref(),
        Ok(data),
        "the ALB's encoding {alb_value:?} does not decode back"
    );
    let own_value = percent::encode(data);
    assert_eq!(
        percent::decode(own_value.as_bytes()).as_deref(),
        Ok(data),
        "certgate's encoding {own_value:?} does not decode back"
    );
    if let Ok(identity) = PeerIdentity::from_pem(data) {
        assert_eq!(
            alb::leaf_identity(alb_value.as_bytes()),
            Ok(identity),
            "the ALB header {alb_value:?} names another identity"
        );
    }
}

/// The ALB's URL encoding of the leaf PEM: RFC 3986 unreserved characters and `+`, `=`, `/` bare,
/// every other byte `%XX`.
fn alb_encode(bytes: &[u8]) -> String {
    let mut encoded = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        if byte.is_ascii_alphanumeric() || b"-_.~+=/".contains(byte) {
            encoded.push(char::from(*byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}
