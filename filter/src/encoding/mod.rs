//! Byte encodings certificates travel in: PEM (base64) and percent-encoding.

pub mod pem;
pub mod percent;
