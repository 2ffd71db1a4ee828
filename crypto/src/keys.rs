//! Long-term keys: the node's static X25519 secret, peers' public keys, pre-shared keys.
//!
//! Secrets are zeroed on drop, and `Debug` never prints one: a secret shows the fingerprint of its
//! public key, a pre-shared key a fingerprint of a one-way hash, so logs can tell keys apart without
//! holding them.

use crate::primitives::{dh, hash};
use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

pub const KEY_LEN: usize = 32;

/// An X25519 public key: a node's identity.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        PublicKey(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// A short, stable label for logs: the first four bytes in hex.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint([self.0[0], self.0[1], self.0[2], self.0[3]])
    }
}

impl From<[u8; KEY_LEN]> for PublicKey {
    fn from(bytes: [u8; KEY_LEN]) -> Self {
        PublicKey(bytes)
    }
}

impl core::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

/// Four bytes that name a key in logs.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 4]);

impl core::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

impl core::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(self, f)
    }
}

/// The node's static X25519 secret, with its public key alongside.
pub struct StaticSecret {
    secret: x25519_dalek::StaticSecret,
    public: PublicKey,
}

impl StaticSecret {
    pub fn random(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        Self::from_dalek(x25519_dalek::StaticSecret::random_from_rng(rng))
    }

    /// Takes the 32 secret bytes as stored (clamping happens inside X25519, as in every WireGuard).
    pub fn from_bytes(mut bytes: [u8; KEY_LEN]) -> Self {
        let s = Self::from_dalek(x25519_dalek::StaticSecret::from(bytes));
        bytes.zeroize();
        s
    }

    fn from_dalek(secret: x25519_dalek::StaticSecret) -> Self {
        let public = PublicKey(dh::public_key(&secret));
        StaticSecret { secret, public }
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The secret bytes, for writing the key file.
    pub fn to_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    pub(crate) fn dalek(&self) -> &x25519_dalek::StaticSecret {
        &self.secret
    }
}

impl Clone for StaticSecret {
    fn clone(&self) -> Self {
        Self::from_dalek(self.secret.clone())
    }
}

impl core::fmt::Debug for StaticSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "StaticSecret(public {})", self.public.fingerprint())
    }
}

/// The optional pre-shared key mixed into the handshake (the `psk2` of IKpsk2). A peer without one
/// uses the all-zero key, as the paper specifies.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PresharedKey([u8; KEY_LEN]);

impl PresharedKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        PresharedKey(bytes)
    }

    /// The all-zero key used when none is configured.
    pub fn none() -> Self {
        PresharedKey([0; KEY_LEN])
    }

    pub fn random(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut k = [0; KEY_LEN];
        rng.fill_bytes(&mut k);
        PresharedKey(k)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// A label for logs that reveals nothing about the key: four bytes of a domain-separated hash.
    pub fn fingerprint(&self) -> Fingerprint {
        let h = hash::hash(&[b"meshd psk fingerprint", &self.0]);
        Fingerprint([h[0], h[1], h[2], h[3]])
    }
}

impl Default for PresharedKey {
    fn default() -> Self {
        Self::none()
    }
}

impl core::fmt::Debug for PresharedKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PresharedKey({})", self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_secret_bytes() {
        let secret = StaticSecret::from_bytes([0xab; 32]);
        let shown = format!("{secret:?}");
        assert!(!shown.contains("abab"), "{shown}");
        assert!(shown.contains(&secret.public_key().fingerprint().to_string()));

        let psk = PresharedKey::from_bytes([0xcd; 32]);
        let shown = format!("{psk:?}");
        assert!(!shown.contains("cdcd"), "{shown}");
        assert!(shown.len() < 40, "{shown}");
    }

    #[test]
    fn secret_round_trips_through_bytes() {
        let s = StaticSecret::from_bytes([7; 32]);
        let t = StaticSecret::from_bytes(*s.to_bytes());
        assert_eq!(s.public_key(), t.public_key());
    }
}
