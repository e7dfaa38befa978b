//! The AWS Application Load Balancer in mTLS verify mode: it validates the client certificate and
//! passes the leaf to its targets as URL-encoded PEM in `X-Amzn-Mtls-Clientcert-Leaf`, leaving `+`,
//! `=` and `/` unescaped (so `+` is base64, never a space).

use crate::encoding::percent;
use crate::identity::PeerIdentity;

/// The header that carries the leaf certificate.
pub(crate) const LEAF_HEADER: &str = "x-amzn-mtls-clientcert-leaf";

/// Every header the ALB sets about the client certificate (verify and passthrough modes): from
/// anyone but a trusted ALB, each is a spoofing attempt.
pub(crate) const HEADERS: [&str; 6] = [
    LEAF_HEADER,
    "x-amzn-mtls-clientcert",
    "x-amzn-mtls-clientcert-serial-number",
    "x-amzn-mtls-clientcert-issuer",
    "x-amzn-mtls-clientcert-subject",
    "x-amzn-mtls-clientcert-validity",
];

/// The identity in a leaf header's value.
pub fn leaf_identity(value: &[u8]) -> Result<PeerIdentity, String> {
    let pem = percent::decode(value).map_err(|why| format!("not URL-encoded: {why}"))?;
    PeerIdentity::from_pem(&pem).map_err(|why| why.to_string())
}
