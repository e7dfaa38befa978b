//! Test certificates for the suites outside the crate: the same file as the crate's own unit tests.

// Fixture helpers fail loudly on fixture bugs.
#[allow(clippy::expect_used)]
#[path = "../../src/test_support/certificates.rs"]
mod certificates;

pub use certificates::{cert_pem, San};
