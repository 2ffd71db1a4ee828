//! Thin wrappers over the primitives WireGuard fixes (paper 5.4): BLAKE2s for HASH, MAC and HMAC, the
//! HKDF-style KDF built from HMAC, ChaCha20-Poly1305 (ring) and XChaCha20-Poly1305 (RustCrypto), and
//! X25519. Everything above this module speaks in these terms only, so the AEAD backend can be swapped
//! in one place.

pub mod aead;
pub mod dh;
pub mod hash;
pub mod kdf;
