//! Keys travel as 64 lowercase hex digits in the protocol.

use zeroize::Zeroizing;

/// Decodes a 32-byte key from 64 hex digits (either case). The result is wiped when dropped, since the
/// same function reads private and preshared keys.
pub fn decode_key(hex: &str) -> Option<Zeroizing<[u8; 32]>> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut key = Zeroizing::new([0u8; 32]);
    for (out, pair) in key.iter_mut().zip(bytes.chunks_exact(2)) {
        *out = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(key)
}

/// Encodes a key as 64 lowercase hex digits.
pub fn encode_key(key: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in key {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37);
        }
        let hex = encode_key(&key);
        assert_eq!(hex.len(), 64);
        assert_eq!(*decode_key(&hex).unwrap(), key);
        assert_eq!(*decode_key(&hex.to_uppercase()).unwrap(), key);
    }

    #[test]
    fn rejects_wrong_length_and_digits() {
        assert!(decode_key(&"a".repeat(63)).is_none());
        assert!(decode_key(&"a".repeat(65)).is_none());
        assert!(decode_key(&format!("{}g", "a".repeat(63))).is_none());
        assert!(decode_key(&format!("{}é", "a".repeat(62))).is_none());
    }
}
