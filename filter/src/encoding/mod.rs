//! Text encodings certgate reads and writes: PEM (base64) and percent-encoding, in which certificates
//! travel, and JSON string literals, in which it records.

pub(crate) mod json;
pub(crate) mod pem;
pub mod percent;
