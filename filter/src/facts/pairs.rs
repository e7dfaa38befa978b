//! The proxy-wasm pairs encoding of header maps, decoded without copying and without trusting it.
//!
//! Layout: u32 LE count, then count × (u32 key length, u32 value length), then each `key\0value\0`.
//! Hosts send an empty map as no bytes, a single 0x00, or a zero count: all three are accepted.

/// A header map borrowed from the host's buffer. Values are bytes: clients may send non-UTF-8.
pub type HeaderPairs<'a> = Vec<(&'a [u8], &'a [u8])>;

/// Why a buffer is not a valid pairs encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairsError(pub &'static str);

pub fn decode(bytes: &[u8]) -> Result<HeaderPairs<'_>, PairsError> {
    if bytes.len() < 4 {
        return if bytes.iter().all(|b| *b == 0) {
            Ok(Vec::new())
        } else {
            Err(PairsError("truncated count"))
        };
    }
    let (count, rest) = split_u32(bytes).ok_or(PairsError("truncated count"))?;
    let sizes_len = count.checked_mul(8).ok_or(PairsError("count too large"))?;
    if sizes_len > rest.len() {
        return Err(PairsError("count larger than the buffer"));
    }
    let (mut sizes, mut data) = rest.split_at(sizes_len);
    let mut pairs = Vec::with_capacity(count);
    for _ in 0..count {
        let (key_len, after_key) = split_u32(sizes).ok_or(PairsError("truncated sizes"))?;
        let (value_len, after_value) = split_u32(after_key).ok_or(PairsError("truncated sizes"))?;
        sizes = after_value;
        let (key, after) = take_terminated(data, key_len)?;
        let (value, after) = take_terminated(after, value_len)?;
        data = after;
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// Encodes pairs (used by tests and by callers that set whole maps).
pub fn encode<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let bytes: usize = pairs
        .iter()
        .map(|(key, value)| 8 + key.as_ref().len() + value.as_ref().len() + 2)
        .sum();
    let mut out = Vec::with_capacity(4 + bytes);
    out.extend_from_slice(&len_u32(pairs.len()).to_le_bytes());
    for (key, value) in pairs {
        out.extend_from_slice(&len_u32(key.as_ref().len()).to_le_bytes());
        out.extend_from_slice(&len_u32(value.as_ref().len()).to_le_bytes());
    }
    for (key, value) in pairs {
        out.extend_from_slice(key.as_ref());
        out.push(0);
        out.extend_from_slice(value.as_ref());
        out.push(0);
    }
    out
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn split_u32(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<4>()?;
    Some((usize::try_from(u32::from_le_bytes(*head)).ok()?, rest))
}

fn take_terminated(bytes: &[u8], len: usize) -> Result<(&[u8], &[u8]), PairsError> {
    let value = bytes
        .get(..len)
        .ok_or(PairsError("entry runs past the buffer"))?;
    match bytes.get(len) {
        Some(0) => Ok((value, bytes.get(len + 1..).unwrap_or_default())),
        _ => Err(PairsError("entry is not NUL-terminated")),
    }
}

/// The first value of a header (names compared case-insensitively), as UTF-8 text.
pub fn first_value<'a>(pairs: &HeaderPairs<'a>, name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name.as_bytes()))
        .and_then(|(_, value)| std::str::from_utf8(value).ok())
}
