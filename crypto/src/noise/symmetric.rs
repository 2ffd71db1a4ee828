//! The chaining key and transcript hash that both sides carry through the handshake (the Noise
//! SymmetricState, in the paper's notation `C` and `H`).

use crate::primitives::aead;
use crate::primitives::hash::{self, HASH_LEN};
use crate::primitives::kdf;
use std::sync::LazyLock;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The Noise protocol name, hashed into the initial chaining key.
pub const CONSTRUCTION: &[u8; 37] = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
/// WireGuard's prologue, hashed into the initial transcript.
pub const IDENTIFIER: &[u8; 34] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";

static INITIAL: LazyLock<([u8; HASH_LEN], [u8; HASH_LEN])> = LazyLock::new(|| {
    let ck = hash::hash(&[CONSTRUCTION]);
    let h = hash::hash(&[&ck, IDENTIFIER]);
    (ck, h)
});

/// `Ci = HASH(CONSTRUCTION)`.
pub fn initial_chaining_key() -> [u8; HASH_LEN] {
    INITIAL.0
}

/// `Hi = HASH(Ci || IDENTIFIER)`.
pub fn initial_hash() -> [u8; HASH_LEN] {
    INITIAL.1
}

/// `HASH(Hi || Spub_responder)`: the transcript after the responder's static key, which both sides
/// know before the first message. Computed once per key.
pub(crate) fn hash_with_responder(responder: &[u8; 32]) -> [u8; HASH_LEN] {
    hash::hash(&[&INITIAL.1, responder])
}

#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct SymmetricState {
    ck: [u8; HASH_LEN],
    h: [u8; HASH_LEN],
}

impl SymmetricState {
    /// Starts from the pre-message transcript `h0 = HASH(Hi || Spub_responder)`.
    pub(crate) fn new(h0: &[u8; HASH_LEN]) -> Self {
        SymmetricState {
            ck: INITIAL.0,
            h: *h0,
        }
    }

    /// `H = HASH(H || data)`.
    pub(crate) fn mix_hash(&mut self, data: &[u8]) {
        self.h = hash::hash(&[&self.h, data]);
    }

    /// `C = KDF1(C, input)`.
    pub(crate) fn mix_key(&mut self, input: &[u8]) {
        self.ck = kdf::kdf1(&self.ck, input);
    }

    /// `(C, k) = KDF2(C, input)`; returns `k`.
    pub(crate) fn mix_key2(&mut self, input: &[u8]) -> Key {
        let (ck, k) = kdf::kdf2(&self.ck, input);
        self.ck = ck;
        Key(k)
    }

    /// `(C, τ, k) = KDF3(C, psk)`, `H = HASH(H || τ)`; returns `k`.
    pub(crate) fn mix_key_and_hash(&mut self, psk: &[u8; 32]) -> Key {
        let (ck, mut tau, k) = kdf::kdf3(&self.ck, psk);
        self.ck = ck;
        self.mix_hash(&tau);
        tau.zeroize();
        Key(k)
    }

    /// `out = AEAD(k, 0, plaintext, H)`, `H = HASH(H || out)`.
    pub(crate) fn encrypt_and_hash(&mut self, k: &Key, plaintext: &[u8], out: &mut [u8]) {
        // Fails only on a length mismatch between the fixed-size message fields, a programming error
        // that the initiator/responder tests exercise on every path.
        let sealed = aead::seal(&k.0, 0, &self.h, plaintext, out);
        debug_assert!(sealed.is_ok());
        self.mix_hash(out);
    }

    /// `out = AEAD-open(k, 0, sealed, H)`, then `H = HASH(H || sealed)`.
    pub(crate) fn decrypt_and_hash(
        &mut self,
        k: &Key,
        sealed: &[u8],
        out: &mut [u8],
    ) -> Result<(), crate::error::AeadError> {
        aead::open(&k.0, 0, &self.h, sealed, out)?;
        self.mix_hash(sealed);
        Ok(())
    }

    /// `(T1, T2) = KDF2(C, ε)`: the initiator's sending key and the responder's sending key.
    pub(crate) fn split(&self) -> ([u8; 32], [u8; 32]) {
        kdf::kdf2(&self.ck, &[])
    }

    #[cfg(test)]
    pub(crate) fn parts(&self) -> (&[u8; HASH_LEN], &[u8; HASH_LEN]) {
        (&self.ck, &self.h)
    }
}

/// A one-use handshake AEAD key.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct Key([u8; 32]);
