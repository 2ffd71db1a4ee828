//! HASH, MAC and HMAC of the WireGuard paper (5.4), all BLAKE2s.

use blake2::digest::{FixedOutput, Mac as _, Update};
use blake2::{Blake2s256, Blake2sMac, Digest as _};
use zeroize::Zeroize;

/// Output length of HASH and HMAC.
pub const HASH_LEN: usize = 32;
/// Output length of MAC.
pub const MAC_LEN: usize = 16;

const BLOCK_LEN: usize = 64;

/// `HASH(parts[0] || parts[1] || ...)`: BLAKE2s-256.
pub fn hash(parts: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut h = Blake2s256::new();
    for p in parts {
        Update::update(&mut h, p);
    }
    h.finalize_fixed().into()
}

/// `MAC(key, parts[0] || ...)`: keyed BLAKE2s with a 128-bit output. `key` is at most 32 bytes (a
/// HASH output or a 16-byte cookie), which every caller in the protocol satisfies; a longer key is
/// hashed first rather than rejected so the function stays total.
pub fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    let shortened;
    let key = if key.len() > HASH_LEN {
        shortened = hash(&[key]);
        &shortened[..]
    } else {
        key
    };
    let mut m = match Blake2sMac::<blake2::digest::consts::U16>::new_from_slice(key) {
        Ok(m) => m,
        // Unreachable: the length was bounded above. Keyed BLAKE2s takes keys of 0..=32 bytes.
        Err(_) => return [0; MAC_LEN],
    };
    for p in parts {
        blake2::digest::Mac::update(&mut m, p);
    }
    m.finalize_fixed().into()
}

/// `HMAC(key, parts[0] || ...)`: RFC 2104 over BLAKE2s-256 (64-byte block), as the paper specifies,
/// rather than BLAKE2s's own keyed mode.
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut block = [0u8; BLOCK_LEN];
    if key.len() > BLOCK_LEN {
        block[..HASH_LEN].copy_from_slice(&hash(&[key]));
    } else {
        block[..key.len()].copy_from_slice(key);
    }

    let mut pad = [0u8; BLOCK_LEN];
    for (p, k) in pad.iter_mut().zip(&block) {
        *p = k ^ 0x36;
    }
    let mut inner_hasher = Blake2s256::new();
    Update::update(&mut inner_hasher, &pad);
    for p in parts {
        Update::update(&mut inner_hasher, p);
    }
    let mut inner: [u8; HASH_LEN] = inner_hasher.finalize_fixed().into();

    for (p, k) in pad.iter_mut().zip(&block) {
        *p = k ^ 0x5c;
    }
    let out = hash(&[&pad, &inner]);

    block.zeroize();
    pad.zeroize();
    inner.zeroize();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_of_parts_is_hash_of_concatenation() {
        assert_eq!(hash(&[b"ab", b"", b"c"]), hash(&[b"abc"]));
        assert_ne!(hash(&[b"abc"]), hash(&[b"abd"]));
    }

    #[test]
    fn hmac_with_long_key_hashes_it_first() {
        let long = [7u8; 100];
        assert_eq!(hmac(&long, &[b"x"]), hmac(&hash(&[&long]), &[b"x"]));
    }

    #[test]
    fn mac_depends_on_key_and_message() {
        assert_ne!(mac(&[1; 32], &[b"m"]), mac(&[2; 32], &[b"m"]));
        assert_ne!(mac(&[1; 16], &[b"m"]), mac(&[1; 16], &[b"n"]));
    }
}
