//! X25519 (RFC 7748), the DH of the WireGuard paper.

use crate::error::DhError;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// `DH(secret, public)`. Refuses an all-zero result, which means `public` is a low-order point and
/// the exchange contributes nothing secret (Linux's `curve25519()` check does the same).
pub fn dh(secret: &StaticSecret, public: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, DhError> {
    let shared = secret.diffie_hellman(&PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(DhError);
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

/// The public key of `secret`.
pub fn public_key(secret: &StaticSecret) -> [u8; 32] {
    PublicKey::from(secret).to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_order_points_are_refused() {
        let s = StaticSecret::from([0x42; 32]);
        assert!(dh(&s, &[0; 32]).is_err(), "the identity point");
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(
            dh(&s, &one).is_err(),
            "u = 1 has order 4 on the twist's small subgroup"
        );
    }

    #[test]
    fn both_sides_agree() {
        let a = StaticSecret::from([1; 32]);
        let b = StaticSecret::from([2; 32]);
        assert_eq!(
            *dh(&a, &public_key(&b)).unwrap(),
            *dh(&b, &public_key(&a)).unwrap()
        );
    }
}
