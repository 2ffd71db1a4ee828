//! meshd's own messages: `parse_meshd` and `sealed::open` never panic on arbitrary bytes; a parsed
//! message re-serialises to the same bytes; a genuine envelope round-trips, also inside a relay
//! frame; and nothing opens but the exact sealed bytes (one flipped byte, another recipient, or
//! arbitrary input all fail).
//!
//! Input layout: 8 bytes RNG seed, 2 bytes position and 1 byte mask of the flip, then the bytes that
//! serve both as an arbitrary datagram and as the plaintext of the genuine envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshd_crypto::StaticSecret;
use meshd_crypto::sealed::{self, SealedError};
use meshd_packet::ParseError;
use meshd_packet::wire::meshd::{self, MeshdMessage};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fuzz_target!(|data: &[u8]| {
    let alice = StaticSecret::from_bytes([1; 32]);
    let bob = StaticSecret::from_bytes([2; 32]);
    let relay = StaticSecret::from_bytes([3; 32]);

    // Arbitrary bytes: the parser never panics and round-trips what it accepts.
    match meshd::parse_meshd(data) {
        Ok(m) => {
            let mut out = Vec::new();
            m.write_to(&mut out);
            assert_eq!(out, data, "round trip");
            assert!(meshd::is_meshd(data));
            assert!(meshd_packet::wire::parse(data).is_err());
        }
        Err(ParseError::Truncated) => assert!(data.len() < 4),
        Err(_) => {}
    }
    let mut plain = Vec::new();
    assert!(
        sealed::open(&bob, data, &mut plain).is_err(),
        "arbitrary bytes opened"
    );
    assert!(plain.is_empty());

    let (head, body) = data.split_at(data.len().min(11));
    let mut seed = [0u8; 8];
    seed[..head.len().min(8)].copy_from_slice(&head[..head.len().min(8)]);
    let pos = head
        .get(8..10)
        .map_or(0, |p| usize::from(u16::from_le_bytes([p[0], p[1]])));
    let mask = head.get(10).copied().filter(|m| *m != 0).unwrap_or(1);

    // A genuine envelope of `body` opens for its recipient only.
    let mut rng = ChaCha20Rng::seed_from_u64(u64::from_le_bytes(seed));
    let mut env = Vec::new();
    sealed::seal(&alice, bob.public_key(), body, &mut env, &mut rng).unwrap();
    assert_eq!(sealed::open(&bob, &env, &mut plain), Ok(*alice.public_key()));
    assert_eq!(plain, body);
    assert_eq!(sealed::open(&relay, &env, &mut plain), Err(SealedError::Decrypt));

    // Differential: any one byte changed and it no longer opens.
    let mut forged = env.clone();
    let i = pos % forged.len();
    forged[i] ^= mask;
    assert!(
        sealed::open(&bob, &forged, &mut plain).is_err(),
        "byte {i} ^ {mask:#x} still opened"
    );
    assert!(plain.is_empty());

    // Through a relay frame: the relay sees the destination, the recipient gets the same bytes.
    let mut frame = Vec::new();
    meshd::write_relay_frame(*bob.public_key().as_bytes(), [1; 8], &env, &mut frame);
    let Ok(MeshdMessage::Relay(f)) = meshd::parse_meshd(&frame) else {
        panic!("relay frame did not parse");
    };
    assert_eq!(&f.header.destination, bob.public_key().as_bytes());
    assert_eq!(f.inner, &env[..]);
    assert_eq!(sealed::open(&bob, f.inner, &mut plain), Ok(*alice.public_key()));
});
