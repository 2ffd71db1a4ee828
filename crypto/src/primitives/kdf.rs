//! KDF1/KDF2/KDF3 of the WireGuard paper (5.4): HKDF with HMAC-BLAKE2s, an empty info, and the
//! chaining key as salt.
//!
//! `τ0 = HMAC(key, input)`, `τ1 = HMAC(τ0, 0x1)`, `τi = HMAC(τ0, τ(i-1) || i)`.

use super::hash::{HASH_LEN, hmac};
use zeroize::Zeroize;

pub type Key = [u8; HASH_LEN];

/// One derived value.
pub fn kdf1(key: &Key, input: &[u8]) -> Key {
    let mut t0 = hmac(key, &[input]);
    let t1 = hmac(&t0, &[&[1]]);
    t0.zeroize();
    t1
}

/// Two derived values.
pub fn kdf2(key: &Key, input: &[u8]) -> (Key, Key) {
    let mut t0 = hmac(key, &[input]);
    let t1 = hmac(&t0, &[&[1]]);
    let t2 = hmac(&t0, &[&t1, &[2]]);
    t0.zeroize();
    (t1, t2)
}

/// Three derived values.
pub fn kdf3(key: &Key, input: &[u8]) -> (Key, Key, Key) {
    let mut t0 = hmac(key, &[input]);
    let t1 = hmac(&t0, &[&[1]]);
    let t2 = hmac(&t0, &[&t1, &[2]]);
    let t3 = hmac(&t0, &[&t2, &[3]]);
    t0.zeroize();
    (t1, t2, t3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_share_a_prefix_across_arities() {
        let k = [9u8; 32];
        let one = kdf1(&k, b"in");
        let (a, b) = kdf2(&k, b"in");
        let (x, y, z) = kdf3(&k, b"in");
        assert_eq!(one, a);
        assert_eq!((a, b), (x, y));
        assert_ne!(y, z);
    }
}
