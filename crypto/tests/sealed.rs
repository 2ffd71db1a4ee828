//! Sealed envelopes: what opens, what must not, and a known answer that pins the format.

use meshd_crypto::sealed::{self, SealedError};
use meshd_crypto::{PublicKey, StaticSecret};
use meshd_packet::ParseError;
use meshd_packet::wire::meshd::{SEALED_HEADER_LEN, SEALED_OVERHEAD};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};

fn h<const N: usize>(s: &str) -> [u8; N] {
    hex::decode(s.split_whitespace().collect::<String>())
        .unwrap()
        .try_into()
        .unwrap()
}

fn keys() -> (StaticSecret, StaticSecret, StaticSecret) {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    (
        StaticSecret::random(&mut rng),
        StaticSecret::random(&mut rng),
        StaticSecret::random(&mut rng),
    )
}

fn sealed_msg(from: &StaticSecret, to: &PublicKey, plaintext: &[u8], seed: u64) -> Vec<u8> {
    let mut out = Vec::new();
    sealed::seal(
        from,
        to,
        plaintext,
        &mut out,
        &mut ChaCha20Rng::seed_from_u64(seed),
    )
    .unwrap();
    out
}

#[test]
fn round_trip_names_the_sender() {
    let (alice, bob, _) = keys();
    let env = sealed_msg(&alice, bob.public_key(), b"endpoints: 192.0.2.1:51820", 1);
    assert_eq!(env.len(), 26 + SEALED_OVERHEAD);

    let mut plain = b"stale contents".to_vec();
    let sender = sealed::open(&bob, &env, &mut plain).unwrap();
    assert_eq!(&sender, alice.public_key());
    assert_eq!(plain, b"endpoints: 192.0.2.1:51820");

    let empty = sealed_msg(&alice, bob.public_key(), b"", 2);
    assert_eq!(sealed::open(&bob, &empty, &mut plain), Ok(*alice.public_key()));
    assert!(plain.is_empty());
}

#[test]
fn seal_appends_after_existing_bytes() {
    // A relay frame header is written first, then the envelope behind it.
    let (alice, bob, _) = keys();
    let mut out = vec![0x81, 0, 0, 0];
    sealed::seal(
        &alice,
        bob.public_key(),
        b"x",
        &mut out,
        &mut ChaCha20Rng::seed_from_u64(3),
    )
    .unwrap();
    let mut plain = Vec::new();
    assert_eq!(sealed::open(&bob, &out[4..], &mut plain), Ok(*alice.public_key()));
    assert_eq!(plain, b"x");
}

#[test]
fn every_flipped_bit_is_rejected() {
    let (alice, bob, _) = keys();
    let env = sealed_msg(&alice, bob.public_key(), b"probe 42", 4);
    let mut plain = Vec::new();
    for i in 0..env.len() {
        for bit in 0..8 {
            let mut forged = env.clone();
            forged[i] ^= 1 << bit;
            let r = sealed::open(&bob, &forged, &mut plain);
            assert!(r.is_err(), "byte {i} bit {bit} opened");
            assert!(plain.is_empty(), "a failed open leaves no plaintext");
            // Header bytes 0-3 fail parsing, the rest fail authentication (or, for a sender key
            // flipped onto a low-order point, the DH check).
            if i >= 4 {
                assert!(
                    matches!(r, Err(SealedError::Decrypt | SealedError::LowOrderPoint)),
                    "byte {i}: {r:?}"
                );
            }
        }
    }
    assert!(sealed::open(&bob, &env, &mut plain).is_ok());
}

#[test]
fn truncated_or_extended_envelopes_are_rejected() {
    let (alice, bob, _) = keys();
    let env = sealed_msg(&alice, bob.public_key(), b"probe", 5);
    let mut plain = Vec::new();
    for len in 0..env.len() {
        assert!(sealed::open(&bob, &env[..len], &mut plain).is_err(), "len {len}");
    }
    let mut longer = env.clone();
    longer.push(0);
    assert_eq!(sealed::open(&bob, &longer, &mut plain), Err(SealedError::Decrypt));
    assert_eq!(
        sealed::open(&bob, &env[..SEALED_HEADER_LEN + 15], &mut plain),
        Err(SealedError::Malformed(ParseError::BadMessageLength))
    );
}

#[test]
fn relay_and_wrong_recipient_cannot_open() {
    let (alice, bob, relay) = keys();
    let env = sealed_msg(&alice, bob.public_key(), b"join", 6);
    let mut plain = Vec::new();
    assert_eq!(sealed::open(&relay, &env, &mut plain), Err(SealedError::Decrypt));
    assert_eq!(
        sealed::open(&alice, &env, &mut plain),
        Err(SealedError::Decrypt),
        "not even its sender"
    );
    assert!(plain.is_empty());
}

#[test]
fn sender_key_is_authenticated() {
    let (alice, bob, mallory) = keys();
    let mut env = sealed_msg(&alice, bob.public_key(), b"endpoints", 7);
    let mut plain = Vec::new();

    // Mallory claims Alice's envelope as hers.
    env[4..36].copy_from_slice(mallory.public_key().as_bytes());
    assert_eq!(sealed::open(&bob, &env, &mut plain), Err(SealedError::Decrypt));

    // Reflection: Bob's key as sender, sent back to Alice. Same DH secret, other direction.
    env[4..36].copy_from_slice(bob.public_key().as_bytes());
    assert_eq!(sealed::open(&alice, &env, &mut plain), Err(SealedError::Decrypt));
}

#[test]
fn low_order_keys_are_refused() {
    let (alice, bob, _) = keys();
    let mut out = Vec::new();
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    for point in [[0u8; 32], {
        let mut one = [0u8; 32];
        one[0] = 1;
        one
    }] {
        assert_eq!(
            sealed::seal(&alice, &PublicKey::from_bytes(point), b"x", &mut out, &mut rng),
            Err(SealedError::LowOrderPoint)
        );
        assert!(out.is_empty(), "a refused seal writes nothing");

        let mut env = sealed_msg(&alice, bob.public_key(), b"x", 9);
        env[4..36].copy_from_slice(&point);
        assert_eq!(
            sealed::open(&bob, &env, &mut out),
            Err(SealedError::LowOrderPoint)
        );
    }
}

#[test]
fn nonces_differ_between_seals() {
    let (alice, bob, _) = keys();
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    sealed::seal(&alice, bob.public_key(), b"same", &mut a, &mut rng).unwrap();
    sealed::seal(&alice, bob.public_key(), b"same", &mut b, &mut rng).unwrap();
    assert_ne!(a[36..60], b[36..60], "nonce");
    assert_ne!(a[60..], b[60..], "ciphertext");
    let mut plain = Vec::new();
    sealed::open(&bob, &a, &mut plain).unwrap();
    sealed::open(&bob, &b, &mut plain).unwrap();
}

#[test]
fn opened_envelopes_feed_the_replay_guard() {
    // The contract the module docs state: the box opens a replay every time; the counter inside,
    // checked after opening, is what refuses it.
    let (alice, bob, _) = keys();
    let mut guard = sealed::ReplayGuard::new(16);
    let mut plain = Vec::new();
    let first = sealed_msg(&alice, bob.public_key(), &1u64.to_le_bytes(), 11);
    let second = sealed_msg(&alice, bob.public_key(), &2u64.to_le_bytes(), 12);
    let mut accept = |env: &[u8]| {
        let sender = sealed::open(&bob, env, &mut plain)?;
        guard.accept(&sender, u64::from_le_bytes(plain[..8].try_into().unwrap()))
    };
    assert_eq!(accept(&first), Ok(()));
    assert_eq!(accept(&second), Ok(()));
    assert_eq!(accept(&second), Err(SealedError::Replayed));
    assert_eq!(accept(&first), Err(SealedError::Replayed));
}

/// Hands out fixed bytes, so `seal` can be made to use a chosen nonce.
struct FixedBytes(Vec<u8>);

impl RngCore for FixedBytes {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let rest = self.0.split_off(dest.len());
        dest.copy_from_slice(&self.0);
        self.0 = rest;
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for FixedBytes {}

/// Pins the format, computed independently of this code with libsodium (through PyNaCl 1.6.2) for
/// X25519 and XChaCha20-Poly1305 and CPython's `hashlib.blake2s` and `hmac` for the derivation.
/// The keys are RFC 7748 section 6.1's Alice (sender) and Bob (recipient); their public keys and
/// shared secret below are the RFC's. The nonce is draft-irtf-cfrg-xchacha-03's test nonce.
///
/// ```python
/// import hashlib, hmac
/// from nacl.bindings import (crypto_scalarmult, crypto_scalarmult_base,
///                            crypto_aead_xchacha20poly1305_ietf_encrypt)
/// a = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
/// b = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
/// A, B = crypto_scalarmult_base(a), crypto_scalarmult_base(b)
/// H = lambda *p: hashlib.blake2s(b"".join(p)).digest()
/// M = lambda k, *p: hmac.new(k, b"".join(p), hashlib.blake2s).digest()
/// salt = H(b"meshd sealed v1", A, B)
/// key = M(M(salt, crypto_scalarmult(a, B)), b"\x01")
/// nonce = bytes(range(0x40, 0x58))
/// header = bytes([0x80, 0, 0, 0]) + A + nonce
/// pt = b"meshd sealed known answer"
/// print((header + crypto_aead_xchacha20poly1305_ietf_encrypt(pt, header, nonce, key)).hex())
/// ```
#[test]
fn known_answer() {
    let alice = StaticSecret::from_bytes(h(
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
    ));
    let bob = StaticSecret::from_bytes(h(
        "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
    ));
    assert_eq!(
        alice.public_key().as_bytes(),
        &h::<32>("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    );
    assert_eq!(
        bob.public_key().as_bytes(),
        &h::<32>("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    );
    let expected = hex::decode(
        "80000000\
         8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a\
         404142434445464748494a4b4c4d4e4f5051525354555657\
         03382b052d3f7a3f403185f47c3c33514b8f2a9a97350c7c8557ac27f0\
         272eb2d76bac15881be6f710",
    )
    .unwrap();
    let plaintext = b"meshd sealed known answer";

    let mut out = Vec::new();
    let mut rng = FixedBytes((0x40..0x58).collect());
    sealed::seal(&alice, bob.public_key(), plaintext, &mut out, &mut rng).unwrap();
    assert_eq!(hex::encode(&out), hex::encode(&expected));

    let mut plain = Vec::new();
    assert_eq!(sealed::open(&bob, &expected, &mut plain), Ok(*alice.public_key()));
    assert_eq!(plain, plaintext);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_envelopes_never_panic_and_never_open(
        body in proptest::collection::vec(any::<u8>(), 0..200),
        sender in any::<[u8; 32]>(),
        shaped in any::<bool>(),
    ) {
        let (_, bob, _) = keys();
        // Half the inputs get a valid header so they reach the key derivation and the AEAD.
        let data = if shaped {
            let mut d = vec![0x80, 0, 0, 0];
            d.extend_from_slice(&sender);
            d.extend_from_slice(&body);
            d
        } else {
            body
        };
        let mut plain = Vec::new();
        prop_assert!(sealed::open(&bob, &data, &mut plain).is_err());
        prop_assert!(plain.is_empty());
    }

    #[test]
    fn any_plaintext_round_trips(
        plaintext in proptest::collection::vec(any::<u8>(), 0..300),
        seed in any::<u64>(),
    ) {
        let (alice, bob, _) = keys();
        let env = sealed_msg(&alice, bob.public_key(), &plaintext, seed);
        prop_assert_eq!(env.len(), plaintext.len() + SEALED_OVERHEAD);
        let mut plain = Vec::new();
        prop_assert_eq!(sealed::open(&bob, &env, &mut plain), Ok(*alice.public_key()));
        prop_assert_eq!(plain, plaintext);
    }
}
