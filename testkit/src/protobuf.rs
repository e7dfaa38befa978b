//! Just enough protobuf and gRPC framing for the suites' own gRPC servers ([`crate::grpc`],
//! [`crate::sds`]): length-delimited fields written by number, fields read back, and the
//! 5-byte gRPC message prefix. No generated code: each server writes the few fields it needs.

use bytes::Bytes;

/// Appends `value` as a protobuf varint.
pub fn put_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends field `number` as a length-delimited field (a string, bytes or a nested message).
pub fn put_bytes(number: u32, value: &[u8], out: &mut Vec<u8>) {
    put_varint(u64::from(number) << 3 | 2, out);
    put_varint(value.len() as u64, out);
    out.extend_from_slice(value);
}

/// The length-delimited fields of `message` as (number, value), in order; `None` when it is not
/// well-formed. Fields of other wire types are skipped.
pub fn length_delimited_fields(message: &[u8]) -> Option<Vec<(u32, &[u8])>> {
    let mut fields = Vec::new();
    let mut at = 0;
    while at < message.len() {
        let tag = read_varint(message, &mut at)?;
        let number = u32::try_from(tag >> 3).ok()?;
        match tag & 7 {
            0 => {
                read_varint(message, &mut at)?;
            }
            1 => at += 8,
            2 => {
                let length = usize::try_from(read_varint(message, &mut at)?).ok()?;
                let value = message.get(at..at.checked_add(length)?)?;
                fields.push((number, value));
                at += length;
            }
            5 => at += 4,
            _ => return None,
        }
    }
    (at == message.len()).then_some(fields)
}

fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

/// `message` with gRPC's prefix: not compressed, its length big-endian.
pub fn grpc_frame(message: &[u8]) -> Bytes {
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    Bytes::from(framed)
}

/// Takes the first complete gRPC message off the front of `buffer`, if there is one.
pub fn take_grpc_message(buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    let length = usize::try_from(u32::from_be_bytes(buffer.get(1..5)?.try_into().ok()?)).ok()?;
    let end = 5usize.checked_add(length)?;
    if buffer.len() < end {
        return None;
    }
    let message = buffer[5..end].to_vec();
    buffer.drain(..end);
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_written_are_read_back_and_frames_split_a_stream() {
        let mut message = Vec::new();
        put_bytes(3, b"spiffe://a", &mut message);
        put_varint(4 << 3, &mut message); // a varint field 4, skipped
        put_varint(300, &mut message);
        put_bytes(5, &[b'x'; 200], &mut message);
        let fields = length_delimited_fields(&message).unwrap();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0], (3, &b"spiffe://a"[..]));
        assert_eq!(fields[1].1.len(), 200);
        assert!(length_delimited_fields(&message[..message.len() - 1]).is_none());
        let mut stream = grpc_frame(&message).to_vec();
        stream.extend_from_slice(&grpc_frame(b"")[..3]);
        assert_eq!(take_grpc_message(&mut stream), Some(message));
        assert_eq!(take_grpc_message(&mut stream), None);
        assert_eq!(stream.len(), 3);
    }
}
