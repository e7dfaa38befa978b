//! Test certificates: real X.509 certificates generated with rcgen (`certificates`) and read back
//! through certgate's own identity extraction, so tables exercise the same path as production.

mod certificates;

pub(crate) use certificates::{cert_pem, San};

use crate::identity::PeerIdentity;

/// The identity certgate reads from such a certificate.
pub(crate) fn identity(sans: &[San<'_>], common_name: Option<&str>) -> PeerIdentity {
    PeerIdentity::from_pem(cert_pem(sans, common_name).as_bytes())
        .expect("certgate reads the certificate")
}
